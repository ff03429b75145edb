"""kernels.subpixel against its slow reference (tests/naive_subpixel.py) and SciPy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.interpolate import BSpline

from kernels import subpixel as sp
from kernels.pyramid import GridCorrelation, _deformation_correction, local_warps, window_grid
from tests.naive_subpixel import naive_prepare, naive_refine, spline_derivative, tukey
from tests.textures import shifted, texture_spectrum

PAD = sp._PAD


def _pair(n: int = 64, seed: int = 1, shift=(0.3, -0.45)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    spec = texture_spectrum(n, seed=seed, beta=1.0, mtf=0.5)
    ref = shifted(spec, 0, 0) * 40 + 1000
    sec = shifted(spec, *shift) * 43 + 1010  # a gain and an offset
    ref = ref + rng.normal(0, 1, ref.shape).astype(np.float32)
    sec = sec + rng.normal(0, 1, ref.shape).astype(np.float32)
    return ref, sec


def test_quintic_weights_are_the_bspline() -> None:
    basis = BSpline.basis_element(np.arange(-3, 4), extrapolate=False)
    out = np.empty(6)
    for t in np.linspace(0, 0.999, 17):
        sp.quintic_weights(t, out)
        expected = np.nan_to_num(basis(t - np.arange(-2, 4)))
        np.testing.assert_allclose(out, expected, atol=1e-14)
        assert out.sum() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("shape", [(1, 7), (7, 1), (2, 3), (5, 9), (40, 33)])
def test_spline_coefficients_match_scipy(shape) -> None:
    img = np.random.default_rng(0).standard_normal(shape)
    np.testing.assert_allclose(sp.spline_coefficients(img),
                               ndimage.spline_filter(img, 5, mode="mirror"), atol=1e-9)


def test_prepare_matches_scipy_smoothing_spline_and_derivatives() -> None:
    ref, sec = _pair(48)
    ref[10:13, 30:34] = np.nan
    im = sp.prepare(ref, sec, 0.7)
    (r, bad_r), (s, bad_s) = naive_prepare(ref, sec, 0.7)
    inner = (slice(PAD, -PAD), slice(PAD, -PAD))
    np.testing.assert_allclose(im.ref[inner], r, atol=2e-3)  # float32 of values ~±100
    np.testing.assert_allclose(im.coef[inner], ndimage.spline_filter(s, 5, mode="mirror"),
                               atol=2e-3)
    # The derivative FIR against the spline's exact derivative.
    np.testing.assert_allclose(im.grad_y[inner], spline_derivative(r, 0), atol=2e-3)
    np.testing.assert_allclose(im.grad_x[inner], spline_derivative(r, 1), atol=2e-3)
    assert im.shape == ref.shape and im.presmooth == 0.7
    # The no-data masks, grown by the smoothing radius.
    assert (np.diff(np.diff(im.bad_ref, axis=0), axis=1)[PAD:-PAD, PAD:-PAD] == bad_r).all()
    assert not bad_s.any()


@pytest.mark.parametrize(("affine", "taper"), [(False, 0.0), (False, 0.5), (True, 0.0),
                                               (True, 0.5)])
def test_refine_matches_naive(affine: bool, taper: float) -> None:
    """Same estimates (to float32 rounding) and the same failures as the slow oracle,
    with no-data in both images and windows at and beyond the borders."""
    ref, sec = _pair()
    ref[40:43, 5:9] = np.nan
    sec[10, 50] = np.nan
    sec[30:34, 20:23] = np.nan
    rng = np.random.default_rng(5)
    n, w = 60, 12
    rows, cols = rng.integers(0, 64, n), rng.integers(0, 64, n)
    im = sp.prepare(ref, sec, 0.6)
    nv = naive_prepare(ref, sec, 0.6)
    init = (0.25, -0.4)
    dr, dc, z = sp.refine(im, rows, cols, w, np.full(n, init[0]), np.full(n, init[1]),
                          model="affine" if affine else "translation", taper=taper,
                          tol=1e-7, max_iter=40)
    found = 0
    for k in range(n):
        exp = naive_refine(nv, rows[k] - w // 2, cols[k] - w // 2, w, init, affine=affine,
                           taper=taper)
        assert (exp is None) == np.isnan(dr[k]), k
        if exp is not None:
            found += 1
            assert abs(exp[0] - dr[k]) < 1e-5 and abs(exp[1] - dc[k]) < 1e-5, k
            assert abs(exp[2] - z[k]) < 1e-5
    assert 20 < found < n  # windows inside, on the borders, and failed ones


def test_refine_recovers_shifts_and_integer_shifts_exactly() -> None:
    spec = texture_spectrum(96, seed=3, beta=1.0, mtf=0.4)
    ref = shifted(spec, 0, 0)
    rows, cols = np.meshgrid(np.arange(24, 73, 8), np.arange(24, 73, 8), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    for shift, tol in (((2.0, -1.0), 1e-4), ((0.37, -0.81), 5e-3)):
        im = sp.prepare(ref, shifted(spec, *shift))
        dr, dc, z = sp.refine(im, rows, cols, 32, np.full(rows.size, np.round(shift[0]) + 0.2),
                              np.full(rows.size, np.round(shift[1]) - 0.2))
        np.testing.assert_allclose(dr, shift[0], atol=tol)
        np.testing.assert_allclose(dc, shift[1], atol=tol)
        assert z.min() > 0.99


def test_masked_windows_are_measured_up_to_max_masked() -> None:
    spec = texture_spectrum(96, seed=4, beta=1.0, mtf=0.4)
    ref = shifted(spec, 0, 0)
    sec = shifted(spec, 0.3, 0.2)
    sec[40:56, 40:44] = np.nan  # 4 columns of no-data across the window at (48, 48)
    im = sp.prepare(ref, sec)
    r, c = np.array([48]), np.array([48])
    ok = sp.refine(im, r, c, 32, np.array([0.3]), np.array([0.2]), max_masked=0.5)
    assert abs(ok[0][0] - 0.3) < 0.01 and abs(ok[1][0] - 0.2) < 0.01
    refused = sp.refine(im, r, c, 32, np.array([0.3]), np.array([0.2]), max_masked=0.05)
    assert np.isnan(refused[0][0])


def test_deformation_response_matches_naive_moments() -> None:
    ref, sec = _pair()
    im = sp.prepare(ref, sec)
    (r, _), _ = naive_prepare(ref, sec, sp.DEFAULT_PRESMOOTH)
    w = 16
    rows, cols = np.array([20, 33, 41]), np.array([22, 30, 40])
    resp = sp.deformation_response(im, rows, cols, w, np.zeros(3), np.zeros(3), taper=0.5)
    gyf, gxf = spline_derivative(r, 0), spline_derivative(r, 1)
    wt = tukey(w, 0.5)
    yy, xx = np.mgrid[0:w, 0:w] - w // 2  # about the nominal centre
    basis = [yy, xx, 0.5 * yy * yy, yy * xx, 0.5 * xx * xx]
    for k in range(3):
        win = (slice(rows[k] - w // 2, rows[k] - w // 2 + w),
               slice(cols[k] - w // 2, cols[k] - w // 2 + w))
        g = [gyf[win], gxf[win]]
        g = [x - np.sum(wt * x) / np.sum(wt) for x in g]
        hess = np.array([[np.sum(wt * a * b) for b in g] for a in g])
        m = np.array([[[np.sum(wt * a * c * t) for t in basis] for c in g] for a in g])
        np.testing.assert_allclose(resp[k], np.einsum("ab,bct->act", np.linalg.inv(hess), m),
                                   rtol=1e-4, atol=1e-4)


def test_local_warps_recover_a_quadratic_field_and_ignore_an_outlier() -> None:
    step = 8
    ii, jj = np.mgrid[0:12, 0:14] * float(step)
    coef = np.array([[0.01, -0.02, 1e-4, -2e-4, 3e-4], [-0.015, 0.005, 2e-4, 1e-4, -1e-4]])

    def quad(c, y, x):
        return 0.3 + c[0] * y + c[1] * x + 0.5 * c[2] * y * y + c[3] * y * x + 0.5 * c[4] * x * x

    dr, dc = quad(coef[0], ii, jj), quad(coef[1], ii, jj)
    dr[5, 6] += 3.0  # an outlier next to window (5, 5)
    warps = local_warps(dr, dc, step, 32)
    for i, j in ((5, 5), (6, 7), (2, 3)):
        y, x = ii[i, j], jj[i, j]
        # the derivatives at the window (the quadratic's Taylor terms there)
        expected = np.array([[c[0] + c[2] * y + c[3] * x, c[1] + c[3] * y + c[4] * x, c[2],
                              c[3], c[4]] for c in coef])
        np.testing.assert_allclose(warps[i, j], expected, atol=1e-8)
    assert np.isfinite(warps).all()
    # Noise alone gives no deformation (coefficients within 3 standard errors are zero).
    rng = np.random.default_rng(0)
    noise = local_warps(rng.normal(0, 0.01, (12, 14)), rng.normal(0, 0.01, (12, 14)), step, 32)
    assert np.mean(noise == 0) > 0.9


def test_deformation_correction_brings_the_estimate_to_the_window_centre() -> None:
    """A curved field: the window's weighted mean differs from its centre value; the
    correction removes most of that difference."""
    from simulators.opt import fractal_texture, warp_periodic

    n = 384
    rng = np.random.default_rng(2)
    tex = fractal_texture((n, n), 2.0, 0.3, rng)
    yy, xx = np.mgrid[0:n, 0:n] / n
    d_row = 3.0 * np.sin(2 * np.pi * xx)
    d_col = 3.0 * np.cos(2 * np.pi * yy)
    sec = warp_periodic(tex, d_row, d_col).astype(np.float32)
    g = window_grid(n, n, 32, 8, margin=6)
    rows, cols = g.centres()
    im = sp.prepare(tex.astype(np.float32), sec)
    dr, dc, z, resp = sp.refine(im, rows, cols, 32, d_row[rows, cols], d_col[rows, cols],
                                with_response=True)
    # truth at the ref centres: q = p + d(q)
    qr, qc = rows.astype(float), cols.astype(float)
    for _ in range(30):
        qr = rows + 3.0 * np.sin(2 * np.pi * qc / n)
        qc = cols + 3.0 * np.cos(2 * np.pi * qr / n)
    tr, tc = qr - rows, qc - cols
    res = GridCorrelation(g, dr.reshape(g.ny, g.nx).astype(np.float32),
                          dc.reshape(g.ny, g.nx).astype(np.float32),
                          z.reshape(g.ny, g.nx).astype(np.float32),
                          z.reshape(g.ny, g.nx).astype(np.float32))
    fixed = _deformation_correction(resp.reshape(g.ny, g.nx, 2, 2, 5), g, 32, res)
    before = np.sqrt(np.nanmean((dr - tr) ** 2 + (dc - tc) ** 2))
    after = np.sqrt(np.nanmean((fixed.drow.ravel() - tr) ** 2 + (fixed.dcol.ravel() - tc) ** 2))
    print(f"deformation correction: {before:.4f} -> {after:.4f} px")
    assert after < 0.5 * before


def test_validation() -> None:
    ref, sec = _pair(32)
    with pytest.raises(ValueError, match="shape"):
        sp.prepare(ref, sec[:-1])
    with pytest.raises(ValueError, match="floating"):
        sp.prepare(ref.astype(int), sec)
    with pytest.raises(ValueError, match="presmooth"):
        sp.prepare(ref, sec, -1.0)
    im = sp.prepare(ref, sec)
    one = np.array([16])
    with pytest.raises(ValueError, match="window"):
        sp.refine(im, one, one, 2, np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="model"):
        sp.refine(im, one, one, 8, np.zeros(1), np.zeros(1), model="quadratic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="taper"):
        sp.refine(im, one, one, 8, np.zeros(1), np.zeros(1), taper=2.0)
    with pytest.raises(ValueError, match="length"):
        sp.refine(im, one, one, 8, np.zeros(2), np.zeros(1))
    with pytest.raises(ValueError, match="max_masked"):
        sp.refine(im, one, one, 8, np.zeros(1), np.zeros(1), max_masked=1.0)
    empty = np.array([], np.int64)
    assert sp.refine(im, empty, empty, 8, np.zeros(0), np.zeros(0))[0].shape == (0,)
    # NaN starts are skipped
    assert np.isnan(sp.refine(im, one, one, 8, np.array([np.nan]), np.zeros(1))[0][0])
