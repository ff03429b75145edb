"""Slow, obviously-correct reference implementations used as test oracles.

Plain Python loops and NumPy; no Numba. Each function mirrors the definition in the
docstring of the kernel it checks, on small arrays only.
"""

from __future__ import annotations

import numpy as np

from tests.naive_subpixel import naive_prepare, naive_refine

# ======================================================================================
# kernels.ncc
# ======================================================================================


def naive_zncc(a: np.ndarray, b: np.ndarray) -> float:
    """ZNCC of two equal-shape windows (two-pass); 0 when ``b`` is flat."""
    a = a.astype(np.float64) - a.astype(np.float64).mean()
    b = b.astype(np.float64) - b.astype(np.float64).mean()
    den = np.sqrt(np.sum(a * a) * np.sum(b * b))
    if np.sum(b * b) == 0.0:
        return 0.0
    return float(np.clip(np.sum(a * b) / den, -1.0, 1.0))


def naive_ncc_surface(ref_win: np.ndarray, sec_area: np.ndarray) -> np.ndarray:
    """ZNCC of ``ref_win`` at every placement inside ``sec_area``."""
    h, w = ref_win.shape
    out = np.zeros((sec_area.shape[0] - h + 1, sec_area.shape[1] - w + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = naive_zncc(ref_win, sec_area[i : i + h, j : j + w])
    return out


def _parabola(fm: float, f0: float, fp: float) -> float:
    den = fm - 2 * f0 + fp
    if den >= 0:
        return 0.0
    return float(np.clip(0.5 * (fm - fp) / den, -0.5, 0.5))


def naive_subpixel(s3: np.ndarray) -> tuple[float, float]:
    """Sub-pixel peak of a 3x3 neighbourhood: LS quadratic by lstsq, else parabolas."""
    u, v = np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], indexing="ij")  # u rows, v cols
    x, y = v.ravel(), u.ravel()
    design = np.stack([np.ones(9), x, y, x * x, x * y, y * y], axis=1)
    a0, b, c, d, e, g = np.linalg.lstsq(design, s3.ravel(), rcond=None)[0]
    hess = np.array([[2 * d, e], [e, 2 * g]])
    if d < 0 and np.linalg.det(hess) > 0:
        xs, ys = np.linalg.solve(hess, [-b, -c])
        if abs(xs) <= 1 and abs(ys) <= 1:
            return float(ys), float(xs)
    return _parabola(s3[0, 1], s3[1, 1], s3[2, 1]), _parabola(s3[1, 0], s3[1, 1], s3[1, 2])


def naive_ncc_correlate(
    ref, sec, rows, cols, window, search, prior_rows=None, prior_cols=None, refine=True
):
    """Loop over windows; returns (drow, dcol, score, snr) as float64 arrays."""
    n = len(rows)
    prior_rows = np.zeros(n, int) if prior_rows is None else prior_rows
    prior_cols = np.zeros(n, int) if prior_cols is None else prior_cols
    out = np.full((4, n), np.nan)
    out[2] = 0.0
    half = window // 2
    prepared = naive_prepare(ref, sec, 0.6) if refine else None
    for k in range(n):
        r0, c0 = rows[k] - half, cols[k] - half
        sr0, sc0 = r0 + prior_rows[k] - search, c0 + prior_cols[k] - search
        side = window + 2 * search
        if min(r0, c0, sr0, sc0) < 0:
            continue
        if max(r0 + window, sr0 + side) > ref.shape[0]:
            continue
        if max(c0 + window, sc0 + side) > ref.shape[1]:
            continue
        win = ref[r0 : r0 + window, c0 : c0 + window].astype(np.float64)
        area = sec[sr0 : sr0 + side, sc0 : sc0 + side].astype(np.float64)
        if not (np.all(np.isfinite(win)) and np.all(np.isfinite(area))):
            continue
        if np.std(win) == 0.0:
            continue
        surf = naive_ncc_surface(win, area)
        i, j = np.unravel_index(np.argmax(surf), surf.shape)
        best = surf[i, j]
        kk = 2 * search + 1
        if best <= 0 or i in (0, kk - 1) or j in (0, kk - 1):
            continue
        oy, ox = naive_subpixel(surf[i - 1 : i + 2, j - 1 : j + 2])
        irow, icol = prior_rows[k] + i - search, prior_cols[k] + j - search
        vr, vc, peak = irow + oy, icol + ox, best
        if refine:
            res = naive_refine(prepared, r0, c0, window, (vr, vc), max_iter=20, tol=1e-4)
            if res is None:
                continue
            vr, vc, peak = res[0], res[1], max(res[2], 0.0)
        out[:, k] = vr, vc, min(peak, 1.0), max(1.0, best / np.mean(np.abs(surf)))
    return out


# ======================================================================================
# kernels.outliers
# ======================================================================================


def naive_reject_outliers(
    drow, dcol, score, min_score, radius=1, nmad_k=3.0, min_neighbours=3, nmad_floor=0.05
):
    """Single-pass local median/NMAD test, one window at a time."""
    ny, nx = drow.shape
    cand = np.zeros((ny, nx), bool)
    for y in range(ny):
        for x in range(nx):
            vals = (drow[y, x], dcol[y, x], score[y, x])
            cand[y, x] = all(np.isfinite(v) for v in vals) and score[y, x] >= min_score
    out = np.zeros((ny, nx), bool)
    for y in range(ny):
        for x in range(nx):
            if not cand[y, x]:
                continue
            nb = [
                (yy, xx)
                for yy in range(y - radius, y + radius + 1)
                for xx in range(x - radius, x + radius + 1)
                if 0 <= yy < ny and 0 <= xx < nx and (yy, xx) != (y, x) and cand[yy, xx]
            ]
            if len(nb) < max(min_neighbours, 1):
                continue
            ok = True
            for comp in (drow, dcol):
                v = np.array([comp[p] for p in nb], dtype=np.float64)
                med = np.median(v)
                nmad = 1.4826 * np.median(np.abs(v - med))
                if abs(float(comp[y, x]) - med) > nmad_k * max(nmad, nmad_floor):
                    ok = False
            out[y, x] = ok
    return out


def naive_median_fill(values, valid, radius=1, min_valid=5):
    ny, nx = values.shape
    ok = valid & np.isfinite(values)
    out = np.full((ny, nx), np.nan)
    for y in range(ny):
        for x in range(nx):
            if ok[y, x]:
                out[y, x] = values[y, x]
                continue
            nb = [
                float(values[yy, xx])
                for yy in range(max(0, y - radius), min(ny, y + radius + 1))
                for xx in range(max(0, x - radius), min(nx, x + radius + 1))
                if ok[yy, xx]
            ]
            if len(nb) >= min_valid:
                out[y, x] = np.median(nb)
    return out


# ======================================================================================
# kernels.timeseries
# ======================================================================================


def naive_connected(n_dates: int, edges) -> bool:
    """Breadth-first search from date 0."""
    seen = {0}
    todo = [0]
    while todo:
        k = todo.pop()
        for i, j in edges:
            for a, b in ((i, j), (j, i)):
                if a == k and b not in seen:
                    seen.add(b)
                    todo.append(b)
    return len(seen) == n_dates


def naive_invert_pixel(pairs, obs, w, t, gamma):
    """One pixel: returns (series (N,), velocity, velocity_std, residual_rms, n_pairs)."""
    n_d = len(t)
    tau = t - t[0]
    ok = np.isfinite(obs) & np.isfinite(w) & (w > 0)
    npairs = int(ok.sum())
    nan = (np.full(n_d, np.nan), np.nan, np.nan, np.nan, npairs)
    if npairs == 0:
        return nan
    prs, ob, wt = pairs[ok], obs[ok].astype(np.float64), w[ok].astype(np.float64)
    connected = naive_connected(n_d, [tuple(p) for p in prs])
    n_unk = n_d - 1 if connected else n_d
    rows, rhs = [], []
    for (i, j), o, ww in zip(prs, ob, wt, strict=True):
        a = np.zeros(n_unk)
        a[j - 1] += 1.0
        if i > 0:
            a[i - 1] -= 1.0
        rows.append(np.sqrt(ww) * a)
        rhs.append(np.sqrt(ww) * o)
    if not connected:
        ge = gamma * wt.mean()
        for k in range(1, n_d):
            a = np.zeros(n_unk)
            a[k - 1] = 1.0
            a[n_d - 1] = -tau[k]
            rows.append(np.sqrt(ge) * a)
            rhs.append(0.0)
    x = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    d = np.concatenate([[0.0], x[: n_d - 1]])
    res = ob - (d[prs[:, 1]] - d[prs[:, 0]])
    rms = np.sqrt(np.sum(wt * res**2) / np.sum(wt))
    c = np.zeros(n_d)
    for (i, j), ww in zip(prs, wt, strict=True):
        c[i] += ww
        c[j] += ww
    use = c > 0
    design = np.stack([np.ones(use.sum()), t[use]], axis=1)
    sw = np.sqrt(c[use])
    coef = np.linalg.lstsq(design * sw[:, None], d[use] * sw, rcond=None)[0]
    m = int(use.sum())
    if m >= 3:
        e = d[use] - design @ coef
        s2 = np.sum(c[use] * e**2) / (m - 2)
        cov = s2 * np.linalg.inv(design.T @ (c[use][:, None] * design))
        std = np.sqrt(cov[1, 1])
    else:
        std = np.nan
    return d, coef[1], std, rms, npairs


def naive_invert_timeseries(pairs, obs, weights, t, gamma=1e-4):
    """Per-pixel loop; returns float64 arrays (series, velocity, velocity_std, rms, n)."""
    pairs = np.asarray(pairs)
    n_p, ny, nx = obs.shape
    w = np.ones_like(obs) if weights is None else weights
    series = np.full((len(t), ny, nx), np.nan)
    vel, std, rms = (np.full((ny, nx), np.nan) for _ in range(3))
    npair = np.zeros((ny, nx), int)
    for y in range(ny):
        for x in range(nx):
            d, v, s, r, n = naive_invert_pixel(pairs, obs[:, y, x], w[:, y, x], t, gamma)
            series[:, y, x], vel[y, x], std[y, x], rms[y, x], npair[y, x] = d, v, s, r, n
    return series, vel, std, rms, npair


# ======================================================================================
# kernels.insar
# ======================================================================================


def naive_interferogram(ref, sec, looks=(1, 1)):
    """Per output pixel: mean of ref*conj(sec) and sample coherence over valid samples."""
    la, lr = looks
    ny, nx = ref.shape[0] // la, ref.shape[1] // lr
    ifg = np.zeros((ny, nx), complex)
    coh = np.full((ny, nx), np.nan)
    for r in range(ny):
        for c in range(nx):
            a = ref[r * la:(r + 1) * la, c * lr:(c + 1) * lr].astype(complex).ravel()
            b = sec[r * la:(r + 1) * la, c * lr:(c + 1) * lr].astype(complex).ravel()
            ok = np.isfinite(a) & np.isfinite(b) & (np.abs(a) > 0) & (np.abs(b) > 0)
            if not ok.any():
                continue
            a, b = a[ok], b[ok]
            s = np.sum(a * np.conj(b))
            ifg[r, c] = s / ok.sum()
            coh[r, c] = abs(s) / np.sqrt(np.sum(abs(a) ** 2) * np.sum(abs(b) ** 2))
    return ifg, coh


def naive_multilook(a, looks):
    """NaN-aware window means."""
    la, lr = looks
    ny, nx = a.shape[0] // la, a.shape[1] // lr
    out = np.full((ny, nx), np.nan, dtype=complex if np.iscomplexobj(a) else float)
    for r in range(ny):
        for c in range(nx):
            w = a[r * la:(r + 1) * la, c * lr:(c + 1) * lr].ravel()
            w = w[np.isfinite(w)]
            if w.size:
                out[r, c] = w.mean()
    return out


def naive_reference_point(quality, valid, window):
    """Best window mean among windows fully inside the image and fully valid."""
    h = window // 2
    best, where = -np.inf, None
    ny, nx = quality.shape
    for r in range(h, ny - h):
        for c in range(h, nx - h):
            q = quality[r - h:r + h + 1, c - h:c + h + 1]
            v = valid[r - h:r + h + 1, c - h:c + h + 1]
            if v.all() and np.isfinite(q).all() and q.mean() > best:
                best, where = q.mean(), (r, c)
    return where


# ======================================================================================
# kernels.sbas
# ======================================================================================


def naive_invert_sbas_pixel(obs, pairs, t, w, extra, wavelength, gap_weight, ridge=1e-9):
    """One pixel by weighted lstsq on sqrt(W)-scaled rows: pairs, temporal model, ridge.

    Unknowns d_1..d_{N-1}, v, c, extra params. Returns (series, extra_params, rms, tcoh,
    n_valid) or None-filled NaNs when no pair is valid. The extra columns are
    normalised to unit norm before the ridge (as the kernel documents).
    """
    n_d = len(t)
    k = 0 if extra is None else extra.shape[1]
    ok = np.isfinite(obs) & np.isfinite(w) & (w > 0)
    if not ok.any():
        return np.full(n_d, np.nan), np.full(k, np.nan), np.nan, np.nan, 0
    norms = np.ones(k) if extra is None else np.linalg.norm(extra, axis=0)
    rows, rhs = [], []
    for p, (i, j) in enumerate(pairs):
        if not ok[p]:
            continue
        a = np.zeros(n_d + 1 + k)
        a[j - 1] += 1.0
        if i > 0:
            a[i - 1] -= 1.0
        if k:
            a[n_d + 1:] = extra[p] / norms
        rows.append(np.sqrt(w[p]) * a)
        rhs.append(np.sqrt(w[p]) * obs[p])
    for kk in range(n_d):
        a = np.zeros(n_d + 1 + k)
        if kk > 0:
            a[kk - 1] = 1.0
        a[n_d - 1] = -t[kk]
        a[n_d] = -1.0
        rows.append(np.sqrt(gap_weight) * a)
        rhs.append(0.0)
    for e in range(k):
        a = np.zeros(n_d + 1 + k)
        a[n_d + 1 + e] = np.sqrt(ridge)
        rows.append(a)
        rhs.append(0.0)
    x = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    d = np.concatenate([[0.0], x[: n_d - 1]])
    params = x[n_d + 1:] / norms
    res = []
    for p, (i, j) in enumerate(pairs):
        if ok[p]:
            model = d[j] - d[i] + (extra[p] @ params if k else 0.0)
            res.append(obs[p] - model)
    res = np.array(res)
    wv = w[ok]
    rms = np.sqrt(np.sum(wv * res**2) / np.sum(wv))
    tcoh = abs(np.mean(np.exp(1j * 4 * np.pi / wavelength * res))) if wavelength else np.nan
    return d, params, rms, tcoh, int(ok.sum())


def naive_line_fit(d, t):
    """Ordinary least-squares slope of d(t) and its 1-sigma (n >= 3)."""
    x = np.stack([np.ones_like(t), t], axis=1)
    coef, *_ = np.linalg.lstsq(x, d, rcond=None)
    e = d - x @ coef
    cov = np.sum(e**2) / (len(t) - 2) * np.linalg.inv(x.T @ x)
    return coef[1], np.sqrt(cov[1, 1])
