"""The DSM grid in bounded memory: Gaussian splatting against a naive loop, blocks that go
to disk and come back, products written block by block equal to one block."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from dsm_opt.dsmgrid import BlockGrid, align_pairs, fuse_cells, plane_at, write_products
from kernels.rasterize import finish_splat, splat_points


def _naive_splat(x, y, z, c, x0, y0, res, shape, sigma, radius):
    sums = np.zeros((5, *shape))
    for xp, yp, zp, cp in zip(x, y, z, c, strict=True):
        fx, fy = (xp - x0) / res - 0.5, (y0 - yp) / res - 0.5
        ci, cj = int(np.floor(fy + 0.5)), int(np.floor(fx + 0.5))
        for i in range(ci - radius, ci + radius + 1):
            for j in range(cj - radius, cj + radius + 1):
                if 0 <= i < shape[0] and 0 <= j < shape[1]:
                    w = np.exp(-((fx - j) ** 2 + (fy - i) ** 2) / (2 * sigma ** 2))
                    sums[:4, i, j] += w * np.array([1.0, zp, zp * zp, cp])
        if 0 <= ci < shape[0] and 0 <= cj < shape[1]:
            sums[4, ci, cj] += 1
    return sums


def test_splat_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    n = 400
    x = rng.uniform(-1, 11, n)
    y = rng.uniform(-1, 9, n)
    z = rng.normal(100, 5, n)
    c = rng.uniform(0, 1, n)
    z[3] = np.nan  # ignored
    sums = np.zeros((5, 16, 20))
    splat_points(x, y, z, c, 0.0, 8.0, 0.5, sums, sigma=0.6, radius=1)
    ok = np.isfinite(z)
    ref = _naive_splat(x[ok], y[ok], z[ok], c[ok], 0.0, 8.0, 0.5, (16, 20), 0.6, 1)
    np.testing.assert_allclose(sums, ref, rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError):
        splat_points(x, y, z, c, 0.0, 8.0, 0.5, np.zeros((4, 16, 20)))


def test_finish_of_a_constant_surface_is_exact_and_noise_is_averaged():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:40, 0:40]
    x = (xx + 0.5 + rng.uniform(-0.3, 0.3, xx.shape)).ravel()
    y = (40 - yy - 0.5 + rng.uniform(-0.3, 0.3, xx.shape)).ravel()
    sums = np.zeros((5, 40, 40))
    splat_points(x, y, np.full(x.size, 250.0), np.ones(x.size), 0.0, 40.0, 1.0, sums)
    v, u, c, n = finish_splat(sums, 0.1)
    assert np.nanmax(np.abs(v - 250.0)) < 1e-4 and np.all(np.isfinite(v))
    noise = rng.normal(0, 1.0, x.size)
    sums[:] = 0
    splat_points(x, y, noise, np.ones(x.size), 0.0, 40.0, 1.0, sums, sigma=0.6)
    v, *_ = finish_splat(sums, 0.1)
    inner = v[2:-2, 2:-2]
    print(f"\nwhite noise of 1 m, one point per cell: {inner.std():.3f} m after splatting")
    assert 0.4 < inner.std() < 0.7  # about sqrt of the effective number of points


def test_blocks_spilled_to_disk_give_the_same_sums(tmp_path):
    rng = np.random.default_rng(2)
    rows, cols, res = 100, 130, 0.5
    n = 20000
    east = rng.uniform(0, cols * res, n)
    north = rng.uniform(-rows * res, 0, n)
    h = rng.normal(300, 10, n)
    col = rng.uniform(0, 1, n)
    big = BlockGrid(rows, cols, tmp_path / "big", 0.6, 300.0, block=512)
    small = BlockGrid(rows, cols, tmp_path / "small", 0.6, 300.0, block=16, max_blocks=4)
    for k in range(0, n, 500):  # tiles of points in any order
        sl = slice(k, k + 500)
        big.add(east[sl], north[sl], h[sl], col[sl], 0.0, 0.0, res)
        small.add(east[sl], north[sl], h[sl], col[sl], 0.0, 0.0, res)
    assert small.loads > 0 and big.loads == 0
    a = big.finish_window(0, rows, 0, cols, 0.1)
    b = small.finish_window(0, rows, 0, cols, 0.1)
    for la, lb in zip(a, b, strict=True):
        np.testing.assert_allclose(la, lb, rtol=1e-5, atol=1e-3, equal_nan=True)


def test_products_block_by_block_equal_one_block(tmp_path):
    rng = np.random.default_rng(3)
    rows, cols, res = 90, 70, 1.0
    yy, xx = np.mgrid[0:rows, 0:cols]
    keep = rng.uniform(size=xx.shape) > 0.15  # gaps of one cell
    keep[40:46, 20:27] = False  # a hole
    east = (xx[keep] + 0.5).astype(float)
    north = -(yy[keep] + 0.5).astype(float)
    h = 500 + 0.1 * xx[keep] + rng.normal(0, 0.05, east.size)
    outs = {}
    for name, block in (("one", 512), ("many", 16)):
        g = BlockGrid(rows, cols, tmp_path / f"g{name}", 0.6, 500.0, block=block,
                      max_blocks=4)
        g.add(east, north, h, np.ones(east.size), 0.0, 0.0, res)
        stage = tmp_path / name
        stage.mkdir()
        stats = write_products([g], [0.1], [0.3], stage, "EPSG:32631",
                               Affine(res, 0, 0, 0, -res, 0), -9999.0, 8, {})
        with rasterio.open(stage / "dsm.tif") as ds:
            outs[name] = ds.read(1)
        assert stats.filled > 0
    assert np.array_equal(outs["one"] == -9999.0, outs["many"] == -9999.0)
    np.testing.assert_allclose(outs["one"], outs["many"], atol=1e-4)


def test_fusion_keeps_the_agreeing_pairs():
    shape = (4, 4)
    good = np.full(shape, 100.0, np.float32)
    layers = [(good, good * 0, good * 0, np.ones(shape, np.int32)),
              (good + 0.2, good * 0, good * 0, np.ones(shape, np.int32)),
              (good + 9.0, good * 0, good * 0, np.ones(shape, np.int32))]
    v, _, _, n, have, rejected = fuse_cells(layers, [0.2, 0.2, 0.2], [0.6, 0.6, 0.6])
    assert np.allclose(v, 100.1) and np.all(rejected == 1) and np.all(have == 3)
    assert np.all(n == 3)


def test_pairs_are_aligned_on_the_widest_pair_before_fusion(tmp_path):
    """Three pairs of one surface with different height offsets and tilts (the along-
    epipolar pointing errors no pair sees alone): the planes found bring them onto the
    reference pair, so the fused heights agree with it and no pair height is rejected."""
    rng = np.random.default_rng(5)
    rows, cols, res = 300, 260, 0.5
    yy, xx = np.mgrid[0:rows, 0:cols]
    east = (xx + 0.5).ravel() * res
    north = -(yy + 0.5).ravel() * res
    surface = 200 + 20 * np.sin(xx / 40.0).ravel() + 0.05 * yy.ravel()
    planes = [np.array([2.4, 0.5, -0.2]), np.zeros(3), np.array([1.5, -0.1, 0.3])]
    grids = []
    for k, coef in enumerate(planes):
        g = BlockGrid(rows, cols, tmp_path / f"p{k}", 0.6, 200.0, block=64, max_blocks=8)
        bias = plane_at(coef, rows, cols, 0, rows, 0, cols).ravel()
        keep = rng.uniform(size=east.size) > 0.1
        h = surface - bias + rng.normal(0, 0.3, east.size)
        outliers = rng.uniform(size=east.size) < 0.02  # gross mismatches
        h[outliers] += rng.normal(0, 30, outliers.sum())
        g.add(east[keep], north[keep], h[keep], np.ones(keep.sum()), 0.0, 0.0, res)
        grids.append(g)
    found = align_pairs(grids, [0.5, 0.25, 0.5], ref=1, max_blocks=16)
    assert found[1]["samples"] == 0 and not found[1]["coef"].any()
    for k in (0, 2):
        assert found[k]["coef"] == pytest.approx(planes[k], abs=0.03)
        assert found[k]["median_m"] == pytest.approx(planes[k][0], abs=0.2)
    outs = {}
    for name, offsets in (("aligned", [f["coef"] for f in found]), ("raw", None)):
        stage = tmp_path / name
        stage.mkdir()
        stats = write_products(grids, [0.5, 0.25, 0.5], [1.5, 0.75, 1.5], stage,
                               "EPSG:32631", Affine(res, 0, 0, 0, -res, 0), -9999.0, None,
                               {}, offsets=offsets)
        with rasterio.open(stage / "dsm.tif") as ds:
            d = ds.read(1)
        ok = d != -9999.0
        outs[name] = (float(np.median(np.abs(d[ok] - surface.reshape(rows, cols)[ok]))),
                      stats.rejected)
    print(f"\nmedian |error| and rejected pair heights: raw {outs['raw']}, aligned "
          f"{outs['aligned']}")
    assert outs["aligned"][0] < 0.1 < 0.3 < outs["raw"][0]
    assert outs["aligned"][1] < 0.25 * outs["raw"][1]


@pytest.mark.slow
def test_tiles_on_worker_processes_give_the_same_dsm(tmp_path):
    """--workers 2 (Dask on a process pool) against the tiles matched in line."""
    from dsm_opt.config import DsmConfig
    from dsm_opt.pipeline import run
    from simulators.dsm import SimulateDsmConfig, simulate

    sim = simulate(SimulateDsmConfig(out=tmp_path / "sim", size=160, seed=9))
    outs = {}
    for workers in (1, 2):
        out = run(DsmConfig(images=sim.images, out=tmp_path / f"w{workers}", preset="urban",
                            resolution=0.5, tile=64, workers=workers))
        with rasterio.open(out.dsm) as ds:
            outs[workers] = ds.read(1)
        report = json.loads(out.report.read_text())
        # every worker takes tiles (Dask's default chunks put a whole batch on one)
        assert report["pairs"][0]["epipolar"]["worker_processes"] == workers
    assert np.array_equal(outs[1], outs[2])
    assert (outs[1] != -9999.0).mean() > 0.5
