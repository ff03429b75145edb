"""Spatial zero-mean normalized cross-correlation (ZNCC) with sub-pixel peak fitting.

This is the robust, low-texture fallback correlator of GDM-OPT. It shares its calling
convention with the frequency-domain correlator (:mod:`kernels.correlation`):

- images are 2-D float32 arrays on the same grid, NaN (or any non-finite value) = no data;
- window ``k`` is centred on ``(rows[k], cols[k])``; the reference window is
  ``ref[r - window//2 : r - window//2 + window, c - window//2 : c - window//2 + window]``;
- the search in ``sec`` is centred on ``(r + prior_rows[k], c + prior_cols[k])`` and covers
  every integer offset in ``[-search, search]**2`` around it;
- the returned displacement is the total one (prior included): the feature at ``(r, c)``
  in ``ref`` is at ``(r + drow, c + dcol)`` in ``sec``;
- a window fails (``drow = dcol = snr = NaN``, ``score = 0``) when its reference window
  or its search area leaves the image or holds a non-finite value, when the reference
  window is flat, when the correlation peak lies on the border of the search range, or
  when the peak ZNCC is not positive.
"""

from __future__ import annotations

import numbers

import numba
import numpy as np
from numba import prange

from kernels import subpixel
from kernels.types import Correlation

__all__ = ["ncc_correlate", "ncc_surface"]

# A reference window is "flat" when its standard deviation is below this fraction of
# its RMS value: at that level float32 rounding is all there is to correlate.
_FLAT_REF_REL = 1e-7
# A secondary window is "flat" (its ZNCC is set to 0) when its sum of squared deviations
# is below this fraction of the total sum of squares of its (mean-removed) search area:
# ~500 ulp, the rounding level of the integral-image differences, so this only catches
# windows that are constant to float precision.
_FLAT_SEC_REL = 1e-13


# --------------------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _centre_window(win: np.ndarray, wz: np.ndarray) -> float:
    """Write ``win - mean(win)`` into ``wz``; return its sum of squares, or -1 if flat."""
    h, w = win.shape
    total = 0.0
    raw_ss = 0.0
    for y in range(h):
        for x in range(w):
            v = np.float64(win[y, x])
            total += v
            raw_ss += v * v
    mean = total / (h * w)
    ss = 0.0
    for y in range(h):
        for x in range(w):
            d = np.float64(win[y, x]) - mean
            wz[y, x] = d
            ss += d * d
    if ss <= (_FLAT_REF_REL * _FLAT_REF_REL) * raw_ss or ss <= 0.0:
        return -1.0
    return ss


@numba.njit(cache=True, nogil=True)
def _zncc_surface(wz: np.ndarray, wss: float, area: np.ndarray, surf: np.ndarray) -> None:
    """Fill ``surf[i, j]`` with the ZNCC of ``wz`` against ``area[i:i+h, j:j+w]``.

    ``wz`` is the zero-mean reference window and ``wss`` its (positive) sum of squares.
    Window sums of the secondary are taken from integral images of the area after
    removing the area mean (float64), so each offset costs O(1) for the statistics. The
    cross terms of one row of offsets are accumulated together (an inner axpy over the
    column offsets, which vectorizes). Flat secondary windows give 0.
    """
    h, w = wz.shape
    ah, aw = area.shape
    nr = ah - h + 1
    nc = aw - w + 1
    npx = h * w

    amean = 0.0
    for y in range(ah):
        for x in range(aw):
            amean += np.float64(area[y, x])
    amean /= ah * aw
    a = np.empty((ah, aw), dtype=np.float64)
    s1 = np.zeros((ah + 1, aw + 1), dtype=np.float64)
    s2 = np.zeros((ah + 1, aw + 1), dtype=np.float64)
    for y in range(ah):
        row1 = 0.0
        row2 = 0.0
        for x in range(aw):
            v = np.float64(area[y, x]) - amean
            a[y, x] = v
            row1 += v
            row2 += v * v
            s1[y + 1, x + 1] = s1[y, x + 1] + row1
            s2[y + 1, x + 1] = s2[y, x + 1] + row2
    flat_thr = _FLAT_SEC_REL * s2[ah, aw]

    nums = np.empty(nc, dtype=np.float64)
    for i in range(nr):
        nums[:] = 0.0
        for y in range(h):
            for x in range(w):
                wv = wz[y, x]
                for j in range(nc):
                    nums[j] += wv * a[i + y, j + x]
        for j in range(nc):
            t1 = s1[i + h, j + w] - s1[i, j + w] - s1[i + h, j] + s1[i, j]
            t2 = s2[i + h, j + w] - s2[i, j + w] - s2[i + h, j] + s2[i, j]
            var = t2 - t1 * t1 / npx
            if var <= flat_thr or var <= 0.0:
                surf[i, j] = 0.0
                continue
            v = nums[j] / np.sqrt(wss * var)
            if v > 1.0:
                v = 1.0
            elif v < -1.0:
                v = -1.0
            surf[i, j] = v


@numba.njit(cache=True, nogil=True)
def _parabola_offset(fm: float, f0: float, fp: float) -> float:
    """Vertex of the parabola through (-1, fm), (0, f0), (1, fp), clipped to [-0.5, 0.5]."""
    den = fm - 2.0 * f0 + fp
    if den >= 0.0:
        return 0.0
    off = 0.5 * (fm - fp) / den
    if off > 0.5:
        return 0.5
    if off < -0.5:
        return -0.5
    return off


@numba.njit(cache=True, nogil=True)
def _subpixel_peak(surf: np.ndarray, i: int, j: int) -> tuple[float, float]:
    """Sub-pixel offset of the peak at ``surf[i, j]`` (not on the border).

    Least-squares 2-D quadratic ``f = a + b x + c y + d x^2 + e x y + g y^2`` on the 3x3
    neighbourhood (x along columns, y along rows). Its vertex is used when the fit is
    concave (negative-definite Hessian) and the vertex lies within one pixel of the
    integer peak; otherwise separable 1-D parabolas through the peak are used.
    """
    b = 0.0
    c = 0.0
    d = 0.0
    e = 0.0
    g = 0.0
    for u in range(-1, 2):
        for v in range(-1, 2):
            f = surf[i + u, j + v]
            b += v * f
            c += u * f
            e += u * v * f
            d += (v * v - 2.0 / 3.0) * f
            g += (u * u - 2.0 / 3.0) * f
    b /= 6.0
    c /= 6.0
    e /= 4.0
    d /= 2.0
    g /= 2.0
    # gradient: b + 2 d x + e y = 0 ; c + e x + 2 g y = 0
    det = 4.0 * d * g - e * e
    if d < 0.0 and det > 0.0:
        x = (-2.0 * g * b + e * c) / det
        y = (-2.0 * d * c + e * b) / det
        if abs(x) <= 1.0 and abs(y) <= 1.0:
            return y, x
    y = _parabola_offset(surf[i - 1, j], surf[i, j], surf[i + 1, j])
    x = _parabola_offset(surf[i, j - 1], surf[i, j], surf[i, j + 1])
    return y, x


@numba.njit(cache=True, nogil=True)
def _all_finite(a: np.ndarray) -> bool:
    h, w = a.shape
    for y in range(h):
        for x in range(w):
            if not np.isfinite(a[y, x]):
                return False
    return True


@numba.njit(cache=True, parallel=True)
def _ncc_loop(
    ref: np.ndarray,
    sec: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    prow: np.ndarray,
    pcol: np.ndarray,
    window: int,
    search: int,
    drow: np.ndarray,
    dcol: np.ndarray,
    score: np.ndarray,
    snr: np.ndarray,
) -> None:
    ny, nx = ref.shape
    half = window // 2
    side = window + 2 * search
    k = 2 * search + 1
    for n in prange(rows.shape[0]):
        drow[n] = np.nan
        dcol[n] = np.nan
        score[n] = 0.0
        snr[n] = np.nan
        r0 = rows[n] - half
        c0 = cols[n] - half
        if r0 < 0 or c0 < 0 or r0 + window > ny or c0 + window > nx:
            continue
        sr0 = r0 + prow[n] - search
        sc0 = c0 + pcol[n] - search
        if sr0 < 0 or sc0 < 0 or sr0 + side > ny or sc0 + side > nx:
            continue
        win = ref[r0 : r0 + window, c0 : c0 + window]
        area = sec[sr0 : sr0 + side, sc0 : sc0 + side]
        if not _all_finite(win) or not _all_finite(area):
            continue
        wz = np.empty((window, window), dtype=np.float64)
        wss = _centre_window(win, wz)
        if wss <= 0.0:
            continue
        surf = np.empty((k, k), dtype=np.float64)
        _zncc_surface(wz, wss, area, surf)
        bi = 0
        bj = 0
        best = -np.inf
        abs_sum = 0.0
        for i in range(k):
            for j in range(k):
                v = surf[i, j]
                abs_sum += abs(v)
                if v > best:
                    best = v
                    bi = i
                    bj = j
        if best <= 0.0 or bi == 0 or bj == 0 or bi == k - 1 or bj == k - 1:
            continue
        oy, ox = _subpixel_peak(surf, bi, bj)
        drow[n] = prow[n] + (bi - search) + oy
        dcol[n] = pcol[n] + (bj - search) + ox
        score[n] = min(best, 1.0)
        snr[n] = max(1.0, best / (abs_sum / (k * k)))


# --------------------------------------------------------------------------------------
# Public wrappers
# --------------------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_index_array(name: str, a: object, n: int | None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype, got {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} must have length {n} (like rows), got {arr.shape[0]}")
    return arr.astype(np.int64, copy=False)


def ncc_correlate(
    ref: np.ndarray,
    sec: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    window: int,
    search: int,
    prior_rows: np.ndarray | None = None,
    prior_cols: np.ndarray | None = None,
    *,
    refine: bool = True,
    presmooth: float = subpixel.DEFAULT_PRESMOOTH,
    model: subpixel.Model = "translation",
    prepared: subpixel.SplineImage | None = None,
) -> Correlation:
    """Correlate windows of ``ref`` against ``sec`` by spatial ZNCC.

    For every integer offset in ``[-search, search]**2`` around the prior the zero-mean
    normalized cross-correlation of the reference window with the secondary window is
    computed (float64; secondary window statistics from integral images). The integer
    peak is the arg-max; its sub-pixel position is first estimated by a least-squares
    2-D quadratic on its 3x3 neighbourhood (separable parabolas when that fit is not
    concave). With ``refine`` (default) that estimate then seeds the image-domain
    refinement of :func:`kernels.subpixel.refine` (Gauss-Newton on the ZNSSD with
    quintic-spline interpolation of ``sec`` after a light Gaussian pre-smoothing of
    both images), which removes the peak-fit bias; a window whose refinement fails
    (it does not converge, moves more than a pixel, or its interpolation support
    touches no-data) fails.

    Parameters
    ----------
    ref, sec
        2-D float32 images on the same grid; NaN = no data.
    rows, cols
        1-D integer arrays (same length n) of window centres.
    window
        Window side in pixels (>= 3).
    search
        Search half-range in pixels (>= 1).
    prior_rows, prior_cols
        Optional integer arrays (length n) of prior offsets: the search is centred on
        ``(r + prior_row, c + prior_col)`` in ``sec``. Default zeros.
    refine
        Refine the sub-pixel peak in the image domain (see above). False keeps the
        quadratic peak fit alone (faster, biased by up to a few hundredths of a pixel).
    presmooth, model
        Pre-smoothing (pixels) and window model of the refinement.
    prepared
        The pair already prepared by :func:`kernels.subpixel.prepare` with
        ``presmooth``.

    Returns
    -------
    Correlation
        Total displacement (prior included) ``drow``, ``dcol``; ``score`` = ZNCC at the
        refined position (with ``refine``) or integer peak ZNCC, clipped to [0, 1];
        ``snr`` = integer peak / mean(|ZNCC surface|), floored at 1. Failed windows
        (see module docstring) have NaN displacement and snr and score 0.

    Raises
    ------
    ValueError
        On wrong dtype, shape or parameter values.

    """
    for name, img in (("ref", ref), ("sec", sec)):
        if not isinstance(img, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(img).__name__}")
        if img.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {img.shape}")
        if img.dtype != np.float32:
            raise ValueError(f"{name} must be float32, got {img.dtype}")
    if ref.shape != sec.shape:
        raise ValueError(f"ref and sec must have the same shape, got {ref.shape} and {sec.shape}")
    window = _check_int("window", window, 3)
    search = _check_int("search", search, 1)
    rows_a = _check_index_array("rows", rows, None)
    n = rows_a.shape[0]
    cols_a = _check_index_array("cols", cols, n)
    prow = (
        np.zeros(n, np.int64)
        if prior_rows is None
        else _check_index_array("prior_rows", prior_rows, n)
    )
    pcol = (
        np.zeros(n, np.int64)
        if prior_cols is None
        else _check_index_array("prior_cols", prior_cols, n)
    )

    drow = np.empty(n, np.float32)
    dcol = np.empty(n, np.float32)
    score = np.empty(n, np.float32)
    snr = np.empty(n, np.float32)
    if n:
        _ncc_loop(
            np.ascontiguousarray(ref),
            np.ascontiguousarray(sec),
            np.ascontiguousarray(rows_a),
            np.ascontiguousarray(cols_a),
            np.ascontiguousarray(prow),
            np.ascontiguousarray(pcol),
            window,
            search,
            drow,
            dcol,
            score,
            snr,
        )
        todo = np.isfinite(drow)
        if refine and todo.any():
            images = prepared if prepared is not None else subpixel.prepare(ref, sec, presmooth)
            fine_r, fine_c, zncc = subpixel.refine(images, rows_a, cols_a, window,
                                                   drow.astype(np.float64),
                                                   dcol.astype(np.float64), todo,
                                                   model=model)
            drow = fine_r.astype(np.float32)
            dcol = fine_c.astype(np.float32)
            score = np.clip(zncc, 0.0, 1.0).astype(np.float32)
            snr = np.where(np.isfinite(drow), snr, np.nan).astype(np.float32)
    return Correlation(drow=drow, dcol=dcol, score=score, snr=snr)


def ncc_surface(ref_win: np.ndarray, sec_area: np.ndarray) -> np.ndarray:
    """Full ZNCC surface of one reference window over a secondary search area.

    Parameters
    ----------
    ref_win
        2-D float array (h, w), finite, not flat.
    sec_area
        2-D float array (H, W) with H >= h and W >= w, finite.

    Returns
    -------
    np.ndarray
        float64 (H - h + 1, W - w + 1): element ``[i, j]`` is the ZNCC of ``ref_win`` with
        ``sec_area[i:i+h, j:j+w]`` (the layout of OpenCV's ``TM_CCOEFF_NORMED``); 0 where
        the secondary window is flat. With ``sec_area`` cut around a window centre
        with half-range ``s``, element ``[s + dr, s + dc]`` is offset ``(dr, dc)``.

    Raises
    ------
    ValueError
        On non-float or non-2-D input, an area smaller than the window, non-finite
        values, or a flat reference window.

    """
    for name, a in (("ref_win", ref_win), ("sec_area", sec_area)):
        if not isinstance(a, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{name} must have a floating dtype, got {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains non-finite values")
    h, w = ref_win.shape
    if h < 2 or w < 2:
        raise ValueError(f"ref_win must be at least 2x2, got {ref_win.shape}")
    if sec_area.shape[0] < h or sec_area.shape[1] < w:
        raise ValueError(
            f"sec_area {sec_area.shape} must be at least as large as ref_win {ref_win.shape}"
        )
    win = np.ascontiguousarray(ref_win, dtype=np.float64)
    area = np.ascontiguousarray(sec_area, dtype=np.float64)
    wz = np.empty_like(win)
    wss = _centre_window(win, wz)
    if wss <= 0.0:
        raise ValueError("ref_win is flat (zero variance): the ZNCC is undefined")
    surf = np.empty((area.shape[0] - h + 1, area.shape[1] - w + 1), np.float64)
    _zncc_surface(wz, wss, area, surf)
    return surf
