"""Fast triangulation: lines of sight interpolated from the epipolar grid nodes against the
exact intersection (RPC inversion of every pixel), on real Pléiades RPCs (Ventoux,
tests/data/ventoux) and on a simulated pair with a corrected (biased) right view."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer

from dsm_opt.geometry import (
    disparity_range,
    epipolar_grids,
    load_view,
    los_grids,
    triangulate,
    triangulate_grids,
)
from kernels.rpc import CorrectedRpc, grid_interp, intersect_los_grids
from simulators.dsm import SimulateDsmConfig, simulate
from tests.datafiles import DATA

_TO_GEO = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


def _compare(left, right, h0, h1, n=20000):
    grids = epipolar_grids(left, right, h0, h1)
    d_lo, d_hi = disparity_range(left, right, grids, h0, h1)
    los = los_grids(left, right, grids, max(abs(d_lo), abs(d_hi)) + 20)
    rng = np.random.default_rng(3)
    y = rng.uniform(0, grids.shape[0] - 1, n)
    x = rng.uniform(0, grids.shape[1] - 1, n)
    d = rng.uniform(d_lo - 20, d_hi + 20, n)  # reaches past the right grid's edges
    lon, lat, h, gap = triangulate(left, right, grids, y, x, d)
    xyz, gap2 = triangulate_grids(los, y, x, d)
    lon2, lat2, h2 = _TO_GEO.transform(xyz[:, 0], xyz[:, 1], xyz[:, 2])
    ok = np.isfinite(h)
    assert ok.mean() > 0.99
    dh = np.abs(h2 - h)[ok]
    de = np.abs(lon2 - lon)[ok] * 111e3 * np.cos(np.deg2rad(lat[ok]))
    dn = np.abs(lat2 - lat)[ok] * 111e3
    return float(dh.max()), float(max(de.max(), dn.max())), float(np.abs(gap2 - gap)[ok].max())


def test_grid_lines_of_sight_match_the_exact_intersection_on_real_rpcs():
    v = DATA / "ventoux"
    left, right = load_view(v / "left_image.tif"), load_view(v / "right_image.tif")
    dh, dxy, dgap = _compare(left, right, 500.0, 2000.0)
    print(f"\nVentoux: largest difference height {dh * 1e3:.4f} mm, horizontal "
          f"{dxy * 1e3:.4f} mm, gap {dgap * 1e3:.4f} mm")
    assert dh < 1e-3 and dxy < 1e-3 and dgap < 1e-3


def test_grid_lines_of_sight_follow_a_corrected_view(tmp_path):
    sim = simulate(SimulateDsmConfig(out=tmp_path / "sim", size=160, scene="urban", bh=0.3,
                                     seed=2))
    left, right = load_view(sim.images[0]), load_view(sim.images[1])
    from dataclasses import replace

    biased = replace(right, rpc=CorrectedRpc(right.rpc, np.array([[1.5, 1e-4, -2e-4],
                                                                  [-0.7, 3e-4, 1e-4]])))
    h0, h1 = right.rpc.height_range
    dh, dxy, dgap = _compare(left, biased, h0, h1)
    assert dh < 1e-3 and dxy < 1e-3 and dgap < 1e-3


def test_grid_interp_is_bilinear_and_extrapolates_linearly():
    yy, xx = np.mgrid[0:4, 0:5].astype(float)
    g = np.stack([2.0 * yy - 3.0 * xx + 1.0, yy * 0 + 7.0])
    y = np.array([0.5, 2.25, -1.0, 5.5, np.nan])
    x = np.array([0.5, 3.75, -2.0, 7.0, 1.0])
    out = grid_interp(g, y, x)
    assert out[0, :4] == pytest.approx(2 * y[:4] - 3 * x[:4] + 1)
    assert out[1, :4] == pytest.approx(7.0)
    assert np.isnan(out[:, 4]).all()
    with pytest.raises(ValueError):
        grid_interp(g[:, :1], y, x)


def test_intersection_of_two_known_lines():
    # line a: x axis at y = z = 0; line b: parallel to y, through (3, 0, 2): gap 2
    a = np.zeros((6, 2, 2))
    a[3] = 1.0  # second point (1, 0, 0)
    b = np.zeros((6, 2, 2))
    b[0], b[2], b[3], b[4], b[5] = 3.0, 2.0, 3.0, 1.0, 2.0
    mid, gap = intersect_los_grids(a, b, [0.5], [0.5], [0.2], [0.7])
    assert mid[0] == pytest.approx([3.0, 0.0, 1.0])
    assert gap[0] == pytest.approx(2.0)
    b2 = a.copy()  # parallel lines: no intersection
    mid, gap = intersect_los_grids(a, b2, [0.5], [0.5], [0.5], [0.5])
    assert np.isnan(gap[0]) and np.isnan(mid[0]).all()
