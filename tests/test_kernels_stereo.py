"""kernels/stereo.py and kernels/rasterize.py against tests/naive_stereo.py and known fields."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, map_coordinates

from kernels import stereo
from kernels.rasterize import fill_holes, rasterize_points
from tests import naive_stereo as naive


def _texture(rows, cols, seed=0, sigma=1.0):
    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.standard_normal((rows, cols)), sigma).astype(np.float32)


def _pair(rows, cols, disparity, seed=0):
    """Left and right images where left (r, c) is right (r, c + d(r, c)) exactly."""
    tex = _texture(rows, cols + 60, seed)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    left = map_coordinates(tex, [yy, xx + 30], order=3)
    c = xx.copy()
    for _ in range(40):  # solve x = c + d(r, c) for the right image's source column
        c = xx - disparity(yy, c)
    right = map_coordinates(tex, [yy, c + 30], order=3)
    return left.astype(np.float32), right.astype(np.float32), disparity(yy, xx)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    left = rng.uniform(0, 100, (9, 14)).astype(np.float32)
    right = np.roll(left, 2, axis=1) + rng.normal(0, 2, left.shape).astype(np.float32)
    left[4, 6] = np.nan
    return left, right


@pytest.mark.parametrize("window", [3, 5, 9])
def test_census_cost_matches_naive(small, window):
    left, right = small
    got = stereo.cost_census(left, right, -1, 4, window)
    want = naive.census_cost(left.astype(np.float64), right.astype(np.float64), -1, 4, window)
    assert got.dtype == np.float32
    assert np.max(np.abs(got - want)) == 0.0


def test_zncc_cost_matches_naive(small):
    left, right = small
    left = np.nan_to_num(left, nan=50.0)
    right = right.copy()
    right[2, 9] = np.nan
    got = stereo.cost_zncc(left, right, -1, 4, 3)
    want = naive.zncc_cost(left.astype(np.float64), right.astype(np.float64), -1, 4, 3)
    assert np.max(np.abs(got - want)) < 1e-3


def test_sgm_matches_naive():
    rng = np.random.default_rng(1)
    cost = rng.uniform(0, 20, (7, 9, 6)).astype(np.float32)
    got = stereo.aggregate_sgm(cost, 3.0, 11.0)
    want = naive.sgm(cost.astype(np.float64), 3.0, 11.0)
    assert np.max(np.abs(got - want)) < 1e-3


@pytest.mark.parametrize(("window", "p1", "p2"), [(5, 8, 32), (9, 1, 5000), (3, 20, 20)])
def test_integer_sgm_and_decisions_match_naive(window, p1, p2):
    # census costs (integers up to the window's bits) take the 16-bit SGM, whose sums and
    # decisions (WTA, sub-pixel, right disparities) must be those of the definitions
    rng = np.random.default_rng(window)
    nbits = window * (window if window < 9 else 7) - 1
    cost = rng.integers(0, nbits + 1, (7, 13, 6)).astype(np.uint8)
    cost[2, 3, :] = nbits  # a pixel with every level invalid
    assert stereo._int_penalties(nbits, p1, p2) == (p1, p2)
    want = naive.sgm(cost.astype(np.float64), p1, p2)
    got = stereo.aggregate_sgm(cost.astype(np.float32), p1, p2)
    assert np.array_equal(got, want)
    dmin, c_off, wr = -2, 1, 16
    dl, dr = stereo._match16(cost, p1, p2, nbits, True, dmin, c_off, wr)
    want_l = naive.wta_equiangular(want, dmin)
    winner = np.argmin(want, axis=2)
    want_l[np.take_along_axis(cost, winner[..., None], 2)[..., 0] >= nbits] = np.nan
    assert np.array_equal(np.isnan(dl), np.isnan(want_l))
    assert np.nanmax(np.abs(dl - want_l)) < 1e-5
    # right column x sees left column x - c_off - d
    want_r = naive.right_disparity(want, dmin + c_off, wr) - c_off
    assert np.array_equal(dr < -1e8, np.isnan(want_r))
    assert np.max(np.abs(dr - want_r)[~np.isnan(want_r)]) < 1e-5


def test_integer_path_needs_integer_penalties_in_range():
    assert stereo._int_penalties(24, 8.0, 32.0) == (8, 32)
    assert stereo._int_penalties(24, 8.5, 32.0) is None
    assert stereo._int_penalties(62, 8, 8200) is None  # 8 (62 + 8200) > 65535
    # the float path then gives the same sums
    cost = np.random.default_rng(0).integers(0, 25, (5, 6, 4)).astype(np.float32)
    got = stereo.aggregate_sgm(cost, 2.5, 9.0)
    assert np.max(np.abs(got - naive.sgm(cost.astype(np.float64), 2.5, 9.0))) < 1e-3


def test_wta_and_lr_match_naive():
    rng = np.random.default_rng(2)
    aggr = rng.uniform(0, 50, (6, 12, 5)).astype(np.float32)
    got = stereo.wta_subpixel(aggr, -2)
    want = naive.wta_parabola(aggr.astype(np.float64), -2)
    assert np.max(np.abs(got - want)) < 1e-5
    dl = np.round(rng.uniform(-2, 2, (6, 12))).astype(np.float32)
    dr = np.round(rng.uniform(-2, 2, (6, 12))).astype(np.float32)
    dl[0, 0] = np.nan
    codes = stereo.lr_check(dl, dr, -2, 2, 0.5)
    assert np.array_equal(codes, naive.lr_codes(dl, dr, -2, 2, 0.5))


def test_refinement_finds_the_zncc_maximum():
    left, right, truth = _pair(11, 40, lambda y, x: 3.37 + 0 * x, seed=8)
    start = np.full(left.shape, 3.0, np.float32)
    start[5, 20] = np.nan
    got = stereo.refine_subpixel(left, right, start, window=5, iterations=6)
    want = naive.refine_bruteforce(left, right, start, 5)
    inner = (slice(2, 9), slice(4, 30))
    assert np.array_equal(np.isnan(got[inner]), np.isnan(want[inner]))
    assert np.nanmax(np.abs(got[inner] - want[inner])) < 0.005  # search step 0.002
    assert np.nanmedian(np.abs(got[inner] - truth[inner])) < 0.02


def test_speckle_and_median_match_naive():
    rng = np.random.default_rng(5)
    d = np.round(rng.uniform(0, 3, (15, 17))).astype(np.float32)
    d[rng.random(d.shape) < 0.15] = np.nan
    assert np.array_equal(stereo.speckle_filter(d, 6, 1.0), naive.speckles(d, 6, 1.0))
    got = stereo.median_valid(d)
    want = naive.median3(d)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.nanmax(np.abs(got - want)) < 1e-6


@pytest.mark.parametrize("cost", ["census", "zncc"])
def test_match_recovers_smooth_disparity(cost):
    left, right, truth = _pair(160, 200, lambda y, x: 6 + 4 * np.sin(x / 40) * np.cos(y / 30))
    res = stereo.match(left, right, 0, 15, cost=cost, window=5, subpixel="equiangular",
                       tile=64, overlap=16)
    err = res.disparity - truth
    ok = np.isfinite(err)
    assert ok.mean() > 0.9, f"only {ok.mean():.1%} valid"
    assert np.mean(np.abs(err[ok]) > 1) < 0.005
    assert np.median(np.abs(err[ok])) < 0.12
    assert set(np.unique(res.mask)) <= set(stereo.MASK.values())
    assert np.array_equal(np.isnan(res.disparity), res.mask != 0)


def test_tiles_do_not_change_the_result_much():
    left, right, truth = _pair(120, 150, lambda y, x: 3 + 2 * np.sin(x / 25))
    one = stereo.match(left, right, -2, 9, window=5, tile=512)
    tiled = stereo.match(left, right, -2, 9, window=5, tile=40, overlap=24)
    both = np.isfinite(one.disparity) & np.isfinite(tiled.disparity)
    assert both.mean() > 0.9
    assert np.mean(np.abs(one.disparity[both] - tiled.disparity[both]) > 0.25) < 0.01


def test_tiles_on_concurrent_threads_give_the_one_thread_result():
    # with several numba threads the tiles of the 16-bit path are matched concurrently,
    # each on one thread: the result must be the one of one thread, bit for bit
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    left, right, _ = _pair(70, 90, lambda y, x: 2.0 + 4.0 * np.sin(x / 23.0) * np.cos(y / 17.0))
    left[10, 20] = np.nan
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = stereo.match(left, right, -4, 9, window=5, tile=24, overlap=8)
        numba.set_num_threads(2)
        two = stereo.match(left, right, -4, 9, window=5, tile=24, overlap=8)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one.mask, two.mask)
    assert np.array_equal(one.disparity, two.disparity, equal_nan=True)
    assert np.isfinite(one.disparity).mean() > 0.8


def test_nan_input_is_masked_as_nodata():
    left, right, _ = _pair(80, 100, lambda y, x: 4 + 0 * x)
    left[30:40, 30:40] = np.nan
    res = stereo.match(left, right, 0, 8, window=5)
    assert np.all(res.mask[30:40, 30:40] == stereo.MASK["nodata"])
    assert np.all(np.isnan(res.disparity[30:40, 30:40]))
    err = res.disparity - 4
    assert np.nanmedian(np.abs(err)) < 0.1


def test_occlusion_is_flagged():
    # a band of the left image that the right image does not show: a foreground strip
    # at disparity 8 hides the background (disparity 2) next to it
    rows, cols = 80, 120
    fg = (np.arange(cols) >= 50) & (np.arange(cols) < 80)
    left, right, _ = _pair(rows, cols, lambda y, x: np.where((x >= 50) & (x < 80), 8.0, 2.0))
    tex_fg = _texture(rows, cols, seed=9)
    left[:, fg] = tex_fg[:, fg]
    right[:, 58:88] = tex_fg[:, 50:80]
    res = stereo.match(left, right, 0, 10, window=5, speckle_size=0)
    # left columns 80..85 at disparity 2 land on right 82..87, hidden by the strip
    hidden = res.mask[10:70, 81:85]
    assert np.mean(np.isin(hidden, [stereo.MASK["occlusion"], stereo.MASK["mismatch"]])) > 0.6
    strip = res.disparity[10:70, 55:75]
    assert np.nanmedian(np.abs(strip - 8)) < 0.2


def test_wrong_inputs_are_refused():
    a = np.zeros((10, 10), np.float32)
    with pytest.raises(TypeError):
        stereo.match(a.astype(np.complex64), a, 0, 3)
    with pytest.raises(ValueError, match="same rows"):
        stereo.match(a, np.zeros((9, 10), np.float32), 0, 3)
    with pytest.raises(ValueError, match="dmax"):
        stereo.match(a, a, 3, 0)
    with pytest.raises(ValueError, match="odd"):
        stereo.cost_census(a, a, 0, 3, window=4)
    with pytest.raises(ValueError, match="finite"):
        stereo.aggregate_sgm(np.full((3, 3, 2), np.nan, np.float32), 1, 2)
    with pytest.raises(ValueError, match="p2 >= p1"):
        stereo.aggregate_sgm(np.zeros((3, 3, 2), np.float32), 5, 2)
    with pytest.raises(ValueError, match="2-D"):
        stereo.census_transform(np.zeros(5, np.float32))
    # integer images are accepted (converted)
    got = stereo.cost_census(np.arange(30, dtype=np.uint16).reshape(5, 6),
                             np.arange(30, dtype=np.uint16).reshape(5, 6), 0, 1, 3)
    assert got.shape == (5, 6, 2)
    assert got[:, :-1, 0].max() == 0.0


def test_rasterize_matches_naive_and_fill_flags():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 10, 500)
    y = rng.uniform(-8, 0, 500)
    z = rng.normal(100, 2, 500)
    ras = rasterize_points(x, y, z, 0.0, 0.0, 1.0, (8, 10), radius=0)
    value, count = naive.rasterize_median(x, y, z, 0.0, 0.0, 1.0, (8, 10))
    assert np.array_equal(ras.count, count)
    assert np.allclose(ras.value, value, equal_nan=True, atol=1e-4)
    assert np.all(ras.uncertainty[count >= 3] > 0)
    hole = ras.value.copy()
    hole[3, 4] = np.nan
    filled, flag = fill_holes(hole, 3)
    assert flag.sum() == 1 and flag[3, 4]
    assert abs(filled[3, 4] - np.nanmean(ras.value[2:5, 3:6])) < 2.0
    with pytest.raises(TypeError):
        fill_holes(np.zeros((3, 3), np.int32), 2)
