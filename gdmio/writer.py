"""One seam for writing raster products: a COG per layer, and a CF-1.8 NetCDF beside.

Every service writes its rasters through :class:`ProductWriter`::

    with ProductWriter(stage, crs, transform, width, height, dates=dates,
                       netcdf="timeseries.nc", title="GDM-SAR time series") as pw:
        disp = pw.layer("timeseries", "displacement", units="m", dates=True,
                        long_name="LOS displacement relative to the first date")
        vel = pw.layer("velocity", "velocity", units="m/yr", long_name="LOS velocity")
        for window in blocks:
            disp.write(series_block, window)       # (n_dates, rows, cols)
            vel.write(velocity_block, window)

Each layer is a Cloud-Optimized GeoTIFF (``<name>.tif``, through
:class:`gdmio.cog.CogWriter`) and, when the writer has a NetCDF file and the layer a
variable name, a variable of that file written in the same block calls: time-series
layers are ``var(time, y, x)``, maps ``var(y, x)``. The NetCDF follows CF-1.8: ``time``
in days since 1970-01-01 (standard calendar), ``x``/``y`` pixel-centre coordinates
(``longitude``/``latitude`` for geographic CRSs), and a ``spatial_ref`` grid-mapping
variable (CF attributes from PROJ, ``crs_wkt`` and GDAL's ``GeoTransform``) that every
data variable names in ``grid_mapping``, so xarray and rioxarray read it with its CRS.

All files are staged under hidden names and renamed into place only when the ``with``
block succeeds; on failure nothing is left behind.

What a layer *is* (units, band description, sign convention, whether it is relative to
a reference, how to show it) is a :class:`LayerMeta`, kept in one table per service
(``insar.products`` for SAR, ``gdm_opt.products``, ``dsm_opt.products``; all of them in
``workflows.products``). Writers take their tags and band descriptions from it, so a tag
such as the LOS convention is written exactly where it applies.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from gdmio._util import remove_quietly
from gdmio.atomic import replace, temp_sibling
from gdmio.cog import CogWriter

__all__ = ["Layer", "LayerMeta", "ProductWriter", "write_layers"]

_EPOCH = dt.date(1970, 1, 1)
_CHUNK = 256
_CACHE_MAX = 16 << 20  # bytes of HDF5 chunk cache per variable


@dataclass(frozen=True)
class LayerMeta:
    """What one product raster is: the single source of its metadata.

    Attributes
    ----------
    name
        File stem (``<name>.tif``) and layer key.
    units
        Units of the stored values (``m``, ``m/yr``, ``rad``, ``1``, ``count``...): the
        ``UNITS`` tag of the GeoTIFF and the ``units`` of its NetCDF variable.
    title
        What the values are: the band description of a single-band layer (per-date
        layers describe each band by its ISO date) and the NetCDF ``long_name``.
    roles
        STAC asset roles.
    convention
        Sign convention (``CONVENTION`` tag), only for signed quantities it applies to.
    reference
        Name of the tag that says what the values are relative to (``REFERENCE_PIXEL``,
        ``REFERENCE_DATE``), only for layers that are relative to one; None otherwise.
    per_date
        One band per date (band descriptions are the ISO dates).
    signed
        Signed quantity: colour scales are symmetric about zero.
    display_scale, display_units
        How people read the values: shown as ``value * display_scale`` in
        ``display_units`` (InSAR: mm and mm/yr); ``display_units`` None means ``units``.
    cmap
        Matplotlib colour map for quicklooks and map tiles.
    pattern
        ``fnmatch`` pattern of the file stem when several files share this metadata
        (e.g. ``*_east`` for every pair); default: ``name``.

    """

    name: str
    units: str
    title: str
    roles: tuple[str, ...] = ("data",)
    convention: str | None = None
    reference: str | None = None
    per_date: bool = False
    signed: bool = False
    display_scale: float = 1.0
    display_units: str | None = None
    cmap: str | None = None
    pattern: str | None = None

    @property
    def file(self) -> str:
        """``<name>.tif``."""
        return f"{self.name}.tif"

    @property
    def shown_units(self) -> str:
        """Units of the displayed values (``display_units``, else ``units``)."""
        return self.display_units or self.units

    @property
    def colour_map(self) -> str:
        """Colour map: ``cmap``, else red-blue for signed layers and viridis otherwise."""
        return self.cmap or ("RdBu_r" if self.signed else "viridis")

    def tags(self, reference: str | None = None, **extra: Any) -> dict[str, str]:
        """GeoTIFF tags: ``UNITS``, the convention and reference where they apply, ``extra``.

        ``reference`` is the value of the layer's reference tag (e.g. ``"12,40"`` for
        ``REFERENCE_PIXEL``); it is required for a layer with a reference and refused
        for one without.
        """
        if (reference is None) != (self.reference is None):
            raise ValueError(f"layer {self.name!r}: reference tag "
                             f"{self.reference or 'none'} but value {reference!r}")
        tags = {k: str(v) for k, v in extra.items()}
        tags["UNITS"] = self.units
        if self.convention:
            tags["CONVENTION"] = self.convention
        if self.reference and reference is not None:
            tags[self.reference] = str(reference)
        return tags

    def descriptions(self, dates: Sequence[dt.date] | None = None) -> list[str]:
        """Band descriptions: ISO dates for a per-date layer, else ``[title]``."""
        if self.per_date:
            if not dates:
                raise ValueError(f"layer {self.name!r} is per date: give its dates")
            return [d.isoformat() for d in dates]
        return [self.title]


class Layer:
    """A raster product being written: a COG and, optionally, a NetCDF variable."""

    def __init__(self, cog: CogWriter, var: Any | None, series: bool) -> None:
        self.cog = cog
        self.var = var
        self.series = series
        self.path = cog.path

    def write(self, array: np.ndarray, window: Window | None = None,
              band: int | None = None) -> None:
        """Write a block, as :meth:`gdmio.cog.CogWriter.write` (same arguments)."""
        self.cog.write(array, window, band)
        if self.var is None:
            return
        arr = np.asarray(array)
        if window is None:
            window = Window(0, 0, self.cog.width, self.cog.height)
        r0, c0 = int(window.row_off), int(window.col_off)
        rows = slice(r0, r0 + int(window.height))
        cols = slice(c0, c0 + int(window.width))
        data = arr.astype(np.float32, copy=False)
        if not self.series:
            self.var[rows, cols] = data if arr.ndim == 2 else data[0]
        elif arr.ndim == 3:
            self.var[:, rows, cols] = data
        else:
            self.var[(band or 1) - 1, rows, cols] = data


class ProductWriter:
    """Write the raster layers of one product folder (COGs, plus one CF NetCDF).

    Parameters
    ----------
    folder : str or PathLike
        Folder the files go to (a product staging folder).
    crs, transform, width, height
        The product grid (``crs`` may be None for radar-geometry grids).
    dates : sequence of date, optional
        Dates of the time-series layers (the NetCDF ``time`` axis).
    netcdf : str or None
        NetCDF file name in ``folder`` (None: COGs only).
    attrs : mapping, optional
        Global NetCDF attributes (``title``, ``source``, ``references``...).

    """

    def __init__(self, folder: str | os.PathLike[str], crs: CRS | str | None,
                 transform: Affine, width: int, height: int, *,
                 dates: Sequence[dt.date] | None = None, netcdf: str | None = "timeseries.nc",
                 attrs: Mapping[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.crs = None if crs is None else CRS.from_user_input(crs)
        self.transform = transform
        self.width, self.height = int(width), int(height)
        self.dates = [d if not isinstance(d, dt.datetime) else d.date() for d in dates or []]
        self.netcdf_name = netcdf
        self.attrs = dict(attrs or {})
        self.layers: dict[str, Layer] = {}
        self._nc: Any = None
        self._nc_tmp: Path | None = None
        self.netcdf_path: Path | None = None

    # ------------------------------------------------------------------ context
    def __enter__(self) -> ProductWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.netcdf_name:
            self.netcdf_path = self.folder / self.netcdf_name
            self._nc_tmp = temp_sibling(self.netcdf_path, ".nc")
            try:
                self._open_netcdf()
            except BaseException:
                self._abort()
                raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            for layer in self.layers.values():
                layer.cog.__exit__(exc_type, exc, tb)
            self._abort()
            return
        try:
            for layer in self.layers.values():
                layer.cog.__exit__(None, None, None)
            if self._nc is not None:
                self._nc.close()
                self._nc = None
                assert self._nc_tmp is not None and self.netcdf_path is not None
                replace(self._nc_tmp, self.netcdf_path)
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        if self._nc is not None:
            try:
                self._nc.close()
            except Exception:  # noqa: BLE001 - closing a half-written file on failure
                pass
            self._nc = None
        if self._nc_tmp is not None:
            remove_quietly(self._nc_tmp)

    # ------------------------------------------------------------------ layers
    def layer(self, name: str, variable: str | None = None, *, units: str = "",
              long_name: str = "", dates: bool = False, count: int = 1,
              descriptions: Sequence[str] | None = None, tags: Mapping[str, Any] | None = None,
              nodata: float | None = float("nan"), dtype: str = "float32",
              standard_name: str | None = None, filename: str | None = None,
              meta: LayerMeta | None = None, reference: str | None = None) -> Layer:
        """Open a layer: ``<name>.tif`` and, if ``variable`` is given, a NetCDF variable.

        With ``meta`` (a :class:`LayerMeta`), units, long name, band descriptions and tags
        come from it (``reference``: the value of its reference tag); ``tags`` add to them.

        ``dates=True`` makes a time-series layer: one band per date of the writer (band
        descriptions are the ISO dates unless ``descriptions`` is given), variable
        ``(time, y, x)``. Otherwise ``count`` bands (NetCDF only for ``count == 1``).
        """
        if name in self.layers:
            raise ValueError(f"layer {name!r} is already open")
        if meta is not None:
            dates = dates or meta.per_date
            units = meta.units
            long_name = long_name or meta.title
            if descriptions is None:
                descriptions = meta.descriptions(self.dates if dates else None)
            tags = {**meta.tags(reference), **(tags or {})}
        if dates:
            if not self.dates:
                raise ValueError("a time-series layer needs the writer's dates")
            count = len(self.dates)
            if descriptions is None:
                descriptions = [d.isoformat() for d in self.dates]
        cog_tags = dict(tags or {})
        if units and "UNITS" not in cog_tags:
            cog_tags["UNITS"] = units
        cog = CogWriter(self.folder / (filename or f"{name}.tif"), self.width, self.height,
                        count, self.crs, self.transform, nodata=nodata,  # type: ignore[arg-type]
                        dtype=dtype, descriptions=descriptions, tags=cog_tags)
        cog.__enter__()
        var = None
        if variable and self._nc is not None and (dates or count == 1):
            try:
                var = self._variable(variable, dates, units, long_name, standard_name)
            except BaseException:
                cog.__exit__(RuntimeError, None, None)
                raise
        layer = Layer(cog, var, dates)
        self.layers[name] = layer
        return layer

    def write_array(self, name: str, data: np.ndarray, variable: str | None = None,
                    **kwargs: Any) -> Path:
        """Write a whole in-memory layer (2-D map, or 3-D series with ``dates=True``)."""
        arr = np.asarray(data)
        if arr.ndim == 3 and not kwargs.get("dates"):
            kwargs.setdefault("count", arr.shape[0])
        layer = self.layer(name, variable, **kwargs)
        layer.write(arr)
        return layer.path

    # ------------------------------------------------------------------ NetCDF
    def _open_netcdf(self) -> None:
        import netCDF4

        assert self._nc_tmp is not None
        nc = netCDF4.Dataset(self._nc_tmp, "w", format="NETCDF4")
        self._nc = nc
        nc.setncattr("Conventions", "CF-1.8")
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        defaults = {"title": "ground deformation time series", "institution": "gdm-service",
                    "source": "gdm-service", "history": f"{created} written by gdm-service"}
        for key, value in {**defaults, **self.attrs}.items():
            nc.setncattr(key, value if isinstance(value, int | float) else str(value))
        nc.createDimension("y", self.height)
        nc.createDimension("x", self.width)
        t = self.transform
        xs = t.c + t.a * (np.arange(self.width) + 0.5)
        ys = t.f + t.e * (np.arange(self.height) + 0.5)
        geographic = self.crs is not None and self.crs.is_geographic
        xv = nc.createVariable("x", "f8", ("x",))
        yv = nc.createVariable("y", "f8", ("y",))
        xv[:] = xs
        yv[:] = ys
        if self.crs is None:
            xv.long_name, yv.long_name = "column (pixel centre)", "row (pixel centre)"
            xv.units = yv.units = "1"
        elif geographic:
            xv.standard_name, xv.long_name, xv.units = "longitude", "longitude", "degrees_east"
            yv.standard_name, yv.long_name, yv.units = "latitude", "latitude", "degrees_north"
            xv.axis, yv.axis = "X", "Y"
        else:
            unit = self.crs.linear_units or "m"
            xv.standard_name = "projection_x_coordinate"
            yv.standard_name = "projection_y_coordinate"
            xv.long_name, yv.long_name = "x coordinate of projection", \
                "y coordinate of projection"
            xv.units = yv.units = "m" if unit.lower() in ("metre", "meter", "m") else unit
            xv.axis, yv.axis = "X", "Y"
        if self.dates:
            nc.createDimension("time", len(self.dates))
            tv = nc.createVariable("time", "f8", ("time",))
            tv.standard_name = "time"
            tv.long_name = "acquisition date"
            tv.units = "days since 1970-01-01 00:00:00"
            tv.calendar = "standard"
            tv.axis = "T"
            tv[:] = [(d - _EPOCH).days for d in self.dates]
        if self.crs is not None:
            gm = nc.createVariable("spatial_ref", "i4")
            try:
                from pyproj import CRS as ProjCRS

                cf = ProjCRS.from_wkt(self.crs.to_wkt()).to_cf()
            except Exception:  # noqa: BLE001 - a CRS without a CF mapping keeps its WKT
                cf = {"crs_wkt": self.crs.to_wkt()}
            for key, value in cf.items():
                gm.setncattr(key, value)
            gm.setncattr("spatial_ref", self.crs.to_wkt())
            gm.setncattr("GeoTransform", " ".join(str(v) for v in t.to_gdal()))

    def _variable(self, name: str, series: bool, units: str, long_name: str,
                  standard_name: str | None) -> Any:
        dims = ("time", "y", "x") if series else ("y", "x")
        chunks = ((1,) if series else ()) + (min(_CHUNK, self.height), min(_CHUNK, self.width))
        var = self._nc.createVariable(name, "f4", dims, zlib=True, complevel=1,
                                      chunksizes=chunks, fill_value=np.float32(np.nan))
        # HDF5 keeps partly written chunks in a per-variable cache (netCDF's default is
        # tens of MiB per variable): one row of chunks is enough for row-block writing.
        ntime = len(self.dates) if series else 1
        row_of_chunks = ntime * -(-self.width // chunks[-1]) * chunks[-1] * chunks[-2] * 4
        var.set_var_chunk_cache(size=int(min(row_of_chunks * 1.25, _CACHE_MAX)),
                                nelems=1009, preemption=0.9)
        if units:
            var.units = units
        if long_name:
            var.long_name = long_name
        if standard_name:
            var.standard_name = standard_name
        if self.crs is not None:
            var.grid_mapping = "spatial_ref"
        return var


def write_layers(folder: str | os.PathLike[str], crs: CRS | str | None, transform: Affine,
                 layers: Mapping[str, tuple[str | None, np.ndarray, Mapping[str, Any]]], *,
                 dates: Sequence[dt.date] | None = None, netcdf: str | None = "timeseries.nc",
                 attrs: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write in-memory layers through a :class:`ProductWriter` in one call.

    ``layers`` maps a layer name to ``(variable, array, keyword arguments of
    ProductWriter.layer)``. Returns the COG path of each layer.
    """
    if not layers:
        return {}
    first = np.asarray(next(iter(layers.values()))[1])
    height, width = first.shape[-2:]
    with ProductWriter(folder, crs, transform, width, height, dates=dates, netcdf=netcdf,
                       attrs=attrs) as pw:
        return {name: pw.write_array(name, arr, var, **dict(kw))
                for name, (var, arr, kw) in layers.items()}
