"""Geocoding of GDM-SAR products (radar geometry) onto a UTM or WGS84 grid, as COGs.

For a stack ingested from SAFE products (:mod:`insar.ingest`), every map pixel is put
on the DEM (height at its longitude/latitude), traced back into the reference radar
geometry by the zero-Doppler solve (:func:`kernels.geometry.geo2rdr`), and the product
is interpolated there (bilinear, NaN-aware: a map pixel whose radar neighbourhood is
mostly NaN stays NaN). Map pixels outside the radar footprint are NaN. Products are
on the multilooked grid of the GDM-SAR run (``looks`` from its ``report.json``): product
pixel ``(r, c)`` is the mean of stack rows ``r*la .. r*la+la-1`` and columns
``c*lr .. c*lr+lr-1``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Transformer
from scipy.ndimage import map_coordinates

from gdmcore import InputError
from gdmio.cog import write_cog
from insar.dem import load_dem
from insar.ingest import StackGeometry, read_geometry
from kernels.geometry import ecef_to_llh, geo2rdr, llh_to_ecef, rdr2geo

__all__ = ["MapGrid", "map_grid", "radar_coordinates", "geocode_raster", "geocode_products",
           "GEOCODED", "radar_geometry", "geocode_frame", "MAP_GRIDS"]

MAP_GRIDS = {"utm": None, "wgs84": "EPSG:4326"}
"""Map grids of the geocoded products: UTM of the frame centre, and lon/lat (WGS84)."""

GEOCODED = ("velocity.tif", "velocity_std.tif", "timeseries.tif", "temporal_coherence.tif",
            "mean_coherence.tif")


class MapGrid:
    """A north-up map grid: CRS, transform, shape."""

    def __init__(self, crs: CRS, transform: Affine, width: int, height: int) -> None:
        self.crs, self.transform, self.width, self.height = crs, transform, width, height

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates (x, y) of the pixel centres, (height, width) each."""
        cols, rows = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        x = self.transform.c + cols * self.transform.a
        y = self.transform.f + rows * self.transform.e
        return x, y


def _utm(lon: float, lat: float) -> CRS:
    zone = int(math.floor((lon + 180) / 6)) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def map_grid(geom: StackGeometry, looks: tuple[int, int], crs: str | None = None,
             spacing: float | None = None) -> MapGrid:
    """The map grid covering the stack: UTM of its centre (default) or ``crs``.

    ``spacing`` defaults to the ground size of a multilooked pixel (geometric mean).
    """
    lat, lon = geom.lat, geom.lon
    target = (_utm(float(np.mean(lon)), float(np.mean(lat))) if crs is None
              else CRS.from_user_input(crs))
    to_map = Transformer.from_crs("EPSG:4326", target, always_xy=True)
    x, y = to_map.transform(lon, lat)
    if spacing is None:
        ny, nx = geom.shape
        utm = _utm(float(np.mean(lon)), float(np.mean(lat)))
        xm, ym = Transformer.from_crs("EPSG:4326", utm, always_xy=True).transform(lon, lat)
        area = abs((xm[-1, 0] - xm[0, 0]) * (ym[0, -1] - ym[0, 0])
                   - (xm[0, -1] - xm[0, 0]) * (ym[-1, 0] - ym[0, 0]))
        spacing = math.sqrt(area / (ny * nx) * looks[0] * looks[1])  # metres
        if target.is_geographic:
            spacing /= 111_320.0  # degrees (of latitude)
        if spacing <= 0:
            raise InputError("degenerate stack geometry: cannot size the map grid")
    x0, x1 = float(np.min(x)), float(np.max(x))
    y0, y1 = float(np.min(y)), float(np.max(y))
    x0 = math.floor(x0 / spacing) * spacing
    y1 = math.ceil(y1 / spacing) * spacing
    width = int(math.ceil((x1 - x0) / spacing)) + 1
    height = int(math.ceil((y1 - y0) / spacing)) + 1
    if width * height > 400_000_000:
        raise InputError(f"map grid {width}x{height} too large: give a coarser spacing")
    return MapGrid(target, Affine(spacing, 0, x0, 0, -spacing, y1), width, height)


def radar_coordinates(geom: StackGeometry, grid: MapGrid, with_los: bool = False
                      ) -> tuple[np.ndarray, ...]:
    """Fractional stack (row, col) of every map pixel centre (NaN outside the stack).

    With ``with_los``: also the ground-to-satellite unit vector (east, north, up) and the
    terrain height (ellipsoidal) of every map pixel.
    """
    x, y = grid.centres()
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(x, y)
    dem, _ = load_dem(geom.dem) if geom.dem is not None and Path(geom.dem).exists() else (
        load_dem(None))
    h = dem.sample(lon, lat)
    xyz = llh_to_ecef(lat, lon, h)
    t, r = geo2rdr(xyz, geom.poly.coef, geom.poly.t_mid, geom.poly.t_scale,
                   t_guess=float(np.mean(geom.line_times)))
    rows = geom.row_of(t)
    cols = geom.col_of(r)
    ny, nx = geom.shape
    out = ~((cols >= -0.5) & (cols <= nx - 0.5) & np.isfinite(rows))
    rows[out] = np.nan
    cols[out] = np.nan
    if not with_los:
        return rows, cols
    e, n, u = _los_enu(geom, xyz, t, lat, lon)
    for a in (e, n, u):
        a[out] = np.nan
    hh = np.where(out, np.nan, h).astype(np.float32)
    return rows, cols, e, n, u, hh


def _los_enu(geom: StackGeometry, xyz: np.ndarray, t: np.ndarray, lat: np.ndarray,
             lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """East, north, up components of the unit vector from ``xyz`` to the satellite at ``t``."""
    sat = geom.poly.position(np.where(np.isfinite(t), t, float(np.mean(geom.line_times))))
    los = sat - xyz
    los /= np.linalg.norm(los, axis=-1, keepdims=True)
    la, lo = np.radians(lat), np.radians(lon)
    east = np.stack([-np.sin(lo), np.cos(lo), np.zeros_like(lo)], -1)
    north = np.stack([-np.sin(la) * np.cos(lo), -np.sin(la) * np.sin(lo), np.cos(la)], -1)
    up = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], -1)
    return tuple(np.sum(los * v, axis=-1).astype(np.float32)  # type: ignore[return-value]
                 for v in (east, north, up))


def radar_geometry(geom: StackGeometry, looks: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per multilooked radar pixel: latitude, longitude, height, LOS east/north/up.

    The radar-to-ground lookup table: each pixel centre (stack row ``r la + (la-1)/2``,
    column ``c lr + (lr-1)/2``) put on the DEM by the zero-Doppler solve.
    """
    la, lr = looks
    ny, nx = geom.shape[0] // la, geom.shape[1] // lr
    rows = np.arange(ny) * la + (la - 1) / 2
    cols = np.arange(nx) * lr + (lr - 1) / 2
    t = np.interp(rows, np.arange(len(geom.line_times)), geom.line_times)
    r = geom.slant_range(cols)
    dem, _ = load_dem(geom.dem) if geom.dem is not None and Path(geom.dem).exists() else (
        load_dem(None))
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("latitude", "longitude", "height",
                                                        "los_east", "los_north", "los_up")}
    for r0 in range(0, ny, 256):
        tt = t[r0:r0 + 256]
        xyz = rdr2geo(tt[:, None], r[None, :], geom.poly.coef, geom.poly.t_mid,
                      geom.poly.t_scale, dem)
        lat, lon, h = ecef_to_llh(xyz)
        e, n, u = _los_enu(geom, xyz, np.repeat(tt[:, None], nx, 1), lat, lon)
        for k, v in (("latitude", lat), ("longitude", lon), ("height", h), ("los_east", e),
                     ("los_north", n), ("los_up", u)):
            out[k].append(np.asarray(v))
    return {k: np.concatenate(v).astype(np.float64 if k in ("latitude", "longitude")
                                        else np.float32) for k, v in out.items()}


def _sample(band: np.ndarray, rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
    ok = np.isfinite(band)
    filled = np.where(ok, band, 0.0).astype(np.float64)
    coords = np.stack([np.nan_to_num(rr, nan=-10.0), np.nan_to_num(cc, nan=-10.0)])
    num = map_coordinates(filled, coords, order=1, mode="constant", cval=0.0)
    den = map_coordinates(ok.astype(np.float64), coords, order=1, mode="constant", cval=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = num / den
    val[(den < 0.5) | ~np.isfinite(rr) | ~np.isfinite(cc)] = np.nan
    return val.astype(np.float32)


def _map_reference(tags: dict[str, str], rr: np.ndarray, cc: np.ndarray) -> dict[str, str]:
    """Tags of a geocoded copy: its ``REFERENCE_PIXEL`` ("row,col") on the map grid.

    The radar product's reference pixel is kept as ``REFERENCE_RADAR_PIXEL``; the map pixel
    is the one whose radar position is nearest to it (within one pixel), else the map tag
    is left out (the reference lies outside the map).
    """
    if "REFERENCE_PIXEL" not in tags:
        return tags
    out = dict(tags)
    radar = out.pop("REFERENCE_PIXEL")
    out["REFERENCE_RADAR_PIXEL"] = radar
    try:
        r0, c0 = (float(v) for v in radar.split(","))
    except ValueError:
        return out
    d2 = (rr - r0) ** 2 + (cc - c0) ** 2
    if not np.isfinite(d2).any():
        return out
    k = int(np.nanargmin(d2))
    if d2.flat[k] <= 1.0:
        row, col = np.unravel_index(k, d2.shape)
        out["REFERENCE_PIXEL"] = f"{int(row)},{int(col)}"
    return out


def geocode_raster(src: str | Path, dest: str | Path, rows: np.ndarray, cols: np.ndarray,
                   looks: tuple[int, int], grid: MapGrid) -> Path:
    """Geocode one multilooked product (band by band) with precomputed radar coordinates."""
    from gdmio.cog import CogWriter

    la, lr = looks
    rr = (rows - (la - 1) / 2) / la
    cc = (cols - (lr - 1) / 2) / lr
    with rasterio.open(src) as ds:
        nodata = ds.nodata
        desc = list(ds.descriptions) if any(ds.descriptions) else None
        tags = _map_reference({**ds.tags(), "GEOCODED_FROM": Path(src).name}, rr, cc)
        if ds.count == 1:
            band = ds.read(1).astype(np.float64)
            if nodata is not None and np.isfinite(nodata):
                band[band == nodata] = np.nan
            return write_cog(dest, _sample(band, rr, cc), grid.crs.to_wkt(), grid.transform,
                             descriptions=desc, tags=tags)
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        with CogWriter(dest, grid.width, grid.height, ds.count, grid.crs.to_wkt(),
                       grid.transform, descriptions=desc, tags=tags) as w:
            for b in range(1, ds.count + 1):
                band = ds.read(b).astype(np.float64)
                if nodata is not None and np.isfinite(nodata):
                    band[band == nodata] = np.nan
                w.write(_sample(band, rr, cc), band=b)
    return Path(dest)


def geocode_products(product_dir: str | Path, stack_dir: str | Path, out_dir: str | Path,
                     names: tuple[str, ...] = GEOCODED, crs: str | None = None,
                     spacing: float | None = None) -> list[Path]:
    """Geocode GDM-SAR products (``names`` present in ``product_dir``) into ``out_dir``."""
    import json

    product_dir = Path(product_dir)
    geom = read_geometry(stack_dir)
    try:
        looks = tuple(json.loads((product_dir / "report.json").read_text())["grid"]["looks"])
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{product_dir}: no GDM-SAR report.json with the looks ({exc})") from None
    grid = map_grid(geom, looks, crs, spacing)  # type: ignore[arg-type]
    rows, cols = radar_coordinates(geom, grid)
    written = []
    for name in names:
        src = product_dir / name
        if src.is_file():
            written.append(geocode_raster(src, Path(out_dir) / name, rows, cols,
                                          looks, grid))  # type: ignore[arg-type]
    return written


def geocode_frame(layers: dict[str, Path], stack_dir: str | Path, out_dir: str | Path,
                  looks: tuple[int, int], radar_dir: str | Path | None = None,
                  grids: dict[str, str | None] = MAP_GRIDS,
                  more: list[tuple[str, dict[str, Path], tuple[int, int]]] | None = None,
                  ) -> dict[str, dict[str, Path]]:
    """Every product of a frame on every map grid, with the geometry layers.

    ``layers`` maps names to multilooked radar rasters (``looks`` from the stack grid).
    Writes, per grid ``g`` of ``grids`` (default UTM and WGS84), ``out_dir/g/<name>.tif``
    for every layer, plus the ground-to-radar lookup table (``radar_row``,
    ``radar_col``: the multilooked radar pixel of each map pixel), the LOS unit vector
    (``los_east``, ``los_north``, ``los_up``, ground to satellite) and the DEM
    (``height``, ellipsoidal). ``more`` adds groups ``(subfolder, layers, looks)`` (e.g.
    interferograms at other looks) written to ``out_dir/g/<subfolder>/``, on the same map
    grid. With ``radar_dir``: the radar-to-ground lookup table (``latitude``,
    ``longitude``), ``height`` and the LOS vector on the radar grid too. Returns
    ``{grid or "radar": {name: path}}`` (names of ``more`` prefixed by their subfolder).
    """
    geom = read_geometry(stack_dir)
    out: dict[str, dict[str, Path]] = {}
    la, lr = looks
    for gname, crs in grids.items():
        grid = map_grid(geom, looks, crs)
        rows, cols, e, n, u, h = radar_coordinates(geom, grid, with_los=True)
        folder = Path(out_dir) / gname
        got: dict[str, Path] = {}
        for sub, group, lk in [("", layers, looks), *(more or [])]:
            for name, src in group.items():
                if Path(src).is_file():
                    key = f"{sub}/{name}" if sub else name
                    got[key] = geocode_raster(src, folder / sub / f"{name}.tif", rows, cols,
                                              lk, grid)
        rr = ((rows - (la - 1) / 2) / la).astype(np.float32)
        cc = ((cols - (lr - 1) / 2) / lr).astype(np.float32)
        for name, arr, units in (("radar_row", rr, "pixel"), ("radar_col", cc, "pixel"),
                                 ("los_east", e, "1"), ("los_north", n, "1"),
                                 ("los_up", u, "1"), ("height", h, "m")):
            got[name] = write_cog(folder / f"{name}.tif", arr, grid.crs.to_wkt(),
                                  grid.transform, tags={"UNITS": units})
        out[gname] = got
    if radar_dir is not None:
        from affine import Affine

        geo = radar_geometry(geom, looks)
        tr = Affine.scale(lr, la)  # radar grid: pixel (col, row) of the stack, no CRS
        got = {}
        for name, arr in geo.items():
            wide = name in ("latitude", "longitude")
            got[name] = write_cog(Path(radar_dir) / f"{name}.tif", arr, None, tr,
                                  tags={"UNITS": {"latitude": "deg", "longitude": "deg",
                                                  "height": "m"}.get(name, "1")},
                                  dtype="float64" if wide else "float32")
        out["radar"] = got
    return out
