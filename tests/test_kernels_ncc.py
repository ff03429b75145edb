import cv2
import numpy as np
import pytest

from kernels.ncc import ncc_correlate, ncc_surface
from kernels.types import Correlation
from tests.naive import naive_ncc_correlate, naive_ncc_surface


def band_limited(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Spectrum of a periodic random texture low-passed by a Gaussian of `sigma` px."""
    spec = np.fft.fft2(rng.standard_normal((n, n)))
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.fftfreq(n)[None, :]
    return spec * np.exp(-2.0 * (np.pi * sigma) ** 2 * (ky**2 + kx**2))


def fourier_shift(spec: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Image whose content at (r, c) moved to (r + dy, c + dx)."""
    n = spec.shape[0]
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.fftfreq(n)[None, :]
    img = np.fft.ifft2(spec * np.exp(-2j * np.pi * (ky * dy + kx * dx))).real
    return (img / img.std()).astype(np.float32)


def grid(lo: int, hi: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    rr, cc = np.meshgrid(np.arange(lo, hi, step), np.arange(lo, hi, step), indexing="ij")
    return rr.ravel(), cc.ravel()


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    return band_limited(np.random.default_rng(42), 128, 2.0)


# --------------------------------------------------------------------------- surface


def test_surface_matches_naive() -> None:
    rng = np.random.default_rng(0)
    win = rng.standard_normal((9, 8)).astype(np.float32)
    area = rng.standard_normal((15, 17)).astype(np.float32)
    area[3:12, 5:13] = 4.0  # one flat placement: ZNCC 0 by convention
    got = ncc_surface(win, area)
    assert got.shape == (7, 10)
    assert got[3, 5] == 0.0
    np.testing.assert_allclose(got, naive_ncc_surface(win, area), atol=1e-10)


def test_surface_matches_opencv() -> None:
    rng = np.random.default_rng(1)
    spec = band_limited(rng, 64, 1.5)
    img = fourier_shift(spec, 0.0, 0.0) * 50 + 300  # an offset, like real DNs
    win = img[20:41, 22:43]
    area = img[14:47, 15:50]
    ours = ncc_surface(win, area)
    ocv = cv2.matchTemplate(area, win, cv2.TM_CCOEFF_NORMED)
    assert ocv.shape == ours.shape
    np.testing.assert_allclose(ours, ocv, atol=1e-4)
    assert np.unravel_index(np.argmax(ours), ours.shape) == (6, 7)
    assert ours.max() == pytest.approx(1.0, abs=1e-12)


def test_surface_rejects_bad_input() -> None:
    good = np.ones((5, 5), np.float32) + np.eye(5, dtype=np.float32)
    with pytest.raises(ValueError, match="flat"):
        ncc_surface(np.ones((5, 5), np.float32), good)
    with pytest.raises(ValueError, match="non-finite"):
        ncc_surface(good, np.full((6, 6), np.nan, np.float32))
    with pytest.raises(ValueError, match="at least as large"):
        ncc_surface(good, good[:4])
    with pytest.raises(ValueError, match="floating"):
        ncc_surface(good.astype(int), good)


# ----------------------------------------------------------------- correlate vs naive


@pytest.mark.parametrize("refine", [True, False])
def test_correlate_matches_naive(refine: bool) -> None:
    rng = np.random.default_rng(3)
    spec = band_limited(rng, 48, 1.2)
    ref = fourier_shift(spec, 0.0, 0.0)
    sec = fourier_shift(spec, 0.6, -1.3) + 0.05 * rng.standard_normal((48, 48)).astype(np.float32)
    ref[30:33, 10:12] = np.nan  # no-data patches
    sec[5, 40] = np.nan
    ref[38:45, 38:45] = 2.0  # a flat window
    n = 60
    rows = rng.integers(2, 48, n)
    cols = rng.integers(2, 48, n)
    rows[:2], cols[:2] = 41, 41  # centred on the flat patch
    prow = rng.integers(-1, 2, n).astype(np.int32)
    pcol = rng.integers(-1, 2, n).astype(np.int32)
    # NaN next to the reference window: the refinement (and so the window) fails
    rows[2:4], cols[2:4], prow[2:4], pcol[2:4] = (36, 26), 11, 0, -1
    got = ncc_correlate(ref, sec, rows, cols, 7, 3, prow, pcol, refine=refine)
    exp = naive_ncc_correlate(ref, sec, rows, cols, 7, 3, prow, pcol, refine=refine)
    assert isinstance(got, Correlation)
    # The kernel stops at a 1e-4 px update (the oracle at 1e-7) and sums in float32.
    tol = 2e-4 if refine else 1e-5
    for name, arr in zip(("drow", "dcol", "score", "snr"), exp, strict=True):
        val = getattr(got, name)
        assert val.dtype == np.float32 and val.shape == (n,)
        np.testing.assert_allclose(val, arr, atol=tol, err_msg=name)
    ok = np.isfinite(got.drow)
    assert 15 < ok.sum() < n  # a mix of successes and failures
    assert not ok[:2].any()
    assert ok[2:4].all() != refine
    assert np.all(got.score[~ok] == 0) and np.all(np.isnan(got.snr[~ok]))
    assert np.all((got.score[ok] > 0) & (got.score[ok] <= 1)) and np.all(got.snr[ok] >= 1)


# ------------------------------------------------------------------- analytic checks


@pytest.mark.parametrize("refine", [True, False])
@pytest.mark.parametrize("shift", [(0.3, -0.7), (-1.45, 2.2), (0.5, 0.5)])
def test_subpixel_shift_recovered(texture: np.ndarray, shift, refine: bool) -> None:
    ref = fourier_shift(texture, 0.0, 0.0)
    sec = fourier_shift(texture, *shift)
    rows, cols = grid(24, 104, 10)
    res = ncc_correlate(ref, sec, rows, cols, 25, 4, refine=refine)
    assert np.all(np.isfinite(res.drow))
    err = np.hypot(res.drow - shift[0], res.dcol - shift[1])
    assert err.max() < 0.1
    if refine:  # measured ~0.01 px max on this texture
        assert err.max() < 0.03


@pytest.mark.parametrize("shift", [(0, 0), (2, -3)])
def test_integer_shift_exact(texture: np.ndarray, shift) -> None:
    ref = fourier_shift(texture, 0.0, 0.0)
    sec = fourier_shift(texture, *shift)
    rows, cols = grid(24, 104, 10)
    res = ncc_correlate(ref, sec, rows, cols, 25, 5)
    np.testing.assert_allclose(res.drow, shift[0], atol=0.02)
    np.testing.assert_allclose(res.dcol, shift[1], atol=0.02)
    np.testing.assert_allclose(res.score, 1.0, atol=1e-5)


def test_prior_is_included_in_total(texture: np.ndarray) -> None:
    ref = fourier_shift(texture, 0.0, 0.0)
    sec = fourier_shift(texture, 6.25, -7.5)
    rows, cols = grid(30, 98, 17)
    n = rows.size
    prior_r = np.full(n, 6, np.int32)
    prior_c = np.full(n, -8, np.int32)
    res = ncc_correlate(ref, sec, rows, cols, 21, 2, prior_r, prior_c)
    np.testing.assert_allclose(res.drow, 6.25, atol=0.05)
    np.testing.assert_allclose(res.dcol, -7.5, atol=0.05)
    # without the prior the true peak is beyond the search range: failures or spurious
    # low-score matches, never the true displacement
    blind = ncc_correlate(ref, sec, rows, cols, 21, 2)
    assert not np.any(np.abs(blind.drow - 6.25) < 1.0)
    assert np.all(blind.score < 0.8)


def test_peak_on_search_border_fails(texture: np.ndarray) -> None:
    ref = fourier_shift(texture, 0.0, 0.0)
    sec = fourier_shift(texture, 3.0, 0.0)
    rows, cols = grid(30, 98, 17)
    res = ncc_correlate(ref, sec, rows, cols, 21, 3)
    assert np.all(np.isnan(res.drow)) and np.all(np.isnan(res.dcol))
    assert np.all(res.score == 0) and np.all(np.isnan(res.snr))
    wider = ncc_correlate(ref, sec, rows, cols, 21, 4)
    np.testing.assert_allclose(wider.drow, 3.0, atol=0.02)


def test_flat_nan_and_outside_windows_fail(texture: np.ndarray) -> None:
    ref = fourier_shift(texture, 0.0, 0.0)
    sec = ref.copy()
    ref[10:40, 10:40] = 1.5  # flat
    sec[70, 70] = np.nan  # in the search area of window 1
    rows = np.array([25, 68, 5, 64, 90])
    cols = np.array([25, 68, 64, 125, 90])
    res = ncc_correlate(ref, sec, rows, cols, 15, 3)
    assert np.all(np.isnan(res.drow[:4]))
    assert np.all(res.score[:4] == 0)
    assert res.drow[4] == pytest.approx(0.0, abs=1e-3)


def test_snr_higher_for_texture_than_noise(texture: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    ref = fourier_shift(texture, 0.0, 0.0)
    sec = fourier_shift(texture, 0.4, 0.1)
    rows, cols = grid(24, 104, 20)
    good = ncc_correlate(ref, sec, rows, cols, 25, 4)
    noise = rng.standard_normal(ref.shape).astype(np.float32)
    bad = ncc_correlate(ref, noise, rows, cols, 25, 4, refine=False)
    assert np.median(good.snr) > 2 * np.nanmedian(bad.snr)
    assert np.median(good.score) > 0.95 > np.max(bad.score)
    # Refined against noise, windows fail or keep a low score.
    refined = ncc_correlate(ref, noise, rows, cols, 25, 4)
    assert np.all(refined.score < 0.8)


# ---------------------------------------------------------------------- validation


def test_validation_errors() -> None:
    img = np.zeros((20, 20), np.float32)
    r = np.array([10])
    with pytest.raises(ValueError, match="float32"):
        ncc_correlate(img.astype(np.float64), img, r, r, 5, 2)
    with pytest.raises(ValueError, match="2-D"):
        ncc_correlate(img[None], img[None], r, r, 5, 2)
    with pytest.raises(ValueError, match="same shape"):
        ncc_correlate(img, img[:10], r, r, 5, 2)
    with pytest.raises(ValueError, match="integer dtype"):
        ncc_correlate(img, img, r.astype(float), r, 5, 2)
    with pytest.raises(ValueError, match="length 1"):
        ncc_correlate(img, img, r, np.array([1, 2]), 5, 2)
    with pytest.raises(ValueError, match="window"):
        ncc_correlate(img, img, r, r, 2, 2)
    with pytest.raises(ValueError, match="search"):
        ncc_correlate(img, img, r, r, 5, 0)
    with pytest.raises(ValueError, match="prior_rows"):
        ncc_correlate(img, img, r, r, 5, 2, prior_rows=np.array([0.5]))


def test_no_windows() -> None:
    img = np.zeros((20, 20), np.float32)
    res = ncc_correlate(img, img, np.array([], int), np.array([], int), 5, 2)
    assert res.drow.shape == (0,) and res.snr.dtype == np.float32
    assert ncc_correlate(img, img, [], [], 5, 2).score.shape == (0,)
