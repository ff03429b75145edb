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
from kernels.geometry import geo2rdr, llh_to_ecef

__all__ = ["MapGrid", "map_grid", "radar_coordinates", "geocode_raster", "geocode_products",
           "GEOCODED"]

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
        area = abs((x[-1, 0] - x[0, 0]) * (y[0, -1] - y[0, 0])
                   - (x[0, -1] - x[0, 0]) * (y[-1, 0] - y[0, 0]))
        spacing = math.sqrt(area / (ny * nx) * looks[0] * looks[1])
        if target.is_geographic:
            spacing /= 111_320.0
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


def radar_coordinates(geom: StackGeometry, grid: MapGrid) -> tuple[np.ndarray, np.ndarray]:
    """Fractional stack (row, col) of every map pixel centre (NaN outside the stack)."""
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
    return rows, cols


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


def geocode_raster(src: str | Path, dest: str | Path, rows: np.ndarray, cols: np.ndarray,
                   looks: tuple[int, int], grid: MapGrid) -> Path:
    """Geocode one multilooked product (every band) with precomputed radar coordinates."""
    la, lr = looks
    rr = (rows - (la - 1) / 2) / la
    cc = (cols - (lr - 1) / 2) / lr
    with rasterio.open(src) as ds:
        data = ds.read().astype(np.float64)
        nodata = ds.nodata
        desc = list(ds.descriptions) if any(ds.descriptions) else None
        tags = ds.tags()
    if nodata is not None and np.isfinite(nodata):
        data[data == nodata] = np.nan
    out = np.stack([_sample(b, rr, cc) for b in data])
    tags = {**tags, "GEOCODED_FROM": Path(src).name}
    return write_cog(dest, out if out.shape[0] > 1 else out[0], grid.crs.to_wkt(),
                     grid.transform, descriptions=desc, tags=tags)


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
