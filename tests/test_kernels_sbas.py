import datetime

import numpy as np
import pytest

from kernels.sbas import SbasResult, design_matrix, invert_sbas, years_since_first
from kernels.timeseries import network_components, select_pairs
from tests.naive import naive_invert_sbas_pixel, naive_line_fit

WL = 0.0555
DATES = [datetime.date(2021, 1, 1) + datetime.timedelta(days=12 * k + (k % 3)) for k in range(8)]
T = years_since_first(DATES)
NEAREST3 = [(i, j) for i in range(8) for j in range(i + 1, min(8, i + 4))]


def pair_obs(pairs, d):
    pr = np.asarray(pairs)
    return (d[pr[:, 1]] - d[pr[:, 0]]).astype(np.float32)


def compare_naive(res: SbasResult, obs, pairs, w, extra, wavelength, gap, tol=1e-6):
    n_p, ny, nx = obs.shape
    wts = np.ones_like(obs) if w is None else w
    checked = 0
    for y in range(ny):
        for x in range(nx):
            d, prm, rms, tc, n = naive_invert_sbas_pixel(
                obs[:, y, x].astype(np.float64), pairs, T, wts[:, y, x].astype(np.float64),
                extra, wavelength, gap)
            assert res.n_pairs[y, x] == n
            if n == 0:
                assert np.isnan(res.series[:, y, x]).all()
                assert np.isnan(res.velocity[y, x]) and np.isnan(res.residual_rms[y, x])
                continue
            np.testing.assert_allclose(res.series[:, y, x], d, atol=tol, rtol=0)
            np.testing.assert_allclose(res.residual_rms[y, x], rms, atol=tol, rtol=1e-4)
            if wavelength:
                np.testing.assert_allclose(res.temporal_coherence[y, x], tc, atol=1e-5)
            if extra is not None:
                np.testing.assert_allclose(res.extra_params[:, y, x], prm, atol=1e-3, rtol=1e-5)
            v, s = naive_line_fit(d, T)
            np.testing.assert_allclose(res.velocity[y, x], v, atol=tol, rtol=1e-5)
            np.testing.assert_allclose(res.velocity_std[y, x], s, atol=tol, rtol=1e-4)
            checked += 1
    return checked


@pytest.fixture()
def noisy_stack():
    rng = np.random.default_rng(3)
    ny, nx = 6, 7
    d = np.cumsum(rng.normal(0, 0.004, (8, ny, nx)), axis=0)
    d -= d[0]
    obs = pair_obs(NEAREST3, d) + rng.normal(0, 0.002, (len(NEAREST3), ny, nx)).astype(np.float32)
    w = rng.uniform(0.1, 1.0, obs.shape).astype(np.float32)
    obs[rng.random(obs.shape) < 0.15] = np.nan
    w[rng.random(obs.shape) < 0.05] = 0.0
    obs[:, 0, 0] = np.nan  # no valid pair
    obs[:3, 1, 1] = np.nan  # early dates unconnected
    return obs, w


def test_matches_naive_weighted_with_nans(noisy_stack) -> None:
    obs, w = noisy_stack
    res = invert_sbas(obs, NEAREST3, DATES, weights=w, wavelength=WL, gap_weight=1e-2)
    assert res.series.dtype == np.float32 and res.n_pairs.dtype == np.int16
    assert res.extra_params is None
    assert compare_naive(res, obs, NEAREST3, w, None, WL, 1e-2) == 41


def test_matches_naive_unweighted_shared_and_per_pixel(noisy_stack) -> None:
    obs, _ = noisy_stack
    obs = obs.copy()
    obs[:, 2:, :] = np.nan_to_num(obs[:, 2:, :], nan=0.001)  # rows 2.. fully valid
    res = invert_sbas(obs, NEAREST3, DATES, wavelength=WL, gap_weight=0.05)
    assert compare_naive(res, obs, NEAREST3, None, None, WL, 0.05) == 41
    # The shared-matrix path and the per-pixel path agree.
    res1 = invert_sbas(obs, NEAREST3, DATES, weights=np.ones_like(obs), wavelength=WL,
                       gap_weight=0.05)
    np.testing.assert_allclose(res.series, res1.series, atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(res.temporal_coherence, res1.temporal_coherence, atol=1e-5,
                               equal_nan=True)


def test_matches_naive_dem_error(noisy_stack) -> None:
    obs, w = noisy_stack
    rng = np.random.default_rng(5)
    bperp = rng.normal(0, 80, 8)
    pr = np.asarray(NEAREST3)
    coef = ((bperp[pr[:, 1]] - bperp[pr[:, 0]]) / (850e3 * np.sin(np.radians(39))))[:, None]
    dz = rng.normal(0, 15, obs.shape[1:])
    obs = (obs + coef[:, :, None] * dz[None]).astype(np.float32)
    res = invert_sbas(obs, NEAREST3, DATES, weights=w, extra=coef, wavelength=WL)
    assert res.extra_params.shape == (1,) + obs.shape[1:]
    assert compare_naive(res, obs, NEAREST3, w, coef, WL, 1e-2) == 41


def test_linear_deformation_recovered_exactly() -> None:
    rng = np.random.default_rng(0)
    vel = rng.normal(0, 0.02, (9, 11))
    d = T[:, None, None] * vel
    obs = pair_obs(NEAREST3, d)
    for w in (None, rng.uniform(0.2, 1, obs.shape).astype(np.float32)):
        res = invert_sbas(obs, NEAREST3, DATES, weights=w, wavelength=WL)
        np.testing.assert_allclose(res.series, d, atol=2e-8)
        np.testing.assert_allclose(res.velocity, vel, atol=1e-7)
        assert np.nanmax(res.velocity_std) < 1e-6
        assert np.nanmax(res.residual_rms) < 1e-8
        assert np.nanmin(res.temporal_coherence) > 1 - 1e-6
        assert (res.n_pairs == len(NEAREST3)).all()


def test_disconnected_network_bridged_by_temporal_model() -> None:
    pairs = [(0, 1), (1, 2), (0, 2), (2, 3), (4, 5), (5, 6), (6, 7), (4, 6)]
    assert len(network_components(8, pairs)) == 2
    vel = np.array([[0.01, -0.03], [0.0, 0.05]])
    d = T[:, None, None] * vel
    res = invert_sbas(pair_obs(pairs, d), pairs, DATES, wavelength=WL)
    assert np.isfinite(res.series).all()
    np.testing.assert_allclose(res.series, d, atol=1e-7)
    np.testing.assert_allclose(res.velocity, vel, atol=1e-6)
    # Non-linear motion: each component keeps its data-fixed shape; the jump between
    # the components (not observed) follows the line through the others.
    dn = d + 0.01 * (np.arange(8) >= 4)[:, None, None]
    res = invert_sbas(pair_obs(pairs, dn), pairs, DATES)
    s = res.series.astype(np.float64)
    np.testing.assert_allclose(s[1:4] - s[0], dn[1:4] - dn[0], atol=1e-6)
    np.testing.assert_allclose(s[5:] - s[4], dn[5:] - dn[4], atol=1e-6)
    assert np.abs(s[4] - d[4]).max() < 0.008  # the unobservable 1 cm jump is mostly lost
    assert np.nanmax(res.residual_rms) < 1e-6


def test_single_pixel_gap_still_gives_a_series() -> None:
    d = T[:, None, None] * np.full((1, 1), 0.02)
    obs = pair_obs(NEAREST3, d)
    obs[[p for p, (i, j) in enumerate(NEAREST3) if i <= 3 < j]] = np.nan  # cut after date 3
    res = invert_sbas(obs, NEAREST3, DATES)
    np.testing.assert_allclose(res.series, d, atol=1e-7)
    assert res.n_pairs[0, 0] == len(NEAREST3) - 6


def test_dem_error_recovered() -> None:
    rng = np.random.default_rng(1)
    bperp = np.array([0, 120, -80, 40, 150, -60, 10, 90.0])
    pr = np.asarray(NEAREST3)
    coef = ((bperp[pr[:, 1]] - bperp[pr[:, 0]]) / (850e3 * np.sin(np.radians(39))))[:, None]
    dz = rng.uniform(-30, 30, (5, 6))
    vel = rng.normal(0, 0.02, (5, 6))
    d = T[:, None, None] * vel
    obs = (pair_obs(NEAREST3, d) + coef[:, :, None] * dz).astype(np.float32)
    for w in (None, rng.uniform(0.2, 1, obs.shape).astype(np.float32)):
        res = invert_sbas(obs, NEAREST3, DATES, weights=w, extra=coef, wavelength=WL)
        np.testing.assert_allclose(res.extra_params[0], dz, atol=0.02)
        np.testing.assert_allclose(res.series, d, atol=2e-7)
        np.testing.assert_allclose(res.velocity, vel, atol=2e-6)
    # Without the column the DEM error (a per-date term) leaks into the series.
    res = invert_sbas(obs, NEAREST3, DATES)
    assert np.abs(res.series - d).max() > 1e-3
    assert np.nanmedian(res.velocity_std) > 1e-3


def test_unwrapping_error_lowers_temporal_coherence() -> None:
    d = T[:, None, None] * np.full((2, 2), 0.01)
    obs = pair_obs(NEAREST3, d)
    obs[4, 0, 0] += WL / 2  # one cycle of phase = lambda/2 of LOS
    res = invert_sbas(obs, NEAREST3, DATES, wavelength=WL)
    assert res.temporal_coherence[0, 0] < 0.98
    assert res.temporal_coherence[1, 1] > 1 - 1e-6
    assert res.residual_rms[0, 0] > 1e-3
    no_wl = invert_sbas(obs, NEAREST3, DATES)
    assert np.isnan(no_wl.temporal_coherence).all()


def test_bad_input() -> None:
    obs = np.zeros((len(NEAREST3), 2, 3), np.float32)
    with pytest.raises(TypeError, match="float32 or float64"):
        invert_sbas(obs.astype(np.int32), NEAREST3, DATES)
    with pytest.raises(TypeError, match="float32 or float64"):
        invert_sbas(obs.astype(np.complex64), NEAREST3, DATES)
    with pytest.raises(TypeError, match="numpy array"):
        invert_sbas(obs.tolist(), NEAREST3, DATES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        invert_sbas(obs[0], NEAREST3, DATES)
    with pytest.raises(ValueError, match="pairs given"):
        invert_sbas(obs[1:], NEAREST3, DATES)
    with pytest.raises(ValueError, match="0 <= i < j < 8"):
        invert_sbas(obs[:1], [(3, 2)], DATES)
    with pytest.raises(TypeError, match="integer"):
        invert_sbas(obs[:1], [(0.0, 1.0)], DATES)
    with pytest.raises(ValueError, match="strictly increasing"):
        invert_sbas(obs, NEAREST3, DATES[::-1])
    with pytest.raises(ValueError, match="at least 2 dates"):
        invert_sbas(obs[:1], [(0, 1)], DATES[:1])
    with pytest.raises(ValueError, match=">= 0"):
        invert_sbas(obs, NEAREST3, DATES, weights=-np.ones_like(obs))
    with pytest.raises(ValueError, match="differs"):
        invert_sbas(obs, NEAREST3, DATES, weights=np.ones_like(obs[:, :1]))
    with pytest.raises(ValueError, match="extra"):
        invert_sbas(obs, NEAREST3, DATES, extra=np.ones((3, 1)))
    with pytest.raises(ValueError, match="gap_weight"):
        invert_sbas(obs, NEAREST3, DATES, gap_weight=0.0)
    with pytest.raises(ValueError, match="wavelength"):
        invert_sbas(obs, NEAREST3, DATES, wavelength=-1.0)


def test_design_matrix_columns() -> None:
    a = design_matrix([(0, 2), (1, 3)], 4, np.array([[5.0], [7.0]]))
    np.testing.assert_array_equal(a, [[0, 1, 0, 0, 0, 5], [-1, 0, 1, 0, 0, 7]])


# ------------------------------------------------------------ network extensions


def test_select_pairs_nearest_and_baselines() -> None:
    assert select_pairs(DATES, "nearest", neighbours=3) == NEAREST3
    assert select_pairs(DATES, "nearest", neighbours=3) == select_pairs(
        DATES, "sequential", neighbours=3)
    with pytest.raises(ValueError, match="nearest.*neighbours"):
        select_pairs(DATES, "nearest")
    # 12-13 day steps: max_days is an alias of max_span_days
    assert select_pairs(DATES, "all", max_days=26) == select_pairs(DATES, "all", max_span_days=26)
    assert all(j - i <= 2 for i, j in select_pairs(DATES, "all", max_days=26))
    with pytest.raises(ValueError, match="disagree"):
        select_pairs(DATES, max_days=10, max_span_days=20)
    bperp = np.array([0, 100, -50, 30, 200, 0, 20, 60.0])
    got = select_pairs(DATES, "nearest", neighbours=3, bperp=bperp, max_bperp=100)
    want = [(i, j) for i, j in NEAREST3 if abs(bperp[j] - bperp[i]) <= 100]
    assert got == want and len(want) < len(NEAREST3)
    with pytest.raises(ValueError, match="together"):
        select_pairs(DATES, bperp=bperp)
    with pytest.raises(ValueError, match="one value per date"):
        select_pairs(DATES, bperp=bperp[:3], max_bperp=10)
    with pytest.raises(ValueError, match="non-finite"):
        select_pairs(DATES, bperp=np.full(8, np.nan), max_bperp=10)


def test_closure_triplets_and_misclosure_against_a_direct_sum():
    from kernels.sbas import closure_triplets, coherence_weights, triplet_misclosure

    pairs = [(0, 1), (1, 2), (0, 2), (2, 3), (1, 3)]
    assert closure_triplets(pairs) == [(0, 1, 2), (1, 3, 4)]
    rng = np.random.default_rng(0)
    obs = rng.normal(0, 0.01, (5, 4, 3)).astype(np.float32)
    obs[2, 0, 0] = np.nan  # one triplet missing at one pixel
    rms, checked, over = triplet_misclosure(obs, closure_triplets(pairs), limit=0.01)
    t1 = obs[0] + obs[1] - obs[2]
    t2 = obs[1] + obs[3] - obs[4]
    expect = np.sqrt((np.nan_to_num(t1.astype(np.float64)) ** 2 + t2.astype(np.float64) ** 2)
                     / (np.isfinite(t1).astype(int) + 1))
    np.testing.assert_allclose(rms, expect, rtol=1e-12)
    assert checked == 2 * 12 - 1
    assert over == int((np.abs(t1[np.isfinite(t1)]) > 0.01).sum() + (np.abs(t2) > 0.01).sum())
    w = coherence_weights(np.array([np.nan, 0.0, 0.5, 1.0]))
    np.testing.assert_allclose(w, [0.0, 0.0, 0.25 / 0.75, 0.99**2 / (1 - 0.99**2)])
