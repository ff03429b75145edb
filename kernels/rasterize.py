"""Rasterisation of a point cloud onto a regular north-up grid, and hole filling.

Grid convention: cell ``(i, j)`` covers ``x0 + j res <= x < x0 + (j + 1) res`` and
``y0 - (i + 1) res < y <= y0 - i res`` (``x0, y0`` the upper-left corner).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["Raster", "rasterize_points", "fill_holes", "fill_from_neighbours", "splat_points",
           "finish_splat"]


@dataclass(frozen=True)
class Raster:
    """Layers produced by :func:`rasterize_points` (all (rows, cols)).

    Attributes
    ----------
    value : numpy.ndarray
        float32 median height of the points of each cell; where a cell has no point,
        the median of the points of its 3×3 neighbourhood (when ``radius`` is 1); NaN
        where none.
    count : numpy.ndarray
        uint16 number of points in the cell itself.
    uncertainty : numpy.ndarray
        float32 1-sigma estimate: the robust spread (1.4826 MAD) of the cell's points
        when it has three or more, else the mean prior sigma of the points used; NaN
        where ``value`` is NaN.
    colour : numpy.ndarray
        float32 mean of the points' colour (same support as ``value``).

    """

    value: np.ndarray
    count: np.ndarray
    uncertainty: np.ndarray
    colour: np.ndarray


@numba.njit(cache=True)
def _cells_loop(keys, z, col, sig, starts, rows, cols, radius, value, count, unc, colour):
    # pragma: no cover - compiled
    buf = np.empty(z.shape[0], np.float64)
    for i in range(rows):
        for j in range(cols):
            k = i * cols + j
            s, e = starts[k], starts[k + 1]
            n = e - s
            count[i, j] = min(n, 65535)
            if n == 0 and radius == 0:
                continue
            m = 0
            csum = 0.0
            ssum = 0.0
            if n > 0:
                for p in range(s, e):
                    buf[m] = z[p]
                    csum += col[p]
                    ssum += sig[p]
                    m += 1
            else:
                for ii in range(max(i - radius, 0), min(i + radius + 1, rows)):
                    for jj in range(max(j - radius, 0), min(j + radius + 1, cols)):
                        kk = ii * cols + jj
                        for p in range(starts[kk], starts[kk + 1]):
                            buf[m] = z[p]
                            csum += col[p]
                            ssum += sig[p]
                            m += 1
            if m == 0:
                continue
            v = np.sort(buf[:m])
            med = v[m // 2] if m % 2 == 1 else 0.5 * (v[m // 2 - 1] + v[m // 2])
            value[i, j] = med
            colour[i, j] = csum / m
            if n >= 3:
                for q in range(m):
                    v[q] = abs(v[q] - med)
                v = np.sort(v)
                mad = v[m // 2] if m % 2 == 1 else 0.5 * (v[m // 2 - 1] + v[m // 2])
                unc[i, j] = max(1.4826 * mad, ssum / m / np.sqrt(m))
            else:
                unc[i, j] = ssum / m


def rasterize_points(x: np.ndarray, y: np.ndarray, z: np.ndarray, x0: float, y0: float,
                     res: float, shape: tuple[int, int], colour: np.ndarray | None = None,
                     sigma: np.ndarray | float = 0.0, radius: int = 1) -> Raster:
    """Median-per-cell rasterisation of points ``(x, y, z)``.

    Parameters
    ----------
    x, y, z : numpy.ndarray
        Point coordinates (same size; non-finite points are ignored).
    x0, y0 : float
        Upper-left corner of the grid.
    res : float
        Cell size (> 0).
    shape : tuple of int
        (rows, cols) of the grid.
    colour : numpy.ndarray, optional
        A value per point averaged per cell (the ortho-image).
    sigma : numpy.ndarray or float
        Prior 1-sigma of each point's ``z``.
    radius : int
        0: empty cells stay empty; 1: an empty cell takes the median of its 3×3
        neighbourhood (fills the gaps of an irregular point spacing).

    Returns
    -------
    Raster

    """
    xa, ya, za = (np.asarray(a, np.float64).ravel() for a in (x, y, z))
    if not (xa.size == ya.size == za.size):
        raise ValueError("x, y and z must have the same size")
    if not res > 0:
        raise ValueError(f"res must be positive, got {res}")
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    if radius not in (0, 1, 2):
        raise ValueError("radius must be 0, 1 or 2")
    ca = np.zeros_like(za) if colour is None else np.asarray(colour, np.float64).ravel()
    sa = np.broadcast_to(np.asarray(sigma, np.float64), za.shape).ravel()
    if ca.size != za.size:
        raise ValueError("colour must have one value per point")
    j = np.floor((xa - x0) / res)
    i = np.floor((y0 - ya) / res)
    ok = (np.isfinite(xa) & np.isfinite(ya) & np.isfinite(za) & np.isfinite(ca)
          & (i >= 0) & (i < rows) & (j >= 0) & (j < cols))
    keys = (i[ok] * cols + j[ok]).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.searchsorted(keys, np.arange(rows * cols + 1)).astype(np.int64)
    value = np.full((rows, cols), np.nan, np.float32)
    unc = np.full((rows, cols), np.nan, np.float32)
    col_out = np.full((rows, cols), np.nan, np.float32)
    count = np.zeros((rows, cols), np.uint16)
    _cells_loop(keys, za[ok][order], ca[ok][order], sa[ok][order], starts, rows, cols,
                int(radius), value, count, unc, col_out)
    return Raster(value=value, count=count, uncertainty=unc, colour=col_out)


@numba.njit(cache=True)
def _fill_loop(a, max_dist, out, filled):  # pragma: no cover - compiled
    rows, cols = a.shape
    for i in range(rows):
        for j in range(cols):
            if np.isfinite(a[i, j]):
                continue
            wsum = 0.0
            vsum = 0.0
            found = 0
            hit = np.zeros(8, np.bool_)
            for k in range(8):
                # directions ordered so that k and 7 - k are opposite
                di = (-1, -1, -1, 0, 0, 1, 1, 1)[k]
                dj = (-1, 0, 1, -1, 1, -1, 0, 1)[k]
                for step in range(1, max_dist + 1):
                    ii = i + di * step
                    jj = j + dj * step
                    if ii < 0 or ii >= rows or jj < 0 or jj >= cols:
                        break
                    v = a[ii, jj]
                    if np.isfinite(v):
                        d2 = float(di * di + dj * dj) * step * step
                        wsum += 1.0 / d2
                        vsum += v / d2
                        found += 1
                        hit[k] = True
                        break
            pairs = 0
            for k in range(4):
                if hit[k] and hit[7 - k]:
                    pairs += 1
            if pairs >= 2:  # enclosed: data on both sides along two axes (no extrapolation)
                out[i, j] = vsum / wsum
                filled[i, j] = True


def fill_holes(a: np.ndarray, max_dist: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN cells by inverse-distance weighting.

    The first valid cell found in each of the 8 directions (within ``max_dist`` cells)
    contributes with weight 1/d². A cell is filled only when it is enclosed: valid cells
    are found on both sides along at least two of the four axes, so the DSM is not
    extrapolated beyond the edge of the data.

    Returns
    -------
    filled_array : numpy.ndarray
        float32 copy of ``a`` with holes filled.
    filled : numpy.ndarray
        bool mask of the cells filled.

    """
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"a must be 2-D, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"a must be floating point (NaN marks holes), got {arr.dtype}")
    if max_dist < 1:
        raise ValueError("max_dist must be >= 1")
    src = np.ascontiguousarray(arr, dtype=np.float32)
    out = src.copy()
    filled = np.zeros(src.shape, np.bool_)
    _fill_loop(src, int(max_dist), out, filled)
    return out, filled


@numba.njit(cache=True)
def _neighbour_loop(value, unc, colour, min_n, out_v, out_u, out_c):  # pragma: no cover
    rows, cols = value.shape
    buf = np.empty(9)
    ubuf = np.empty(9)
    for i in range(rows):
        for j in range(cols):
            if np.isfinite(value[i, j]):
                continue
            n = 0
            csum = 0.0
            for ii in range(max(i - 1, 0), min(i + 2, rows)):
                for jj in range(max(j - 1, 0), min(j + 2, cols)):
                    if np.isfinite(value[ii, jj]):
                        buf[n] = value[ii, jj]
                        ubuf[n] = unc[ii, jj]
                        csum += colour[ii, jj]
                        n += 1
            if n >= min_n:
                order = np.argsort(buf[:n])
                mid = order[n // 2]
                out_v[i, j] = buf[mid]
                out_u[i, j] = ubuf[mid]
                out_c[i, j] = csum / n


def fill_from_neighbours(value: np.ndarray, uncertainty: np.ndarray, colour: np.ndarray,
                         min_neighbours: int = 3
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give each empty cell the median of its valid 3×3 neighbours.

    The gaps of an irregular point spacing (a cell the size of the pixels may receive no
    point) are closed this way; larger holes are left to :func:`fill_holes`.

    Parameters
    ----------
    value, uncertainty, colour : numpy.ndarray
        Float layers of the same shape (NaN in ``value`` = empty).
    min_neighbours : int
        Valid neighbours (of 8) needed.

    Returns
    -------
    value, uncertainty, colour : numpy.ndarray
        float32 copies with the gaps filled (the uncertainty of the median neighbour,
        the mean colour).

    """
    v = np.ascontiguousarray(value, dtype=np.float32)
    u = np.ascontiguousarray(uncertainty, dtype=np.float32)
    c = np.ascontiguousarray(colour, dtype=np.float32)
    if v.ndim != 2 or u.shape != v.shape or c.shape != v.shape:
        raise ValueError("value, uncertainty and colour must be 2-D of one shape")
    if not 1 <= min_neighbours <= 8:
        raise ValueError("min_neighbours must be in 1..8")
    out_v, out_u, out_c = v.copy(), u.copy(), c.copy()
    _neighbour_loop(v, u, c, int(min_neighbours), out_v, out_u, out_c)
    return out_v, out_u, out_c


@numba.njit(cache=True, nogil=True)
def _splat_loop(x, y, z, c, x0, y0, res, inv2s2, radius, sums):  # pragma: no cover
    rows, cols = sums.shape[1], sums.shape[2]
    for p in range(x.shape[0]):
        fx = (x[p] - x0) / res - 0.5  # cell centres at integers
        fy = (y0 - y[p]) / res - 0.5
        ci = int(np.floor(fy + 0.5))
        cj = int(np.floor(fx + 0.5))
        zp = z[p]
        for i in range(ci - radius, ci + radius + 1):
            if i < 0 or i >= rows:
                continue
            dy = fy - i
            for j in range(cj - radius, cj + radius + 1):
                if j < 0 or j >= cols:
                    continue
                dx = fx - j
                w = np.exp(-(dx * dx + dy * dy) * inv2s2)
                sums[0, i, j] += w
                sums[1, i, j] += w * zp
                sums[2, i, j] += w * zp * zp
                sums[3, i, j] += w * c[p]
        if 0 <= ci < rows and 0 <= cj < cols:
            sums[4, ci, cj] += 1.0


def splat_points(x: np.ndarray, y: np.ndarray, z: np.ndarray, colour: np.ndarray,
                 x0: float, y0: float, res: float, sums: np.ndarray, sigma: float = 0.5,
                 radius: int = 1) -> None:
    """Add points to Gaussian-weighted sums on a grid (in place).

    Each point adds, to every cell whose centre is within ``radius`` cells, the weight
    ``w = exp(-d² / (2 sigma²))`` (``d`` its distance to the cell centre, in cells) and
    ``w z``, ``w z²``, ``w colour``; its own cell counts it. Sums of several calls (tiles,
    pairs) add exactly, so a grid can be filled piece by piece in any order;
    :func:`finish_splat` turns them into heights. Weighting by distance, rather than
    taking the median of the points of a cell, averages the matching noise of the
    neighbouring points (CARS rasterises this way).

    Parameters
    ----------
    x, y, z, colour : numpy.ndarray
        Points (same size; non-finite ones are ignored).
    x0, y0 : float
        Upper-left corner of the grid.
    res : float
        Cell size.
    sums : numpy.ndarray
        float64 (5, rows, cols): sum of w, w z, w z², w colour, and the point count.
    sigma : float
        Gaussian sigma in cells (> 0).
    radius : int
        Cells reached on each side (0..3).

    """
    if sums.ndim != 3 or sums.shape[0] != 5 or sums.dtype != np.float64:
        raise ValueError("sums must be float64 of shape (5, rows, cols)")
    if not (sigma > 0 and 0 <= radius <= 3 and res > 0):
        raise ValueError("sigma and res must be positive and radius in 0..3")
    arrs = [np.ascontiguousarray(a, np.float64).ravel() for a in (x, y, z, colour)]
    n = arrs[0].size
    if any(a.size != n for a in arrs):
        raise ValueError("x, y, z and colour must have the same size")
    ok = np.isfinite(arrs[0]) & np.isfinite(arrs[1]) & np.isfinite(arrs[2]) & np.isfinite(
        arrs[3])
    if not ok.all():
        arrs = [a[ok] for a in arrs]
    _splat_loop(arrs[0], arrs[1], arrs[2], arrs[3], float(x0), float(y0), float(res),
                1.0 / (2.0 * sigma * sigma), int(radius), sums)


def finish_splat(sums: np.ndarray, prior_sigma: float | np.ndarray, min_weight: float = 0.2
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Heights, uncertainty, colour and count from :func:`splat_points` sums.

    A cell with a total weight below ``min_weight`` stays empty (NaN). The uncertainty is
    the weighted standard deviation of the points when they are three or more (by
    effective number), else ``prior_sigma``.

    Returns
    -------
    value, uncertainty, colour : numpy.ndarray
        float32 (rows, cols).
    count : numpy.ndarray
        int32 points per cell.

    """
    w, wz, wz2, wc, n = sums
    have = w >= min_weight
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(have, wz / w, np.nan)
        var = np.maximum(wz2 / w - value * value, 0.0)
        colour = np.where(have, wc / w, np.nan)
    unc = np.where(have & (n >= 3), np.sqrt(var), prior_sigma)
    unc = np.where(have, unc, np.nan)
    return (value.astype(np.float32), unc.astype(np.float32), colour.astype(np.float32),
            n.astype(np.int32))
