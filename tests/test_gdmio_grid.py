"""gdmio.grid: common grid, same-grid reads, resampling across CRSs, overlap errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from gdmcore import InputError
from gdmio.blocks import iter_blocks
from gdmio.grid import Grid, common_grid, is_on_grid, read_on_grid
from gdmio.raster import RasterInfo, open_info, read_band
from gdmio.testing import write_raster

UTM = "EPSG:32631"
LAMBERT = "EPSG:2154"
E0, N0 = 700_000.0, 5_010_000.0  # near Grenoble, east of UTM 31's central meridian


def field(e: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Smooth analytic scene defined in UTM 31N metres: a plane plus a long sinusoid."""
    de, dn = e - E0, n - N0
    return (0.01 * de - 0.02 * dn
            + 40.0 * np.sin(2 * np.pi * de / 1500.0) * np.cos(2 * np.pi * dn / 2000.0))


def centres(t: Affine, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    return (t.a * (cols + 0.5) + t.b * (rows + 0.5) + t.c,
            t.d * (cols + 0.5) + t.e * (rows + 0.5) + t.f)


def utm_image(path: Path, width: int = 240, height: int = 200, res: float = 10.0,
              x0: float = E0, y0: float = N0) -> RasterInfo:
    t = Affine(res, 0.0, x0, 0.0, -res, y0)
    e, n = centres(t, width, height)
    write_raster(path, field(e, n).astype(np.float32), UTM, t, nodata=float("nan"))
    return open_info(path)


def lambert_image(path: Path, around: RasterInfo, res: float = 20.0) -> RasterInfo:
    """The same scene on Lambert-93 at ``res`` metres, covering ``around`` with margin."""
    left, bottom, right, top = transform_bounds(UTM, LAMBERT, *around.bounds)
    x0 = math.floor(left / res) * res - 10 * res
    y0 = math.ceil(top / res) * res + 10 * res
    width = math.ceil((right - x0) / res) + 10
    height = math.ceil((y0 - bottom) / res) + 10
    t = Affine(res, 0.0, x0, 0.0, -res, y0)
    x, y = centres(t, width, height)
    e, n = warp_transform(LAMBERT, UTM, x.ravel(), y.ravel())
    values = field(np.asarray(e), np.asarray(n)).reshape(height, width)
    write_raster(path, values.astype(np.float32), LAMBERT, t, nodata=float("nan"))
    return open_info(path)


def test_grid_properties() -> None:
    g = Grid(CRS.from_string(UTM), Affine(10.0, 0.0, 1000.0, 0.0, -10.0, 5000.0), 30, 20)
    assert g.resolution == 10.0
    assert g.shape == (20, 30)
    assert g.bounds == (1000.0, 4800.0, 1300.0, 5000.0)
    w = Window(3, 4, 5, 6)
    assert g.window_transform(w) == Affine(10.0, 0.0, 1030.0, 0.0, -10.0, 4960.0)
    sub = g.subgrid(w)
    assert (sub.width, sub.height) == (5, 6)
    assert sub.bounds == (1030.0, 4900.0, 1080.0, 4960.0)
    x, y = g.xy(np.array([0.0]), np.array([0.0]))
    assert (x[0], y[0]) == (1005.0, 4995.0)


def test_same_grid_read_is_bit_identical(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    t = Affine(10.0, 0.0, E0, 0.0, -10.0, N0)
    a = rng.normal(size=(120, 150)).astype(np.float32)
    a[10:20, 30:40] = np.nan
    b = rng.normal(size=(120, 150)).astype(np.float32)
    ia = open_info(write_raster(tmp_path / "a.tif", a, UTM, t, nodata=float("nan")))
    # b is shifted by a fractional number of pixels: the grid stays a's.
    tb = Affine(10.0, 0.0, E0 + 203.5, 0.0, -10.0, N0 - 96.5)
    ib = open_info(write_raster(tmp_path / "b.tif", b, UTM, tb, nodata=float("nan")))
    grid = common_grid([ia, ib])
    assert is_on_grid(ia, grid) and not is_on_grid(ib, grid)
    # a's pixels 21..149 (cols) and 10..119 (rows) lie fully inside b.
    assert grid.transform == Affine(10.0, 0.0, E0 + 210.0, 0.0, -10.0, N0 - 100.0)
    assert (grid.width, grid.height) == (129, 110)
    got = read_on_grid(ia, grid)
    assert got.dtype == np.float32
    assert np.array_equal(got, a[10:, 21:], equal_nan=True)
    win = Window(5, 7, 40, 30)
    assert np.array_equal(read_on_grid(ia, grid, win), a[17:47, 26:66], equal_nan=True)
    # A window hanging over the edge of the image: NaN outside, exact values inside.
    edge = read_on_grid(ia, grid, Window(-25, 100, 30, 20))
    assert np.isnan(edge[:, :4]).all() and np.isnan(edge[10:, :]).all()
    assert np.array_equal(edge[:10, 4:], a[110:120, 0:26], equal_nan=True)


def test_integer_raster_on_grid_keeps_values_and_nodata(tmp_path: Path) -> None:
    data = np.arange(40 * 50, dtype=np.uint16).reshape(40, 50)
    data[0, :5] = 0
    t = Affine(10.0, 0.0, E0, 0.0, -10.0, N0)
    info = open_info(write_raster(tmp_path / "u.tif", data, UTM, t, nodata=0))
    got = read_on_grid(info, common_grid([info]))
    assert np.isnan(got[0, :5]).all()
    assert np.array_equal(got[1:], data[1:].astype(np.float32))


def test_different_crs_agree_on_common_grid(tmp_path: Path) -> None:
    a = utm_image(tmp_path / "a_20230101.tif")
    b = lambert_image(tmp_path / "b_20230201.tif", a, res=20.0)
    grid = common_grid([a, b])
    # b covers a entirely: the common grid is a's own grid.
    assert grid.crs == a.crs and grid.transform == a.transform
    assert (grid.width, grid.height) == (a.width, a.height)
    e, n = centres(grid.transform, grid.width, grid.height)
    truth = field(e, n)
    got_a = read_on_grid(a, grid)
    assert np.array_equal(got_a, read_band(a))
    got_b = read_on_grid(b, grid)
    valid = np.isfinite(got_b)
    assert valid.mean() == 1.0
    err = np.abs(got_b - truth)
    # Cubic interpolation of a 20 m image of a 1.5 km-wavelength field: error << 0.02
    # (a 0.1 m misregistration would already give ~0.02).
    assert err.max() < 0.02, err.max()
    # Block-wise reading gives the same pixels as one read.
    mosaic = np.full_like(got_b, np.nan)
    for blk in iter_blocks(grid.width, grid.height, block_size=64):
        sl = (slice(blk.core.row_off, blk.core.row_off + blk.core.height),
              slice(blk.core.col_off, blk.core.col_off + blk.core.width))
        mosaic[sl] = read_on_grid(b, grid, blk.core)
    assert np.abs(mosaic - got_b).max() < 1e-3
    # Tiny windows too (GDAL alone is off by up to 0.1 px on windows under ~9 px).
    for c0, r0, w, h in [(100, 100, 3, 3), (7, 50, 1, 1), (0, 196, 240, 4)]:
        tiny = read_on_grid(b, grid, Window(c0, r0, w, h))
        assert tiny.shape == (h, w)
        assert np.abs(tiny - truth[r0:r0 + h, c0:c0 + w]).max() < 0.02


def test_target_crs_and_resolution(tmp_path: Path) -> None:
    a = utm_image(tmp_path / "a.tif")
    b = lambert_image(tmp_path / "b.tif", a, res=20.0)
    # On Lambert-93: the UTM image's 10 m pixel size is kept (same units, ~same scale).
    g = common_grid([a, b], crs=LAMBERT)
    assert g.crs == CRS.from_string(LAMBERT)
    assert g.resolution == 10.0
    assert g.transform.c % 10.0 == 0.0 and g.transform.f % 10.0 == 0.0
    # b first: b's own grid, so b is read as is, a is resampled onto it.
    g2 = common_grid([b, a])
    assert is_on_grid(b, g2) and g2.resolution == 20.0
    x, y = centres(g2.transform, g2.width, g2.height)
    e, n = warp_transform(LAMBERT, UTM, x.ravel(), y.ravel())
    truth = field(np.asarray(e), np.asarray(n)).reshape(g2.shape)
    got = read_on_grid(a, g2, resampling="bilinear")
    inner = np.isfinite(got)
    assert inner.mean() > 0.98
    # 10 m -> 20 m bilinear: the plane is exact; the sinusoid (amplitude 40) is slightly
    # smoothed (measured: max 0.04, median 0.012).
    assert np.abs(got - truth)[inner].max() < 0.1
    assert np.median(np.abs(got - truth)[inner]) < 0.03
    # Explicit coarser resolution: a is no longer on the grid.
    g3 = common_grid([a, b], resolution=20.0)
    assert g3.resolution == 20.0 and not is_on_grid(a, g3)
    assert g3.transform.c % 20.0 == 0.0


def test_geographic_image_to_utm(tmp_path: Path) -> None:
    a = utm_image(tmp_path / "a.tif")
    lon0, lat0 = warp_transform(UTM, "EPSG:4326", [E0 - 500], [N0 + 500])
    res = 1e-4  # degrees
    t = Affine(res, 0.0, lon0[0], 0.0, -res, lat0[0])
    w, h = 400, 300
    lon, lat = centres(t, w, h)
    e, n = warp_transform("EPSG:4326", UTM, lon.ravel(), lat.ravel())
    vals = field(np.asarray(e), np.asarray(n)).reshape(h, w).astype(np.float32)
    g = open_info(write_raster(tmp_path / "g.tif", vals, "EPSG:4326", t, nodata=float("nan")))
    grid = common_grid([a, g])
    got = read_on_grid(g, grid)
    ee, nn = centres(grid.transform, grid.width, grid.height)
    ok = np.isfinite(got)
    assert ok.mean() > 0.95
    assert np.abs(got - field(ee, nn))[ok].max() < 0.05


def test_no_overlap_names_both(tmp_path: Path) -> None:
    a = utm_image(tmp_path / "alpha_20230101.tif", width=50, height=50)
    b = utm_image(tmp_path / "beta_20230201.tif", width=50, height=50, x0=E0 + 5000)
    c = utm_image(tmp_path / "gamma_20230301.tif", width=50, height=50, x0=E0 + 100)
    with pytest.raises(InputError, match="images do not overlap: alpha_20230101.tif and "
                       "beta_20230201.tif"):
        common_grid([a, b])
    with pytest.raises(InputError, match="images do not overlap: gamma_20230301.tif and "
                       "beta_20230201.tif"):
        common_grid([c, b, a])
    # 40 px of overlap passes; 10 px does not.
    assert common_grid([a, c]).width == 40
    d = utm_image(tmp_path / "delta.tif", width=50, height=50, x0=E0 + 400)
    with pytest.raises(InputError, match="do not overlap: alpha_20230101.tif and delta.tif"):
        common_grid([a, d])


def test_bad_arguments(tmp_path: Path) -> None:
    a = utm_image(tmp_path / "a.tif", width=32, height=32)
    with pytest.raises(InputError, match="no images"):
        common_grid([])
    with pytest.raises(InputError, match="unknown CRS 'EPSG:999999'"):
        common_grid([a], crs="EPSG:999999")
    with pytest.raises(InputError, match="resolution must be a positive number"):
        common_grid([a], resolution=-5)
    with pytest.raises(InputError, match="unknown resampling 'sharpest'"):
        read_on_grid(a, common_grid([a]), resampling="sharpest")
