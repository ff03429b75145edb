"""Slow, obviously-correct reference of ``kernels.subpixel`` (test oracle).

SciPy does the signal processing (Gaussian smoothing, quintic B-spline prefilter and
interpolation), NumPy the Gauss-Newton algebra on whole arrays, and the affine warps are
composed as 3x3 matrices. Same criterion and the same validity rules as the kernel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

GUARD = 3


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


def naive_refine(prepared, r0, c0, w, init, *, affine=False, taper=0.0, max_iter=40,
                 tol=1e-7, max_move=1.0):
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
    lo_r, lo_c = max(r0 - 1, 0), max(c0 - 1, 0)
    if bad_r[lo_r:r0 + w + 1, lo_c:c0 + w + 1].any():
        return None
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
        if bad_s[np.ix_(mr, mc)].any():
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
