"""Slow, obviously-correct references of kernels/stereo.py and kernels/rasterize.py.

Plain Python loops over small arrays, written from the definitions (Zabih & Woodfill's
census, Hirschmüller's SGM recurrence), used as test oracles only.
"""

from __future__ import annotations

import numpy as np

_DIRECTIONS = [(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)]


def census(img, window):
    rows, cols = img.shape
    hr = window // 2
    hc = hr if window < 9 else 3
    codes = np.zeros((rows, cols), dtype=object)
    bad = np.zeros((rows, cols), bool)
    for r in range(rows):
        for c in range(cols):
            bits = []
            nan = not np.isfinite(img[r, c])
            for i in range(-hr, hr + 1):
                for j in range(-hc, hc + 1):
                    if i == 0 and j == 0:
                        continue
                    v = img[min(max(r + i, 0), rows - 1), min(max(c + j, 0), cols - 1)]
                    nan |= not np.isfinite(v)
                    bits.append(1 if v < img[r, c] else 0)
            codes[r, c] = int("".join(map(str, bits)), 2)
            bad[r, c] = nan
    return codes, bad


def census_cost(left, right, dmin, dmax, window):
    cl, bl = census(left, window)
    cr, br = census(right, window)
    nbits = window * (window if window < 9 else 7) - 1
    rows, cols = left.shape
    cost = np.zeros((rows, cols, dmax - dmin + 1))
    for r in range(rows):
        for c in range(cols):
            for k, d in enumerate(range(dmin, dmax + 1)):
                x = c + d
                if bl[r, c] or not 0 <= x < right.shape[1] or br[r, x]:
                    cost[r, c, k] = nbits
                else:
                    cost[r, c, k] = bin(cl[r, c] ^ cr[r, x]).count("1")
    return cost


def zncc_cost(left, right, dmin, dmax, window):
    """16 (1 - zncc) for windows inside both images' columns (rows edge-replicated)."""
    rows, cols = left.shape
    h = window // 2
    cost = np.full((rows, cols, dmax - dmin + 1), 32.0)
    pad_l = np.pad(left, h, mode="edge")
    for r in range(rows):
        for c in range(cols):
            a = pad_l[r:r + window, c:c + window]
            for k, d in enumerate(range(dmin, dmax + 1)):
                x = c + d
                if x - h < 0 or x + h >= right.shape[1] or c - h < 0 or c + h >= cols:
                    continue
                rr = np.pad(right, h, mode="edge")[r:r + window, x:x + window]
                if not (np.all(np.isfinite(a)) and np.all(np.isfinite(rr))):
                    continue
                sa, sb = a.std(), rr.std()
                if sa * sb <= 1e-6:
                    continue
                z = ((a - a.mean()) * (rr - rr.mean())).mean() / (sa * sb)
                cost[r, c, k] = 16.0 * (1.0 - np.clip(z, -1, 1))
    return cost


def sgm(cost, p1, p2):
    rows, cols, nd = cost.shape
    total = np.zeros_like(cost, dtype=np.float64)
    for dr, dc in _DIRECTIONS:
        lr = np.zeros_like(cost, dtype=np.float64)
        rs = range(rows) if dr >= 0 else range(rows - 1, -1, -1)
        cs = range(cols) if dc >= 0 else range(cols - 1, -1, -1)
        for r in rs:
            for c in cs:
                pr, pc = r - dr, c - dc
                if not (0 <= pr < rows and 0 <= pc < cols):
                    lr[r, c] = cost[r, c]
                    continue
                prev = lr[pr, pc]
                m = prev.min()
                for d in range(nd):
                    cands = [prev[d], m + p2]
                    if d > 0:
                        cands.append(prev[d - 1] + p1)
                    if d < nd - 1:
                        cands.append(prev[d + 1] + p1)
                    lr[r, c, d] = cost[r, c, d] + min(cands) - m
        total += lr
    return total


def wta_parabola(aggr, dmin):
    rows, cols, nd = aggr.shape
    out = np.zeros((rows, cols))
    for r in range(rows):
        for c in range(cols):
            s = aggr[r, c]
            k = int(np.argmin(s))
            off = 0.0
            if 0 < k < nd - 1:
                den = 2 * (s[k - 1] - 2 * s[k] + s[k + 1])
                if den > 0:
                    off = min(max((s[k - 1] - s[k + 1]) / den, -0.5), 0.5)
            out[r, c] = dmin + k + off
    return out


def wta_equiangular(aggr, dmin):
    rows, cols, nd = aggr.shape
    out = np.zeros((rows, cols))
    for r in range(rows):
        for c in range(cols):
            s = aggr[r, c]
            k = int(np.argmin(s))
            off = 0.0
            if 0 < k < nd - 1:
                den = 2 * max(s[k - 1] - s[k], s[k + 1] - s[k])
                if den > 0:
                    off = min(max((s[k - 1] - s[k + 1]) / den, -0.5), 0.5)
            out[r, c] = dmin + k + off
    return out


def right_disparity(aggr, dmin, cols_right):
    """Disparity of each right column from the left volume: the best (first on ties, in
    increasing left column) of the left pixels c that see it (c + d), parabola along the
    right pixel's own cost curve S(x - d, d); NaN where none sees it."""
    rows, cols, nd = aggr.shape
    out = np.full((rows, cols_right), np.nan)
    for r in range(rows):
        for x in range(cols_right):
            cands = [(aggr[r, x - dmin - k, k], x - dmin - k, k) for k in range(nd)
                     if 0 <= x - dmin - k < cols]
            if not cands:
                continue
            best = min(cands, key=lambda t: (t[0], t[1]))
            s, c, k = best
            off = 0.0
            if 0 < k < nd - 1 and 0 <= c - 1 and c + 1 < cols:
                a, e = aggr[r, c + 1, k - 1], aggr[r, c - 1, k + 1]
                den = 2 * (a - 2 * s + e)
                if den > 0:
                    off = min(max((a - e) / den, -0.5), 0.5)
            out[r, x] = dmin + k + off
    return out


def lr_codes(dl, dr, dmin, dmax, thr):
    rows, cols = dl.shape
    code = np.zeros((rows, cols), np.uint8)
    for r in range(rows):
        for c in range(cols):
            d = dl[r, c]
            if not np.isfinite(d):
                continue
            x = int(np.floor(c + d + 0.5))
            if not 0 <= x < dr.shape[1]:
                code[r, c] = 2
            elif abs(dr[r, x] - d) <= thr:
                code[r, c] = 0
            else:
                consistent = any(0 <= c + dd < dr.shape[1] and abs(dr[r, c + dd] - dd) <= thr
                                 for dd in range(dmin, dmax + 1))
                code[r, c] = 3 if consistent else 4
    return code


def speckles(disp, max_size, max_diff):
    rows, cols = disp.shape
    seen = np.zeros((rows, cols), bool)
    out = np.zeros((rows, cols), bool)
    for r0 in range(rows):
        for c0 in range(cols):
            if seen[r0, c0] or not np.isfinite(disp[r0, c0]):
                continue
            region = [(r0, c0)]
            seen[r0, c0] = True
            k = 0
            while k < len(region):
                r, c = region[k]
                k += 1
                for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                    if (0 <= rr < rows and 0 <= cc < cols and not seen[rr, cc]
                            and np.isfinite(disp[rr, cc])
                            and abs(disp[rr, cc] - disp[r, c]) <= max_diff):
                        seen[rr, cc] = True
                        region.append((rr, cc))
            if len(region) < max_size:
                for r, c in region:
                    out[r, c] = True
    return out


def median3(disp):
    rows, cols = disp.shape
    out = np.full((rows, cols), np.nan)
    for r in range(rows):
        for c in range(cols):
            if np.isfinite(disp[r, c]):
                w = disp[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
                out[r, c] = np.median(w[np.isfinite(w)])
    return out


def rasterize_median(x, y, z, x0, y0, res, shape):
    rows, cols = shape
    cells = {}
    for xi, yi, zi in zip(x, y, z, strict=True):
        j = int(np.floor((xi - x0) / res))
        i = int(np.floor((y0 - yi) / res))
        if 0 <= i < rows and 0 <= j < cols and np.isfinite(zi):
            cells.setdefault((i, j), []).append(zi)
    value = np.full(shape, np.nan)
    count = np.zeros(shape, int)
    for (i, j), v in cells.items():
        value[i, j] = np.median(v)
        count[i, j] = len(v)
    return value, count


def _keys(row, x):
    """Keys cubic convolution (a = -0.5) of a 1-D row at positions x (NaN near the ends)."""
    x = np.asarray(x, dtype=np.float64)
    i0 = np.floor(x).astype(int)
    t = x - i0
    w = [-0.5 * t**3 + t**2 - 0.5 * t, 1.5 * t**3 - 2.5 * t**2 + 1,
         -1.5 * t**3 + 2 * t**2 + 0.5 * t, 0.5 * t**3 - 0.5 * t**2]
    ok = (i0 - 1 >= 0) & (i0 + 2 < len(row))
    idx = np.clip(i0, 1, len(row) - 3)
    v = sum(wk * row[idx - 1 + k] for k, wk in enumerate(w))
    return np.where(ok, v, np.nan)


def refine_bruteforce(left, right, disp, window, step=0.002):
    """Disparity maximising the ZNCC within 1 px of ``disp``, by exhaustive search."""
    h = window // 2
    rows, cols = left.shape
    out = np.array(disp, dtype=np.float64)
    for y in range(h, rows - h):
        for x in range(h, cols - h):
            if not np.isfinite(disp[y, x]):
                continue
            a = left[y - h:y + h + 1, x - h:x + h + 1].astype(np.float64)
            a = (a - a.mean()) / a.std()
            ds = np.arange(disp[y, x] - 1, disp[y, x] + 1 + 1e-9, step)
            # b[k, i, j] = right(y + i, x + j + ds[k]) for every candidate at once
            b = np.stack([_keys(right[y + i].astype(np.float64),
                                x + np.arange(-h, h + 1)[None, :] + ds[:, None])
                          for i in range(-h, h + 1)], axis=1)
            bm = b.mean(axis=(1, 2), keepdims=True)
            bs = b.std(axis=(1, 2), keepdims=True)
            z = np.mean(a[None] * (b - bm) / bs, axis=(1, 2))
            z[~np.isfinite(z)] = -np.inf
            out[y, x] = ds[int(np.argmax(z))]
    return out
