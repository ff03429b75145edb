import datetime

import numpy as np
import pytest

from kernels.timeseries import (
    TimeseriesResult,
    invert_timeseries,
    network_components,
    select_pairs,
)
from tests.naive import naive_invert_timeseries

D = datetime.date
DATES = [
    D(2020, 1, 1),
    D(2020, 2, 10),
    D(2020, 4, 5),
    D(2020, 5, 10),
    D(2020, 7, 19),
    D(2020, 9, 17),
]
T_YEARS = np.array([2020.0 + (d - DATES[0]).days / 365.25 for d in DATES])
ALL15 = np.array([(i, j) for i in range(6) for j in range(i + 1, 6)])
TWO_COMPONENTS = np.array([(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)])


def linear_obs(pairs: np.ndarray, t: np.ndarray, vel: np.ndarray) -> np.ndarray:
    """Pair observations d_j - d_i of d_k = vel * (t_k - t_0)."""
    d = (t - t[0])[:, None, None] * vel[None].astype(np.float64)
    return (d[pairs[:, 1]] - d[pairs[:, 0]]).astype(np.float32)


def assert_matches_naive(res: TimeseriesResult, exp, tol: float = 1e-5) -> None:
    series, vel, std, rms, npair = exp
    np.testing.assert_allclose(res.series, series, rtol=tol, atol=tol, err_msg="series")
    np.testing.assert_allclose(res.velocity, vel, rtol=tol, atol=tol, err_msg="velocity")
    np.testing.assert_allclose(res.velocity_std, std, rtol=1e-4, atol=tol, err_msg="std")
    np.testing.assert_allclose(res.residual_rms, rms, rtol=1e-4, atol=tol, err_msg="rms")
    np.testing.assert_array_equal(res.n_pairs, npair)


# ------------------------------------------------------------------ pair selection


def test_select_pairs_modes() -> None:
    assert select_pairs(DATES[:4]) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert select_pairs(DATES[:4], neighbours=1) == select_pairs(DATES[:4])  # ignored
    assert select_pairs(DATES, "sequential") == [(k, k + 1) for k in range(5)]
    assert select_pairs(DATES[:4], "sequential", neighbours=2) == [
        (0, 1),
        (0, 2),
        (1, 2),
        (1, 3),
        (2, 3),
    ]
    # spans in days: 40, 95, 130, 55, 90, 35
    assert select_pairs(DATES[:4], "span", max_span_days=90) == [(0, 1), (1, 2), (1, 3), (2, 3)]
    assert select_pairs(DATES[:4], "all", max_span_days=90, min_span_days=40) == [
        (0, 1),
        (1, 2),
        (1, 3),
    ]
    stamps = [datetime.datetime(2021, 1, 1, 10, 30), datetime.datetime(2021, 1, 2, 10, 0)]
    assert select_pairs(stamps, max_span_days=1.0) == [(0, 1)]
    assert select_pairs(stamps, max_span_days=0.9) == []


def test_select_pairs_validation() -> None:
    with pytest.raises(ValueError, match="strictly increasing.*duplicate"):
        select_pairs([D(2020, 1, 1), D(2020, 1, 1)])
    with pytest.raises(ValueError, match=r"dates\[2\]=2020-01-01 is earlier than"):
        select_pairs([D(2020, 1, 1), D(2020, 2, 1), D(2020, 1, 1)])
    with pytest.raises(ValueError, match="at least 2"):
        select_pairs([D(2020, 1, 1)])
    with pytest.raises(ValueError, match="max_span_days"):
        select_pairs(DATES, "span")
    with pytest.raises(ValueError, match="neighbours"):
        select_pairs(DATES, "sequential", neighbours=0)
    with pytest.raises(ValueError, match="mode"):
        select_pairs(DATES, "nearest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_span_days"):
        select_pairs(DATES, max_span_days=10, min_span_days=20)


def test_network_components() -> None:
    assert network_components(6, ALL15) == [list(range(6))]
    assert network_components(6, TWO_COMPONENTS) == [[0, 1, 2], [3, 4, 5]]
    assert network_components(4, [(1, 3)]) == [[0], [1, 3], [2]]
    with pytest.raises(ValueError, match="0 <= i < j < 4"):
        network_components(4, [(2, 1)])


# ------------------------------------------------------------------ inversion vs naive


@pytest.mark.parametrize("weighted", [True, False])
def test_invert_matches_naive(weighted: bool) -> None:
    rng = np.random.default_rng(4)
    pairs = np.array([(0, 1), (0, 2), (1, 2), (1, 3), (2, 4), (3, 4), (0, 4)])
    t = T_YEARS[:5]
    ny, nx = 9, 11
    obs = rng.normal(0, 1, (len(pairs), ny, nx)).astype(np.float32)
    obs[rng.random(obs.shape) < 0.3] = np.nan
    obs[:, 0, 0] = np.nan  # no valid pair
    obs[:, 0, 1] = np.nan
    obs[0, 0, 1] = 0.4  # a single valid pair
    obs[:, 0, 2] = obs[:, 1, 1]  # all valid (fast path when unweighted)
    obs[:, 0, 3] = obs[:, 1, 2]
    w = rng.uniform(0.2, 1.0, obs.shape).astype(np.float32) if weighted else None
    if weighted:
        w[:, 0, 3] = 0.5  # all valid, equal weights: fast path
        w[2, 2, 2] = 0.0  # zero weight = invalid pair
        w[3, 2, 3] = np.nan
    res = invert_timeseries(pairs, obs, w, t)
    exp = naive_invert_timeseries(pairs, obs, w, t)
    assert res.series.dtype == np.float32 and res.series.shape == (5, ny, nx)
    assert res.n_pairs.dtype == np.int16
    assert_matches_naive(res, exp)
    assert res.n_pairs[0, 0] == 0 and np.all(np.isnan(res.series[:, 0, 0]))
    assert res.n_pairs[0, 1] == 1 and np.all(np.isfinite(res.series[:, 0, 1]))
    solved = res.n_pairs > 0
    np.testing.assert_array_equal(res.series[0][solved], 0.0)
    # some pixels needed the linear-model bridge, some did not
    assert 0 < np.sum(np.isnan(exp[2])) < solved.sum()


def test_shared_path_equals_per_pixel_path() -> None:
    rng = np.random.default_rng(8)
    for pairs in (ALL15, TWO_COMPONENTS):
        obs = rng.normal(0, 2, (len(pairs), 30, 40)).astype(np.float32)
        obs[:, :5][rng.random((len(pairs), 5, 40)) < 0.2] = np.nan
        w = np.broadcast_to(rng.uniform(0.1, 1, (1, 30, 40)), obs.shape).astype(np.float32)
        for weights in (None, w):
            fast = invert_timeseries(pairs, obs, weights, T_YEARS)
            slow = invert_timeseries(pairs, obs, weights, T_YEARS, use_shared=False)
            for name in ("series", "velocity", "velocity_std", "residual_rms"):
                a, b = getattr(fast, name), getattr(slow, name)
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)
            np.testing.assert_array_equal(fast.n_pairs, slow.n_pairs)
    exp = naive_invert_timeseries(TWO_COMPONENTS, obs[:, :6, :6], None, T_YEARS)
    res = invert_timeseries(TWO_COMPONENTS, obs[:, :6, :6].copy(), None, T_YEARS)
    assert_matches_naive(res, exp)


# ------------------------------------------------------------------ analytic checks


def test_linear_motion_exact_without_noise() -> None:
    rng = np.random.default_rng(1)
    vel = rng.uniform(-20, 20, (20, 25))
    obs = linear_obs(ALL15, T_YEARS, vel)
    res = invert_timeseries(ALL15, obs, None, T_YEARS)
    truth = (T_YEARS - T_YEARS[0])[:, None, None] * vel
    np.testing.assert_allclose(res.series, truth, atol=1e-5)
    np.testing.assert_allclose(res.velocity, vel, atol=1e-5)
    np.testing.assert_allclose(res.residual_rms, 0, atol=1e-5)
    np.testing.assert_allclose(res.velocity_std, 0, atol=1e-5)
    np.testing.assert_array_equal(res.n_pairs, 15)


def test_linear_motion_with_noise() -> None:
    rng = np.random.default_rng(2)
    shape = (30, 40)
    sigma = 0.02
    vel = rng.uniform(10, 20, shape)
    obs = linear_obs(ALL15, T_YEARS, vel)
    obs += rng.normal(0, sigma, obs.shape).astype(np.float32)
    res = invert_timeseries(ALL15, obs, None, T_YEARS)
    assert np.max(np.abs(res.velocity / vel - 1)) < 0.01
    # series errors consistent with the formal covariance sigma^2 (A^T A)^-1
    a = np.zeros((15, 6))
    a[np.arange(15), ALL15[:, 1]] = 1
    a[np.arange(15), ALL15[:, 0]] = -1
    pred = sigma * np.sqrt(np.diag(np.linalg.inv(a[:, 1:].T @ a[:, 1:])))
    err = res.series[1:] - (T_YEARS[1:] - T_YEARS[0])[:, None, None] * vel
    rms = np.sqrt(np.mean(err**2, axis=(1, 2)))
    np.testing.assert_allclose(rms, pred, rtol=0.15)
    assert np.all(np.abs(err) < 5 * pred[:, None, None])
    # residual RMS ~ sigma * sqrt((P - N + 1) / P); formal velocity sigma ~ actual scatter
    assert np.mean(res.residual_rms) == pytest.approx(sigma * np.sqrt(10 / 15), rel=0.1)
    scatter = np.std(res.velocity - vel)
    assert 0.6 < np.median(res.velocity_std) / scatter < 1.6


def test_disconnected_network_bridged() -> None:
    rng = np.random.default_rng(3)
    vel = rng.uniform(5, 10, (15, 20))
    obs = linear_obs(TWO_COMPONENTS, T_YEARS, vel)
    exact = invert_timeseries(TWO_COMPONENTS, obs, None, T_YEARS)
    truth = (T_YEARS - T_YEARS[0])[:, None, None] * vel
    np.testing.assert_allclose(exact.series, truth, atol=1e-4)
    noisy = invert_timeseries(
        TWO_COMPONENTS, obs + rng.normal(0, 0.02, obs.shape).astype(np.float32), None, T_YEARS
    )
    assert np.all(np.isfinite(noisy.series)) and np.all(np.isfinite(noisy.velocity))
    assert np.max(np.abs(noisy.velocity / vel - 1)) < 0.05


def test_constraint_only_where_needed() -> None:
    """A connected pixel is not biased towards the linear model; a gap is bridged."""
    pairs = np.array([(0, 1), (1, 2), (2, 3), (0, 2), (1, 3)])
    t = np.array([0.0, 0.25, 0.5, 0.75])
    d = np.array([0.0, 3.0, 1.0, 5.0])  # far from linear
    obs = (d[pairs[:, 1]] - d[pairs[:, 0]]).astype(np.float32)[:, None, None]
    obs = np.repeat(obs, 2, axis=2)
    obs[[1, 2, 4], 0, 1] = np.nan  # pixel 1 keeps (0, 1), (0, 2): date 3 has no pair
    res = invert_timeseries(pairs, obs, None, t)
    np.testing.assert_allclose(res.series[:, 0, 0], d, atol=1e-6)
    # pixel 1: the data fix d_1, d_2 (bias ~ gamma); d_3 = v * 0.75 with the model
    # velocity v = argmin (3 - 0.25 v)^2 + (1 - 0.5 v)^2 = 4
    np.testing.assert_allclose(res.series[:3, 0, 1], d[:3], atol=1e-3)
    assert res.series[3, 0, 1] == pytest.approx(3.0, rel=1e-3)


def test_triangle_misclosure() -> None:
    pairs = np.array([(0, 1), (1, 2), (0, 2)])
    t = np.array([2019.0, 2019.5, 2020.0])
    a, b, m = 1.0, 2.0, 0.3
    obs = np.array([a, b, a + b + m], np.float32).reshape(3, 1, 1)
    res = invert_timeseries(pairs, obs, None, t)
    assert res.residual_rms[0, 0] == pytest.approx(m / 3, rel=1e-5)
    w = np.array([1.0, 2.0, 4.0], np.float32).reshape(3, 1, 1)
    res_w = invert_timeseries(pairs, obs, w, t)
    expected = m / np.sqrt(np.sum(1 / w) * np.sum(w))
    assert res_w.residual_rms[0, 0] == pytest.approx(expected, rel=1e-5)
    consistent = np.array([a, b, a + b], np.float32).reshape(3, 1, 1)
    assert invert_timeseries(pairs, consistent, None, t).residual_rms[0, 0] < 1e-6


# ------------------------------------------------------------------ validation


def test_invert_validation() -> None:
    obs = np.zeros((3, 2, 2), np.float32)
    pairs = np.array([(0, 1), (1, 2), (0, 2)])
    t = np.array([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="float32"):
        invert_timeseries(pairs, obs.astype(np.float64), None, t)
    with pytest.raises(ValueError, match=r"shape \(P=3"):
        invert_timeseries(pairs, obs[:2], None, t)
    with pytest.raises(ValueError, match="weights must have the shape"):
        invert_timeseries(pairs, obs, obs[:, :1], t)
    with pytest.raises(ValueError, match=">= 0"):
        invert_timeseries(pairs, obs, -np.ones_like(obs), t)
    with pytest.raises(ValueError, match=r"pairs\[1\]"):
        invert_timeseries(np.array([(0, 1), (2, 1), (0, 2)]), obs, None, t)
    with pytest.raises(ValueError, match="strictly increasing"):
        invert_timeseries(pairs, obs, None, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="gamma"):
        invert_timeseries(pairs, obs, None, t, gamma=0.0)
    with pytest.raises(ValueError, match="integer"):
        invert_timeseries(pairs.astype(float), obs, None, t)
