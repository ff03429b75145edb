import numpy as np
import pytest

from kernels.insar import (
    closure_phase,
    coherence_debias,
    expected_coherence,
    goldstein,
    interferogram,
    multilook,
    reference_point,
)
from tests.naive import naive_interferogram, naive_multilook, naive_reference_point


def circ(rng: np.random.Generator, shape) -> np.ndarray:
    """Unit-power circular Gaussian samples (speckle)."""
    return ((rng.normal(size=shape) + 1j * rng.normal(size=shape)) / np.sqrt(2)).astype(
        np.complex64)


def correlated_pair(rng, shape, gamma):
    a = circ(rng, shape)
    b = circ(rng, shape)
    return a, (gamma * a + np.sqrt(1 - gamma**2) * b).astype(np.complex64)


# ------------------------------------------------------------------ interferogram


def test_interferogram_matches_naive_with_nans_and_zeros() -> None:
    rng = np.random.default_rng(0)
    ref, sec = correlated_pair(rng, (13, 17), 0.7)
    ref[2, 3] = np.nan
    sec[5, 5] = complex(np.nan, 0)
    ref[7, 1] = 0
    ref[0:2, 0:3] = np.nan  # a whole 2x3 window with no valid sample
    for looks in ((1, 1), (2, 3), (4, 2)):
        ifg, coh = interferogram(ref, sec, looks)
        exp_ifg, exp_coh = naive_interferogram(ref, sec, looks)
        assert ifg.dtype == np.complex64 and coh.dtype == np.float32
        assert ifg.shape == (13 // looks[0], 17 // looks[1])
        np.testing.assert_allclose(ifg, exp_ifg, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(coh, exp_coh, rtol=1e-5, atol=1e-6, equal_nan=True)
    ifg, coh = interferogram(ref, sec, (2, 3))
    assert ifg[0, 0] == 0 and np.isnan(coh[0, 0])
    assert np.isfinite(coh[1:, :]).all()
    # single look: coherence is 1 wherever defined
    _, coh1 = interferogram(ref, sec)
    np.testing.assert_allclose(coh1[np.isfinite(coh1)], 1.0, atol=1e-6)


def test_interferogram_sign_convention() -> None:
    # phase = -4 pi R / wavelength; a target moving 1 cm towards the satellite between
    # the dates makes the phase of ref * conj(sec) negative.
    wl = 0.0555
    r1 = 850e3 + np.zeros((4, 4))
    r2 = r1 - 0.01
    ref = np.exp(-4j * np.pi * r1 / wl).astype(np.complex64)
    sec = np.exp(-4j * np.pi * r2 / wl).astype(np.complex64)
    ifg, _ = interferogram(ref, sec, (2, 2))
    # -4 pi 0.01 / 0.0555 = -2.264 rad, inside (-pi, pi): no wrap
    np.testing.assert_allclose(np.angle(ifg), -4 * np.pi * 0.01 / wl, atol=2e-3)


def test_interferogram_bad_input() -> None:
    a = np.ones((8, 8), np.complex64)
    with pytest.raises(TypeError, match="complex"):
        interferogram(a.real, a)
    with pytest.raises(ValueError, match="differ in shape"):
        interferogram(a, a[:4])
    with pytest.raises(ValueError, match="2-D"):
        interferogram(a[0], a[0])
    with pytest.raises(ValueError, match="looks"):
        interferogram(a, a, (0, 1))
    with pytest.raises(ValueError, match="smaller than one look"):
        interferogram(a, a, (9, 1))


def test_multilook_matches_naive() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(11, 10)).astype(np.float32)
    real[0:3, 0:2] = np.nan
    real[5, 5] = np.nan
    cplx = circ(rng, (11, 10))
    cplx[4, 4] = np.nan
    for a in (real, cplx):
        got = multilook(a, (3, 2))
        np.testing.assert_allclose(got, naive_multilook(a, (3, 2)), rtol=1e-5, equal_nan=True)
        assert got.shape == (3, 5) and got.dtype == (np.complex64 if a is cplx else np.float32)
    assert np.isnan(multilook(real, (3, 2))[0, 0])
    with pytest.raises(ValueError, match="2-D"):
        multilook(real[0], (1, 1))


# ------------------------------------------------------------------ coherence


@pytest.mark.parametrize("looks", [(2, 2), (3, 3), (5, 5)])
def test_coherence_of_independent_noise_is_low(looks) -> None:
    rng = np.random.default_rng(2)
    n_looks = looks[0] * looks[1]
    _, coh = interferogram(circ(rng, (300, 300)), circ(rng, (300, 300)), looks)
    # Raw sample coherence of noise: about sqrt(pi / 4L) (the large-L form of the
    # exact mean Gamma(L) Gamma(3/2) / Gamma(L + 1/2)).
    assert abs(coh.mean() - np.sqrt(np.pi / (4 * n_looks))) < 0.03
    assert abs(coh.mean() - expected_coherence(np.array(0.0), n_looks)) < 0.01
    deb = coherence_debias(coh, n_looks)
    assert deb.dtype == np.float32 and deb.min() >= 0
    assert np.median(deb) == 0.0
    # a non-negative estimator cannot have mean 0 at zero coherence: it halves it
    assert deb.mean() < 0.56 * coh.mean()


@pytest.mark.parametrize(("gamma", "looks"), [(0.3, (5, 5)), (0.6, (3, 3)), (0.9, (3, 3)),
                                              (0.6, (5, 5))])
def test_debiased_coherence_of_correlated_speckle(gamma, looks) -> None:
    rng = np.random.default_rng(3)
    n_looks = looks[0] * looks[1]
    ref, sec = correlated_pair(rng, (300, 300), gamma)
    _, coh = interferogram(ref, sec, looks)
    # the raw mean follows the closed-form expectation; the raw estimate is biased high
    assert abs(coh.mean() - expected_coherence(np.array(gamma), n_looks)) < 0.01
    assert coh.mean() > gamma
    deb = coherence_debias(coh, n_looks)
    assert abs(np.median(deb) - gamma) < 0.03
    assert abs(deb.mean() - gamma) < 0.04
    assert abs(deb.mean() - gamma) < abs(coh.mean() - gamma)


def test_coherence_debias_edges() -> None:
    c = np.array([np.nan, 0.0, 0.1, 0.5, 0.999, 1.0], np.float32)
    d = coherence_debias(c, 9)
    assert np.isnan(d[0]) and d[1] == 0 and d[2] == 0
    assert 0.35 < d[3] < 0.5 and d[4] > 0.99 and d[5] == 1.0
    assert np.all(np.diff(coherence_debias(np.linspace(0, 1, 50), 4)) >= 0)
    with pytest.raises(ValueError, match="n_looks"):
        coherence_debias(c, 1)


# ------------------------------------------------------------------ Goldstein


def fringes(n=96, seed=4, noise=0.8):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, : n + 10]
    phase = 0.15 * x + 0.05 * y + 3 * np.exp(-((x - 50) ** 2 + (y - 40) ** 2) / 400)
    z = np.exp(1j * (phase + rng.normal(0, noise, phase.shape))).astype(np.complex64)
    return phase, z


def test_goldstein_alpha0_is_identity() -> None:
    _, z = fringes()
    z[3, 4] = np.nan
    out = goldstein(z, 0.0)
    assert out.dtype == np.complex64 and out.shape == z.shape
    np.testing.assert_allclose(out, z, rtol=1e-6, atol=1e-7, equal_nan=True)


def test_goldstein_reduces_noise_and_keeps_fringes() -> None:
    phase, z = fringes()
    err0 = np.angle(z * np.exp(-1j * phase)).std()
    errs = []
    for alpha in (0.5, 1.0):
        out = goldstein(z, alpha)
        errs.append(np.angle(out * np.exp(-1j * phase)).std())
    assert err0 > 0.75
    assert errs[0] < 0.6 * err0 and errs[1] < 0.3 * err0 and errs[1] < errs[0]
    # a clean fringe pattern keeps its phase
    clean = np.exp(1j * phase).astype(np.complex64)
    out = goldstein(clean, 1.0, window=16)
    assert np.abs(np.angle(out * np.exp(-1j * phase))).max() < 0.1


def test_goldstein_nan_and_bad_input() -> None:
    _, z = fringes(48)
    z[10:12, 20] = np.nan
    out = goldstein(z, 0.7)
    assert np.isnan(out[10:12, 20]).all()
    assert np.isfinite(out).sum() == z.size - 2
    with pytest.raises(TypeError, match="complex"):
        goldstein(np.angle(z), 0.5)
    with pytest.raises(ValueError, match="alpha"):
        goldstein(z, 1.5)
    with pytest.raises(ValueError, match="window"):
        goldstein(z, 0.5, window=7)


# ------------------------------------------------------------------ closure, reference


def test_closure_phase() -> None:
    rng = np.random.default_rng(5)
    s = [circ(rng, (20, 20)) for _ in range(3)]
    ij, jk, ik = s[0] * np.conj(s[1]), s[1] * np.conj(s[2]), s[0] * np.conj(s[2])
    cl = closure_phase(ij, jk, ik)
    assert cl.dtype == np.float32
    assert np.abs(cl).max() < 1e-5  # single-look consistent triplet
    bump = rng.uniform(-3, 3, (20, 20))
    cl = closure_phase(ij * np.exp(1j * bump), jk, ik)
    np.testing.assert_allclose(cl, bump, atol=1e-4)
    # multilooked triplets of decorrelating speckle do not close exactly
    a, b = correlated_pair(rng, (60, 60), 0.6)
    _, c = correlated_pair(rng, (60, 60), 0.6)
    c = (0.5 * a + 0.5 * c).astype(np.complex64)
    tri = [interferogram(x, y, (3, 3))[0] for x, y in ((a, b), (b, c), (a, c))]
    assert 0.05 < np.abs(closure_phase(*tri)).mean() < 1.5


def test_reference_point_matches_naive() -> None:
    rng = np.random.default_rng(6)
    q = rng.uniform(0, 1, (30, 25))
    valid = rng.random((30, 25)) > 0.05
    q[3, 3] = np.nan
    for w in (3, 5):
        assert reference_point(q, valid, w) == naive_reference_point(q, valid, w)
    q2 = np.full((20, 20), 0.2)
    q2[0:5, 0:5] = 1.0  # best area touches the edge: the window centre stays 2 px inside
    q2[11:16, 7:12] = 0.9
    assert reference_point(q2, None, 5) == (2, 2)
    assert reference_point(q2, q2 < 0.95, 5) == (13, 9)
    with pytest.raises(ValueError, match="no fully valid window"):
        reference_point(q2, np.zeros((20, 20), bool))
