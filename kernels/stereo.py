"""Dense stereo matching of a rectified (epipolar) pair: costs, SGM, sub-pixel, checks.

Convention: rows of both images are epipolar lines; the pixel ``(r, c)`` of the left
image matches ``(r, c + d)`` of the right image, and the disparity ``d`` is searched in
the integer interval ``[dmin, dmax]`` (either sign).

Chain (:func:`match`): census or ZNCC matching cost → semi-global aggregation along 8
paths (Hirschmüller 2008) → winner-takes-all → sub-pixel refinement (parabola or
equiangular fit of the aggregated cost) → left–right consistency (the right disparity
comes from the same aggregated volume) → speckle filter (small connected regions) →
image-based sub-pixel refinement (Gauss-Newton on the ZNCC, free of pixel locking) →
3×3 median of the valid disparities. Memory is bounded by processing tiles with an
overlap (the cost volumes of one tile only are in memory).

Census costs with integer penalties (every preset) take an integer path that computes
exactly what the float32 definitions give: uint8 costs with the disparity axis
innermost (padded by one level at each end), path costs on 16-bit lanes that LLVM
vectorises (checked with numba's ``inspect_asm``: ``vpminsw`` on ymm registers), uint16
sums. The path along the row runs pixel by pixel; the three paths from the previous row
keep normalised vectors and run over the whole row in one loop (per-pixel loops over
many arrays pay LLVM's runtime overlap checks at every pixel). The decisions (WTA,
sub-pixel, right disparities as a running minimum of packed keys) are taken row by row
in the backward pass while the row's sums are in cache: 3 bytes per voxel and two
passes over the volume. With several numba threads, tiles are matched concurrently,
one per thread. ZNCC costs and fractional penalties take the float32 path. Every pixel
gets a mask code:

====  ==================================================================
code  meaning
====  ==================================================================
0     valid
1     no data: a NaN in the matching window of the left image
2     out of range: no right pixel (image border or disparity range)
3     mismatch: left–right check failed, a consistent disparity existed
4     occlusion: left–right check failed, no consistent disparity at all
5     speckle: small isolated region removed
====  ==================================================================
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from scipy.ndimage import uniform_filter

__all__ = ["MASK", "StereoResult", "census_transform", "cost_census", "cost_zncc",
           "aggregate_sgm", "wta_subpixel", "lr_check", "speckle_filter", "median_valid",
           "refine_subpixel",
           "match"]

MASK = {"valid": 0, "nodata": 1, "out_of_range": 2, "mismatch": 3, "occlusion": 4,
        "speckle": 5}
_INVALID_COST_ZNCC = 32.0  # (1 - zncc) * 16 spans [0, 32]


@dataclass(frozen=True)
class StereoResult:
    """Result of :func:`match`.

    Attributes
    ----------
    disparity : numpy.ndarray
        float32 (rows, cols): right column minus left column; NaN where ``mask != 0``.
    mask : numpy.ndarray
        uint8 codes (see :data:`MASK`).

    """

    disparity: np.ndarray
    mask: np.ndarray


def _check_image(name: str, img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be a real-valued image, got {a.dtype}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} is empty")
    return np.ascontiguousarray(a, dtype=np.float32)


def _check_pair(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lf = _check_image("left", left)
    rf = _check_image("right", right)
    if lf.shape[0] != rf.shape[0]:
        raise ValueError(f"left and right must have the same rows, got {lf.shape} and "
                         f"{rf.shape}")
    return lf, rf


def _check_range(dmin: int, dmax: int) -> tuple[int, int]:
    if int(dmin) != dmin or int(dmax) != dmax:
        raise ValueError("dmin and dmax must be integers")
    if dmax < dmin:
        raise ValueError(f"dmax ({dmax}) must not be below dmin ({dmin})")
    if dmax - dmin + 1 > 1024:
        raise ValueError(f"disparity range of {dmax - dmin + 1} is too large (max 1024)")
    return int(dmin), int(dmax)


def _check_window(window: int) -> int:
    w = int(window)
    if w != window or w < 3 or w % 2 == 0 or w > 9:
        raise ValueError(f"window must be an odd integer in 3..9, got {window}")
    return w


# ---------------------------------------------------------------------- census
@numba.njit(cache=True, parallel=True)
def _census_loop(pad, finite, half_r, half_c, out, bad):  # pragma: no cover - compiled
    # pad: the image with its borders replicated by (half_r, half_c); finite: its mask.
    # One neighbour offset at a time over a whole row (the loops over columns are
    # branch-free and vectorise); bits in row-major order of the window, as before.
    rows, cols = out.shape
    for r in numba.prange(rows):
        code = out[r]
        nan = bad[r]
        centre = pad[r + half_r, half_c:half_c + cols]
        fc = finite[r + half_r, half_c:half_c + cols]
        for c in range(cols):
            code[c] = 0
            nan[c] = not fc[c]
        for i in range(-half_r, half_r + 1):
            for j in range(-half_c, half_c + 1):
                if i == 0 and j == 0:
                    continue
                v = pad[r + half_r + i, half_c + j:half_c + j + cols]
                f = finite[r + half_r + i, half_c + j:half_c + j + cols]
                for c in range(cols):
                    code[c] = (code[c] << np.uint64(1)) | np.uint64(v[c] < centre[c])
                    nan[c] = nan[c] | (not f[c])


def census_transform(img: np.ndarray, window: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Census transform: one bit per neighbour of the window, set when it is darker.

    Parameters
    ----------
    img : numpy.ndarray
        2-D real image (NaN = no data). Borders are replicated.
    window : int
        Odd window side, 3 to 9 (a 9×9 window is cut to 9×7 to fit 64 bits).

    Returns
    -------
    codes : numpy.ndarray
        uint64 (rows, cols).
    bad : numpy.ndarray
        bool (rows, cols): a NaN in the window.

    """
    a = _check_image("img", img)
    w = _check_window(window)
    hr = w // 2
    hc = hr if w < 9 else 3
    out = np.empty(a.shape, np.uint64)
    bad = np.empty(a.shape, np.bool_)
    pad = np.pad(a, ((hr, hr), (hc, hc)), mode="edge")
    _census_loop(pad, np.isfinite(pad), hr, hc, out, bad)
    return out, bad


@numba.njit(cache=True)
def _popcount(x):  # pragma: no cover - compiled
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(inline="always")
def _box(sums: np.ndarray, k: int, ra: int, rb: int, lo: int, hi: int) -> float:
    """Four-corner box sum of plane ``k`` of the integral image ``sums``."""
    return sums[k, rb, hi] - sums[k, ra, hi] - sums[k, rb, lo] + sums[k, ra, lo]


@numba.njit(inline="always")
def _census_cost_row(cl, bl, cr, br, c_off, dmin, invalid, cost, k_off, nd,
                     r):  # pragma: no cover - compiled
    # The disparity axis is innermost: per left pixel, the Hamming distances to a run
    # of consecutive right codes (a vectorised popcount), the out-of-image levels
    # split off beforehand so that the loop has no boundary test. Level k goes to slot
    # k + k_off of the last axis (1 in the padded layout of the 16-bit SGM).
    cols = cost.shape[1]
    wr = cr.shape[1]
    crow = cr[r]
    brow = br[r]
    for c in range(cols):
        cc = c + c_off
        out = cost[r, c, k_off:k_off + nd]
        x0 = cc + dmin
        k0 = min(max(-x0, 0), nd)
        k1 = max(min(wr - x0, nd), k0)
        if bl[r, cc]:
            k1 = k0
        for k in range(k0):
            out[k] = invalid
        code = cl[r, cc]
        # slices: their indices are known non-negative (no wrap-around test)
        cseg = crow[x0 + k0:x0 + k1]
        bseg = brow[x0 + k0:x0 + k1]
        oseg = out[k0:k1]
        for j in range(k1 - k0):
            v = _popcount(code ^ cseg[j])
            oseg[j] = invalid if bseg[j] else v
        for k in range(k1, nd):
            out[k] = invalid


@numba.njit(cache=True, parallel=True)
def _census_cost_loop(cl, bl, cr, br, c_off, dmin, invalid, cost, k_off,
                      nd):  # pragma: no cover - compiled
    for r in numba.prange(cost.shape[0]):
        _census_cost_row(cl, bl, cr, br, c_off, dmin, invalid, cost, k_off, nd, r)


@numba.njit(cache=True, nogil=True)
def _census_cost_serial(cl, bl, cr, br, c_off, dmin, invalid, cost, k_off,
                        nd):  # pragma: no cover - compiled
    # one thread, without the GIL: for tiles matched on concurrent threads
    for r in range(cost.shape[0]):
        _census_cost_row(cl, bl, cr, br, c_off, dmin, invalid, cost, k_off, nd, r)


def _view(buf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The front of a flat scratch buffer as a C-contiguous array of ``shape``."""
    return buf[:int(np.prod(shape))].reshape(shape)


def cost_census(left: np.ndarray, right: np.ndarray, dmin: int, dmax: int,
                window: int = 7) -> np.ndarray:
    """Census (Hamming distance) matching cost volume.

    Returns
    -------
    numpy.ndarray
        float32 (rows, cols, dmax - dmin + 1): number of differing census bits; the
        number of bits of the window (the largest cost) where the right pixel is out of
        the image or a window holds a NaN.

    """
    lf, rf = _check_pair(left, right)
    dmin, dmax = _check_range(dmin, dmax)
    w = _check_window(window)
    cl, bl = census_transform(lf, w)
    cr, br = census_transform(rf, w)
    return _census_volume(cl, bl, cr, br, 0, lf.shape[1], dmin, dmax, w)


def _census_bits(w: int) -> int:
    return w * (w if w < 9 else 7) - 1


def _census_volume(cl, bl, cr, br, c0, c1, dmin, dmax, w, dtype=np.float32,
                   padded: bool = False, serial: bool = False,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Census costs of left columns c0..c1-1, (rows, c1 - c0, nd).

    With ``padded``: uint8 (rows, c1 - c0, nd + 2) in the layout of the 16-bit SGM
    (:func:`_pad16`), in the front of the flat buffer ``out`` if given; ``serial``: on the
    calling thread, without the GIL.
    """
    nd = dmax - dmin + 1
    if padded:
        shape = (cl.shape[0], c1 - c0, nd + 2)
        cost = np.empty(shape, np.uint8) if out is None else _view(out, shape)
        cost[:, :, 0] = 255
        cost[:, :, nd + 1] = 255
    else:
        cost = np.empty((cl.shape[0], c1 - c0, nd), dtype)
    loop = _census_cost_serial if serial else _census_cost_loop
    loop(cl, bl, cr, br, c0, dmin, cost.dtype.type(_census_bits(w)), cost,
         1 if padded else 0, nd)
    return cost


# ------------------------------------------------------------------------ ZNCC
def cost_zncc(left: np.ndarray, right: np.ndarray, dmin: int, dmax: int,
              window: int = 5) -> np.ndarray:
    """ZNCC matching cost volume, ``16 * (1 - zncc)`` in [0, 32].

    Returns
    -------
    numpy.ndarray
        float32 (rows, cols, dmax - dmin + 1); 32 where a window crosses a column border
        of its image, holds a NaN, or is flat (rows are edge-replicated).

    """
    lf, rf = _check_pair(left, right)
    dmin, dmax = _check_range(dmin, dmax)
    w = _check_window(window)
    return _zncc_volume(lf, rf, 0, lf.shape[1], dmin, dmax, w)


def _box_stats(img: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    bad = ~np.isfinite(img)
    a = np.where(bad, 0.0, img).astype(np.float64)
    nanw = uniform_filter(bad.astype(np.float64), w, mode="nearest") > 1e-9
    m = uniform_filter(a, w, mode="nearest")
    v = uniform_filter(a * a, w, mode="nearest") - m * m
    return a, m, np.sqrt(np.maximum(v, 0.0)), nanw


def _zncc_volume(lf, rf, c0, c1, dmin, dmax, w) -> np.ndarray:
    al, ml, sl, nl = _box_stats(lf, w)
    ar, mr, sr, nr = _box_stats(rf, w)
    rows, wr = rf.shape
    nd = dmax - dmin + 1
    cost = np.full((rows, c1 - c0, nd), _INVALID_COST_ZNCC, np.float32)
    cols = np.arange(c0, c1)
    for k in range(nd):
        d = dmin + k
        x = cols + d
        inside = (x >= 0) & (x < wr)
        if not inside.any():
            continue
        xs = np.clip(x, 0, wr - 1)
        # mean of L(r, c) R(r, c + d) over the window: shift R by d, then box-filter
        shifted = np.zeros_like(al)
        lo, hi = max(0, -d), min(lf.shape[1], wr - d)
        if hi > lo:
            shifted[:, lo:hi] = ar[:, lo + d:hi + d]
        prod = uniform_filter(al * shifted, w, mode="nearest")[:, c0:c1]
        den = sl[:, c0:c1] * sr[:, xs]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (prod - ml[:, c0:c1] * mr[:, xs]) / den
        ok = inside[None, :] & (den > 1e-6) & ~nl[:, c0:c1] & ~nr[:, xs]
        # windows that straddle a column border are not trusted (their box sums mix
        # replicated products): both windows must lie inside their image's columns
        half = w // 2
        ok &= ((x - half >= 0) & (x + half < wr) & (cols - half >= 0)
               & (cols + half < lf.shape[1]))[None, :]
        cost[:, :, k] = np.where(ok, 16.0 * (1.0 - np.clip(z, -1.0, 1.0)),
                                 _INVALID_COST_ZNCC)
    return cost


# ------------------------------------------------------------------------- SGM
@numba.njit(cache=True, fastmath=True)
def _sgm_pass(cost, p1, p2, s, reverse):  # pragma: no cover - compiled
    # Four of the eight paths: those coming from the previous row and previous column
    # in scan order (scan order reversed when ``reverse``), fused in one loop over the
    # disparities. Path vectors carry a +inf sentinel at both ends of the disparity
    # axis and zero vectors (minimum 0) stand for "no predecessor", which makes a path
    # start there (L = C): the loop has no boundary case and vectorises.
    rows, cols, nd = cost.shape
    big = np.float32(3.0e38)
    prev = np.zeros((3, cols + 2, nd + 2), np.float32)
    cur = np.zeros((3, cols + 2, nd + 2), np.float32)
    prev[:, :, 0] = big
    prev[:, :, nd + 1] = big
    cur[:, :, 0] = big
    cur[:, :, nd + 1] = big
    prevmin = np.zeros((3, cols + 2), np.float32)
    curmin = np.zeros((3, cols + 2), np.float32)
    hbuf = np.zeros((2, nd + 2), np.float32)
    hbuf[:, 0] = big
    hbuf[:, nd + 1] = big
    for ir in range(rows):
        r = rows - 1 - ir if reverse else ir
        hb = hbuf[0]
        hb[1:nd + 1] = 0.0
        hmin = np.float32(0.0)
        for ic in range(cols):
            c = cols - 1 - ic if reverse else ic
            cv = cost[r, c]
            sv = s[r, c]
            hp = hbuf[ic % 2]
            ho = hbuf[(ic + 1) % 2]
            # predecessors in the previous row: scan columns ic-1, ic, ic+1 (padded +1)
            q0 = prev[0, ic]
            q1 = prev[1, ic + 1]
            q2 = prev[2, ic + 2]
            m0 = prevmin[0, ic]
            m1 = prevmin[1, ic + 1]
            m2 = prevmin[2, ic + 2]
            o0 = cur[0, ic + 1]
            o1 = cur[1, ic + 1]
            o2 = cur[2, ic + 1]
            jh = hmin + p2
            j0 = m0 + p2
            j1 = m1 + p2
            j2 = m2 + p2
            bh = big
            b0 = big
            b1 = big
            b2 = big
            for d in range(1, nd + 1):
                cd = cv[d - 1]
                vh = cd + min(min(hp[d], min(hp[d - 1], hp[d + 1]) + p1), jh) - hmin
                v0 = cd + min(min(q0[d], min(q0[d - 1], q0[d + 1]) + p1), j0) - m0
                v1 = cd + min(min(q1[d], min(q1[d - 1], q1[d + 1]) + p1), j1) - m1
                v2 = cd + min(min(q2[d], min(q2[d - 1], q2[d + 1]) + p1), j2) - m2
                ho[d] = vh
                o0[d] = v0
                o1[d] = v1
                o2[d] = v2
                sv[d - 1] += (vh + v0) + (v1 + v2)
                bh = min(bh, vh)
                b0 = min(b0, v0)
                b1 = min(b1, v1)
                b2 = min(b2, v2)
            hmin = bh
            curmin[0, ic + 1] = b0
            curmin[1, ic + 1] = b1
            curmin[2, ic + 1] = b2
        prev, cur = cur, prev
        prevmin, curmin = curmin, prevmin


def aggregate_sgm(cost: np.ndarray, p1: float, p2: float) -> np.ndarray:
    """Semi-global aggregation of a cost volume along 8 paths.

    Parameters
    ----------
    cost : numpy.ndarray
        (rows, cols, ndisp) float matching cost (finite).
    p1, p2 : float
        Penalties of a one-level disparity change and of a larger jump (``p2 >= p1 > 0``).

    Returns
    -------
    numpy.ndarray
        float32 (rows, cols, ndisp): sum of the 8 path costs. Integer costs in 0..255
        with integer penalties are aggregated on 16-bit integers (the same sums, exact).

    """
    c = np.asarray(cost)
    if c.ndim != 3:
        raise ValueError(f"cost must be 3-D (rows, cols, ndisp), got shape {c.shape}")
    if not np.issubdtype(c.dtype, np.floating) and not np.issubdtype(c.dtype, np.integer):
        raise TypeError(f"cost must be real, got {c.dtype}")
    c = np.ascontiguousarray(c, dtype=np.float32)
    if not np.all(np.isfinite(c)):
        raise ValueError("cost must be finite (give invalid disparities a large cost)")
    if not (p1 > 0 and p2 >= p1):
        raise ValueError(f"penalties must satisfy p2 >= p1 > 0, got p1={p1}, p2={p2}")
    cmax = float(c.max()) if c.size else 0.0
    if c.size and c.min() >= 0 and cmax <= 255 and np.array_equal(c, np.round(c)):
        ints = _int_penalties(int(cmax), p1, p2)
        if ints is not None:  # exact in 16 bits, and much faster
            return _aggregate16(c.astype(np.uint8), *ints).astype(np.float32)
    s = np.zeros_like(c)
    if numba.get_num_threads() < 2:  # one thread: both halves into one sum, no copy
        _sgm_pass(c, np.float32(p1), np.float32(p2), s, False)
        _sgm_pass(c, np.float32(p1), np.float32(p2), s, True)
        return s
    s2 = np.zeros_like(c)
    _sgm_both(c, np.float32(p1), np.float32(p2), s, s2)
    s += s2
    return s


@numba.njit(cache=True, parallel=True, fastmath=True)
def _sgm_both(cost, p1, p2, s_fwd, s_bwd):  # pragma: no cover - compiled
    # the forward and backward halves of the 8 paths are independent: one thread each
    for p in numba.prange(2):
        if p == 0:
            _sgm_pass(cost, p1, p2, s_fwd, False)
        else:
            _sgm_pass(cost, p1, p2, s_bwd, True)


# Integer SGM: uint8 costs, int16 path costs, uint16 sums. With integer costs and
# penalties it computes exactly what the float32 version computes (every value is an
# integer far below 2**24), in 16-bit lanes that LLVM vectorises (16 per AVX2 register).
# Path costs are bounded by max(cost) + p2 and the sum of the 8 paths by 8 times that,
# which :func:`_int_penalties` checks against the 16-bit ranges.
_BIG16 = 16383  # sentinel at both ends of the disparity axis; + p1 stays in int16


@numba.njit(inline="always")
def _min(a, b):  # pragma: no cover - compiled
    return a if a < b else b


@numba.njit(inline="always")
def _pass16_buffers(cols, nd):  # pragma: no cover - compiled
    # Path rows, flat: slot j (0..nd+1) of image column c (-1..cols) at 1 + (c+1)(nd+2) + j,
    # one spare element at both ends. Slots 0 and nd+1 are sentinels; columns -1 and
    # cols are "no predecessor" (zero vectors, minimum 0: a path starts there, L = C).
    ndp = nd + 2
    n = (cols + 2) * ndp + 2
    big = np.int16(_BIG16)
    prev = np.zeros((3, n), np.int16)
    cur = np.zeros((3, n), np.int16)
    hrow = np.zeros(n, np.int16)
    for c in range(cols + 2):
        i = 1 + c * ndp
        for k in range(3):
            prev[k, i] = big
            prev[k, i + nd + 1] = big
            cur[k, i] = big
            cur[k, i + nd + 1] = big
        hrow[i] = big
        hrow[i + nd + 1] = big
    return prev, cur, hrow


@numba.njit(inline="always")
def _pass16_row(costp, s, r, step, prev, cur, hrow, p1, p2,
                first):  # pragma: no cover - compiled
    # One row of a pass (the four paths that come from the previous pixel of the scan
    # and from the three neighbours of the previous row), on 16-bit lanes.
    #
    # The path along the row is sequential: one short loop per pixel, on its own (few
    # arrays: LLVM's runtime overlap checks before each vectorised loop stay few).
    # The three paths from the previous row are independent across the row: their path
    # vectors are kept normalised (minimum subtracted, so L = C + min(L'(d),
    # min(L'(d-1), L'(d+1)) + p1, p2) needs no per-pixel scalar) and computed in one
    # loop over the whole padded row, with the sums; then each pixel's minimum is
    # subtracted and its sentinels restored. Same integers as the textbook recursion.
    cols = costp.shape[1]
    ndp = costp.shape[2]
    nd = ndp - 2
    big = np.int16(_BIG16)
    crow = costp[r]
    hmin = np.int16(0)
    for ic in range(cols):
        c = ic if step > 0 else cols - 1 - ic
        ip = 1 + (c + 1 - step) * ndp
        io = 2 + (c + 1) * ndp
        hp = hrow[ip:ip + ndp]
        ho = hrow[io:io + nd]
        cv = crow[c, 1:nd + 1]
        jh = np.int16(hmin + p2)
        bh = big
        for d in range(nd):
            vh = np.int16(np.int16(cv[d]) + np.int16(
                _min(_min(hp[d + 1], np.int16(_min(hp[d], hp[d + 2]) + p1)), jh) - hmin))
            ho[d] = vh
            bh = _min(bh, vh)
        hmin = bh
    lo = 1 + ndp
    n = cols * ndp
    cflat = crow.reshape(n)
    sflat = s[r].reshape(n)
    a0 = prev[0, lo - ndp - 1:lo - 1 + n + 2 - ndp]  # from column c - 1
    a1 = prev[1, lo - 1:lo - 1 + n + 2]  # from column c
    a2 = prev[2, lo + ndp - 1:lo - 1 + n + 2 + ndp]  # from column c + 1
    o0 = cur[0, lo:lo + n]
    o1 = cur[1, lo:lo + n]
    o2 = cur[2, lo:lo + n]
    hh = hrow[lo:lo + n]
    if first:
        for j in range(n):
            cd = np.int16(cflat[j])
            v0 = np.int16(cd + _min(_min(a0[j + 1], np.int16(_min(a0[j], a0[j + 2]) + p1)), p2))
            v1 = np.int16(cd + _min(_min(a1[j + 1], np.int16(_min(a1[j], a1[j + 2]) + p1)), p2))
            v2 = np.int16(cd + _min(_min(a2[j + 1], np.int16(_min(a2[j], a2[j + 2]) + p1)), p2))
            o0[j] = v0
            o1[j] = v1
            o2[j] = v2
            sflat[j] = np.uint16(np.int16(hh[j] + v0) + np.int16(v1 + v2))
    else:
        for j in range(n):
            cd = np.int16(cflat[j])
            v0 = np.int16(cd + _min(_min(a0[j + 1], np.int16(_min(a0[j], a0[j + 2]) + p1)), p2))
            v1 = np.int16(cd + _min(_min(a1[j + 1], np.int16(_min(a1[j], a1[j + 2]) + p1)), p2))
            v2 = np.int16(cd + _min(_min(a2[j + 1], np.int16(_min(a2[j], a2[j + 2]) + p1)), p2))
            o0[j] = v0
            o1[j] = v1
            o2[j] = v2
            sflat[j] = np.uint16(sflat[j] + np.uint16(np.int16(hh[j] + v0) + np.int16(v1 + v2)))
    for k in range(3):
        row = cur[k]
        for c in range(cols):
            b = lo + c * ndp
            seg = row[b + 1:b + 1 + nd]
            m = big
            for d in range(nd):
                m = _min(m, seg[d])
            for d in range(nd):
                seg[d] = np.int16(seg[d] - m)
            row[b] = big
            row[b + nd + 1] = big


@numba.njit(cache=True, nogil=True)
def _sgm_pass16(costp, p1, p2, s, reverse, first):  # pragma: no cover - compiled
    """Four of the 8 paths (forward, or backward when ``reverse``) into ``s``.

    ``costp`` and ``s``: (rows, cols, nd + 2), disparity ``k`` at slot ``k + 1`` (the
    end slots are scratch).
    """
    rows, cols, ndp = costp.shape
    prev, cur, hrow = _pass16_buffers(cols, ndp - 2)
    step = -1 if reverse else 1
    p1 = np.int16(p1)
    p2 = np.int16(p2)
    for ir in range(rows):
        r = rows - 1 - ir if reverse else ir
        _pass16_row(costp, s, r, step, prev, cur, hrow, p1, p2, first)
        prev, cur = cur, prev


@numba.njit
def _decide_row(srow, crow, invalid, equiangular, dmin, c_off, dl, dr,
                bkey):  # pragma: no cover - compiled
    """Left disparities (WTA, sub-pixel) and right disparities of one row of sums.

    srow: (cols, nd + 2) uint16 sums of the 8 paths, level k at slot k + 1; crow: the
    costs, same layout (a level whose cost is >= ``invalid`` cannot win). Same results
    as _wta_loop and _right_disparity (ties go to the first level; the right pixel's
    ties to the first left pixel).
    """
    cols = srow.shape[0]
    nd = srow.shape[1] - 2
    wr = dr.shape[0]
    for c in range(cols):
        sv = srow[c, 1:nd + 1]
        # the minimum and its first level in one vectorised reduction of keys
        key = np.int32(np.int32(sv[0]) << 10)
        for k in range(1, nd):
            key = _min(key, np.int32((np.int32(sv[k]) << 10) | k))
        kb = key & 1023
        if crow[c, kb + 1] >= invalid:
            dl[c] = np.nan
            continue
        off = 0.0
        if 0 < kb < nd - 1:
            a = np.float32(sv[kb - 1])
            b = np.float32(key >> 10)
            e = np.float32(sv[kb + 1])
            if equiangular:
                den = 2.0 * max(a - b, e - b)
                if den > 0:
                    off = float((a - e) / den)
            else:
                den = 2.0 * (a - 2.0 * b + e)
                if den > 0:
                    off = float((a - e) / den)
            off = min(max(off, -0.5), 0.5)
        dl[c] = np.float32(kb + off) + np.float32(dmin)
    # right pixel x: the minimum over the left pixels that see it of (sum, first left
    # pixel), as one uint32 key per x (sum << 16 | 65535 - level: at equal sums the
    # largest level, i.e. the first left pixel) and a vectorised running minimum
    for x in range(wr):
        bkey[x] = np.uint32(0xFFFFFFFF)
    for c in range(cols):
        sv = srow[c, 1:nd + 1]
        x0 = c + c_off + dmin
        k0 = min(max(-x0, 0), nd)
        k1 = max(min(wr - x0, nd), k0)
        sseg = sv[k0:k1]
        bseg = bkey[x0 + k0:x0 + k1]
        top = np.uint32(65535 - k0)
        for j in range(k1 - k0):
            rk = np.uint32((np.uint32(sseg[j]) << np.uint32(16)) | (top - np.uint32(j)))
            bseg[j] = _min(bseg[j], rk)
    for x in range(wr):
        rk = bkey[x]
        if rk == np.uint32(0xFFFFFFFF):
            dr[x] = -1e9
            continue
        kr = 65535 - np.int64(rk & np.uint32(0xFFFF))
        off = 0.0
        c = x - c_off - dmin - kr
        if 0 < kr < nd - 1 and 0 <= c + 1 < cols and 0 <= c - 1 < cols:
            a = np.float32(srow[c + 1, kr])
            e = np.float32(srow[c - 1, kr + 2])
            den = 2.0 * (a - 2.0 * np.float32(rk >> np.uint32(16)) + e)
            if den > 0:
                off = min(max(float((a - e) / den), -0.5), 0.5)
        dr[x] = dmin + kr + off


@numba.njit(cache=True, nogil=True)
def _sgm_match16(costp, p1, p2, s, invalid, equiangular, dmin, c_off, dl,
                 dr):  # pragma: no cover - compiled
    """SGM and the decisions on one thread, in two passes over the volume.

    The forward pass sets ``s``; the backward pass adds its four paths and, as each row
    is then final, takes the row's decisions (the sums of that row are still in cache).
    """
    rows, cols, ndp = costp.shape
    wr = dr.shape[1]
    _sgm_pass16(costp, p1, p2, s, False, True)
    p1 = np.int16(p1)
    p2 = np.int16(p2)
    prev, cur, hrow = _pass16_buffers(cols, ndp - 2)
    bkey = np.empty(wr, np.uint32)
    for ir in range(rows):
        r = rows - 1 - ir
        _pass16_row(costp, s, r, -1, prev, cur, hrow, p1, p2, False)
        prev, cur = cur, prev
        _decide_row(s[r], costp[r], invalid, equiangular, dmin, c_off, dl[r], dr[r], bkey)


def _int_penalties(cmax: int, p1: float, p2: float) -> tuple[int, int] | None:
    """Penalties as integers when the 16-bit SGM is exact for costs in 0..cmax."""
    if not (float(p1).is_integer() and float(p2).is_integer()):
        return None
    i1, i2 = int(p1), int(p2)
    if cmax > 255 or cmax + i2 + i1 >= _BIG16 or 8 * (cmax + i2) >= 65535:
        return None
    return i1, i2


def _pad16(cost: np.ndarray) -> np.ndarray:
    """(rows, cols, nd) uint8 costs in the padded layout of the 16-bit SGM."""
    rows, cols, nd = cost.shape
    costp = np.empty((rows, cols, nd + 2), np.uint8)
    costp[:, :, 0] = 255
    costp[:, :, nd + 1] = 255
    costp[:, :, 1:nd + 1] = cost
    return costp


def _aggregate16(cost: np.ndarray, p1: int, p2: int) -> np.ndarray:
    """8-path SGM of a uint8 cost volume; uint16 sums (see :func:`_int_penalties`)."""
    costp = _pad16(cost)
    s = np.empty(costp.shape, np.uint16)
    _sgm_pass16(costp, p1, p2, s, False, True)
    _sgm_pass16(costp, p1, p2, s, True, False)
    return s[:, :, 1:-1]


def _match16(cost: np.ndarray, p1: int, p2: int, invalid: int, equiangular: bool,
             dmin: int, c_off: int, wr: int, padded: bool = False,
             sbuf: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Integer SGM and decisions of one tile, on one thread.

    ``cost``: uint8 (rows, cols, nd), or (rows, cols, nd + 2) in the padded layout of
    :func:`_pad16` when ``padded``. Tiles are the unit of parallel work (dsm_opt.pipeline
    matches them on worker processes); two passes over the volume, no second sum volume.
    ``sbuf``: a flat uint16 scratch buffer for the sums (reused from tile to tile, its
    pages are not faulted in again).

    Returns the left disparities (NaN where the winner is an invalid level) and the
    disparity of each right column (-1e9: none).
    """
    costp = cost if padded else _pad16(cost)
    rows, cols, _ = costp.shape
    dl = np.empty((rows, cols), np.float32)
    dr = np.empty((rows, wr), np.float32)
    s = np.empty(costp.shape, np.uint16) if sbuf is None else _view(sbuf, costp.shape)
    _sgm_match16(costp, p1, p2, s, np.uint8(invalid), equiangular, dmin, c_off, dl, dr)
    return dl, dr


# ------------------------------------------------------------ WTA and sub-pixel
@numba.njit(cache=True, parallel=True)
def _wta_loop(s, cost, invalid, none, equiangular, disp):  # pragma: no cover - compiled
    # s: aggregated costs (float32, or uint16 from the integer SGM); the pixel is NaN
    # when its minimum is ``none`` or falls on a level whose cost is >= ``invalid``.
    # The minimum is a vectorised reduction, then its first level is searched.
    rows, cols, nd = s.shape
    for r in numba.prange(rows):
        for c in range(cols):
            sv = s[r, c]
            best = sv[0]
            for k in range(1, nd):
                best = _min(best, sv[k])
            kb = 0
            while kb < nd and sv[kb] != best:
                kb += 1
            if kb == nd or best == none or cost[r, c, kb] >= invalid:
                disp[r, c] = np.nan
                continue
            off = 0.0
            if 0 < kb < nd - 1:
                a = np.float32(sv[kb - 1])
                b = np.float32(best)
                e = np.float32(sv[kb + 1])
                if equiangular:
                    den = 2.0 * max(a - b, e - b)
                    if den > 0:
                        off = float((a - e) / den)
                else:
                    den = 2.0 * (a - 2.0 * b + e)
                    if den > 0:
                        off = float((a - e) / den)
                off = min(max(off, -0.5), 0.5)
            disp[r, c] = kb + off


def wta_subpixel(aggr: np.ndarray, dmin: int, invalid: np.ndarray | None = None,
                 method: str = "parabola") -> np.ndarray:
    """Winner-takes-all disparity with sub-pixel refinement.

    Parameters
    ----------
    aggr : numpy.ndarray
        (rows, cols, ndisp) aggregated cost.
    dmin : int
        Disparity of the first level.
    invalid : numpy.ndarray, optional
        bool (rows, cols, ndisp): levels that must not be chosen (the pixel becomes NaN
        when its minimum falls on one).
    method : {"parabola", "equiangular"}
        Fit through the minimum and its two neighbours.

    Returns
    -------
    numpy.ndarray
        float32 (rows, cols) disparity, NaN where no valid minimum.

    """
    s = np.ascontiguousarray(aggr, dtype=np.float32)
    if s.ndim != 3:
        raise ValueError(f"aggr must be 3-D, got shape {s.shape}")
    if method not in ("parabola", "equiangular"):
        raise ValueError(f"unknown sub-pixel method {method!r}")
    inv = np.zeros(s.shape, np.bool_) if invalid is None else np.asarray(invalid, np.bool_)
    if inv.shape != s.shape:
        raise ValueError("invalid must have the shape of aggr")
    s = np.where(np.isnan(s), np.float32(np.inf), s)
    disp = np.empty(s.shape[:2], np.float32)
    _wta_loop(s, np.ascontiguousarray(inv).view(np.uint8), np.uint8(1), np.float32(np.inf),
              method == "equiangular", disp)
    return disp + np.float32(dmin)


# -------------------------------------------------------------- left-right check
@numba.njit(cache=True, parallel=True)
def _right_disparity(s, dmin, c_off, wr, none, dr):  # pragma: no cover - compiled
    """Disparity of each right column (tile coordinates) from the left volume."""
    rows, cols, nd = s.shape
    for r in numba.prange(rows):
        best = np.empty(wr, s.dtype)
        kbest = np.empty(wr, np.int16)
        for x in range(wr):
            best[x] = none
            kbest[x] = -1
            dr[r, x] = -1e9
        # left pixel c, level k sees right column c + c_off + dmin + k: a run of
        # consecutive right columns per left pixel (branch-free, vectorised); the
        # first minimum in this order wins ties
        for c in range(cols):
            sv = s[r, c]
            x0 = c + c_off + dmin
            k0 = min(max(-x0, 0), nd)
            k1 = max(min(wr - x0, nd), k0)
            sseg = sv[k0:k1]
            bseg = best[x0 + k0:x0 + k1]
            kseg = kbest[x0 + k0:x0 + k1]
            for j in range(k1 - k0):
                v = sseg[j]
                lt = v < bseg[j]
                bseg[j] = v if lt else bseg[j]
                kseg[j] = np.int16(k0 + j) if lt else kseg[j]
        # sub-pixel (parabola) along the right pixel's own cost curve S(x - d, d)
        for x in range(wr):
            k = np.int64(kbest[x])
            if k < 0:
                continue
            off = 0.0
            c = x - c_off - dmin - k
            if 0 < k < nd - 1 and 0 <= c + 1 < cols and 0 <= c - 1 < cols:
                a = np.float32(s[r, c + 1, k - 1])
                e = np.float32(s[r, c - 1, k + 1])
                den = 2.0 * (a - 2.0 * np.float32(best[x]) + e)
                if den > 0:
                    off = min(max(float((a - e) / den), -0.5), 0.5)
            dr[r, x] = dmin + k + off


@numba.njit(cache=True, nogil=True)
def _lr_loop(dl, dr, c_off, dmin, nd, thr, code):  # pragma: no cover - compiled
    rows, cols = dl.shape
    wr = dr.shape[1]
    for r in range(rows):
        for c in range(cols):
            d = dl[r, c]
            if not np.isfinite(d):
                continue
            x = int(np.floor(c + c_off + d + 0.5))
            if x < 0 or x >= wr:
                code[r, c] = 2
                continue
            if abs(dr[r, x] - d) <= thr:
                continue
            code[r, c] = 4
            for k in range(nd):
                xx = c + c_off + dmin + k
                if 0 <= xx < wr and abs(dr[r, xx] - (dmin + k)) <= thr:
                    code[r, c] = 3
                    break


def lr_check(disp_left: np.ndarray, disp_right: np.ndarray, dmin: int, dmax: int,
             threshold: float = 1.0) -> np.ndarray:
    """Left–right consistency codes.

    Parameters
    ----------
    disp_left : numpy.ndarray
        (rows, cols) left disparities (NaN = none).
    disp_right : numpy.ndarray
        (rows, cols_right) disparity of each right pixel, same convention (the left
        pixel of right pixel ``x`` is ``x - d``).
    dmin, dmax : int
        Disparity range.
    threshold : float
        Largest accepted ``|d_left - d_right|`` in pixels.

    Returns
    -------
    numpy.ndarray
        uint8 codes: 0 consistent (or NaN input: left to the caller), 2 out of range,
        3 mismatch, 4 occlusion.

    """
    dl = np.ascontiguousarray(disp_left, dtype=np.float32)
    drr = np.ascontiguousarray(disp_right, dtype=np.float32)
    if dl.ndim != 2 or drr.ndim != 2 or dl.shape[0] != drr.shape[0]:
        raise ValueError("disparities must be 2-D with the same rows")
    dmin, dmax = _check_range(dmin, dmax)
    drr = np.where(np.isfinite(drr), drr, np.float32(-1e9))
    code = np.zeros(dl.shape, np.uint8)
    _lr_loop(dl, drr, 0, dmin, dmax - dmin + 1, np.float32(threshold), code)
    return code


# ------------------------------------------------------- image-based refinement
_REFINE_ROWS = 32  # rows per block of the refinement (each block sums its own rows)


@numba.njit(cache=True, parallel=True)
def _refine_loop(left, right, disp, half, n_iter, out):  # pragma: no cover - compiled
    # Gauss-Newton on sum (Lz - Rz(d))^2 with the exact Jacobian of the normalised right
    # window Rz = (R - mean R) / std R. Every sample of the window shares the fractional
    # position t, so the interpolated values and derivatives are R_q = sum_k w_k(t) a_qk
    # and G_q = sum_k g_k(t) a_qk over the four Keys taps a_qk of sample q: every sum
    # the step needs (of L R, L G, R, G, R R, G G, R G) is a weighted sum of the tap
    # moments sum_q L_q a_qk, sum_q a_qk and sum_q a_qk a_ql. The last two are box sums
    # of the right image and of its products with itself shifted by 0..3 columns, read
    # from integral images of each block of rows (4 reads each, whatever the window);
    # the first takes one pass over the window. They hold while the integer position
    # does, so further iterations cost a few dozen operations.
    rows, cols = left.shape
    wr = right.shape[1]
    nw = (2 * half + 1) * (2 * half + 1)
    inv_n = 1.0 / nw
    nblocks = (rows + _REFINE_ROWS - 1) // _REFINE_ROWS
    for blk in numba.prange(nblocks):
        y0 = blk * _REFINE_ROWS
        y1 = min(y0 + _REFINE_ROWS, rows)
        g0 = max(y0 - half, 0)
        g1 = min(y1 + half, rows)
        nr = g1 - g0
        # right values relative to the block's mean (conditioning of the sums); non-
        # finite values count in sums[5] and are 0 in the others
        mu = 0.0
        n = 0
        for i in range(g0, g1):
            for x in range(wr):
                v = right[i, x]
                if np.isfinite(v):
                    mu += v
                    n += 1
        mu = mu / n if n > 0 else 0.0
        sums = np.zeros((6, nr + 1, wr + 1))
        rc = np.zeros(wr + 3)
        for i in range(nr):
            row = right[g0 + i]
            for x in range(wr):
                v = row[x] - mu
                rc[x] = v if np.isfinite(v) else 0.0
            a0 = a1 = a2 = a3 = a4 = a5 = 0.0
            for x in range(wr):
                v = rc[x]
                a0 += v
                a1 += v * v
                a2 += v * rc[x + 1]
                a3 += v * rc[x + 2]
                a4 += v * rc[x + 3]
                a5 += 0.0 if np.isfinite(row[x]) else 1.0
                sums[0, i + 1, x + 1] = sums[0, i, x + 1] + a0
                sums[1, i + 1, x + 1] = sums[1, i, x + 1] + a1
                sums[2, i + 1, x + 1] = sums[2, i, x + 1] + a2
                sums[3, i + 1, x + 1] = sums[3, i, x + 1] + a3
                sums[4, i + 1, x + 1] = sums[4, i, x + 1] + a4
                sums[5, i + 1, x + 1] = sums[5, i, x + 1] + a5
        for y in range(y0, y1):
            ra = y - half - g0  # window rows in the integral images: ra .. rb - 1
            rb = y + half + 1 - g0
            for x in range(cols):
                d0 = disp[y, x]
                out[y, x] = d0
                if not np.isfinite(d0) or y < half or y >= rows - half or x < half \
                        or x >= cols - half:
                    continue
                lref = left[y, x]
                m = 0.0  # mean and 1 / std of the left window, from the first pass
                inv_sd = 0.0
                d = d0
                ok = True
                ic = -(1 << 40)  # integer position of the moments below
                c0 = c1 = c2 = c3 = 0.0
                b0 = b1 = b2 = b3 = 0.0
                m00 = m01 = m02 = m03 = m11 = m12 = m13 = m22 = m23 = m33 = 0.0
                for _ in range(n_iter):
                    xs = x + d
                    i0 = int(np.floor(xs))
                    if i0 != ic:
                        if i0 - half - 1 < 0 or i0 + half + 2 >= wr:
                            ok = False
                            break
                        lo = i0 - half - 1  # first column of tap 0 over the window
                        hi = i0 + half  # one past its last column
                        bad = _box(sums, 5, ra, rb, lo + 3, hi + 3)
                        if bad > 0.5:
                            ok = False
                            break
                        c0 = c1 = c2 = c3 = 0.0
                        sl = 0.0
                        sl2 = 0.0
                        for i in range(-half, half + 1):
                            lrow = left[y + i]
                            rrow = right[y + i]
                            u0 = rrow[lo] - mu
                            u1 = rrow[lo + 1] - mu
                            u2 = rrow[lo + 2] - mu
                            for j in range(-half, half + 1):
                                u3 = rrow[i0 + j + 2] - mu
                                lv = lrow[x + j] - lref
                                sl += lv
                                sl2 += lv * lv
                                c0 += lv * u0
                                c1 += lv * u1
                                c2 += lv * u2
                                c3 += lv * u3
                                u0 = u1
                                u1 = u2
                                u2 = u3
                        if ic == -(1 << 40):  # first pass: the left window's statistics
                            if not (np.isfinite(sl) and np.isfinite(sl2)):
                                ok = False
                                break
                            m = sl * inv_n
                            lvar = sl2 * inv_n - m * m
                            if lvar < 1e-12:  # std < 1e-6
                                ok = False
                                break
                            inv_sd = 1.0 / np.sqrt(lvar)
                        b0 = _box(sums, 0, ra, rb, lo, hi)
                        b1 = _box(sums, 0, ra, rb, lo + 1, hi + 1)
                        b2 = _box(sums, 0, ra, rb, lo + 2, hi + 2)
                        b3 = _box(sums, 0, ra, rb, lo + 3, hi + 3)
                        m00 = _box(sums, 1, ra, rb, lo, hi)
                        m11 = _box(sums, 1, ra, rb, lo + 1, hi + 1)
                        m22 = _box(sums, 1, ra, rb, lo + 2, hi + 2)
                        m33 = _box(sums, 1, ra, rb, lo + 3, hi + 3)
                        m01 = _box(sums, 2, ra, rb, lo, hi)
                        m12 = _box(sums, 2, ra, rb, lo + 1, hi + 1)
                        m23 = _box(sums, 2, ra, rb, lo + 2, hi + 2)
                        m02 = _box(sums, 3, ra, rb, lo, hi)
                        m13 = _box(sums, 3, ra, rb, lo + 1, hi + 1)
                        m03 = _box(sums, 4, ra, rb, lo, hi)
                        ic = i0
                    t = xs - i0
                    t2 = t * t
                    t3 = t2 * t
                    wa = -0.5 * t3 + t2 - 0.5 * t
                    wb = 1.5 * t3 - 2.5 * t2 + 1.0
                    wc = -1.5 * t3 + 2.0 * t2 + 0.5 * t
                    wd = 0.5 * t3 - 0.5 * t2
                    ga = -1.5 * t2 + 2.0 * t - 0.5
                    gb = 4.5 * t2 - 5.0 * t
                    gc = -4.5 * t2 + 4.0 * t + 0.5
                    gd = 1.5 * t2 - t
                    s_r = wa * b0 + wb * b1 + wc * b2 + wd * b3
                    s_g = ga * b0 + gb * b1 + gc * b2 + gd * b3
                    s_lr = wa * c0 + wb * c1 + wc * c2 + wd * c3
                    s_lg = ga * c0 + gb * c1 + gc * c2 + gd * c3
                    mw0 = m00 * wa + m01 * wb + m02 * wc + m03 * wd  # M w and M g
                    mw1 = m01 * wa + m11 * wb + m12 * wc + m13 * wd
                    mw2 = m02 * wa + m12 * wb + m22 * wc + m23 * wd
                    mw3 = m03 * wa + m13 * wb + m23 * wc + m33 * wd
                    s_rr = wa * mw0 + wb * mw1 + wc * mw2 + wd * mw3
                    s_rg = ga * mw0 + gb * mw1 + gc * mw2 + gd * mw3
                    mg0 = m00 * ga + m01 * gb + m02 * gc + m03 * gd
                    mg1 = m01 * ga + m11 * gb + m12 * gc + m13 * gd
                    mg2 = m02 * ga + m12 * gb + m22 * gc + m23 * gd
                    mg3 = m03 * ga + m13 * gb + m23 * gc + m33 * gd
                    s_gg = ga * mg0 + gb * mg1 + gc * mg2 + gd * mg3
                    mr = s_r * inv_n
                    var = s_rr * inv_n - mr * mr
                    if var < 1e-12:  # std of the right window < 1e-6
                        ok = False
                        break
                    inv_var = 1.0 / var
                    mgr = s_g * inv_n
                    cov = (s_rg * inv_n - mr * mgr) * inv_var  # mean of Rz g, g = (G - mean G) / sr
                    lzr = (s_lr - m * s_r) * inv_sd  # sum of Lz R
                    lzg = (s_lg - m * s_g) * inv_sd  # sum of Lz G
                    # sum of (Lz - Rz) (g - Rz cov) = num / sr, sum of (g - Rz cov)^2 = den
                    num = lzg - cov * lzr
                    den = (s_gg - nw * mgr * mgr) * inv_var - nw * cov * cov
                    if den <= 0.0:
                        ok = False
                        break
                    num /= np.sqrt(var) * den
                    step = min(max(num, -0.5), 0.5)
                    d += step
                    if abs(step) < 0.005:
                        break
                if ok and abs(d - d0) <= 1.0:
                    out[y, x] = d


def refine_subpixel(left: np.ndarray, right: np.ndarray, disp: np.ndarray, window: int = 7,
                    iterations: int = 3) -> np.ndarray:
    """Image-based sub-pixel refinement of a disparity map (Gauss-Newton on the ZNCC).

    Each valid disparity is moved to the nearby maximum of the zero-mean normalised
    correlation of its window (Gauss-Newton on ``sum (Lz - Rz(d))²``, which is
    ``2 n (1 - zncc)``, with the exact Jacobian of the normalised right window), the
    right image being interpolated by Keys' cubic convolution along the epipolar line.
    The cost-curve fits of :func:`wta_subpixel` are biased towards integer disparities
    (pixel locking); this is not. Moves larger than one pixel are refused (the disparity
    is kept).

    Parameters
    ----------
    left, right : numpy.ndarray
        The rectified pair (NaN = no data).
    disp : numpy.ndarray
        Disparities to refine (NaN = none), same shape as ``left``.
    window : int
        Odd window side (3..15).
    iterations : int
        Gauss-Newton iterations (each moves at most half a pixel).

    Returns
    -------
    numpy.ndarray
        float32 refined disparities.

    """
    lf, rf = _check_pair(left, right)
    d = _check_image("disp", disp)
    if d.shape != lf.shape:
        raise ValueError(f"disp must have the shape of left {lf.shape}, got {d.shape}")
    w = int(window)
    if w != window or w < 3 or w % 2 == 0 or w > 15:
        raise ValueError(f"window must be an odd integer in 3..15, got {window}")
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    out = np.empty_like(d)
    _refine_loop(lf.astype(np.float64), rf.astype(np.float64), d, w // 2, int(iterations),
                 out)
    return out


# ------------------------------------------------------------- speckle, median
@numba.njit(cache=True)
def _speckle_loop(disp, max_size, max_diff, remove):  # pragma: no cover - compiled
    rows, cols = disp.shape
    label = np.zeros((rows, cols), np.int32)
    stack = np.empty(rows * cols, np.int64)
    members = np.empty(rows * cols, np.int64)
    cur = 0
    for r0 in range(rows):
        for c0 in range(cols):
            if label[r0, c0] != 0 or not np.isfinite(disp[r0, c0]):
                continue
            cur += 1
            label[r0, c0] = cur
            top = 0
            stack[0] = r0 * cols + c0
            top = 1
            n = 0
            while top > 0:
                top -= 1
                p = stack[top]
                members[n] = p
                n += 1
                r = p // cols
                c = p % cols
                d = disp[r, c]
                for k in range(4):
                    rr = r + (1 if k == 0 else (-1 if k == 1 else 0))
                    cc = c + (1 if k == 2 else (-1 if k == 3 else 0))
                    if 0 <= rr < rows and 0 <= cc < cols and label[rr, cc] == 0:
                        v = disp[rr, cc]
                        if np.isfinite(v) and abs(v - d) <= max_diff:
                            label[rr, cc] = cur
                            stack[top] = rr * cols + cc
                            top += 1
            if n < max_size:
                for i in range(n):
                    remove[members[i] // cols, members[i] % cols] = True


def speckle_filter(disp: np.ndarray, max_size: int, max_diff: float = 1.0) -> np.ndarray:
    """Pixels of small connected regions (speckles).

    Regions connect 4-neighbours whose disparities differ by at most ``max_diff``; those
    smaller than ``max_size`` pixels are speckles.

    Returns
    -------
    numpy.ndarray
        bool (rows, cols): True where the pixel belongs to such a speckle.

    """
    d = _check_image("disp", disp)
    if max_size < 0:
        raise ValueError("max_size must be >= 0")
    remove = np.zeros(d.shape, np.bool_)
    if max_size > 0:
        _speckle_loop(d, int(max_size), np.float32(max_diff), remove)
    return remove


@numba.njit(inline="always")
def _sort3(a, b, c):  # pragma: no cover - compiled
    lo = min(a, b)
    hi = max(a, b)
    return min(lo, c), max(lo, min(hi, c)), max(hi, c)


@numba.njit(inline="always")
def _med3(a, b, c):  # pragma: no cover - compiled
    return max(min(a, b), min(max(a, b), c))


@numba.njit(cache=True, parallel=True)
def _median_loop(disp, out):  # pragma: no cover - compiled
    # Inside the image and where the 3x3 window is all finite (nearly everywhere), the
    # median of 9 is med3(max of the column minima, med3 of the column medians, min of
    # the column maxima), the columns being sorted triples: branch-free, vectorised.
    # Elsewhere, the median of the finite neighbours by insertion sort.
    rows, cols = disp.shape
    for r in numba.prange(rows):
        buf = np.empty(9, np.float32)
        lo = np.empty(cols, np.float32)
        md = np.empty(cols, np.float32)
        hi = np.empty(cols, np.float32)
        nf = np.zeros(cols, np.int32)
        full = 0 < r < rows - 1
        if full:
            up = disp[r - 1]
            mid = disp[r]
            dn = disp[r + 1]
            for c in range(cols):
                a, b, e = _sort3(up[c], mid[c], dn[c])
                lo[c] = a
                md[c] = b
                hi[c] = e
                nf[c] = np.int32(np.isfinite(up[c])) + np.int32(np.isfinite(mid[c])) \
                    + np.int32(np.isfinite(dn[c]))
            orow = out[r]
            for c in range(1, cols - 1):
                orow[c] = _med3(max(max(lo[c - 1], lo[c]), lo[c + 1]),
                                _med3(md[c - 1], md[c], md[c + 1]),
                                min(min(hi[c - 1], hi[c]), hi[c + 1]))
        for c in range(cols):
            if not np.isfinite(disp[r, c]):
                out[r, c] = np.nan
                continue
            if full and 0 < c < cols - 1 and nf[c - 1] + nf[c] + nf[c + 1] == 9:
                continue
            n = 0
            for i in range(max(r - 1, 0), min(r + 2, rows)):
                for j in range(max(c - 1, 0), min(c + 2, cols)):
                    v = disp[i, j]
                    if np.isfinite(v):
                        buf[n] = v
                        n += 1
            for i in range(1, n):  # insertion sort of at most 9 values
                v = buf[i]
                k = i - 1
                while k >= 0 and buf[k] > v:
                    buf[k + 1] = buf[k]
                    k -= 1
                buf[k + 1] = v
            if n % 2 == 1:
                out[r, c] = buf[n // 2]
            else:
                out[r, c] = 0.5 * (buf[n // 2 - 1] + buf[n // 2])


def median_valid(disp: np.ndarray) -> np.ndarray:
    """3×3 median of the finite neighbours of each finite pixel (NaN stays NaN)."""
    d = _check_image("disp", disp)
    out = np.empty_like(d)
    _median_loop(d, out)
    return out


# ----------------------------------------------------------------- the chain
def _tile_starts(n: int, tile: int) -> list[int]:
    return list(range(0, n, tile)) if n > 0 else []


def match(left: np.ndarray, right: np.ndarray, dmin: int, dmax: int, *,
          cost: str = "census", window: int = 7, p1: float = 8.0, p2: float = 32.0,
          subpixel: str = "parabola", lr_threshold: float = 1.0, speckle_size: int = 50,
          speckle_diff: float = 1.0, median: bool = True, refine: bool = True,
          tile: int = 512, overlap: int = 32, refine_window: int | None = None
          ) -> StereoResult:
    """Dense disparity of a rectified pair (the whole chain, tile by tile).

    Parameters
    ----------
    left, right : numpy.ndarray
        2-D real images with the same number of rows (NaN = no data).
    dmin, dmax : int
        Disparity search range (right column = left column + d).
    cost : {"census", "zncc"}
        Matching cost. Census counts differing bits (0..window²-1); ZNCC is
        ``16 (1 - zncc)`` in [0, 32], so the same penalties suit both roughly.
    window : int
        Odd side of the cost window (3..9).
    p1, p2 : float
        SGM penalties (small and large disparity changes).
    subpixel : {"parabola", "equiangular"}
        Sub-pixel fit of the aggregated cost.
    lr_threshold : float
        Left–right tolerance in pixels.
    speckle_size : int
        Regions smaller than this (pixels) are removed (0: off).
    speckle_diff : float
        Largest disparity step inside a region.
    median : bool
        3×3 median of the valid disparities at the end.
    refine : bool
        Image-based sub-pixel refinement (:func:`refine_subpixel`) after the filters.
    tile : int
        Side of the core of a tile. The cost volumes of one tile only are in memory:
        about ``b (tile + 2 overlap) (tile + 2 (overlap + ndisp)) ndisp`` bytes (the
        columns carry the whole disparity range on each side for the left-right check),
        b = 3 for census with integer penalties (times the number of numba threads, which
        match tiles concurrently), 9 otherwise (13 with several threads).
    overlap : int
        Margin added around each tile (SGM paths start there).
    refine_window : int, optional
        Odd window side (3..15) of the image-based refinement (default: ``window``).

    Returns
    -------
    StereoResult

    """
    lf, rf = _check_pair(left, right)
    dmin, dmax = _check_range(dmin, dmax)
    w = _check_window(window)
    if cost not in ("census", "zncc"):
        raise ValueError(f"unknown cost {cost!r}")
    if tile < 16 or overlap < 0:
        raise ValueError("tile must be >= 16 and overlap >= 0")
    if not (p1 > 0 and p2 >= p1):
        raise ValueError(f"penalties must satisfy p2 >= p1 > 0, got p1={p1}, p2={p2}")
    rows, cols = lf.shape
    nd = dmax - dmin + 1
    disp = np.full((rows, cols), np.nan, np.float32)
    code = np.zeros((rows, cols), np.uint8)
    ints = None
    if cost == "census":
        cl, bl = census_transform(lf, w)
        cr, br = census_transform(rf, w)
        if _census_bits(w) <= 32:  # 8 codes per AVX2 register in the cost loop, not 4
            cl, cr = cl.astype(np.uint32), cr.astype(np.uint32)
        invalid_cost = np.float32(_census_bits(w))
        ints = _int_penalties(_census_bits(w), p1, p2)
    else:
        invalid_cost = np.float32(_INVALID_COST_ZNCC)
    nodata_l = ~np.isfinite(lf)
    if w > 1:
        nodata_l = uniform_filter(nodata_l.astype(np.float32), w, mode="nearest") > 1e-6
    col_margin = overlap + nd  # the LR check needs the whole range of right candidates
    equiangular = subpixel == "equiangular"
    tiles = [(r0, min(r0 + tile, rows), c0, min(c0 + tile, cols))
             for r0 in _tile_starts(rows, tile) for c0 in _tile_starts(cols, tile)]
    # census with integer penalties: tiles on concurrent threads (each tile on one
    # thread, without the GIL) when numba may use several; otherwise one after the other
    workers = min(numba.get_num_threads(), len(tiles)) if ints is not None else 1
    # each thread's cost and sum volumes in buffers kept from tile to tile
    scratch = threading.local()
    nvox = max((min(r1 + overlap, rows) - max(r0 - overlap, 0))
               * (min(c1 + col_margin, cols) - max(c0 - col_margin, 0))
               for r0, r1, c0, c1 in tiles) * (nd + 2) if tiles else 0

    def one_tile(t: tuple[int, int, int, int]) -> None:
        r0, r1, c0, c1 = t
        a0, a1 = max(r0 - overlap, 0), min(r1 + overlap, rows)
        b0, b1 = max(c0 - col_margin, 0), min(c1 + col_margin, cols)
        if ints is not None:  # census, integer penalties: the exact 16-bit SGM
            if not hasattr(scratch, "vol"):
                scratch.vol = np.empty(nvox, np.uint8)
                scratch.s = np.empty(nvox, np.uint16)
            vol = _census_volume(cl[a0:a1], bl[a0:a1], cr[a0:a1], br[a0:a1], b0, b1,
                                 dmin, dmax, w, padded=True, serial=workers > 1,
                                 out=scratch.vol)
            dl, dr = _match16(vol, *ints, int(invalid_cost), equiangular, dmin, b0,
                              rf.shape[1], padded=True, sbuf=scratch.s)
            del vol
        else:
            if cost == "census":
                vol = _census_volume(cl[a0:a1], bl[a0:a1], cr[a0:a1], br[a0:a1], b0,
                                     b1, dmin, dmax, w)
            else:
                vol = _zncc_volume(lf[a0:a1], rf[a0:a1], b0, b1, dmin, dmax, w)
            s = aggregate_sgm(vol, p1, p2)
            dl = np.empty(s.shape[:2], np.float32)
            _wta_loop(s, vol, invalid_cost, np.float32(np.inf), equiangular, dl)
            dl += np.float32(dmin)
            del vol
            dr = np.empty((a1 - a0, rf.shape[1]), np.float32)
            _right_disparity(s, dmin, b0, rf.shape[1], np.float32(np.inf), dr)
            del s
        tc = np.zeros(dl.shape, np.uint8)
        _lr_loop(dl, dr, b0, dmin, nd, np.float32(lr_threshold), tc)
        tc[~np.isfinite(dl) & (tc == 0)] = 2
        core = (slice(r0 - a0, r1 - a0), slice(c0 - b0, c1 - b0))
        disp[r0:r1, c0:c1] = dl[core]
        code[r0:r1, c0:c1] = tc[core]

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(one_tile, tiles):
                pass
    else:
        for t in tiles:
            one_tile(t)
    code[nodata_l] = 1
    disp[code != 0] = np.nan
    if speckle_size > 0:
        sp = speckle_filter(disp, speckle_size, speckle_diff)
        code[sp] = 5
        disp[sp] = np.nan
    if refine:
        disp = refine_subpixel(lf, rf, disp, refine_window or w)
    if median:
        disp = median_valid(disp)
    return StereoResult(disparity=disp, mask=code)
