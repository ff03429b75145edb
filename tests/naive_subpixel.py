"""Slow, obviously-correct reference of ``kernels.subpixel`` (test oracle).

SciPy does the signal processing (Gaussian smoothing, quintic B-spline prefilter and
interpolation), NumPy the Gauss-Newton algebra on whole arrays, and the affine warps are
composed as 3x3 matrices. Same criterion and the same validity rules as the kernel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

GUARD = 3
MASK_GUARD = 1


def tukey(window: int, taper: float) -> np.ndarray:
    x = (np.arange(window) + 0.5) / window
    w = np.ones(window)
    if taper > 0:
        e = taper / 2
        w = np.where(x < e, 0.5 * (1 - np.cos(np.pi * x / e)), w)
        w = np.where(x > 1 - e, 0.5 * (1 - np.cos(np.pi * (1 - x) / e)), w)
    return np.outer(w, w)


def naive_prepare(ref: np.ndarray, sec: np.ndarray, presmooth: float):
    """Smoothed images (minus one level), grown no-data masks."""
    sample = ref[::8, ::8]
    level = float(np.median(sample[np.isfinite(sample)]))
    out = []
    for img in (ref, sec):
        a = np.asarray(img, np.float64) - level
        bad = ~np.isfinite(a)
        if bad.any():
            _, (ii, jj) = ndimage.distance_transform_edt(bad, return_indices=True)
            a = a[ii, jj]
        if presmooth > 0:
            a = ndimage.gaussian_filter(a, presmooth, mode="mirror", truncate=4.0)
            if bad.any():
                bad = ndimage.binary_dilation(bad, iterations=int(4 * presmooth + 0.5))
        out.append((a, bad))
    return out


def spline_derivative(img: np.ndarray, axis: int) -> np.ndarray:
    """Derivative of the mirror-boundary quintic spline of ``img`` at its pixels."""
    c = ndimage.spline_filter1d(img, order=5, axis=axis, mode="mirror")
    n = img.shape[axis]

    def take(k: int) -> np.ndarray:
        idx = np.arange(n) + k
        idx = np.abs(idx)
        idx = np.where(idx >= n, 2 * n - 2 - idx, idx)
        return np.take(c, idx, axis=axis)

    return 5 / 12 * (take(1) - take(-1)) + (take(2) - take(-2)) / 24


def _matrix(p: np.ndarray) -> np.ndarray:
    """3x3 matrix of the warp x~ -> x~ + p_t + P x~ on (row, col, 1) about the centre."""
    return np.array([[1 + p[2], p[3], p[0]], [p[4], 1 + p[5], p[1]], [0.0, 0.0, 1.0]])


def _box_bad(bad: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> bool:
    """Any bad pixel in rows r0..r1-1, cols c0..c1-1 of the mirror-extended mask."""
    ny, nx = bad.shape

    def mirror(i, n):
        i = np.abs(i)
        return np.where(i >= n, 2 * n - 2 - i, i)

    return bool(bad[np.ix_(mirror(np.arange(r0, r1), ny), mirror(np.arange(c0, c1), nx))].any())


def naive_refine(prepared, r0, c0, w, init, *, affine=False, taper=0.0, max_iter=40,
                 tol=1e-7, max_move=1.0, max_masked=0.25):
    """Refine one window; returns (drow, dcol, zncc) or None where the kernel fails."""
    (r, bad_r), (s, bad_s) = prepared
    ny, nx = r.shape
    # Near the border, cut the window symmetrically so that samples at init +- half the
    # allowed move stay inside the image.
    m = 0.5 * max_move
    need = [-(r0 + init[0] - m), r0 + w - 1 + init[0] + m - (ny - 1),
            -(c0 + init[1] - m), c0 + w - 1 + init[1] + m - (nx - 1)]
    k = max([0] + [int(np.ceil(v)) for v in need if v > 0])
    wt = tukey(w, taper)[k:w - k, k:w - k]
    r0, c0, w = r0 + k, c0 + k, w - 2 * k
    if 2 * w < w + 2 * k:
        return None
    if r0 < 0 or c0 < 0 or r0 + w > ny or c0 + w > nx:
        return None
    # A window clean of no-data (its reference pixels and their neighbours, the support of
    # its samples at the start with a 3-px guard) is checked at every iteration. Else a
    # pixel whose 3 x 3 neighbourhood touches the reference's mask, or whose sample at the
    # start (support and a 1-px guard) touches the secondary's, or is sampled outside the
    # image, gets no weight; too many of them and the window fails.
    ys0 = r0 + np.arange(w) + init[0]
    xs0 = c0 + np.arange(w) + init[1]
    clean = (not _box_bad(bad_r, r0 - 1, r0 + w + 1, c0 - 1, c0 + w + 1)
             and ys0.min() >= 0 and xs0.min() >= 0 and ys0.max() <= ny - 1
             and xs0.max() <= nx - 1
             and not _box_bad(bad_s, int(np.floor(ys0.min())) - 2 - GUARD,
                              int(np.floor(ys0.max())) + 4 + GUARD,
                              int(np.floor(xs0.min())) - 2 - GUARD,
                              int(np.floor(xs0.max())) + 4 + GUARD))
    masked = not clean
    if masked:
        valid = np.ones((w, w), bool)
        for a in range(w):
            for b in range(w):
                y, x = r0 + a + init[0], c0 + b + init[1]
                if not (0 <= y <= ny - 1 and 0 <= x <= nx - 1):
                    valid[a, b] = False
                    continue
                if _box_bad(bad_r, r0 + a - 1, r0 + a + 2, c0 + b - 1, c0 + b + 2):
                    valid[a, b] = False
                    continue
                iy, ix = int(np.floor(y)), int(np.floor(x))
                if _box_bad(bad_s, iy - 2 - MASK_GUARD, iy + 4 + MASK_GUARD,
                            ix - 2 - MASK_GUARD, ix + 4 + MASK_GUARD):
                    valid[a, b] = False
        if valid.sum() < (1 - max_masked) * w * w:
            return None
        wt = wt * valid
    h = (w - 1) / 2
    yy, xx = np.mgrid[0:w, 0:w] - h
    f = r[r0:r0 + w, c0:c0 + w]
    gy = spline_derivative(r, 0)[r0:r0 + w, c0:c0 + w]
    gx = spline_derivative(r, 1)[r0:r0 + w, c0:c0 + w]

    def wmean(a):
        return np.sum(wt * a) / np.sum(wt)

    fz = f - wmean(f)
    cols = [gy, gx] + ([gy * yy, gy * xx, gx * yy, gx * xx] if affine else [])
    jac = np.stack([c - wmean(c) for c in cols], axis=-1).reshape(w * w, -1)
    hess = jac.T @ (wt.reshape(-1, 1) * jac)
    npar = jac.shape[1]
    p = np.zeros(6)
    p[:2] = init
    for _ in range(max_iter):
        ys = r0 + np.mgrid[0:w, 0:w][0] + p[0] + p[2] * yy + p[3] * xx
        xs = c0 + np.mgrid[0:w, 0:w][1] + p[1] + p[4] * yy + p[5] * xx
        if ys.min() < 0 or xs.min() < 0 or ys.max() > ny - 1 or xs.max() > nx - 1:
            return None
        y0 = int(np.floor(ys.min())) - 2 - GUARD
        y1 = int(np.floor(ys.max())) + 4 + GUARD
        x0 = int(np.floor(xs.min())) - 2 - GUARD
        x1 = int(np.floor(xs.max())) + 4 + GUARD
        rr = np.arange(y0, y1)
        cc = np.arange(x0, x1)
        mr = np.abs(rr)
        mr = np.where(mr >= ny, 2 * ny - 2 - mr, mr)
        mc = np.abs(cc)
        mc = np.where(mc >= nx, 2 * nx - 2 - mc, mc)
        if not masked and bad_s[np.ix_(mr, mc)].any():
            return None
        g = ndimage.map_coordinates(s, [ys, xs], order=5, mode="mirror")
        gz = g - wmean(g)
        fss, gss = np.sum(wt * fz * fz), np.sum(wt * gz * gz)
        zncc = np.sum(wt * fz * gz) / np.sqrt(fss * gss)
        e = fz - np.sqrt(fss / gss) * gz
        dp = np.linalg.solve(hess, jac.T @ (wt * e).ravel())
        q = np.zeros(6)
        q[:npar] = -dp
        new = _matrix(p) @ np.linalg.inv(_matrix(q))
        p = np.array([new[0, 2], new[1, 2], new[0, 0] - 1, new[0, 1], new[1, 0],
                      new[1, 1] - 1])
        if np.hypot(dp[0], dp[1]) < tol:
            if abs(p[0] - init[0]) > max_move or abs(p[1] - init[1]) > max_move:
                return None
            return p[0], p[1], zncc
    return None
