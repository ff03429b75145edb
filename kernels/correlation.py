"""Frequency-domain correlation of image windows, refined in the image domain.

For each window centre the reference and secondary windows are apodized, transformed
with batched real FFTs (pyFFTW plans reused across chunks of windows), multiplied into a
normalized cross-power spectrum, and transformed back to a correlation surface whose
integer peak is searched within ``±search`` pixels of the prior; a parabola through the
peak gives a first sub-pixel estimate (to about 0.1 px).

The sub-pixel stage (``refine``):

- ``"image"`` (default): image-domain Gauss-Newton matching with quintic-spline
  interpolation of the secondary image and a gain and offset
  (:mod:`kernels.subpixel`), free of pixel locking;
- ``"spectrum"``: the previous estimator, kept for comparison: the secondary window is
  re-centred on the rounded estimate and the peak is refined by Newton steps on the
  continuous correlation surface defined by the cross-power spectrum,

      c(y, x) = Re sum_k Q(k) exp(2 i pi (k_y y + k_x x) / w),

  (the limit of an upsampled DFT). It is faster but locks towards whole pixels by a few
  hundredths of a pixel on aliased texture: both windows are cut (and apodized) on
  the pixel grid, so the overlap of their content is largest at whole-pixel offsets;
- ``"none"``: the parabolic estimate (coarse pyramid levels).

Sign convention: the feature at ``(r, c)`` of ``ref`` is at ``(r + drow, c + dcol)`` of
``sec``. Windows are square, ``window`` pixels, centred on ``(r, c)`` with the centre at
index ``window // 2``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numba
import numpy as np
import pyfftw

from kernels import subpixel
from kernels.types import Correlation

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["freq_correlate", "apodization", "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 512
"""Number of windows transformed together (their buffers stay in the L2 cache)."""

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


def _plans(batch: int, window: int, slot: int) -> tuple:
    """Cached single-threaded pyFFTW plans and aligned buffers for ``batch`` window pairs.

    ``real_in`` holds the reference windows in ``[:batch]`` and the secondary windows in
    ``[batch:]``; ``fwd`` transforms both, ``fwd_sec`` only the secondary half, ``inv``
    turns ``cross`` into correlation surfaces ``surf``. Each worker thread (``slot``)
    has its own.
    """
    threads = 1
    key = (batch, window, slot)
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


def _subset_plan(size: int, window: int, slot: int) -> tuple:
    """Cached forward plan for ``size`` secondary windows (re-centring pass)."""
    threads = 1
    key = (-size, window, slot)
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


@numba.njit(cache=True, nogil=True)
def _copy_window(img, r0, c0, window, apod, out, j, max_bad):
    """Apodized, mean-removed copy of img[r0:r0+w, c0:c0+w] into out[j]; False if unusable.

    Up to ``max_bad`` no-data (non-finite) pixels are tolerated: they get the mean of the
    others, i.e. 0 after the mean is removed.
    """
    h, w = img.shape
    if r0 < 0 or c0 < 0 or r0 + window > h or c0 + window > w:
        return False
    m = 0.0
    bad = 0
    for a in range(window):
        for b in range(window):
            v = img[r0 + a, c0 + b]
            if np.isfinite(v):
                m += v
            else:
                bad += 1
    if bad > max_bad:
        return False
    m /= window * window - bad
    for a in range(window):
        for b in range(window):
            v = img[r0 + a, c0 + b]
            out[j, a, b] = (v - m) * apod[a, b] if np.isfinite(v) else 0.0
    return True


@numba.njit(cache=True, nogil=True)
def _extract(img, rows, cols, prow, pcol, start, count, window, apod, out, ok, combine,
             max_bad):
    """Fill out[:count] with windows of img centred at (rows + prow, cols + pcol).

    ``ok[j]`` becomes ``ok[j] and usable`` when ``combine`` else ``usable``. Unusable
    windows are zero-filled so the FFT stays finite.
    """
    off = window // 2
    for j in range(count):
        i = start + j
        good = _copy_window(img, rows[i] - off + prow[i], cols[i] - off + pcol[i], window, apod,
                            out, j, max_bad)
        if not good:
            for a in range(window):
                for b in range(window):
                    out[j, a, b] = 0.0
        ok[j] = (ok[j] and good) if combine else good


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True, fastmath=True)
def _cross_one_f32(r, s, weight, power, out):
    """Like :func:`_cross_one` (one output), on float32 views of the complex spectra.

    ``r``, ``s`` and ``out`` are (window, 2 * (window // 2 + 1)) float32 arrays holding
    interleaved real and imaginary parts. Runs in float32, which vectorizes.
    """
    ny, nx = weight.shape
    total = np.float64(0.0)
    one = np.float32(1.0)
    tiny = np.float32(1e-30)
    p = np.float32(-0.5 * power)
    for a in range(ny):
        rr = r[a]
        ss = s[a]
        o = out[a]
        wr = weight[a]
        row_total = np.float32(0.0)
        for b in range(nx):
            ur = ss[2 * b]
            ui = ss[2 * b + 1]
            vr = rr[2 * b]
            vi = rr[2 * b + 1]
            re = ur * vr + ui * vi
            im = ui * vr - ur * vi
            m2 = re * re + im * im + tiny
            if power == 0.5:
                inv = one / np.sqrt(np.sqrt(m2))
            elif power == 1.0:
                inv = one / np.sqrt(m2)
            elif power == 0.0:
                inv = one
            else:
                inv = m2**p
            f = wr[b] * inv
            o[2 * b] = re * f
            o[2 * b + 1] = im * f
            m = np.sqrt(m2) * f
            row_total += m if (b == 0 or b == nx - 1) else np.float32(2.0) * m
        total += row_total
    return total


@numba.njit(cache=True, nogil=True)
def _cross_power_f32(spec_ref, spec_sec, count, power, weight, cross, wsum):
    """Cross-power spectra of windows 0..count-1 into ``cross`` (float32 views)."""
    for j in range(count):
        wsum[j] = _cross_one_f32(spec_ref[j], spec_sec[j], weight, power, cross[j])


@numba.njit(cache=True, nogil=True)
def _cross_power(spec_ref, spec_sec, count, power, weight, cross, keep, wsum):
    """Cross-power spectra of windows 0..count-1 into ``cross`` and ``keep``."""
    for j in range(count):
        wsum[j] = _cross_one(spec_ref[j], spec_sec[j], power, weight, cross[j], keep[j])


@numba.njit(cache=True, nogil=True)
def _cross_power_subset(spec_ref, spec_sub, local, power, weight, keep, wsum):
    """Cross-power of re-centred windows: ``spec_sub[k]`` pairs with ``spec_ref[local[k]]``."""
    for k in range(local.shape[0]):
        j = local[k]
        wsum[j] = _cross_one(spec_ref[j], spec_sub[k], power, weight, keep[j], keep[j])


@numba.njit(cache=True, nogil=True)
def _extract_subset(img, rows, cols, prow, pcol, idx, window, apod, out, good, max_bad):
    """Windows of img centred at (rows + prow, cols + pcol)[idx[k]] into out[k]."""
    off = window // 2
    for k in range(idx.shape[0]):
        i = idx[k]
        g = _copy_window(img, rows[i] - off + prow[i], cols[i] - off + pcol[i], window, apod,
                         out, k, max_bad)
        if not g:
            for a in range(window):
                for b in range(window):
                    out[k, a, b] = 0.0
        good[k] = g


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _integer_peaks(surf, ok, count, search, window, peak_r, peak_c, frac_r, frac_c, ratio,
                   peak_v):
    """Integer peak inside the search box, a parabolic sub-pixel guess, and peak/mean."""
    n_cells = window * window
    for j in range(count):
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
        peak_v[j] = best
        frac_r[j] = min(max(fr, -0.5), 0.5)
        frac_c[j] = min(max(fc, -0.5), 0.5)


@numba.njit(cache=True, nogil=True)
def _refine(keep, wsum, ok, count, window, start, y0, x0, base_r, base_c, drow, dcol, score):
    """Newton ascent of the continuous surface from (y0, x0); writes total displacements."""
    nx = keep.shape[2]
    for j in range(count):
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


_POOL_LOCK = threading.Lock()
_POOL: dict[int, ThreadPoolExecutor] = {}


def _pool(size: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``size`` worker threads."""
    from concurrent.futures import ThreadPoolExecutor

    with _POOL_LOCK:
        pool = _POOL.get(size)
        if pool is None:
            pool = _POOL[size] = ThreadPoolExecutor(max_workers=size,
                                                    thread_name_prefix="freq-correlate")
        return pool


@dataclass
class _Job:
    """Inputs and outputs of one :func:`freq_correlate` call, shared by its workers."""

    ref: np.ndarray
    sec: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    prow: np.ndarray
    pcol: np.ndarray
    window: int
    search: int
    power: float
    apod: np.ndarray
    weight: np.ndarray
    refine: str
    max_bad: int
    drow: np.ndarray
    dcol: np.ndarray
    score: np.ndarray
    snr: np.ndarray


def _run_windows(job: _Job, lo: int, hi: int, chunk: int, slot: int) -> None:
    """Pass 1 (and pass 2 of ``refine="spectrum"``) for windows lo..hi-1, in chunks."""
    n = job.rows.shape[0]
    window = job.window
    batch = min(chunk, max(hi - lo, 1))
    fwd, fwd_sec, inv, real_in, spec, cross, surf = _plans(batch, window, slot)
    spec_ref = spec[:batch]
    spec_sec = spec[batch:]
    half = window // 2 + 1
    spectrum = job.refine == "spectrum"
    keep = np.empty((batch, window, half), dtype=np.complex64) if spectrum else cross
    wsum = np.zeros(batch, dtype=np.float64)
    ok = np.zeros(batch, dtype=np.bool_)
    pr = np.zeros(batch, dtype=np.int64)
    pc = np.zeros(batch, dtype=np.int64)
    fr = np.zeros(batch, dtype=np.float64)
    fc = np.zeros(batch, dtype=np.float64)
    ratio = np.full(batch, np.nan, dtype=np.float64)
    peak_v = np.zeros(batch, dtype=np.float64)
    spec_ref_f = spec_ref.view(np.float32)
    spec_sec_f = spec_sec.view(np.float32)
    cross_f = cross.view(np.float32)
    zero = np.zeros(n, dtype=np.int64)
    prow, pcol = job.prow, job.pcol
    drow, dcol, score, snr = job.drow, job.dcol, job.score, job.snr
    for start in range(lo, hi, batch):
        count = min(batch, hi - start)
        sl = slice(start, start + count)
        # Pass 1: integer peak around the prior, parabolic guess.
        _extract(job.ref, job.rows, job.cols, zero, zero, start, count, window, job.apod,
                 real_in[:batch], ok, False, job.max_bad)
        _extract(job.sec, job.rows, job.cols, prow, pcol, start, count, window, job.apod,
                 real_in[batch:], ok, True, job.max_bad)
        fwd()
        if spectrum:
            _cross_power(spec_ref, spec_sec, count, job.power, job.weight, cross, keep, wsum)
        else:
            _cross_power_f32(spec_ref_f, spec_sec_f, count, job.power, job.weight, cross_f,
                             wsum)
        inv(normalise_idft=False)
        ratio[:] = np.nan
        _integer_peaks(surf, ok, count, job.search, window, pr, pc, fr, fc, ratio, peak_v)
        est_r = pr[:count] + fr[:count]
        est_c = pc[:count] + fc[:count]
        good = ok[:count].copy()
        if not spectrum:
            drow[sl] = np.where(good, prow[sl] + est_r, np.nan)
            dcol[sl] = np.where(good, pcol[sl] + est_c, np.nan)
            snr[sl] = np.where(good, ratio[:count], np.nan)
            # Pass-1 score: peak height relative to a perfect match.
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(good & (wsum[:count] > 0), peak_v[:count] / wsum[:count], 0.0)
            score[sl] = np.clip(rel, 0.0, 1.0)
            continue
        # Pass 2: re-centre the secondary window on the rounded estimate (the residual is
        # then below half a pixel, which removes most of the apodization bias), and refine
        # on the continuous surface of the new cross-power spectrum.
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
            fwd_sub, real_sub, spec_sub = _subset_plan(min(size, batch), window, slot)
            for k0 in range(0, moved.size, real_sub.shape[0]):
                local = moved[k0:k0 + real_sub.shape[0]]
                new_r = np.zeros(n, dtype=np.int64)
                new_c = np.zeros(n, dtype=np.int64)
                new_r[sl] = base_r
                new_c[sl] = base_c
                got = np.zeros(local.size, dtype=np.bool_)
                _extract_subset(job.sec, job.rows, job.cols, new_r, new_c, local + start,
                                window, job.apod, real_sub, got, job.max_bad)
                ok[local[~got]] = False
                fwd_sub()
                _cross_power_subset(spec_ref, spec_sub, local, job.power, job.weight, keep,
                                    wsum)
        _refine(keep, wsum, ok, count, window, start, y0.astype(np.float64),
                x0.astype(np.float64), base_r, base_c, drow, dcol, score)
        snr[sl] = np.where(np.isfinite(drow[sl]), ratio[:count], np.nan)


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
    refine: Literal["image", "spectrum", "none"] = "image",
    presmooth: float = subpixel.DEFAULT_PRESMOOTH,
    model: subpixel.Model = "translation",
    prepared: subpixel.SplineImage | None = None,
    max_masked: float = subpixel.DEFAULT_MAX_MASKED,
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
        Worker threads (default: Numba's thread count).
    chunk
        Windows transformed per batch.
    refine
        Sub-pixel stage: ``"image"`` (image-domain matching, see the module docstring),
        ``"spectrum"`` (continuous correlation surface) or ``"none"`` (parabola).
    presmooth, model
        Gaussian pre-smoothing (pixels) and window model (``"translation"`` or
        ``"affine"``) of the ``"image"`` refinement (:func:`kernels.subpixel.refine`).
    prepared
        The pair already prepared by :func:`kernels.subpixel.prepare` with
        ``presmooth`` (saves the work when the same pair is correlated again).
    max_masked
        Largest fraction of no-data (NaN) pixels a window may hold (clouds, shadows,
        image edges): they are left out of the match; beyond it the window fails.

    Returns
    -------
    Correlation
        drow, dcol (pixels); score in [0, 1]: the ZNCC of the matched windows (after
        pre-smoothing) for ``"image"``, else the height of the correlation peak relative
        to a perfect match; snr (peak over mean absolute surface). A window fails
        (NaN) when it leaves the image or holds too much no-data, when its peak sits on the
        border of the search box, or when the image refinement does not converge within
        one pixel of the integer peak.

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
    if refine not in ("image", "spectrum", "none"):
        raise ValueError(f"refine must be 'image', 'spectrum' or 'none', got {refine!r}")
    rows_a = np.asarray(rows)
    n = rows_a.shape[0] if rows_a.ndim == 1 else -1
    if n < 0:
        raise ValueError("rows must be 1-D")
    rows_i = _as_index(rows, n, "rows")
    cols_i = _as_index(cols, n, "cols")
    prow = _as_index(prior_rows, n, "prior_rows")
    pcol = _as_index(prior_cols, n, "prior_cols")
    threads = threads or numba.get_num_threads()

    drow = np.full(n, np.nan, dtype=np.float32)
    dcol = np.full(n, np.nan, dtype=np.float32)
    score = np.zeros(n, dtype=np.float32)
    snr = np.full(n, np.nan, dtype=np.float32)
    if n == 0:
        return Correlation(drow, dcol, score, snr)

    apod = apodization(window, taper)
    weight = _frequency_weight(window, lowpass)
    if not 0.0 <= max_masked < 1.0:
        raise ValueError(f"max_masked must be in [0, 1), got {max_masked}")
    max_bad = int(max_masked * window * window)
    job = _Job(ref, sec, rows_i, cols_i, prow, pcol, window, search, float(power), apod,
               weight, refine, max_bad, drow, dcol, score, snr)
    # Coarse-grained parallelism: each worker thread runs whole chunks of windows with its
    # own FFT plans and single-threaded, GIL-free kernels, so there is one rendezvous per
    # call (robust on a shared, busy machine) instead of several per chunk.
    parts = max(1, min(threads, n // 256))
    bounds = [n * k // parts for k in range(parts + 1)]
    if parts == 1:
        _run_windows(job, 0, n, chunk, 0)
    else:
        pool = _pool(parts)
        futures = [pool.submit(_run_windows, job, bounds[k], bounds[k + 1], chunk, k)
                   for k in range(parts)]
        for f in futures:
            f.result()
    if refine == "image":
        todo = np.isfinite(drow)
        if todo.any():
            images = prepared if prepared is not None else subpixel.prepare(ref, sec, presmooth)
            fine_r, fine_c, zncc = subpixel.refine(images, rows_i, cols_i, window,
                                                   drow.astype(np.float64),
                                                   dcol.astype(np.float64), todo,
                                                   model=model, max_masked=max_masked)
            drow = fine_r.astype(np.float32)
            dcol = fine_c.astype(np.float32)
            score = np.clip(zncc, 0.0, 1.0).astype(np.float32)
            snr = np.where(np.isfinite(drow), snr, np.nan).astype(np.float32)
    return Correlation(drow, dcol, score, snr)


def _check_image(img: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D image, got {arr.ndim} dimensions")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)
