"""Image-domain sub-pixel refinement of window displacements (no pixel locking).

The integer (or coarse) stage of a correlator finds each window's displacement to about
a tenth of a pixel. This module refines it by matching the reference window, held
fixed on its own pixel grid, against the secondary image *interpolated* at the
displaced positions, the way COSI-Corr's and MicMac's sub-pixel stages do:

    minimize over p   sum_x ( f(x) - a * g(x + p) - b )^2

with a local gain ``a`` and offset ``b`` (zero-mean normalized SSD, i.e. maximum
ZNCC), solved by inverse-compositional Gauss-Newton. Two choices remove the causes of
pixel locking of the frequency-domain peak fit:

- the window is attached to the reference image and never moves, so no apodization or
  window-edge term pulls the estimate towards a whole pixel (in a correlation surface
  the two windows overlap best at whole-pixel offsets, which biases the peak there);
- the secondary image is sampled with a quintic B-spline (prefiltered, six taps per
  axis), whose phase error is about a hundred times smaller than that of a bicubic
  (Keys) kernel or a parabola through the correlation peak.

Both images are first smoothed by a small Gaussian (``presmooth``, default 0.6 px).
The same linear filter on both images leaves the displacement unchanged, and it damps
the frequencies near Nyquist that a real sensor aliases, where any interpolator is
wrong about the sub-pixel position of the content.

``model="affine"`` adds the four displacement gradients to the translation (a window
that deforms, for strong strain across the window, e.g. near a fault); it costs about
three times more per iteration.

Sign convention, as in :mod:`kernels.correlation`: the feature at ``(r, c)`` of ``ref``
is at ``(r + drow, c + dcol)`` of ``sec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
from scipy import ndimage

from kernels._cholesky import chol_factor, chol_substitute

__all__ = ["SplineImage", "prepare", "refine", "deformation_response", "quintic_weights",
           "spline_coefficients", "gaussian_kernel", "DEFAULT_PRESMOOTH"]

DEFAULT_PRESMOOTH = 0.6
"""Gaussian sigma (pixels) applied to both images before the sub-pixel match."""

DEFAULT_MAX_MASKED = 0.25
"""Largest fraction of no-data pixels in a window that is still measured."""

_ORDER = 5
_TAPS = 6  # quintic B-spline taps per axis: floor(x) - 2 .. floor(x) + 3
_GUARD = 3  # extra pixels of valid data required around the interpolation support
_MASK_GUARD = 1  # the same, per pixel, in windows that hold some no-data
_PAD = 8  # mirror padding of the prepared arrays (> taps + guard)

# Quintic B-spline weights: tap j (offset j - 2 from floor(x)) at fraction t is
# sum_k _B5[j, k] * t**k / 120.
_B5 = np.array([
    [1.0, -5.0, 10.0, -10.0, 5.0, -1.0],
    [26.0, -50.0, 20.0, 20.0, -20.0, 5.0],
    [66.0, 0.0, -60.0, 0.0, 30.0, -10.0],
    [26.0, 50.0, 20.0, -20.0, -20.0, 10.0],
    [1.0, 5.0, 10.0, 10.0, 5.0, -5.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
]) / 120.0

Model = Literal["translation", "affine"]


@dataclass(frozen=True)
class SplineImage:
    """The two images of a pair, ready for :func:`refine`.

    Attributes
    ----------
    ref
        float32 smoothed reference image (NaN filled; see ``bad_ref``).
    grad_y, grad_x
        float32 derivatives of the quintic spline of ``ref`` at its pixels.
    coef
        float32 quintic B-spline coefficients of the smoothed secondary image.
    bad_ref, bad_sec
        int32 integral images (shape + 1) of the pixels that were not finite (after
        smoothing), so that a window's support is checked in O(1).
    presmooth
        The Gaussian sigma that was applied, pixels.
    shape
        (rows, cols) of the images; the arrays above are padded by ``_PAD`` pixels of
        mirror image on every side.
    sec
        float32 smoothed secondary image (NaN filled, not padded), from which
        :func:`refine` resamples the pair's common fractional shift (see ``preshift``).
    sec_bad
        bool mask of its no-data pixels (grown by the smoothing), not padded.

    """

    ref: np.ndarray
    grad_y: np.ndarray
    grad_x: np.ndarray
    coef: np.ndarray
    bad_ref: np.ndarray
    bad_sec: np.ndarray
    presmooth: float
    shape: tuple[int, int]
    sec: np.ndarray | None = None
    sec_bad: np.ndarray | None = None


@numba.njit(cache=True)
def quintic_weights(t: float, out: np.ndarray) -> None:
    """Quintic B-spline weights of taps ``floor(x) - 2 .. floor(x) + 3`` at fraction t."""
    t2 = t * t
    t3 = t2 * t
    t4 = t3 * t
    t5 = t4 * t
    c = 1.0 / 120.0
    out[0] = c * (1.0 - 5.0 * t + 10.0 * t2 - 10.0 * t3 + 5.0 * t4 - t5)
    out[1] = c * (26.0 - 50.0 * t + 20.0 * t2 + 20.0 * t3 - 20.0 * t4 + 5.0 * t5)
    out[2] = c * (66.0 - 60.0 * t2 + 30.0 * t4 - 10.0 * t5)
    out[3] = c * (26.0 + 50.0 * t + 20.0 * t2 - 20.0 * t3 - 20.0 * t4 + 10.0 * t5)
    out[4] = c * (1.0 + 5.0 * t + 10.0 * t2 + 10.0 * t3 + 5.0 * t4 - 5.0 * t5)
    out[5] = c * t5


# Poles of the quintic B-spline interpolation prefilter (Unser 1999).
_POLES = np.array([-0.43057534709997379, -0.043096288203264652])


@numba.njit(cache=True, inline="always")
def _mirror(i, n):
    """Index into a mirror-symmetric extension (edge samples not repeated).

    The extension of scipy's ``mode="mirror"``.
    """
    if n == 1:
        return 0
    period = 2 * n - 2
    i = abs(i) % period
    return period - i if i >= n else i


@numba.njit(cache=True, inline="always")
def _column_pass(src, kernel, i, dst):
    """Row i of src convolved along its columns by kernel (mirror boundaries) into dst."""
    ny, nx = src.shape
    r = kernel.shape[0] // 2
    for j in range(nx):
        dst[j] = 0.0
    for t in range(kernel.shape[0]):
        row = src[_mirror(i + t - r, ny)]
        kt = kernel[t]
        for j in range(nx):
            dst[j] += kt * row[j]


@numba.njit(cache=True, parallel=True, fastmath=True)
def _convolve2(src, kernel, out, off, tmp):
    """Separable convolution of src by kernel along both axes, mirror boundaries.

    The result goes to ``out[off:off + ny, off:off + nx]`` (``out`` may be padded).
    """
    ny, nx = src.shape
    nk = kernel.shape[0]
    r = nk // 2
    # Along columns: whole rows at a time (contiguous, vectorized).
    for i in numba.prange(ny):
        _column_pass(src, kernel, i, tmp[i])
    # Along rows.
    for i in numba.prange(ny):
        row = tmp[i]
        lo = min(r, nx)
        hi = max(lo, nx - r)
        for j in range(lo, hi):
            acc = 0.0
            for t in range(nk):
                acc += kernel[t] * row[j + t - r]
            out[i + off, j + off] = acc
        for e in range(lo + nx - hi):  # the border columns, 0..lo-1 and hi..nx-1
            j = e if e < lo else e - lo + hi
            acc = 0.0
            for t in range(nk):
                acc += kernel[t] * row[_mirror(j + t - r, nx)]
            out[i + off, j + off] = acc


@numba.njit(cache=True)
def _causal_init(x, z, n):
    """First causal coefficient of the mirror-extended signal x[0..n-1] (x indexable)."""
    horizon = int(np.ceil(np.log(1e-12) / np.log(abs(z))))
    if horizon < n:
        zk = z
        acc = x[0]
        for k in range(1, horizon):
            acc += zk * x[k]
            zk *= z
        return acc
    zn = z ** (n - 1)
    iz = 1.0 / z
    z2n = zn * zn * iz
    acc = x[0] + zn * x[n - 1]
    zk = z
    for k in range(1, n - 1):
        acc += (zk + z2n) * x[k]
        zk *= z
        z2n *= iz
    return acc / (1.0 - zn * zn)


@numba.njit(cache=True, parallel=True)
def _spline_rows(c, poles):
    """In place: quintic B-spline coefficients along every row of c (mirror boundaries)."""
    ny, nx = c.shape
    if nx == 1:
        return
    gain = 1.0
    for z in poles:
        gain *= (1.0 - z) * (1.0 - 1.0 / z)
    for i in numba.prange(ny):
        row = c[i]
        for j in range(nx):
            row[j] *= gain
        for z in poles:
            row[0] = _causal_init(row, z, nx)
            for j in range(1, nx):
                row[j] += z * row[j - 1]
            row[nx - 1] = (z / (z * z - 1.0)) * (z * row[nx - 2] + row[nx - 1])
            for j in range(nx - 2, -1, -1):
                row[j] = z * (row[j + 1] - row[j])


@numba.njit(cache=True, parallel=True)
def _spline_cols(c, poles, block):
    """In place: quintic B-spline coefficients along every column of c.

    ``block`` columns at a time: the recursion runs down whole row segments, which
    vectorizes.
    """
    ny, nx = c.shape
    if ny == 1:
        return
    gain = 1.0
    for z in poles:
        gain *= (1.0 - z) * (1.0 - 1.0 / z)
    nb = (nx + block - 1) // block
    for bb in numba.prange(nb):
        j0 = bb * block
        j1 = min(nx, j0 + block)
        for i in range(ny):
            for j in range(j0, j1):
                c[i, j] *= gain
        for z in poles:
            for j in range(j0, j1):
                c[0, j] = _causal_init(c[:, j], z, ny)
            for i in range(1, ny):
                for j in range(j0, j1):
                    c[i, j] += z * c[i - 1, j]
            f = z / (z * z - 1.0)
            for j in range(j0, j1):
                c[ny - 1, j] = f * (z * c[ny - 2, j] + c[ny - 1, j])
            for i in range(ny - 2, -1, -1):
                for j in range(j0, j1):
                    c[i, j] = z * (c[i + 1, j] - c[i, j])


@numba.njit(cache=True)
def _integral(bad):
    """Integral image (shape + 1) of a boolean mask, int32."""
    ny, nx = bad.shape
    out = np.zeros((ny + 1, nx + 1), np.int32)
    for i in range(ny):
        acc = 0
        for j in range(nx):
            acc += 1 if bad[i, j] else 0
            out[i + 1, j + 1] = out[i, j + 1] + acc
    return out


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalized 1-D Gaussian of ``sigma`` px, radius ``int(4 sigma + 0.5)`` (scipy's)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def spline_coefficients(img: np.ndarray) -> np.ndarray:
    """Quintic B-spline coefficients of a 2-D image with mirror boundaries (float64).

    The same as ``scipy.ndimage.spline_filter(img, 5, mode="mirror")``, in Numba.
    """
    c = np.array(img, dtype=np.float64, order="C", copy=True)
    if c.ndim != 2:
        raise ValueError(f"img must be 2-D, got shape {c.shape}")
    _spline_rows(c, _POLES)
    _spline_cols(c, _POLES, 64)
    return c


def _derivative_fir(half: int = 14) -> np.ndarray:
    """Taps d[1..half] of the antisymmetric FIR that gives the quintic spline's derivative.

    f'(k) = sum_m d[m] (f[k + m] - f[k - m]): the exact operator (the spline prefilter,
    then the B-spline's derivative at the integers, 5/12 and 1/24 at distances 1 and 2)
    decays by 0.43 per tap; it is cut at ``half`` taps (1e-5 of its response at 14).
    """
    n = 4 * half + 9
    impulse = np.zeros(n)
    impulse[n // 2] = 1.0
    c = ndimage.spline_filter1d(impulse, order=_ORDER, mode="mirror")
    # f'(k) = 5/12 (c[k+1] - c[k-1]) + 1/24 (c[k+2] - c[k-2]); the weight of f[k + m] is
    # the response at k = centre - m.
    deriv = 5.0 / 12.0 * (np.roll(c, -1) - np.roll(c, 1)) + (np.roll(c, -2) - np.roll(c, 2)) / 24.0
    return np.ascontiguousarray(deriv[n // 2 - 1:n // 2 - half - 1:-1])


_DERIV = _derivative_fir()


@numba.njit(cache=True, parallel=True, fastmath=True)
def _gradients(src, d, gy, gx, off):
    """Antisymmetric FIR d along the columns (gy) and rows (gx) of src, mirror boundaries.

    Results go to ``g[off:off + ny, off:off + nx]`` (the outputs may be padded).
    """
    ny, nx = src.shape
    nd = d.shape[0]
    for i in numba.prange(ny):
        row = src[i]
        lo = min(nd, nx)
        hi = max(lo, nx - nd)
        for j in range(lo, hi):
            acc = 0.0
            for m in range(1, nd + 1):
                acc += d[m - 1] * (row[j + m] - row[j - m])
            gx[i + off, j + off] = acc
        for e in range(lo + nx - hi):  # the border columns, 0..lo-1 and hi..nx-1
            j = e if e < lo else e - lo + hi
            acc = 0.0
            for m in range(1, nd + 1):
                acc += d[m - 1] * (row[_mirror(j + m, nx)] - row[_mirror(j - m, nx)])
            gx[i + off, j + off] = acc
        for j in range(nx):
            gy[i + off, j + off] = 0.0
        for m in range(1, nd + 1):
            dm = d[m - 1]
            up = src[_mirror(i - m, ny)]
            dn = src[_mirror(i + m, ny)]
            for j in range(nx):
                gy[i + off, j + off] += dm * (dn[j] - up[j])


@numba.njit(cache=True)
def _fill_pad(arr, pad):
    """Mirror the interior of ``arr`` into its ``pad``-pixel border (numpy "reflect")."""
    ny, nx = arr.shape
    for k in range(1, pad + 1):
        for j in range(pad, nx - pad):
            arr[pad - k, j] = arr[pad + k, j]
            arr[ny - pad - 1 + k, j] = arr[ny - pad - 1 - k, j]
    for i in range(ny):
        for k in range(1, pad + 1):
            arr[i, pad - k] = arr[i, pad + k]
            arr[i, nx - pad - 1 + k] = arr[i, nx - pad - 1 - k]


def _smooth_into(img: np.ndarray, level: float, kernel: np.ndarray | None,
                 out: np.ndarray) -> np.ndarray:
    """Smooth ``img - level`` (holes filled) into ``out``; return the grown no-data mask."""
    a = np.asarray(img)
    bad = ~np.isfinite(a)
    has_bad = bool(bad.any())
    if has_bad:
        if bad.all():
            out[...] = 0.0
            return bad
        # Fill from the nearest valid pixel: continuous, so the IIR spline prefilter
        # is disturbed only a few pixels around the hole.
        _, (ii, jj) = ndimage.distance_transform_edt(bad, return_indices=True)
        a = a[ii, jj]
    src = np.ascontiguousarray(a, dtype=np.float64)
    if level:
        src = src - level
    if kernel is None:
        out[...] = src
        return bad
    _convolve2(src, kernel, out, 0, np.empty(src.shape, np.float64))
    if has_bad:
        bad = ndimage.binary_dilation(bad, iterations=kernel.size // 2)
    return bad


_SHIFT_HALF = 8
_SHIFT_BETA = 5.0
PRESHIFT_MIN = 0.02
_PRESHIFT_SAMPLE = 1000
"""Smallest common fractional shift (pixels) that :func:`refine` resamples away first."""


def shift_kernel(t: float, half: int = _SHIFT_HALF, beta: float = _SHIFT_BETA) -> np.ndarray:
    """Taps k = -half..half of a Kaiser-windowed sinc: f(x + t) ~ sum_k h[k] f(x + k).

    With the default 17 taps its phase error is below 0.001 px up to 0.4 cycles/pixel at
    every |t| <= 0.5 (a quintic spline's reaches 0.035 px there).
    """
    x = np.arange(-half, half + 1, dtype=np.float64) - t
    w = np.i0(beta * np.sqrt(np.clip(1.0 - (x / (half + 1)) ** 2, 0.0, None))) / np.i0(beta)
    h = np.sinc(x) * w
    return h / h.sum()


@numba.njit(cache=True, parallel=True, fastmath=True)
def _shift2(src, ky, kx, out):
    """out[i, j] = sum_a,b ky[a] kx[b] src[i + a - r, j + b - r] (mirror boundaries)."""
    ny, nx = src.shape
    nk = ky.shape[0]
    r = nk // 2
    tmp = np.empty((ny, nx), np.float32)
    ky32 = ky.astype(np.float32)
    for i in numba.prange(ny):
        _column_pass(src, ky32, i, tmp[i])
    for i in numba.prange(ny):
        row = tmp[i]
        for j in range(nx):
            acc = 0.0
            if r <= j < nx - r:
                for t in range(nk):
                    acc += kx[t] * row[j + t - r]
            else:
                for t in range(nk):
                    acc += kx[t] * row[_mirror(j + t - r, nx)]
            out[i, j] = acc


def _shifted_spline(images: SplineImage, dr: float, dc: float) -> tuple[np.ndarray, np.ndarray]:
    """Padded spline coefficients and bad-pixel integral of the secondary moved by (dr, dc).

    The smoothed secondary is resampled at ``x + (dr, dc)`` by a windowed sinc (one pass
    per axis), then prefiltered as in :func:`prepare`.
    """
    assert images.sec is not None and images.sec_bad is not None
    ny, nx = images.shape
    s = np.empty((ny, nx), np.float64)
    _shift2(images.sec, shift_kernel(dr), shift_kernel(dc), s)
    _spline_rows(s, _POLES)
    _spline_cols(s, _POLES, 64)
    p = _PAD
    coef_p = np.empty((ny + 2 * p, nx + 2 * p), np.float32)
    coef_p[p:-p, p:-p] = s
    _fill_pad(coef_p, p)
    bad = images.sec_bad
    if bad.any():
        bad = ndimage.binary_dilation(bad, np.ones((2 * _SHIFT_HALF + 1,) * 2, bool))
    return coef_p, _integral(np.pad(bad, ((p, p), (p, p)), mode="reflect"))


def prepare(ref: np.ndarray, sec: np.ndarray, presmooth: float = DEFAULT_PRESMOOTH
            ) -> SplineImage:
    """Smooth both images and compute the secondary's quintic spline coefficients.

    Parameters
    ----------
    ref, sec
        2-D float images on the same grid; NaN (any non-finite value) = no data.
    presmooth
        Gaussian sigma in pixels applied to both images (0: none).

    Returns
    -------
    SplineImage

    """
    ref = np.asarray(ref)
    sec = np.asarray(sec)
    if ref.ndim != 2 or sec.ndim != 2:
        raise ValueError("ref and sec must be 2-D images")
    if ref.shape != sec.shape:
        raise ValueError(f"ref and sec differ in shape: {ref.shape} vs {sec.shape}")
    if not (np.issubdtype(ref.dtype, np.floating) and np.issubdtype(sec.dtype, np.floating)):
        raise ValueError(f"ref and sec must be floating point, got {ref.dtype}, {sec.dtype}")
    if not (np.isfinite(presmooth) and 0.0 <= presmooth <= 5.0):
        raise ValueError(f"presmooth must be within 0..5 px, got {presmooth}")
    # One constant off both images (the match has its own gain and offset) keeps the
    # float32 sums of the inner loops well conditioned for large DN values.
    sample = ref[::8, ::8]
    finite = sample[np.isfinite(sample)]
    level = float(np.median(finite)) if finite.size else 0.0
    kernel = gaussian_kernel(presmooth) if presmooth > 0 else None
    ny, nx = ref.shape
    p = _PAD
    # Every array is padded by p pixels of mirror image: the spline's own boundary
    # condition, so that windows touching the border interpolate what scipy's
    # mode="mirror" would.
    r = np.empty((ny, nx), np.float32)
    bad_r = _smooth_into(ref, level, kernel, r)
    ref_p = np.empty((ny + 2 * p, nx + 2 * p), np.float32)
    ref_p[p:-p, p:-p] = r
    _fill_pad(ref_p, p)
    s = np.empty((ny, nx), np.float64)
    bad_s = _smooth_into(sec, level, kernel, s)
    s_smooth = s.astype(np.float32)
    _spline_rows(s, _POLES)
    _spline_cols(s, _POLES, 64)
    coef_p = np.empty_like(ref_p)
    coef_p[p:-p, p:-p] = s
    _fill_pad(coef_p, p)
    gy_p = np.zeros_like(ref_p)
    gx_p = np.zeros_like(ref_p)
    _gradients(r, _DERIV.astype(np.float32), gy_p, gx_p, p)
    pad = ((p, p), (p, p))
    return SplineImage(
        ref_p, gy_p, gx_p, coef_p,
        _integral(np.pad(bad_r, pad, mode="reflect")),
        _integral(np.pad(bad_s, pad, mode="reflect")),
        float(presmooth), ref.shape, s_smooth, bad_s)


@numba.njit(cache=True, inline="always")
def _any_bad(integral, r0, c0, r1, c1):
    """True if a pixel of rows r0..r1-1, cols c0..c1-1 is bad or the box leaves the image."""
    h = integral.shape[0] - 1
    w = integral.shape[1] - 1
    if r0 < 0 or c0 < 0 or r1 > h or c1 > w:
        return True
    return (integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]) > 0


@numba.njit(cache=True)
def _sample_affine(coef, r0, c0, w, p, wy, wx, out):
    """Spline of coef at x + u(x), u = (p0 + p2 y + p3 x, p1 + p4 y + p5 x) about the centre."""
    h = (w - 1) * 0.5
    for a in range(w):
        yy = a - h
        for b in range(w):
            xx = b - h
            y = r0 + a + p[0] + p[2] * yy + p[3] * xx
            x = c0 + b + p[1] + p[4] * yy + p[5] * xx
            iy = int(np.floor(y))
            ix = int(np.floor(x))
            quintic_weights(y - iy, wy)
            quintic_weights(x - ix, wx)
            s = 0.0
            for u in range(_TAPS):
                row = coef[iy - 2 + u]
                r = 0.0
                for t in range(_TAPS):
                    r += wx[t] * row[ix - 2 + t]
                s += wy[u] * r
            out[a, b] = s


@numba.njit(cache=True)
def _solve_sym(h, rhs, n, out):
    """Solve the symmetric positive system h x = rhs (n <= 6) by Cholesky; False if singular."""
    lo = np.zeros((6, 6))
    if not chol_factor(h, lo, n, 1e-12):
        return False
    chol_substitute(lo, rhs, out, n)
    return True


@numba.njit(cache=True, fastmath=True)
def _window_stats(ref, grad_y, grad_x, r0, c0, w, wt, fz, jy, jx):
    """Reference window and gradients with their weighted means removed, times the weights.

    On return ``fz``, ``jy``, ``jx`` hold ``wt * (f - <f>)``, ``wt * (df/dy - <df/dy>)``
    and ``wt * (df/dx - <df/dx>)`` (``<.>`` = weighted mean). Returns
    ``(sum wt, sum wt (f - <f>)^2, H_yy, H_yx, H_xx, sum wt jy fz, sum wt jx fz)`` where
    H is the weighted Gauss-Newton Hessian of the translation.
    """
    npx = w * w
    sw = 0.0
    fm = 0.0
    my = 0.0
    mx = 0.0
    for a in range(w):
        for b in range(w):
            k = a * w + b
            q = wt[k]
            f = ref[r0 + a, c0 + b]
            gy = grad_y[r0 + a, c0 + b]
            gx = grad_x[r0 + a, c0 + b]
            fz[k] = f
            jy[k] = gy
            jx[k] = gx
            sw += q
            fm += q * f
            my += q * gy
            mx += q * gx
    fm /= sw
    my /= sw
    mx /= sw
    fss = 0.0
    hyy = 0.0
    hyx = 0.0
    hxx = 0.0
    cy = 0.0
    cx = 0.0
    for k in range(npx):
        q = wt[k]
        f = fz[k] - fm
        gy = jy[k] - my
        gx = jx[k] - mx
        fss += q * f * f
        hyy += q * gy * gy
        hyx += q * gy * gx
        hxx += q * gx * gx
        cy += q * gy * f
        cx += q * gx * f
        fz[k] = q * f
        jy[k] = q * gy
        jx[k] = q * gx
    return sw, fss, hyy, hyx, hxx, cy, cx


@numba.njit(cache=True, fastmath=True)
def _translation_sums(coef, r0, c0, w, py, px, wy, wx, tmp, wt, fz, jy, jx):
    """Sample the spline at the shifted window and return the sums the update needs.

    With g the secondary image interpolated at (r0 + a + py, c0 + b + px), returns
    (sum wt g, sum wt g^2, sum fz g, sum jy g, sum jx g), ``fz``, ``jy``, ``jx`` being
    the weighted arrays of :func:`_window_stats` (flattened, float32). The inner loops
    run in float32 (8-wide SIMD) and each row's partial sums are added in float64.
    """
    iy = int(np.floor(py))
    ix = int(np.floor(px))
    quintic_weights(py - iy, wy)
    quintic_weights(px - ix, wx)
    rr = r0 + iy - 2
    cc = c0 + ix - 2
    w0 = np.float32(wx[0])
    w1 = np.float32(wx[1])
    w2 = np.float32(wx[2])
    w3 = np.float32(wx[3])
    w4 = np.float32(wx[4])
    w5 = np.float32(wx[5])
    for a in range(w + _TAPS - 1):
        row = coef[rr + a, cc:cc + w + _TAPS - 1]
        dst = tmp[a]
        for b in range(w):
            dst[b] = (w0 * row[b] + w1 * row[b + 1] + w2 * row[b + 2] + w3 * row[b + 3]
                      + w4 * row[b + 4] + w5 * row[b + 5])
    v0 = np.float32(wy[0])
    v1 = np.float32(wy[1])
    v2 = np.float32(wy[2])
    v3 = np.float32(wy[3])
    v4 = np.float32(wy[4])
    v5 = np.float32(wy[5])
    s1 = np.float64(0.0)
    s2 = np.float64(0.0)
    sf = np.float64(0.0)
    sy = np.float64(0.0)
    sx = np.float64(0.0)
    for a in range(w):
        t0 = tmp[a]
        t1 = tmp[a + 1]
        t2 = tmp[a + 2]
        t3 = tmp[a + 3]
        t4 = tmp[a + 4]
        t5 = tmp[a + 5]
        q = wt[a * w:(a + 1) * w]
        f = fz[a * w:(a + 1) * w]
        y = jy[a * w:(a + 1) * w]
        x = jx[a * w:(a + 1) * w]
        r1 = np.float32(0.0)
        r2 = np.float32(0.0)
        rf = np.float32(0.0)
        ry = np.float32(0.0)
        rx = np.float32(0.0)
        for b in range(w):
            g = v0 * t0[b] + v1 * t1[b] + v2 * t2[b] + v3 * t3[b] + v4 * t4[b] + v5 * t5[b]
            qg = q[b] * g
            r1 += qg
            r2 += qg * g
            rf += f[b] * g
            ry += y[b] * g
            rx += x[b] * g
        s1 += r1
        s2 += r2
        sf += rf
        sy += ry
        sx += rx
    return s1, s2, sf, sy, sx


@numba.njit(cache=True, inline="always")
def _zncc_ratio(s1, s2, sf, sw, fss, fnorm):
    """(ok, zncc, fnorm / gnorm) of a match from the sums of its sampled secondary g.

    ``s1``, ``s2``, ``sf``: sum wt g, sum wt g^2 and sum fz g; ``sw``, ``fss``, ``fnorm``:
    sum wt, the reference's weighted sum of squares and its square root. Not ok where
    the sampled window is flat.
    """
    gss = s2 - s1 * s1 / sw
    if gss <= 1e-14 * fss:
        return False, 0.0, 0.0
    gnorm = np.sqrt(gss)
    return True, sf / (fnorm * gnorm), fnorm / gnorm


@numba.njit(cache=True)
def _refine_translation(ref, grad_y, grad_x, coef, bad_ref, bad_sec, shape, r0, c0, w, py,
                        px, max_iter, tol, wt, fz, jy, jx, tmp, wy, wx):
    """Inverse-compositional Gauss-Newton, translation only; (ok, py, px, zncc, iters).

    Where the texture inside the window is strongly deformed, the plain iteration
    converges linearly (each step a fraction rho of the previous one, in the same
    direction); once two successive steps show it, Aitken's extrapolation jumps to the
    limit (p + d rho / (1 - rho)).
    """
    fail = (False, py, px, 0.0, 0)
    if not _ref_ok(bad_ref, shape, r0, c0, w):
        return fail
    sw, fss, hyy, hyx, hxx, cy, cx = _window_stats(ref, grad_y, grad_x, r0 + _PAD, c0 + _PAD,
                                                   w, wt, fz, jy, jx)
    det = hyy * hxx - hyx * hyx
    if fss <= 0.0 or det <= 1e-12 * hyy * hxx or det <= 0.0:
        return fail
    fnorm = np.sqrt(fss)
    zncc = 0.0
    prev_y = 0.0
    prev_x = 0.0
    for it in range(max_iter):
        if not _support_ok(bad_sec, shape, r0 + py, c0 + px, w, 0.0, 0.0):
            return fail
        s1, s2, sf, sy, sx = _translation_sums(coef, r0 + _PAD, c0 + _PAD, w, py, px, wy, wx,
                                               tmp, wt, fz, jy, jx)
        ok, zncc, ratio = _zncc_ratio(s1, s2, sf, sw, fss, fnorm)
        if not ok:
            return fail
        # The weighted jy, jx and fz have zero sum, so the means of g drop out.
        by = cy - ratio * sy
        bx = cx - ratio * sx
        dy = (hxx * by - hyx * bx) / det
        dx = (hyy * bx - hyx * by) / det
        py += dy
        px += dx
        step2 = dy * dy + dx * dx
        if step2 < tol * tol:
            return (True, py, px, zncc, it + 1)
        prev2 = prev_y * prev_y + prev_x * prev_x
        if prev2 > 0.0:
            rho = (dy * prev_y + dx * prev_x) / prev2
            if 0.2 < rho < 0.95 and step2 < prev2:
                jump = rho / (1.0 - rho)
                py += jump * dy
                px += jump * dx
                dy = 0.0  # the next two steps estimate a fresh rho
                dx = 0.0
        prev_y = dy
        prev_x = dx
    return (False, py, px, zncc, max_iter)


@numba.njit(cache=True, inline="always")
def _ref_ok(bad_ref, shape, r0, c0, w):
    """The reference window lies in the image, with no bad pixel within one pixel of it."""
    if r0 < 0 or c0 < 0 or r0 + w > shape[0] or c0 + w > shape[1]:
        return False
    return not _any_bad(bad_ref, r0 - 1 + _PAD, c0 - 1 + _PAD, r0 + w + 1 + _PAD,
                        c0 + w + 1 + _PAD)


@numba.njit(cache=True, inline="always")
def _support_ok(bad_sec, shape, y0, x0, w, ext_y, ext_x):
    """Whether a window sampled from (y0, x0) can be interpolated.

    Its sampled positions must lie in the image and their interpolation support (plus a
    guard band) must hold no bad pixel.
    """
    ylo = y0 - ext_y
    yhi = y0 + w - 1 + ext_y
    xlo = x0 - ext_x
    xhi = x0 + w - 1 + ext_x
    if ylo < 0 or xlo < 0 or yhi > shape[0] - 1 or xhi > shape[1] - 1:
        return False
    iy0 = int(np.floor(ylo)) - 2 - _GUARD + _PAD
    iy1 = int(np.floor(yhi)) + 4 + _GUARD + _PAD
    ix0 = int(np.floor(xlo)) - 2 - _GUARD + _PAD
    ix1 = int(np.floor(xhi)) + 4 + _GUARD + _PAD
    return not _any_bad(bad_sec, iy0, ix0, iy1, ix1)


@numba.njit(cache=True)
def _refine_affine(ref, grad_y, grad_x, coef, bad_ref, bad_sec, shape, r0, c0, w, py, px,
                   max_iter, tol, wt, fz, jac, g, wy, wx):
    """Inverse-compositional Gauss-Newton with an affine window; (ok, py, px, zncc, it)."""
    fail = (False, py, px, 0.0, 0)
    if not _ref_ok(bad_ref, shape, r0, c0, w):
        return fail
    npar = 6
    npx = w * w
    h = (w - 1) * 0.5
    sw, fss, _, _, _, _, _ = _window_stats(ref, grad_y, grad_x, r0 + _PAD, c0 + _PAD, w, wt,
                                              fz, jac[0], jac[1])
    if fss <= 0.0:
        return fail
    # jac[0], jac[1] and fz carry the weights. The affine terms are the gradients times
    # the centred coordinates, with their own weighted means removed, times the weights.
    y0 = r0 + _PAD
    x0 = c0 + _PAD
    for i in range(2, npar):
        m = 0.0
        for a in range(w):
            for b in range(w):
                if i < 4:
                    grad = grad_y[y0 + a, x0 + b]
                else:
                    grad = grad_x[y0 + a, x0 + b]
                v = grad * ((a - h) if (i % 2 == 0) else (b - h))
                jac[i, a * w + b] = v
                m += wt[a * w + b] * v
        m /= sw
        for k in range(npx):
            jac[i, k] = wt[k] * (jac[i, k] - m)
    hess = np.zeros((6, 6))
    rhs0 = np.zeros(6)
    for i in range(npar):
        for j in range(i + 1):
            s = 0.0
            for k in range(npx):
                if wt[k] > 0:
                    s += jac[i, k] * jac[j, k] / wt[k]
            hess[i, j] = s
            hess[j, i] = s
        s = 0.0
        for k in range(npx):
            if wt[k] > 0:
                s += jac[i, k] * fz[k] / wt[k]
        rhs0[i] = s
    fnorm = np.sqrt(fss)
    p = np.zeros(6)
    p[0] = py
    p[1] = px
    rhs = np.zeros(6)
    dp = np.zeros(6)
    zncc = 0.0
    for it in range(max_iter):
        ext_y = (abs(p[2]) + abs(p[3])) * h
        ext_x = (abs(p[4]) + abs(p[5])) * h
        if ext_y > 0.5 * h or ext_x > 0.5 * h:
            return fail
        if not _support_ok(bad_sec, shape, r0 + p[0], c0 + p[1], w, ext_y, ext_x):
            return fail
        _sample_affine(coef, r0 + _PAD, c0 + _PAD, w, p, wy, wx, g)
        s1 = 0.0
        s2 = 0.0
        sf = 0.0
        for i in range(npar):
            rhs[i] = 0.0
        for a in range(w):
            for b in range(w):
                k = a * w + b
                v = g[a, b]
                q = wt[k] * v
                s1 += q
                s2 += q * v
                sf += fz[k] * v
                for i in range(npar):
                    rhs[i] += jac[i, k] * v
        ok, zncc, ratio = _zncc_ratio(s1, s2, sf, sw, fss, fnorm)
        if not ok:
            return fail
        for i in range(npar):
            rhs[i] = rhs0[i] - ratio * rhs[i]
        if not _solve_sym(hess, rhs, npar, dp):
            return fail
        # The update dp is solved for the reference warp W(x; q) with q = -dp; the
        # secondary warp becomes W(x; p) o W(x; q)^-1. With W(x; q) = x + q_t + Q x
        # (x about the window centre): I + P' = (I + P)(I + Q)^-1 and
        # p'_t = p_t - (I + P') q_t. For a translation this is p + dp.
        a11 = 1.0 - dp[2]
        a12 = -dp[3]
        a21 = -dp[4]
        a22 = 1.0 - dp[5]
        det = a11 * a22 - a12 * a21
        if abs(det) < 1e-6:
            return fail
        i11 = a22 / det
        i12 = -a12 / det
        i21 = -a21 / det
        i22 = a11 / det
        b11 = 1.0 + p[2]
        b12 = p[3]
        b21 = p[4]
        b22 = 1.0 + p[5]
        m11 = b11 * i11 + b12 * i21
        m12 = b11 * i12 + b12 * i22
        m21 = b21 * i11 + b22 * i21
        m22 = b21 * i12 + b22 * i22
        p[0] = p[0] + (m11 * dp[0] + m12 * dp[1])
        p[1] = p[1] + (m21 * dp[0] + m22 * dp[1])
        p[2] = m11 - 1.0
        p[3] = m12
        p[4] = m21
        p[5] = m22 - 1.0
        if dp[0] * dp[0] + dp[1] * dp[1] < tol * tol:
            return (True, p[0], p[1], zncc, it + 1)
    return (False, p[0], p[1], zncc, max_iter)


@numba.njit(cache=True, inline="always")
def _border_shrink(start, w, init, margin, size):
    """Pixels to cut from each side of a window so that its samples stay in the image."""
    k = 0
    lo = -(start + init - margin)
    hi = start + w - 1 + init + margin - (size - 1)
    if lo > 0:
        k = int(np.ceil(lo))
    if hi > 0:
        k = max(k, int(np.ceil(hi)))
    return k


@numba.njit(cache=True, inline="always")
def _cut_window(row, col, w, init_r, init_c, margin, shape):
    """(r0, c0, k, ws): corner of the window of side w centred on (row, col), and its cut.

    Near the image border the window is cut symmetrically by k pixels a side (same
    centre, the central part of the same weights, side ws) so that its samples, from
    (init_r, init_c) moved by up to ``margin``, stay in the image.
    """
    r0 = row - w // 2
    c0 = col - w // 2
    k = max(_border_shrink(r0, w, init_r, margin, shape[0]),
            _border_shrink(c0, w, init_c, margin, shape[1]))
    return r0, c0, k, w - 2 * k


@numba.njit(cache=True)
def _mask_weights(bad_ref, bad_sec, shape, r0, c0, w, py, px, wk, out):
    """Copy of the weights wk with the no-data pixels set to 0; returns how many are left.

    A pixel is no-data when it (or a neighbour) is in the reference's no-data mask, when
    it is sampled outside the image, or when the interpolation support of its sample at
    the starting displacement, with a 1-px guard band, touches the secondary's no-data.
    """
    if r0 < 0 or c0 < 0 or r0 + w > shape[0] or c0 + w > shape[1]:
        return 0
    valid = 0
    for a in range(w):
        y = r0 + a + py
        for b in range(w):
            idx = a * w + b
            x = c0 + b + px
            good = 0.0 <= y <= shape[0] - 1 and 0.0 <= x <= shape[1] - 1
            if good:
                good = not _any_bad(bad_ref, r0 + a - 1 + _PAD, c0 + b - 1 + _PAD,
                                    r0 + a + 2 + _PAD, c0 + b + 2 + _PAD)
            if good:
                iy = int(np.floor(y))
                ix = int(np.floor(x))
                good = not _any_bad(bad_sec, iy - 2 - _MASK_GUARD + _PAD,
                                    ix - 2 - _MASK_GUARD + _PAD, iy + 4 + _MASK_GUARD + _PAD,
                                    ix + 4 + _MASK_GUARD + _PAD)
            if good:
                out[idx] = wk[idx]
                valid += 1
            else:
                out[idx] = 0.0
    return valid


@numba.njit(cache=True, parallel=True)
def _refine_loop(ref, grad_y, grad_x, coef, bad_ref, bad_sec, clean, shape, rows, cols,
                 init_r, init_c, todo, w, wt, affine, max_iter, tol, max_move, max_masked,
                 n_chunks, drow, dcol, zncc, iters, with_response, response):
    n = rows.shape[0]
    half = w // 2
    wt32 = wt.astype(np.float32)
    margin = 0.5 * max_move
    for ch in numba.prange(n_chunks):
        wkm = np.empty(w * w, np.float32)
        fz = np.empty(w * w)
        jac = np.empty((6, w * w))
        g = np.empty((w, w))
        fz32 = np.empty(w * w, np.float32)
        jy32 = np.empty(w * w, np.float32)
        jx32 = np.empty(w * w, np.float32)
        tmp = np.empty((w + _TAPS - 1, w), np.float32)
        wy = np.empty(_TAPS)
        wx = np.empty(_TAPS)
        for i in range(ch * n // n_chunks, (ch + 1) * n // n_chunks):
            if not todo[i]:
                continue
            r0, c0, k, ws = _cut_window(rows[i], cols[i], w, init_r[i], init_c[i], margin,
                                        shape)
            if 2 * ws < w:
                continue
            if k > 0:
                wk = np.ascontiguousarray(wt32.reshape(w, w)[k:w - k, k:w - k]).ravel()
            else:
                wk = wt32
            r0k = r0 + k
            c0k = c0 + k
            br = bad_ref
            bs = bad_sec
            if not (_ref_ok(bad_ref, shape, r0k, c0k, ws)
                    and _support_ok(bad_sec, shape, r0k + init_r[i], c0k + init_c[i], ws,
                                    0.0, 0.0)):
                # Some no-data in the window or in its interpolation support: those pixels
                # get no weight, if they are few enough.
                valid = _mask_weights(bad_ref, bad_sec, shape, r0k, c0k, ws, init_r[i],
                                      init_c[i], wk, wkm)
                if valid < (1.0 - max_masked) * ws * ws:
                    continue
                wk = wkm[:ws * ws]
                br = clean
                bs = clean
            if affine:
                ok, py, px, z, it = _refine_affine(
                    ref, grad_y, grad_x, coef, br, bs, shape, r0k, c0k, ws, init_r[i],
                    init_c[i], max_iter, tol, wk.astype(np.float64), fz, jac, g, wy, wx)
            else:
                ok, py, px, z, it = _refine_translation(
                    ref, grad_y, grad_x, coef, br, bs, shape, r0k, c0k, ws, init_r[i],
                    init_c[i], max_iter, tol, wk, fz32, jy32, jx32, tmp, wy, wx)
            iters[i] = it
            if ok and abs(py - init_r[i]) <= max_move and abs(px - init_c[i]) <= max_move:
                drow[i] = py
                dcol[i] = px
                zncc[i] = z
                if with_response and not affine:
                    _response_moments(jy32, jx32, wk, ws, k, half, response[i])


@numba.njit(cache=True, fastmath=True)
def _response_moments(jy, jx, wk, ws, k, half, out):
    """Deformation response of one window (see :func:`deformation_response`) into out.

    ``jy``, ``jx`` are the weighted, zero-weighted-mean gradients of the (possibly cut)
    window of side ``ws`` that starts ``k`` pixels inside the nominal one, ``wk`` its
    weights; coordinates are taken about the nominal centre (``half`` pixels in).
    """
    hyy = np.float64(0.0)
    hyx = np.float64(0.0)
    hxx = np.float64(0.0)
    # m[p, t] = sum w g_a g_c basis_t for the products p = (yy, yx, xx), with the basis
    # (y, x, y^2/2, y x, x^2/2): row sums of x^0, x^1, x^2 first, then the row coordinate.
    m00 = m01 = m02 = m03 = m04 = np.float64(0.0)
    m10 = m11 = m12 = m13 = m14 = np.float64(0.0)
    m20 = m21 = m22 = m23 = m24 = np.float64(0.0)
    xs = np.empty(ws, np.float32)
    x2 = np.empty(ws, np.float32)
    for b in range(ws):
        xs[b] = np.float32(k + b - half)
        x2[b] = xs[b] * xs[b]
    for a in range(ws):
        yy = float(k + a - half)
        base = a * ws
        r00 = r01 = r02 = r10 = r11 = r12 = r20 = r21 = r22 = np.float32(0.0)
        for b in range(ws):
            q = wk[base + b]
            iq = np.float32(1.0) / q if q > 0 else np.float32(0.0)
            gy = jy[base + b]
            gx = jx[base + b]
            pyy = gy * gy * iq
            pyx = gy * gx * iq
            pxx = gx * gx * iq
            r00 += pyy
            r01 += pyy * xs[b]
            r02 += pyy * x2[b]
            r10 += pyx
            r11 += pyx * xs[b]
            r12 += pyx * x2[b]
            r20 += pxx
            r21 += pxx * xs[b]
            r22 += pxx * x2[b]
        m00 += r00 * yy
        m01 += r01
        m02 += 0.5 * r00 * yy * yy
        m03 += r01 * yy
        m04 += 0.5 * r02
        m10 += r10 * yy
        m11 += r11
        m12 += 0.5 * r10 * yy * yy
        m13 += r11 * yy
        m14 += 0.5 * r12
        m20 += r20 * yy
        m21 += r21
        m22 += 0.5 * r20 * yy * yy
        m23 += r21 * yy
        m24 += 0.5 * r22
        hyy += r00
        hyx += r10
        hxx += r20
    m = ((m00, m01, m02, m03, m04), (m10, m11, m12, m13, m14), (m20, m21, m22, m23, m24))
    det = hyy * hxx - hyx * hyx
    if det <= 0.0:
        return False
    # [a, c]: (y, y) -> m[0], (y, x) and (x, y) -> m[1], (x, x) -> m[2]; out = H^-1 M.
    for t in range(5):
        myy = m[0][t]
        myx = m[1][t]
        mxx = m[2][t]
        out[0, 0, t] = (hxx * myy - hyx * myx) / det
        out[1, 0, t] = (hyy * myx - hyx * myy) / det
        out[0, 1, t] = (hxx * myx - hyx * mxx) / det
        out[1, 1, t] = (hyy * mxx - hyx * myx) / det
    return True


@numba.njit(cache=True, parallel=True)
def _response_loop(ref, grad_y, grad_x, bad_ref, shape, rows, cols, est_r, est_c, todo, w, wt,
                   max_move, n_chunks, out):
    n = rows.shape[0]
    half = w // 2
    margin = 0.5 * max_move
    wt2 = wt.reshape(w, w)
    for ch in numba.prange(n_chunks):
        fz = np.empty(w * w)
        jy = np.empty(w * w)
        jx = np.empty(w * w)
        wk = np.empty(w * w)
        for i in range(ch * n // n_chunks, (ch + 1) * n // n_chunks):
            if not todo[i]:
                continue
            r0, c0, k, ws = _cut_window(rows[i], cols[i], w, est_r[i], est_c[i], margin, shape)
            if 2 * ws < w or not _ref_ok(bad_ref, shape, r0 + k, c0 + k, ws):
                continue
            for a in range(ws):
                for b in range(ws):
                    wk[a * ws + b] = wt2[k + a, k + b]
            _, fss, _, _, _, _, _ = _window_stats(ref, grad_y, grad_x, r0 + k + _PAD,
                                                  c0 + k + _PAD, ws, wk, fz, jy, jx)
            if fss > 0.0:
                _response_moments(jy, jx, wk, ws, k, half, out[i])


def deformation_response(
    images: SplineImage,
    rows: np.ndarray,
    cols: np.ndarray,
    window: int,
    drow: np.ndarray,
    dcol: np.ndarray,
    *,
    taper: float = 0.0,
    max_move: float = 1.0,
) -> np.ndarray:
    """How a deformation of the field inside each window biases its translation estimate.

    To first order, the translation that the match finds is the gradient-weighted mean
    of the displacement over the window, ``p = H^-1 sum w J J^T u(x)`` (J the
    reference gradients, H their Gauss-Newton matrix). For a field that varies as
    ``u(x) = u(c) + D (y, x, y^2/2, y x, x^2/2)`` about the window's centre c, the
    estimate is ``u(c) + R D``; this returns R, so that ``u(c) = p - R D`` once the
    local derivatives D are known (see :func:`kernels.pyramid.local_warps`). It also
    accounts for the half pixel between the middle of an even window and its nominal
    centre ``(rows, cols)``.

    Parameters
    ----------
    images, rows, cols, window, taper, max_move
        As for :func:`refine` (the same windows, weights and border cuts).
    drow, dcol
        The windows' estimated displacements (NaN: skipped).

    Returns
    -------
    numpy.ndarray
        float64 (n, 2, 2, 5): ``[i, a, c, t]`` is the change of component ``a`` (row,
        column) of window i's estimate per unit of derivative ``t`` (d/dy, d/dx,
        d2/dy2, d2/dydx, d2/dx2) of displacement component ``c``; NaN where skipped.

    """
    rows_a = np.ascontiguousarray(rows, dtype=np.int64)
    cols_a = np.ascontiguousarray(cols, dtype=np.int64)
    n = rows_a.shape[0]
    er = np.ascontiguousarray(drow, dtype=np.float64)
    ec = np.ascontiguousarray(dcol, dtype=np.float64)
    if cols_a.shape != (n,) or er.shape != (n,) or ec.shape != (n,):
        raise ValueError("rows, cols, drow and dcol must be 1-D arrays of the same length")
    if not 3 <= window <= 512:
        raise ValueError(f"window must be within 3..512, got {window}")
    todo = np.isfinite(er) & np.isfinite(ec)
    out = np.full((n, 2, 2, 5), np.nan)
    if n:
        _response_loop(images.ref, images.grad_y, images.grad_x, images.bad_ref,
                       np.array(images.shape, np.int64), rows_a, cols_a,
                       np.where(todo, er, 0.0), np.where(todo, ec, 0.0), todo, int(window),
                       _tukey(window, taper).ravel(), float(max_move),
                       min(n, 8 * numba.get_num_threads()), out)
    return out


def _tukey(window: int, taper: float) -> np.ndarray:
    """Separable Tukey weights (window x window), float64, positive everywhere."""
    if not (np.isfinite(taper) and 0.0 <= taper <= 1.0):
        raise ValueError(f"taper must be in [0, 1], got {taper}")
    x = (np.arange(window) + 0.5) / window
    w1 = np.ones(window)
    if taper > 0:
        edge = taper / 2.0
        lo = x < edge
        hi = x > 1.0 - edge
        w1[lo] = 0.5 * (1 - np.cos(np.pi * x[lo] / edge))
        w1[hi] = 0.5 * (1 - np.cos(np.pi * (1.0 - x[hi]) / edge))
    return np.outer(w1, w1)


def refine(
    images: SplineImage,
    rows: np.ndarray,
    cols: np.ndarray,
    window: int,
    init_rows: np.ndarray,
    init_cols: np.ndarray,
    todo: np.ndarray | None = None,
    *,
    model: Model = "translation",
    taper: float = 0.0,
    max_iter: int = 20,
    tol: float = 1e-4,
    max_move: float = 1.0,
    max_masked: float = DEFAULT_MAX_MASKED,
    with_response: bool = False,
    preshift: bool = False,
) -> tuple[np.ndarray, ...]:
    """Refine window displacements by image-domain Gauss-Newton matching.

    Parameters
    ----------
    images
        From :func:`prepare`.
    rows, cols
        Integer window centres in ``ref`` (1-D, length n); window ``k`` covers rows
        ``rows[k] - window // 2`` to ``rows[k] - window // 2 + window - 1``.
    window
        Window side, pixels (3..512).
    init_rows, init_cols
        Starting displacements (pixels, within a few tenths of a pixel of the answer).
    todo
        Optional boolean mask of the windows to refine (default all).
    model
        ``"translation"`` (2 parameters, plus the implicit gain and offset) or
        ``"affine"`` (translation and the four displacement gradients).
    taper
        Weights of the window's pixels in the match: a separable Tukey window with this
        fraction in its cosine tapers (0: uniform weights, 1: Hann). The weights are
        attached to the reference window, so they do not pull the estimate.
    max_iter, tol
        Gauss-Newton stops when the update is below ``tol`` pixels, and fails after
        ``max_iter`` iterations.
    max_move
        A refined displacement further than this from the start is rejected (pixels).
    max_masked
        Largest fraction of a window's pixels that may be no-data (NaN in ``ref``, or
        whose interpolation support touches NaN in ``sec``): they get no weight in the
        match; beyond it the window fails.
    with_response
        Also return each window's deformation response (as
        :func:`deformation_response`, from the same window statistics; translation
        model only).
    preshift
        First measure the pair's common displacement on a sample of the windows and,
        when its fractional part exceeds ``PRESHIFT_MIN``, resample the secondary by it
        with a windowed sinc (:func:`shift_kernel`), so that the spline, whose phase
        error grows with the fractional part of the shift, interpolates only the
        departures from it.

    Returns
    -------
    drow, dcol, zncc[, response]
        float64 arrays (n): refined displacement of the window centre, NaN where the
        window failed (its interpolation support touches no-data, a flat window, no
        convergence, or a move beyond ``max_move``), and the ZNCC at the solution (0
        where failed). A window whose samples would leave the image (at the start,
        allowing half of ``max_move``) is cut symmetrically about its centre, keeping
        the central part of its weights, down to half its size; smaller, it fails.

    """
    rows_a = np.ascontiguousarray(rows, dtype=np.int64)
    cols_a = np.ascontiguousarray(cols, dtype=np.int64)
    n = rows_a.shape[0]
    if rows_a.ndim != 1 or cols_a.shape != (n,):
        raise ValueError("rows and cols must be 1-D arrays of the same length")
    ir = np.ascontiguousarray(init_rows, dtype=np.float64)
    ic = np.ascontiguousarray(init_cols, dtype=np.float64)
    if ir.shape != (n,) or ic.shape != (n,):
        raise ValueError("init_rows and init_cols must have the length of rows")
    if not 3 <= window <= 512:
        raise ValueError(f"window must be within 3..512, got {window}")
    if model not in ("translation", "affine"):
        raise ValueError(f"model must be 'translation' or 'affine', got {model!r}")
    if max_iter < 1 or not tol > 0 or not max_move > 0:
        raise ValueError("max_iter must be >= 1, tol and max_move > 0")
    if not 0.0 <= max_masked < 1.0:
        raise ValueError(f"max_masked must be in [0, 1), got {max_masked}")
    mask = np.isfinite(ir) & np.isfinite(ic)
    if todo is not None:
        t = np.asarray(todo, dtype=bool)
        if t.shape != (n,):
            raise ValueError("todo must have the length of rows")
        mask &= t
    drow = np.full(n, np.nan)
    dcol = np.full(n, np.nan)
    zncc = np.zeros(n)
    iters = np.zeros(n, np.int64)
    response = np.full((n if with_response else 1, 2, 2, 5), np.nan)
    wt = _tukey(window, taper).ravel()
    clean = np.zeros_like(images.bad_ref)
    shape = np.array(images.shape, np.int64)

    def run(coef: np.ndarray, bad_sec: np.ndarray, sel: np.ndarray, sr: float, sc: float,
            resp: bool) -> None:
        _refine_loop(images.ref, images.grad_y, images.grad_x, coef, images.bad_ref,
                     bad_sec, clean, shape, rows_a, cols_a,
                     np.where(sel, ir - sr, 0.0), np.where(sel, ic - sc, 0.0), sel,
                     int(window), wt, model == "affine", int(max_iter), float(tol),
                     float(max_move), float(max_masked),
                     min(n, 8 * numba.get_num_threads()), drow, dcol, zncc, iters,
                     bool(resp), response)

    shift = (0.0, 0.0)
    if n and preshift and images.sec is not None and mask.any():
        # The spline's phase error grows with the fractional part of the displacement
        # (none at 0, up to 0.035 px at 0.4 cycles/pixel for a quarter pixel): a sample
        # of windows gives the pair's common displacement, whose fractional part is
        # resampled away first by a windowed sinc, so that the spline interpolates only
        # the departures from it.
        sample = np.flatnonzero(mask)
        sample = sample[::max(1, sample.size // _PRESHIFT_SAMPLE)]
        sel = np.zeros(n, bool)
        sel[sample] = True
        run(images.coef, images.bad_sec, sel, 0.0, 0.0, False)
        if np.isfinite(drow[sample]).sum() >= 3:
            mr = float(np.nanmedian(drow[sample]))
            mc = float(np.nanmedian(dcol[sample]))
            shift = (mr - round(mr), mc - round(mc))
        drow[:] = np.nan
        dcol[:] = np.nan
        zncc[:] = 0.0
    if n and max(abs(shift[0]), abs(shift[1])) >= PRESHIFT_MIN:
        coef, bad_sec = _shifted_spline(images, *shift)
        run(coef, bad_sec, mask, shift[0], shift[1], with_response)
        drow += shift[0]
        dcol += shift[1]
        # Windows whose support meets no-data that the resampling spread: from the
        # unshifted spline.
        again = mask & ~np.isfinite(drow)
        if again.any():
            run(images.coef, images.bad_sec, again, 0.0, 0.0, with_response)
    elif n:
        run(images.coef, images.bad_sec, mask, 0.0, 0.0, with_response)
    if with_response:
        return drow, dcol, zncc, response
    return drow, dcol, zncc
