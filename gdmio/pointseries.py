"""The time series of one pixel of a product folder (``gdm ts point``).

Reads ``timeseries.nc`` (any ``(time, y, x)`` variable: ``displacement`` for GDM-SAR
and FLATSIM, ``displacement_east``/``displacement_north`` for GDM-OPT) or, without it,
the time-series COGs (``timeseries.tif``, ``timeseries_east.tif``...; band
descriptions are the ISO dates). The point is given in longitude/latitude (WGS84) and
read at the pixel that contains it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from gdmcore import InputError

__all__ = ["PointSeries", "read_point_series"]


@dataclass
class PointSeries:
    """Series of one pixel: dates, one array per component, fitted velocities."""

    dates: list[dt.date]
    values: dict[str, np.ndarray]
    velocity: dict[str, float]
    row: int
    col: int
    source: Path
    units: str = "m"


def _slope(dates: list[dt.date], y: np.ndarray) -> float:
    t = np.array([(d - dates[0]).days / 365.25 for d in dates])
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return math.nan
    tc = t[ok] - t[ok].mean()
    return float(tc @ (y[ok] - y[ok].mean()) / (tc @ tc))


def _pixel(crs: CRS | None, transform: Affine, width: int, height: int, lon: float,
           lat: float, name: str) -> tuple[int, int]:
    if crs is None:
        raise InputError(f"{name} is not georeferenced: a point cannot be given in lon/lat")
    xs, ys = warp_transform("EPSG:4326", crs, [lon], [lat])
    col, row = (~transform) * (xs[0], ys[0])
    r, c = int(math.floor(row)), int(math.floor(col))
    if not (0 <= r < height and 0 <= c < width):
        raise InputError(f"point {lon}, {lat} is outside {name}")
    return r, c


def _from_netcdf(path: Path, lon: float, lat: float) -> PointSeries:
    import netCDF4

    try:
        nc = netCDF4.Dataset(path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    with nc:
        if "time" not in nc.variables:
            raise InputError(f"{path.name} has no time axis")
        tv = nc.variables["time"]
        raw: Any = netCDF4.num2date(tv[:], tv.units, getattr(tv, "calendar", "standard"),
                                    only_use_cftime_datetimes=False)
        times = np.atleast_1d(raw)
        dates = [d.date() if hasattr(d, "date") else d for d in times]
        crs = None
        if "spatial_ref" in nc.variables:
            gm = nc.variables["spatial_ref"]
            wkt = getattr(gm, "crs_wkt", None) or getattr(gm, "spatial_ref", None)
            crs = CRS.from_wkt(wkt) if wkt else None
        x, y = np.asarray(nc.variables["x"][:]), np.asarray(nc.variables["y"][:])
        dx = float(x[1] - x[0]) if x.size > 1 else 1.0
        dy = float(y[1] - y[0]) if y.size > 1 else -1.0
        transform = Affine(dx, 0, float(x[0]) - dx / 2, 0, dy, float(y[0]) - dy / 2)
        r, c = _pixel(crs, transform, x.size, y.size, lon, lat, path.name)
        names = [n for n, v in nc.variables.items() if v.dimensions == ("time", "y", "x")]
        if not names:
            raise InputError(f"{path.name} holds no (time, y, x) variable")
        values = {}
        units = "m"
        for n in names:
            v = nc.variables[n]
            units = getattr(v, "units", units)
            values[n] = np.ma.filled(v[:, r, c].astype(np.float64), np.nan)
    return PointSeries(dates, values, {n: _slope(dates, a) for n, a in values.items()},
                       r, c, path, units)


def _from_cogs(paths: list[Path], lon: float, lat: float) -> PointSeries:
    values = {}
    dates: list[dt.date] = []
    r = c = 0
    for p in paths:
        with rasterio.open(p) as ds:
            r, c = _pixel(ds.crs, ds.transform, ds.width, ds.height, lon, lat, p.name)
            try:
                dates = [dt.date.fromisoformat(d) for d in ds.descriptions]
            except (TypeError, ValueError):
                raise InputError(f"{p.name}: band descriptions are not ISO dates") from None
            a = ds.read(window=((r, r + 1), (c, c + 1)))[:, 0, 0].astype(np.float64)
            nodata = ds.nodata
            if nodata is not None and not math.isnan(nodata):
                a[a == nodata] = np.nan
        name = p.stem.replace("timeseries", "displacement")
        values[name] = a
    return PointSeries(dates, values, {n: _slope(dates, a) for n, a in values.items()},
                       r, c, paths[0])


def read_point_series(products: str | Path, lon: float, lat: float) -> PointSeries:
    """The series at ``lon, lat`` of a product folder, a ``timeseries.nc`` or a COG.

    Raises InputError when nothing readable is found or the point is outside.
    """
    p = Path(products)
    if not p.exists():
        raise InputError(f"products not found: {p}")
    if p.is_file():
        if p.suffix == ".nc":
            return _from_netcdf(p, lon, lat)
        return _from_cogs([p], lon, lat)
    for cand in (p / "timeseries.nc", p / "ts" / "timeseries.nc"):
        if cand.is_file():
            return _from_netcdf(cand, lon, lat)
    for folder in (p, p / "ts"):
        cogs = sorted(folder.glob("timeseries*.tif"))
        if cogs:
            return _from_cogs(cogs, lon, lat)
    raise InputError(f"{p} holds no timeseries.nc nor timeseries*.tif")
