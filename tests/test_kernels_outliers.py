import numpy as np
import pytest

from kernels.outliers import apply_offset, median_fill, reject_outliers, stable_offset
from tests.naive import naive_median_fill, naive_reject_outliers


def smooth_field(ny: int, nx: int, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    drow = 0.8 * np.sin(y / 9.0) + 0.01 * x + offset
    dcol = 0.5 * np.cos(x / 7.0) - 0.02 * y - offset
    return drow.astype(np.float32), dcol.astype(np.float32)


# -------------------------------------------------------------------- reject_outliers


@pytest.mark.parametrize(
    ("radius", "k", "min_nb", "floor", "dtype"),
    [(1, 3.0, 3, 0.05, np.float32), (2, 2.0, 6, 0.0, np.float64), (1, 3.0, 0, 0.3, np.float32)],
)
def test_reject_matches_naive(radius, k, min_nb, floor, dtype) -> None:
    rng = np.random.default_rng(radius * 10 + min_nb)
    shape = (23, 31)
    drow = (rng.standard_normal(shape) * 0.3).astype(dtype)
    dcol = (rng.standard_normal(shape) * 0.3 + 1).astype(dtype)
    score = rng.uniform(0, 1, shape).astype(dtype)
    drow[rng.random(shape) < 0.1] = np.nan
    dcol[rng.random(shape) < 0.05] = np.nan
    score[rng.random(shape) < 0.05] = np.nan
    spikes = rng.random(shape) < 0.1
    drow[spikes] += 5
    got = reject_outliers(drow, dcol, score, 0.2, radius, k, min_nb, nmad_floor=floor)
    exp = naive_reject_outliers(drow, dcol, score, 0.2, radius, k, min_nb, floor)
    assert got.dtype == np.bool_ and got.shape == shape
    np.testing.assert_array_equal(got, exp)
    assert 0.2 < got.mean() < 0.9


def test_spikes_removed_clean_kept() -> None:
    rng = np.random.default_rng(7)
    shape = (60, 80)
    drow, dcol = smooth_field(*shape)
    drow += rng.normal(0, 0.02, shape).astype(np.float32)
    dcol += rng.normal(0, 0.02, shape).astype(np.float32)
    score = rng.uniform(0.5, 1.0, shape).astype(np.float32)
    spikes = rng.random(shape) < 0.05
    amp = rng.uniform(1.0, 5.0, spikes.sum()) * rng.choice([-1, 1], spikes.sum())
    comp = rng.random(spikes.sum()) < 0.5
    drow[spikes] += np.where(comp, amp, 0).astype(np.float32)
    dcol[spikes] += np.where(comp, 0, amp).astype(np.float32)
    valid = reject_outliers(drow, dcol, score, min_score=0.3)
    removed = 1 - valid[spikes].mean()
    kept = valid[~spikes].mean()
    assert removed >= 0.95, removed
    assert kept >= 0.98, kept


def test_smooth_field_keeps_everything() -> None:
    drow = np.full((12, 15), 0.25, np.float32)
    dcol = np.tile(np.linspace(0, 0.1, 15, dtype=np.float32), (12, 1))
    score = np.ones_like(drow)
    assert reject_outliers(drow, dcol, score, 0.5).all()


def test_low_score_nan_and_isolated_rejected() -> None:
    drow, dcol = smooth_field(10, 10)
    score = np.ones_like(drow)
    score[2, 2] = 0.1
    drow[5, 5] = np.nan
    score[7, 7] = np.nan
    valid = reject_outliers(drow, dcol, score, 0.5)
    assert not valid[2, 2] and not valid[5, 5] and not valid[7, 7]
    assert valid.sum() == 97
    lonely = np.full((5, 5), np.nan, np.float32)
    lonely[2, 2] = lonely[2, 3] = 0.0
    assert not reject_outliers(lonely, lonely, np.ones_like(lonely), 0.5, min_neighbours=2).any()
    assert reject_outliers(lonely, lonely, np.ones_like(lonely), 0.5, min_neighbours=1).sum() == 2


def test_reject_validation() -> None:
    a = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="2-D"):
        reject_outliers(a[0], a[0], a[0], 0.1)
    with pytest.raises(ValueError, match="shape"):
        reject_outliers(a, a[:3], a, 0.1)
    with pytest.raises(ValueError, match="floating"):
        reject_outliers(a.astype(int), a, a, 0.1)
    with pytest.raises(ValueError, match="min_neighbours"):
        reject_outliers(a, a, a, 0.1, radius=1, min_neighbours=9)
    with pytest.raises(ValueError, match="radius"):
        reject_outliers(a, a, a, 0.1, radius=0)
    with pytest.raises(ValueError, match="nmad_k"):
        reject_outliers(a, a, a, 0.1, nmad_k=0)


# ------------------------------------------------------------------- offsets


def test_stable_offset_recovers_constant() -> None:
    rng = np.random.default_rng(11)
    shape = (40, 50)
    drow = rng.normal(0, 0.01, shape).astype(np.float32) + 0.731
    dcol = rng.normal(0, 0.01, shape).astype(np.float32) - 1.204
    moving = np.zeros(shape, bool)
    moving[10:30, 5:25] = True  # a landslide moving by several pixels
    drow[moving] += 3.0
    dcol[moving] -= 2.0
    valid = np.ones(shape, bool)
    valid[0] = False
    off = stable_offset(drow, dcol, valid, ~moving)
    assert isinstance(off[0], float)
    assert off == pytest.approx((0.731, -1.204), abs=1e-3)
    # exact on noise-free data
    exact = stable_offset(
        np.where(moving, 5.0, 0.731).astype(np.float32),
        np.where(moving, 5.0, -1.204).astype(np.float32),
        valid,
        ~moving,
    )
    assert exact == pytest.approx((0.731, -1.204), abs=1e-3)
    new_r, new_c = apply_offset(drow, dcol, off)
    assert new_r.dtype == np.float32 and new_r is not drow
    used = valid & ~moving
    assert np.median(new_r[used]) == pytest.approx(0.0, abs=1e-6)
    assert np.median(new_c[used]) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(drow[0, 0] - new_r[0, 0], off[0], rtol=1e-6)


def test_stable_offset_needs_ten_windows() -> None:
    drow = np.zeros((4, 4), np.float32)
    valid = np.zeros((4, 4), bool)
    valid[:2, :] = True
    drow[0, 0] = np.nan
    with pytest.raises(ValueError, match="only 7 valid windows"):
        stable_offset(drow, drow, valid)
    with pytest.raises(ValueError, match="only 0 valid and stable"):
        stable_offset(drow, drow, valid, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="boolean"):
        stable_offset(drow, drow, valid.astype(int))
    with pytest.raises(ValueError, match="offset"):
        apply_offset(drow, drow, (1.0,))


# ------------------------------------------------------------------- median_fill


def test_median_fill_matches_naive() -> None:
    rng = np.random.default_rng(2)
    vals = rng.standard_normal((17, 19)).astype(np.float32)
    valid = rng.random((17, 19)) < 0.7
    vals[rng.random((17, 19)) < 0.05] = np.nan
    for radius, min_valid in ((1, 5), (2, 9), (1, 1)):
        got = median_fill(vals, valid, radius, min_valid=min_valid)
        exp = naive_median_fill(vals, valid, radius, min_valid)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, exp, atol=1e-6)
    filled = median_fill(vals, valid)
    assert np.isnan(filled).sum() < np.sum(~(valid & np.isfinite(vals)))


def test_median_fill_hole() -> None:
    vals = np.arange(25, dtype=np.float64).reshape(5, 5)
    valid = np.ones((5, 5), bool)
    valid[2, 2] = False
    valid[0, 0] = valid[0, 1] = valid[1, 0] = False
    out = median_fill(vals, valid)
    assert out[2, 2] == pytest.approx(12.0)  # median of the 8 neighbours (one invalid)
    assert np.isnan(out[0, 0])  # only one valid neighbour
    assert out[4, 4] == 24.0 and out.dtype == np.float64
