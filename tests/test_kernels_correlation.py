import numpy as np
import pytest

from kernels.correlation import apodization, freq_correlate
from kernels.pyramid import correlate_grid, pyramid_levels, window_grid
from tests.naive_correlation import naive_freq_window
from tests.textures import shifted, texture_spectrum

N = 256


@pytest.fixture(scope="module")
def spec():
    return texture_spectrum(N, seed=4)


def _grid_centres(margin=24, step=16):
    g = window_grid(N, N, 32, step, margin=margin)
    return g, *g.centres()


@pytest.mark.parametrize("shift", [(0.0, 0.0), (2.0, -3.0), (0.37, -0.21), (-3.6, 2.45)])
def test_recovers_known_shift_noise_free(spec, shift):
    ref = shifted(spec, 0, 0)
    sec = shifted(spec, *shift)
    _, rows, cols = _grid_centres()
    res = freq_correlate(ref, sec, rows, cols, 32, 6)
    assert np.isfinite(res.drow).all()
    err = np.hypot(res.drow - shift[0], res.dcol - shift[1])
    assert np.sqrt(np.mean(err**2)) < 0.02
    assert res.score.min() > 0.8


def test_zero_shift_with_noise_is_unbiased(spec):
    rng = np.random.default_rng(0)
    ref = shifted(spec, 0, 0)
    sec = ref + rng.normal(0, 0.1, ref.shape).astype(np.float32)  # 20 dB
    ref = ref + rng.normal(0, 0.1, ref.shape).astype(np.float32)
    _, rows, cols = _grid_centres(step=4)
    res = freq_correlate(ref, sec, rows, cols, 32, 6)
    assert abs(np.nanmean(res.drow)) < 0.01 and abs(np.nanmean(res.dcol)) < 0.01
    assert np.sqrt(np.nanmean(res.drow**2 + res.dcol**2)) < 0.1


def test_spectrum_refinement_matches_bruteforce_reference(spec):
    """The continuous-surface refinement (refine="spectrum") against its brute force."""
    ref = shifted(spec, 0, 0)
    sec = shifted(spec, 1.23, -0.64)
    rng = np.random.default_rng(1)
    ref = ref + rng.normal(0, 0.05, ref.shape).astype(np.float32)
    rows = np.array([64, 100, 150])
    cols = np.array([80, 120, 170])
    # Without re-centring (the shift rounds to (1, -1)), compare on the re-centred window.
    res = freq_correlate(ref, sec, rows, cols, 32, 6, prior_rows=np.array([1, 1, 1]),
                         prior_cols=np.array([-1, -1, -1]), refine="spectrum")
    for k, (r, c) in enumerate(zip(rows, cols, strict=True)):
        a = ref[r - 16:r + 16, c - 16:c + 16].astype(np.float64)
        b = sec[r - 15:r + 17, c - 17:c + 15].astype(np.float64)
        yr, xr = naive_freq_window(a, b, 0.5, 0.5, 6)
        assert abs((yr + 1) - res.drow[k]) < 0.011
        assert abs((xr - 1) - res.dcol[k]) < 0.011


def test_nan_and_out_of_bounds_windows_fail_cleanly(spec):
    """A few no-data pixels are left out of a window; too many, or a window out of the
    image, and it fails."""
    ref = shifted(spec, 0, 0)
    sec = shifted(spec, 0.5, 0.5)
    ref[100, 100] = np.nan
    ref[40:60, 185:215] = np.nan  # most of the window at (50, 200)
    rows = np.array([100, 5, 200, 50])
    cols = np.array([100, 100, 200, 200])
    res = freq_correlate(ref, sec, rows, cols, 32, 6)
    assert abs(res.drow[0] - 0.5) < 0.02 and res.score[0] > 0.9
    assert np.isnan(res.drow[1]) and res.score[1] == 0
    assert abs(res.drow[2] - 0.5) < 0.02
    assert np.isnan(res.drow[3]) and res.score[3] == 0 and np.isnan(res.snr[3])
    strict = freq_correlate(ref, sec, rows, cols, 32, 6, max_masked=0.0)
    assert np.isnan(strict.drow[0])


def test_prior_is_included_in_displacement(spec):
    ref = shifted(spec, 0, 0)
    sec = shifted(spec, 10.3, -12.2)
    rows = np.array([128])
    cols = np.array([128])
    res = freq_correlate(ref, sec, rows, cols, 32, 4, prior_rows=np.array([10]),
                         prior_cols=np.array([-12]))
    assert abs(res.drow[0] - 10.3) < 0.03 and abs(res.dcol[0] + 12.2) < 0.03


def test_peak_beyond_search_is_rejected(spec):
    ref = shifted(spec, 0, 0)
    sec = shifted(spec, 6.0, 0)
    res = freq_correlate(ref, sec, np.array([128]), np.array([128]), 32, 3)
    assert np.isnan(res.drow[0])


def test_pyramid_finds_displacement_beyond_quarter_window(spec):
    ref = shifted(spec, 0, 0)
    sec = shifted(spec, 13.4, -9.7)
    assert pyramid_levels(32, 16) == 1
    g = window_grid(N, N, 32, 8, margin=18)
    res = correlate_grid(ref, sec, g, 32, 16)
    ok = np.isfinite(res.drow)
    assert ok.mean() > 0.95
    assert np.sqrt(np.mean((res.drow[ok] - 13.4) ** 2 + (res.dcol[ok] + 9.7) ** 2)) < 0.05


def test_input_validation(spec):
    img = shifted(spec, 0, 0)
    r = np.array([128])
    c = np.array([128])
    with pytest.raises(ValueError, match="even"):
        freq_correlate(img, img, r, c, 31, 4)
    with pytest.raises(ValueError, match="search"):
        freq_correlate(img, img, r, c, 32, 16)
    with pytest.raises(ValueError, match="floating"):
        freq_correlate(img.astype(np.int16), img, r, c, 32, 4)
    with pytest.raises(ValueError, match="shape"):
        freq_correlate(img, img[:-1], r, c, 32, 4)


def test_apodization_is_symmetric_tukey():
    w = apodization(32, 0.5)
    assert w.shape == (32, 32)
    assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])
    assert w[16, 16] == pytest.approx(1.0) and w[0, 0] < 0.01
