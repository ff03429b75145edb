"""Frequency-domain sub-pixel correlation of image windows.

For each window centre the reference and secondary windows are apodized, transformed
with batched real FFTs (pyFFTW plans reused across chunks of windows), multiplied into a
normalized cross-power spectrum, and transformed back to a correlation surface whose
integer peak is searched within ``±search`` pixels of the prior. The sub-pixel peak is
then found on the *continuous* correlation surface, i.e. the trigonometric interpolant
defined by the cross-power spectrum itself: a few Newton steps with the analytic
gradient and Hessian of

    c(y, x) = Re sum_k Q(k) exp(2 i pi (k_y y + k_x x) / w),

which is what an upsampled DFT converges to as its upsampling factor grows, at the
cost of a handful of length-``w`` sums instead of a large matrix product.

Sign convention: the feature at ``(r, c)`` of ``ref`` is at ``(r + drow, c + dcol)`` of
``sec``. Windows are square, ``window`` pixels, centred on ``(r, c)`` with the centre at
index ``window // 2``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numba
import numpy as np
import pyfftw

from kernels.types import Correlation

__all__ = ["freq_correlate", "apodization", "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 2048
"""Number of windows transformed together (bounds memory to a few tens of MB)."""

_PLAN_LOCK = threading.Lock()
_PLANS: dict[tuple[int, int, int], tuple] = {}


def apodization(window: int, taper: float) -> np.ndarray:
    """Separable Tukey (tapered cosine) window of size ``window`` x ``window``.

    Parameters
    ----------
    window
        Side of the square window in pixels.
    taper
        Fraction of the window inside the cosine tapers, 0 (box) to 1 (Hann).

    Returns
    -------
    numpy.ndarray
        float32 (window, window) weights in [0, 1].

    """
    if not 0.0 <= taper <= 1.0:
        raise ValueError(f"taper must be in [0, 1], got {taper}")
    n = np.arange(window, dtype=np.float64) + 0.5
    x = n / window
    w = np.ones(window)
    if taper > 0:
        edge = taper / 2.0
        lo = x < edge
        hi = x > 1.0 - edge
        w[lo] = 0.5 * (1 - np.cos(np.pi * x[lo] / edge))
        w[hi] = 0.5 * (1 - np.cos(np.pi * (1.0 - x[hi]) / edge))
    return np.outer(w, w).astype(np.float32)


def _plans(batch: int, window: int, threads: int) -> tuple:
    """Cached pyFFTW plans and aligned buffers for ``batch`` window pairs.

    ``real_in`` holds the reference windows in ``[:batch]`` and the secondary windows in
    ``[batch:]``; ``fwd`` transforms both, ``fwd_sec`` only the secondary half, ``inv``
    turns ``cross`` into correlation surfaces ``surf``.
    """
    key = (batch, window, threads)
    with _PLAN_LOCK:
        plan = _PLANS.get(key)
        if plan is None:
            half = window // 2 + 1
            real_in = pyfftw.empty_aligned((2 * batch, window, window), dtype="float32")
            spec = pyfftw.empty_aligned((2 * batch, window, half), dtype="complex64")
            cross = pyfftw.empty_aligned((batch, window, half), dtype="complex64")
            surf = pyfftw.empty_aligned((batch, window, window), dtype="float32")
            flags = ("FFTW_MEASURE", "FFTW_DESTROY_INPUT")
            fwd = pyfftw.FFTW(real_in, spec, axes=(1, 2), threads=threads, flags=flags)
            fwd_sec = pyfftw.FFTW(
                real_in[batch:], spec[batch:], axes=(1, 2), threads=threads, flags=flags
            )
            inv = pyfftw.FFTW(
                cross, surf, axes=(1, 2), direction="FFTW_BACKWARD", threads=threads, flags=flags
            )
            plan = (fwd, fwd_sec, inv, real_in, spec, cross, surf)
            _PLANS[key] = plan
    return plan


def _subset_plan(size: int, window: int, threads: int) -> tuple:
    """Cached forward plan for ``size`` secondary windows (re-centring pass)."""
    key = (-size, window, threads)
    with _PLAN_LOCK:
        plan = _PLANS.get(key)
        if plan is None:
            real_in = pyfftw.empty_aligned((size, window, window), dtype="float32")
            spec = pyfftw.empty_aligned((size, window, window // 2 + 1), dtype="complex64")
            fwd = pyfftw.FFTW(real_in, spec, axes=(1, 2), threads=threads,
                              flags=("FFTW_MEASURE", "FFTW_DESTROY_INPUT"))
            plan = (fwd, real_in, spec)
            _PLANS[key] = plan
    return plan


@numba.njit(cache=True)
def _copy_window(img, r0, c0, window, apod, out, j):
    """Apodized, mean-removed copy of img[r0:r0+w, c0:c0+w] into out[j]; False if unusable."""
    h, w = img.shape
    if r0 < 0 or c0 < 0 or r0 + window > h or c0 + window > w:
        return False
    m = 0.0
    for a in range(window):
        for b in range(window):
            m += img[r0 + a, c0 + b]
    if np.isnan(m):
        return False
    m /= window * window
    for a in range(window):
        for b in range(window):
            out[j, a, b] = (img[r0 + a, c0 + b] - m) * apod[a, b]
    return True


@numba.njit(cache=True, parallel=True)
def _extract(img, rows, cols, prow, pcol, start, count, window, apod, out, ok, combine):
    """Fill out[:count] with windows of img centred at (rows + prow, cols + pcol).

    ``ok[j]`` becomes ``ok[j] and usable`` when ``combine`` else ``usable``. Unusable
    windows are zero-filled so the FFT stays finite.
    """
    off = window // 2
    for j in numba.prange(count):
        i = start + j
        good = _copy_window(img, rows[i] - off + prow[i], cols[i] - off + pcol[i], window, apod,
                            out, j)
        if not good:
            for a in range(window):
                for b in range(window):
                    out[j, a, b] = 0.0
        ok[j] = (ok[j] and good) if combine else good


@numba.njit(cache=True)
def _cross_one(ref_j, sec_k, power, weight, out1, out2):
    """Q = W * S2 conj(S1) / |S2 conj(S1)|^power for one window; returns sum of |Q|.

    The spectrum is written to ``out1`` and ``out2`` (the inverse FFT destroys its
    input, so pass 1 keeps a second copy for the sub-pixel refinement). The sum counts
    the interior columns of the Hermitian half spectrum twice: it is the largest value
    the correlation surface can reach.
    """
    ny, nx = weight.shape
    half_power = 0.5 * power
    total = 0.0
    for a in range(ny):
        for b in range(nx):
            wgt = weight[a, b]
            if wgt == 0.0:
                out1[a, b] = 0.0
                out2[a, b] = 0.0
                continue
            u = sec_k[a, b]
            v = ref_j[a, b]
            re = u.real * v.real + u.imag * v.imag
            im = u.imag * v.real - u.real * v.imag
            m2 = re * re + im * im
            if m2 > 0.0:
                if power == 0.5:
                    scale = np.sqrt(np.sqrt(m2))
                elif power == 1.0:
                    scale = np.sqrt(m2)
                elif power == 0.0:
                    scale = 1.0
                else:
                    scale = m2**half_power
                f = wgt / scale
                q = complex(re * f, im * f)
                m = np.sqrt(m2) * f
            else:
                q = 0j
                m = 0.0
            out1[a, b] = q
            out2[a, b] = q
            total += m if (b == 0 or b == nx - 1) else 2.0 * m
    return total


@numba.njit(cache=True, parallel=True)
def _cross_power(spec_ref, spec_sec, count, power, weight, cross, keep, wsum):
    """Cross-power spectra of windows 0..count-1 into ``cross`` and ``keep``."""
    for j in numba.prange(count):
        wsum[j] = _cross_one(spec_ref[j], spec_sec[j], power, weight, cross[j], keep[j])


@numba.njit(cache=True, parallel=True)
def _cross_power_subset(spec_ref, spec_sub, local, power, weight, keep, wsum):
    """Cross-power of re-centred windows: ``spec_sub[k]`` pairs with ``spec_ref[local[k]]``."""
    for k in numba.prange(local.shape[0]):
        j = local[k]
        wsum[j] = _cross_one(spec_ref[j], spec_sub[k], power, weight, keep[j], keep[j])


@numba.njit(cache=True, parallel=True)
def _extract_subset(img, rows, cols, prow, pcol, idx, window, apod, out, good):
    """Windows of img centred at (rows + prow, cols + pcol)[idx[k]] into out[k]."""
    off = window // 2
    for k in numba.prange(idx.shape[0]):
        i = idx[k]
        g = _copy_window(img, rows[i] - off + prow[i], cols[i] - off + pcol[i], window, apod,
                         out, k)
        if not g:
            for a in range(window):
                for b in range(window):
                    out[k, a, b] = 0.0
        good[k] = g


@numba.njit(cache=True)
def _surface_derivatives(q, y, x, window, ey, ex):
    """Value, gradient and Hessian of the continuous correlation surface at (y, x).

    ``q`` is the half spectrum (window, window // 2 + 1) whose Nyquist row and column
    are zero; ``ey`` and ``ex`` are scratch phasor buffers.
    """
    ny, nx = q.shape
    two_pi = 2.0 * np.pi / window
    for b in range(nx - 1):
        ex[b] = (1.0 if b == 0 else 2.0) * np.exp(1j * (two_pi * b) * x)
    for a in range(ny):
        ky = a if a < window // 2 else a - window
        ey[a] = np.exp(1j * (two_pi * ky) * y)
    s0 = 0j
    sx = 0j
    sy = 0j
    sxx = 0j
    syy = 0j
    sxy = 0j
    for a in range(ny):
        if a == window // 2:
            continue
        fy = two_pi * (a if a < window // 2 else a - window)
        r0 = 0j
        r1 = 0j
        r2 = 0j
        for b in range(1, nx - 1):
            fx = two_pi * b
            t = q[a, b] * ex[b]
            r0 += t
            r1 += t * fx
            r2 += t * (fx * fx)
        r0 += q[a, 0] * ex[0]
        # r1 and r2 carry the factors i and i^2 = -1 applied below.
        t0 = ey[a] * r0
        s0 += t0
        sx += ey[a] * r1 * 1j
        sxx -= ey[a] * r2
        sy += t0 * (1j * fy)
        syy -= t0 * (fy * fy)
        sxy -= ey[a] * r1 * fy
    return s0.real, sx.real, sy.real, sxx.real, syy.real, sxy.real


@numba.njit(cache=True, parallel=True)
def _integer_peaks(surf, ok, count, search, window, peak_r, peak_c, frac_r, frac_c, ratio):
    """Integer peak inside the search box, a parabolic sub-pixel guess, and peak/mean."""
    n_cells = window * window
    for j in numba.prange(count):
        if not ok[j]:
            continue
        best = -np.inf
        br = 0
        bc = 0
        for dr in range(-search, search + 1):
            a = dr % window
            for dc in range(-search, search + 1):
                v = surf[j, a, dc % window]
                if v > best:
                    best = v
                    br = dr
                    bc = dc
        if abs(br) == search or abs(bc) == search or best <= 0:
            ok[j] = False  # the peak sits on the search border: not trusted
            continue
        mean_abs = 0.0
        for a in range(window):
            for b in range(window):
                mean_abs += abs(surf[j, a, b])
        ratio[j] = best * n_cells / mean_abs if mean_abs > 0 else np.nan
        up = surf[j, (br - 1) % window, bc % window]
        down = surf[j, (br + 1) % window, bc % window]
        left = surf[j, br % window, (bc - 1) % window]
        right = surf[j, br % window, (bc + 1) % window]
        den_r = up - 2 * best + down
        den_c = left - 2 * best + right
        fr = 0.5 * (up - down) / den_r if den_r < 0 else 0.0
        fc = 0.5 * (left - right) / den_c if den_c < 0 else 0.0
        peak_r[j] = br
        peak_c[j] = bc
        frac_r[j] = min(max(fr, -0.5), 0.5)
        frac_c[j] = min(max(fc, -0.5), 0.5)


@numba.njit(cache=True, parallel=True)
def _refine(keep, wsum, ok, count, window, start, y0, x0, base_r, base_c, drow, dcol, score):
    """Newton ascent of the continuous surface from (y0, x0); writes total displacements."""
    nx = keep.shape[2]
    for j in numba.prange(count):
        i = start + j
        if not ok[j] or wsum[j] <= 0.0:
            continue
        ey = np.empty(window, dtype=np.complex128)
        ex = np.empty(nx, dtype=np.complex128)
        y = y0[j]
        x = x0[j]
        value = 0.0
        converged = False
        for _ in range(10):
            v, gx, gy, hxx, hyy, hxy = _surface_derivatives(keep[j], y, x, window, ey, ex)
            value = v
            det = hxx * hyy - hxy * hxy
            if hxx < 0 and det > 0:
                step_x = -(hyy * gx - hxy * gy) / det
                step_y = -(hxx * gy - hxy * gx) / det
            else:
                norm = np.sqrt(gx * gx + gy * gy) + 1e-30
                step_x = 0.1 * gx / norm
                step_y = 0.1 * gy / norm
            length = np.sqrt(step_x * step_x + step_y * step_y)
            if length > 0.5:
                step_x *= 0.5 / length
                step_y *= 0.5 / length
            x += step_x
            y += step_y
            if length < 1e-4:
                converged = True
                break
        if not converged or abs(y - y0[j]) > 1.0 or abs(x - x0[j]) > 1.0:
            continue
        drow[i] = y + base_r[j]
        dcol[i] = x + base_c[j]
        score[i] = min(max(value / wsum[j], 0.0), 1.0)


def _frequency_weight(window: int, lowpass: float | None) -> np.ndarray:
    """Gaussian low-pass weight over the half spectrum (1 at DC), Nyquist row/col zeroed."""
    fy = np.fft.fftfreq(window)[:, None]
    fx = np.fft.rfftfreq(window)[None, :]
    weight = np.ones((window, window // 2 + 1), dtype=np.float64)
    if lowpass is not None:
        f2 = (fy**2 + fx**2) / 0.25  # squared frequency relative to Nyquist
        weight = np.exp(-f2 / (lowpass**2))
    weight[window // 2, :] = 0.0
    weight[:, -1] = 0.0
    weight[0, 0] = 0.0  # the means were removed; DC carries nothing
    return weight.astype(np.float32)


def _as_index(values: np.ndarray | Sequence[int] | None, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=np.int64)
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def freq_correlate(
    ref: np.ndarray,
    sec: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    window: int,
    search: int,
    prior_rows: np.ndarray | None = None,
    prior_cols: np.ndarray | None = None,
    *,
    taper: float = 0.5,
    power: float = 0.5,
    lowpass: float | None = None,
    threads: int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> Correlation:
    """Sub-pixel displacement of windows by frequency-domain correlation.

    Parameters
    ----------
    ref, sec
        2-D float32 images on the same grid (NaN = no data).
    rows, cols
        Integer window centres in ``ref`` (1-D, same length n).
    window
        Window side in pixels (even, 8..512).
    search
        Largest residual displacement searched around the prior, pixels
        (1 <= search < window // 2). A peak on the border of the search box is rejected.
    prior_rows, prior_cols
        Optional integer prior displacements; the secondary window is centred at
        ``(r + prior_row, c + prior_col)`` and the returned displacement includes it.
    taper
        Tukey apodization fraction (0 box .. 1 Hann).
    power
        Normalization of the cross-power spectrum, ``Q = X / |X|**power``: 1 is pure
        phase correlation (robust to radiometric change), 0 plain cross-correlation
        (best in white noise); the default 0.5 sits between them.
    lowpass
        Optional Gaussian frequency weighting, 1/e width relative to Nyquist; ``None``
        keeps every frequency.
    threads
        FFT threads (default: Numba's thread count).
    chunk
        Windows transformed per batch.

    Returns
    -------
    Correlation
        drow, dcol (pixels), score in [0, 1] (height of the correlation peak relative to
        a perfect match), snr (peak over mean absolute surface).

    """
    ref = _check_image(ref, "ref")
    sec = _check_image(sec, "sec")
    if ref.shape != sec.shape:
        raise ValueError(f"ref and sec differ in shape: {ref.shape} vs {sec.shape}")
    if window % 2 or not 8 <= window <= 512:
        raise ValueError(f"window must be even and within 8..512, got {window}")
    if not 1 <= search < window // 2:
        raise ValueError(f"search must be within 1..{window // 2 - 1}, got {search}")
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"power must be in [0, 1], got {power}")
    rows_a = np.asarray(rows)
    n = rows_a.shape[0] if rows_a.ndim == 1 else -1
    if n < 0:
        raise ValueError("rows must be 1-D")
    rows_i = _as_index(rows, n, "rows")
    cols_i = _as_index(cols, n, "cols")
    prow = _as_index(prior_rows, n, "prior_rows")
    pcol = _as_index(prior_cols, n, "prior_cols")
    threads = threads or numba.get_num_threads()
    zero = np.zeros(n, dtype=np.int64)

    drow = np.full(n, np.nan, dtype=np.float32)
    dcol = np.full(n, np.nan, dtype=np.float32)
    score = np.zeros(n, dtype=np.float32)
    snr = np.full(n, np.nan, dtype=np.float32)
    if n == 0:
        return Correlation(drow, dcol, score, snr)

    apod = apodization(window, taper)
    weight = _frequency_weight(window, lowpass)
    batch = min(chunk, max(n, 1))
    fwd, fwd_sec, inv, real_in, spec, cross, surf = _plans(batch, window, threads)
    spec_ref = spec[:batch]
    spec_sec = spec[batch:]
    half = window // 2 + 1
    keep = np.empty((batch, window, half), dtype=np.complex64)
    wsum = np.zeros(batch, dtype=np.float64)
    ok = np.zeros(batch, dtype=np.bool_)
    pr = np.zeros(batch, dtype=np.int64)
    pc = np.zeros(batch, dtype=np.int64)
    fr = np.zeros(batch, dtype=np.float64)
    fc = np.zeros(batch, dtype=np.float64)
    ratio = np.full(batch, np.nan, dtype=np.float64)
    for start in range(0, n, batch):
        count = min(batch, n - start)
        sl = slice(start, start + count)
        # Pass 1: integer peak around the prior, parabolic guess.
        _extract(ref, rows_i, cols_i, zero, zero, start, count, window, apod, real_in[:batch],
                 ok, False)
        _extract(sec, rows_i, cols_i, prow, pcol, start, count, window, apod, real_in[batch:],
                 ok, True)
        fwd()
        _cross_power(spec_ref, spec_sec, count, float(power), weight, cross, keep, wsum)
        inv(normalise_idft=False)
        ratio[:] = np.nan
        _integer_peaks(surf, ok, count, search, window, pr, pc, fr, fc, ratio)
        # Pass 2: re-centre the secondary window on the rounded estimate (the residual is
        # then below half a pixel, which removes most of the apodization bias), and refine
        # on the continuous surface of the new cross-power spectrum.
        est_r = pr[:count] + fr[:count]
        est_c = pc[:count] + fc[:count]
        shift_r = np.rint(est_r).astype(np.int64)
        shift_c = np.rint(est_c).astype(np.int64)
        moved = np.flatnonzero(ok[:count] & ((shift_r != 0) | (shift_c != 0)))
        base_r = prow[sl] + np.where(ok[:count], shift_r, 0)
        base_c = pcol[sl] + np.where(ok[:count], shift_c, 0)
        y0 = est_r - (base_r - prow[sl])
        x0 = est_c - (base_c - pcol[sl])
        if moved.size:
            size = 64
            while size < moved.size:
                size *= 2
            fwd_sub, real_sub, spec_sub = _subset_plan(min(size, batch), window, threads)
            for k0 in range(0, moved.size, real_sub.shape[0]):
                local = moved[k0:k0 + real_sub.shape[0]]
                new_r = np.zeros(n, dtype=np.int64)
                new_c = np.zeros(n, dtype=np.int64)
                new_r[sl] = base_r
                new_c[sl] = base_c
                good = np.zeros(local.size, dtype=np.bool_)
                _extract_subset(sec, rows_i, cols_i, new_r, new_c, local + start, window, apod,
                                real_sub, good)
                ok[local[~good]] = False
                fwd_sub()
                _cross_power_subset(spec_ref, spec_sub, local, float(power), weight, keep, wsum)
        _refine(keep, wsum, ok, count, window, start, y0.astype(np.float64),
                x0.astype(np.float64), base_r, base_c, drow, dcol, score)
        snr[sl] = np.where(np.isfinite(drow[sl]), ratio[:count], np.nan)
    return Correlation(drow, dcol, score, snr)


def _check_image(img: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D image, got {arr.ndim} dimensions")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)
