"""Small-baseline (SBAS) inversion of an interferogram network, NSBAS-style.

Unknowns per pixel (columns of the design, in this order): the displacements
``d_1 .. d_{N-1}`` of every date relative to the first (``d_0 = 0``), the slope ``v``
and offset ``c`` of a linear temporal model, and ``k`` optional extra parameters whose
design columns are shared by all pixels (the DEM error: one coefficient per pair).
Equations per pixel:

- one per pair ``(i, j)``: ``d_j - d_i + extra[p] . e = obs[p]`` with weight ``w[p]``
  (left out where ``obs`` or ``w`` is NaN or ``w <= 0``);
- one per date ``k = 0 .. N-1``: ``d_k - v t_k - c = 0`` with weight ``gap_weight`` (the
  NSBAS temporal model). It ties the dates (or groups of dates) that no pair connects
  to one straight line through the others, so any network gives a series; where the
  network is connected it moves the solution very little (its weight is small against
  the pairs', and it is exactly satisfied by linear motion).

The DEM-error term ``B_k dz`` is a per-date quantity, so the pairs alone cannot tell it
from the series; it is separated through the temporal model (the ``dz`` that leaves
the straightest series wins), as in time-series DEM-error correction.

"Weight" means the diagonal of ``W`` in ``min (obs - A x)^T W (obs - A x)``: the
normal matrix is ``A^T W A``. Per-pixel weights or missing pairs give a per-pixel
normal matrix, assembled from the (shared) sparse design rows and solved by Cholesky
in a parallel Numba loop. Fully valid pixels without weights share one matrix: they
are solved for a whole block by one matrix product.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numba
import numpy as np
from numba import prange

__all__ = ["SbasResult", "invert_sbas", "design_matrix", "years_since_first",
           "closure_triplets", "coherence_weights", "triplet_misclosure"]

# Pixels per block of the shared-matrix path.
_BLOCK = 1 << 16
# Pixels per parallel work item of the per-pixel path.
_CHUNK = 256
# Relative ridge on the (normalised) extra parameters: keeps a pixel whose valid pairs
# cannot see an extra parameter solvable (that parameter then stays near 0).
_EXTRA_RIDGE = 1e-9
# Cholesky pivots below this fraction of the largest diagonal term mean "singular".
_PIVOT_REL = 1e-13


@dataclass(frozen=True)
class SbasResult:
    """Output of :func:`invert_sbas` (float32 maps unless stated).

    Attributes
    ----------
    series
        (n_dates, ny, nx) displacement relative to the first date (band 0 is zero), in
        the units of ``obs``; NaN where no pair is valid.
    velocity
        (ny, nx) slope of a least-squares straight line through the series (all dates,
        equal weights), units of ``obs`` per year.
    velocity_std
        (ny, nx) 1-sigma of that slope from the scatter of the series about the line
        (NaN with fewer than 3 dates).
    residual_rms
        (ny, nx) weighted RMS of the pair misfits ``obs - (d_j - d_i + extra . e)``
        over the valid pairs.
    temporal_coherence
        (ny, nx) ``|mean_p exp(i 4 pi r_p / wavelength)|`` over the valid pairs' misfits
        ``r_p``: 1 for a consistent network, low where unwrapping errors or noise
        dominate. NaN everywhere when no wavelength is given.
    extra_params
        (k, ny, nx) solved extra parameters (e.g. DEM error in metres), or None.
    n_pairs
        int16 (ny, nx) number of valid pairs per pixel.

    """

    series: np.ndarray
    velocity: np.ndarray
    velocity_std: np.ndarray
    residual_rms: np.ndarray
    temporal_coherence: np.ndarray
    extra_params: np.ndarray | None
    n_pairs: np.ndarray


def years_since_first(dates: Sequence[datetime.date]) -> np.ndarray:
    """Decimal years (365.25 days) of each date after the first, float64.

    ``datetime.datetime`` values keep their time of day; ``datetime.date`` values count
    from midnight. Mixing the two is allowed.
    """
    if len(dates) == 0:
        raise ValueError("dates is empty")
    out = np.empty(len(dates))
    stamps = []
    for k, d in enumerate(dates):
        if isinstance(d, datetime.datetime):
            if d.tzinfo is not None:
                d = d.astimezone(datetime.UTC).replace(tzinfo=None)
            stamps.append(d)
        elif isinstance(d, datetime.date):
            stamps.append(datetime.datetime(d.year, d.month, d.day))
        else:
            raise TypeError(f"dates[{k}] must be a datetime.date, got {type(d).__name__}")
    for k, d in enumerate(stamps):
        out[k] = (d - stamps[0]).total_seconds() / (365.25 * 86400.0)
    return out


def _check_pairs(pairs: object, n_dates: int) -> np.ndarray:
    arr = np.asarray(pairs)
    if arr.size == 0:
        raise ValueError("pairs is empty")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"pairs must be a sequence of (i, j), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"pairs must hold integer date indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr[:, 0] < 0) | (arr[:, 1] >= n_dates) | (arr[:, 0] >= arr[:, 1])
    if bad.any():
        p = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"pairs[{p}] = ({arr[p, 0]}, {arr[p, 1]}) is not (i, j) with "
            f"0 <= i < j < {n_dates}")
    return arr


def design_matrix(pairs: Sequence[tuple[int, int]] | np.ndarray, n_dates: int,
                  extra: np.ndarray | None = None) -> np.ndarray:
    """Pair rows of the system, float64 ``(n_pairs, n_dates + 1 + k)``.

    Columns: ``d_1 .. d_{N-1}``, ``v``, ``c`` (zero in pair rows), then the ``k``
    columns of ``extra``.
    """
    pr = _check_pairs(pairs, n_dates)
    k = 0 if extra is None else np.asarray(extra).shape[1]
    a = np.zeros((pr.shape[0], n_dates + 1 + k))
    rows = np.arange(pr.shape[0])
    a[rows, pr[:, 1] - 1] = 1.0
    has_i = pr[:, 0] > 0
    a[rows[has_i], pr[has_i, 0] - 1] = -1.0
    if k:
        a[:, n_dates + 1:] = extra
    return a


def temporal_model_rows(t: np.ndarray, n_params: int) -> np.ndarray:
    """Rows ``d_k - v t_k - c`` (k = 0 .. N-1) of the NSBAS temporal model."""
    n = t.size
    rows = np.zeros((n, n_params))
    rows[np.arange(1, n), np.arange(n - 1)] = 1.0
    rows[:, n - 1] = -t
    rows[:, n] = -1.0
    return rows


# --------------------------------------------------------------------------------------
# Numba per-pixel path
# --------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _chol_solve(g: np.ndarray, rhs: np.ndarray, first: np.ndarray) -> bool:  # pragma: no cover
    """Solve ``g x = rhs`` in place (x in rhs; g overwritten); False if not SPD.

    Envelope (skyline) Cholesky: ``g[i, k] == 0`` for ``k < first[i]``, and the factor
    keeps that envelope, so sums start at ``max(first[i], first[j])`` (for a network of
    near neighbours in time the date block is banded).
    """
    m = g.shape[0]
    dmax = 0.0
    for i in range(m):
        dmax = max(dmax, g[i, i])
    if not dmax > 0.0:
        return False
    for j in range(m):
        fj = first[j]
        s = g[j, j]
        for k in range(fj, j):
            s -= g[j, k] * g[j, k]
        if not s > _PIVOT_REL * dmax:
            return False
        d = np.sqrt(s)
        g[j, j] = d
        for i in range(j + 1, m):
            fi = first[i]
            if fi > j:
                continue
            s = g[i, j]
            for k in range(max(fi, fj), j):
                s -= g[i, k] * g[j, k]
            g[i, j] = s / d
    for i in range(m):
        s = rhs[i]
        for k in range(first[i], i):
            s -= g[i, k] * rhs[k]
        rhs[i] = s / g[i, i]
    for i in range(m - 1, -1, -1):
        s = rhs[i]
        for k in range(i + 1, m):
            if first[k] <= i:
                s -= g[k, i] * rhs[k]
        rhs[i] = s / g[i, i]
    return True


def _envelope(pairs: np.ndarray, n_dates: int, m: int) -> np.ndarray:
    """First non-zero column of each row of the lower triangle of the normal matrix."""
    first = np.arange(m)
    first[n_dates - 1:] = 0  # date columns are 0 .. n_dates - 2; v, c, extras are dense
    has_i = pairs[:, 0] > 0
    np.minimum.at(first, pairs[has_i, 1] - 1, pairs[has_i, 0] - 1)
    return first


@numba.njit(cache=True, parallel=True)
def _solve_pixels(obs, w, has_w, pairs, ext, reg, first, idx, kphase,
                  series, extra_out, rms, tcoh):  # pragma: no cover - compiled
    """Weighted least squares for the pixels ``idx`` (columns of the flat arrays)."""
    n_p = pairs.shape[0]
    m = reg.shape[0]
    n_d = series.shape[0]
    k = ext.shape[1]
    nq = idx.shape[0]
    nchunk = (nq + _CHUNK - 1) // _CHUNK
    for b in prange(nchunk):
        g = np.empty((m, m))
        x = np.empty(m)
        cols = np.empty(2 + k, np.int64)
        coef = np.empty(2 + k)
        for qq in range(b * _CHUNK, min(nq, (b + 1) * _CHUNK)):
            q = idx[qq]
            g[:, :] = reg
            x[:] = 0.0
            for p in range(n_p):
                v = np.float64(obs[p, q])
                wt = np.float64(w[p, q]) if has_w else 1.0
                if not (np.isfinite(v) and np.isfinite(wt) and wt > 0.0):
                    continue
                i = pairs[p, 0]
                j = pairs[p, 1]
                nc = 0
                cols[nc] = j - 1
                coef[nc] = 1.0
                nc += 1
                if i > 0:
                    cols[nc] = i - 1
                    coef[nc] = -1.0
                    nc += 1
                for e in range(k):
                    cols[nc] = n_d + 1 + e
                    coef[nc] = ext[p, e]
                    nc += 1
                for a in range(nc):
                    ca = cols[a]
                    wa = wt * coef[a]
                    x[ca] += wa * v
                    for c in range(nc):
                        g[ca, cols[c]] += wa * coef[c]
            if not _chol_solve(g, x, first):
                continue
            series[0, q] = 0.0
            for d in range(1, n_d):
                series[d, q] = x[d - 1]
            for e in range(k):
                extra_out[e, q] = x[n_d + 1 + e]
            swr = 0.0
            sw = 0.0
            cre = 0.0
            cim = 0.0
            n = 0
            for p in range(n_p):
                v = np.float64(obs[p, q])
                wt = np.float64(w[p, q]) if has_w else 1.0
                if not (np.isfinite(v) and np.isfinite(wt) and wt > 0.0):
                    continue
                i = pairs[p, 0]
                j = pairs[p, 1]
                r = v - x[j - 1]
                if i > 0:
                    r += x[i - 1]
                for e in range(k):
                    r -= ext[p, e] * x[n_d + 1 + e]
                swr += wt * r * r
                sw += wt
                if kphase != 0.0:
                    cre += np.cos(kphase * r)
                    cim += np.sin(kphase * r)
                n += 1
            rms[q] = np.sqrt(swr / sw)
            tcoh[q] = np.sqrt(cre * cre + cim * cim) / n


@numba.njit(cache=True, parallel=True)
def _misfit_stats(r, kphase, rms, tcoh):  # pragma: no cover - compiled
    """Per column of the misfits ``r`` (P, B): RMS and ``|mean exp(i kphase r)|``."""
    n_p, nb = r.shape
    nchunk = (nb + 1023) // 1024
    for b in prange(nchunk):
        lo = b * 1024
        hi = min(nb, lo + 1024)
        s2 = np.zeros(hi - lo)
        cre = np.zeros(hi - lo)
        cim = np.zeros(hi - lo)
        for p in range(n_p):
            for q in range(lo, hi):
                v = r[p, q]
                s2[q - lo] += v * v
                if kphase != 0.0:
                    cre[q - lo] += np.cos(kphase * v)
                    cim[q - lo] += np.sin(kphase * v)
        for q in range(lo, hi):
            k = q - lo
            rms[q] = np.sqrt(s2[k] / n_p)
            tcoh[q] = np.sqrt(cre[k] * cre[k] + cim[k] * cim[k]) / n_p


# --------------------------------------------------------------------------------------
# Public inversion
# --------------------------------------------------------------------------------------


def _line_fit(series: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope of each column of ``series`` against ``t`` and its 1-sigma."""
    n = t.size
    tc = t - t.mean()
    sxx = float(tc @ tc)
    vel = np.full(series.shape[1], np.nan, np.float32)
    std = np.full(series.shape[1], np.nan, np.float32)
    for lo in range(0, series.shape[1], _BLOCK):
        s = series[:, lo:lo + _BLOCK].astype(np.float64)
        slope = tc @ s / sxx
        vel[lo:lo + _BLOCK] = slope
        if n > 2:
            e = s - s.mean(axis=0) - tc[:, None] * slope
            std[lo:lo + _BLOCK] = np.sqrt((e * e).sum(axis=0) / (n - 2) / sxx)
    return vel, std


def invert_sbas(obs: np.ndarray, pairs: Sequence[tuple[int, int]] | np.ndarray,
                dates: Sequence[datetime.date], *, weights: np.ndarray | None = None,
                extra: np.ndarray | None = None, wavelength: float | None = None,
                gap_weight: float = 1e-2) -> SbasResult:
    """Invert pair displacements into a per-pixel time series, velocity and quality maps.

    Parameters
    ----------
    obs
        float32 or float64 ``(n_pairs, ny, nx)``: pair displacements ``d_j - d_i``
        (metres towards the satellite in GDM-SAR); NaN where missing.
    pairs
        ``(i, j)`` date indices of each pair, ``0 <= i < j < n_dates``.
    dates
        Acquisition dates (``datetime.date`` / ``datetime.datetime``), strictly
        increasing, at least 2.
    weights
        Optional float ``(n_pairs, ny, nx)`` non-negative weights (e.g. from
        coherence, about 1 for a good pair); NaN or 0 leaves the pair out at that pixel.
        None gives every pair weight 1.
    extra
        Optional ``(n_pairs, k)`` extra design columns shared by all pixels, e.g. the
        DEM-error coefficients ``(bperp_j - bperp_i) / (R sin(incidence))`` (then the
        parameter is the DEM error in metres, and ``obs`` is in metres). Columns are
        normalised internally; a tiny ridge keeps them solvable where unseen.
    wavelength
        Radar wavelength in the units of ``obs``, for the temporal coherence.
    gap_weight
        Weight of each temporal-model equation ``d_k - v t_k - c = 0`` (relative to a
        pair of weight 1). Smaller values follow the data more closely; it must be > 0
        so that a disconnected network still gives a series.

    Returns
    -------
    SbasResult
        Pixels with no valid pair (or a singular system) are NaN, ``n_pairs`` counts
        the valid pairs.

    Raises
    ------
    TypeError
        ``obs``/``weights`` not real floating arrays, ``pairs`` not integers.
    ValueError
        Shapes that disagree, bad pairs or dates, negative weights, bad parameters.

    """
    if not isinstance(obs, np.ndarray):
        raise TypeError(f"obs must be a numpy array, got {type(obs).__name__}")
    if obs.dtype not in (np.float32, np.float64):
        raise TypeError(f"obs must be float32 or float64, got {obs.dtype}")
    if obs.ndim != 3:
        raise ValueError(f"obs must be (n_pairs, ny, nx), got shape {obs.shape}")
    n_pairs, ny, nx = obs.shape
    n_dates = len(dates)
    if n_dates < 2:
        raise ValueError(f"at least 2 dates are needed, got {n_dates}")
    t = years_since_first(dates)
    if np.any(np.diff(t) <= 0):
        k = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise ValueError(f"dates must be strictly increasing: dates[{k}]={dates[k]} "
                         f"<= dates[{k - 1}]={dates[k - 1]}")
    pr = _check_pairs(pairs, n_dates)
    if pr.shape[0] != n_pairs:
        raise ValueError(f"{pr.shape[0]} pairs given for {n_pairs} observation bands")
    if n_pairs > np.iinfo(np.int16).max:
        raise ValueError(f"at most {np.iinfo(np.int16).max} pairs are supported")
    if weights is not None:
        if not isinstance(weights, np.ndarray):
            raise TypeError(f"weights must be a numpy array, got {type(weights).__name__}")
        if weights.dtype not in (np.float32, np.float64):
            raise TypeError(f"weights must be float32 or float64, got {weights.dtype}")
        if weights.shape != obs.shape:
            raise ValueError(f"weights shape {weights.shape} differs from obs {obs.shape}")
        if np.any(weights < 0):
            raise ValueError("weights must be >= 0 (NaN or 0 leaves a pair out)")
    n_extra = 0
    ext = np.zeros((n_pairs, 0))
    scale = np.ones(0)
    if extra is not None:
        ext = np.asarray(extra)
        if not np.issubdtype(ext.dtype, np.number) or np.iscomplexobj(ext):
            raise TypeError(f"extra must be real numbers, got dtype {ext.dtype}")
        if ext.ndim != 2 or ext.shape[0] != n_pairs:
            raise ValueError(f"extra must be (n_pairs={n_pairs}, k), got shape {ext.shape}")
        ext = ext.astype(np.float64)
        if not np.all(np.isfinite(ext)):
            raise ValueError("extra contains non-finite values")
        n_extra = ext.shape[1]
        norms = np.sqrt((ext * ext).sum(axis=0))
        scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 1.0)
        ext = np.ascontiguousarray(ext * scale)
    if wavelength is not None and not (np.isfinite(wavelength) and wavelength > 0):
        raise ValueError(f"wavelength must be a positive number, got {wavelength}")
    if isinstance(gap_weight, bool) or not (np.isfinite(gap_weight) and gap_weight > 0):
        raise ValueError(f"gap_weight must be a positive number, got {gap_weight}")

    a = design_matrix(pr, n_dates, ext if n_extra else None)
    m = a.shape[1]
    rows = temporal_model_rows(t, m)
    reg = float(gap_weight) * rows.T @ rows
    if n_extra:
        reg[n_dates + 1:, n_dates + 1:] += _EXTRA_RIDGE * np.eye(n_extra)
    kphase = 0.0 if wavelength is None else 4.0 * np.pi / float(wavelength)

    npix = ny * nx
    o = np.ascontiguousarray(obs).reshape(n_pairs, npix)
    has_w = weights is not None
    w = np.ascontiguousarray(weights).reshape(n_pairs, npix) if has_w \
        else np.ones((1, 1), obs.dtype)
    series = np.full((n_dates, npix), np.nan, np.float32)
    extra_out = np.full((max(n_extra, 1), npix), np.nan, np.float32)
    rms = np.full(npix, np.nan, np.float32)
    tcoh = np.full(npix, np.nan, np.float32)
    n_valid = np.zeros(npix, np.int16)
    op = None
    slow: list[np.ndarray] = []
    for lo in range(0, npix, _BLOCK):
        hi = min(npix, lo + _BLOCK)
        ok = np.isfinite(o[:, lo:hi])
        if has_w:
            wb = w[:, lo:hi]
            ok &= np.isfinite(wb) & (wb > 0)
        cnt = ok.sum(axis=0)
        n_valid[lo:hi] = cnt
        full = cnt == n_pairs
        if has_w or not full.any():
            slow.append(lo + np.flatnonzero(cnt > 0))
            continue
        slow.append(lo + np.flatnonzero((cnt > 0) & ~full))
        # Unweighted, all pairs valid: one shared operator for the whole block.
        if op is None:
            op = np.linalg.solve(a.T @ a + reg, a.T)
        sel: slice | np.ndarray = slice(lo, hi) if full.all() else lo + np.flatnonzero(full)
        y = o[:, sel].astype(np.float64)
        x = op @ y
        series[0, sel] = 0.0
        series[1:, sel] = x[: n_dates - 1]
        if n_extra:
            extra_out[:, sel] = x[n_dates + 1:]
        r = y - a @ x
        rb = np.empty(r.shape[1], np.float32)
        tb = np.empty(r.shape[1], np.float32)
        _misfit_stats(r, kphase, rb, tb)
        rms[sel] = rb
        tcoh[sel] = tb
    idx = np.concatenate(slow) if slow else np.zeros(0, np.int64)
    if idx.size:
        _solve_pixels(o, w, has_w, pr, ext, reg, _envelope(pr, n_dates, m),
                      idx.astype(np.int64), kphase, series, extra_out, rms, tcoh)
    if wavelength is None:
        tcoh[:] = np.nan
    vel, vel_std = _line_fit(series, t)
    shape = (ny, nx)
    extra_params = None
    if n_extra:
        extra_params = (extra_out * scale[:, None]).astype(np.float32).reshape(n_extra, ny, nx)
    return SbasResult(
        series=series.reshape(n_dates, ny, nx),
        velocity=vel.reshape(shape),
        velocity_std=vel_std.reshape(shape),
        residual_rms=rms.reshape(shape),
        temporal_coherence=tcoh.reshape(shape),
        extra_params=extra_params,
        n_pairs=n_valid.reshape(shape),
    )


def closure_triplets(pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Closed triplets of a network: ``(k_ij, k_jk, k_ik)`` pair indices, i < j < k."""
    index = {tuple(p): k for k, p in enumerate(pairs)}
    dates = sorted({d for p in pairs for d in p})
    return [(index[(i, j)], index[(j, k)], index[(i, k)])
            for i, j, k in combinations(dates, 3)
            if (i, j) in index and (j, k) in index and (i, k) in index]


def coherence_weights(coherence: np.ndarray) -> np.ndarray:
    """Inversion weights ``g^2 / (1 - g^2)`` from coherence, computed in place.

    NaN coherence gives weight 0; coherence is capped at 0.99 (weight ~49).
    """
    np.nan_to_num(coherence, copy=False)
    np.clip(coherence, 0.0, 0.99, out=coherence)
    coherence *= coherence
    np.divide(coherence, 1 - coherence, out=coherence)
    return coherence


def triplet_misclosure(obs: np.ndarray, triplets: Sequence[tuple[int, int, int]],
                       limit: float | None = None) -> tuple[np.ndarray, int, int]:
    """RMS misclosure ``obs_ij + obs_jk - obs_ik`` over the triplets, per pixel.

    Accumulated one triplet at a time (no triplet stack). Returns the RMS (NaN where no
    triplet is finite), the number of finite triplet values and how many exceed
    ``limit`` in absolute value (0 without a limit).
    """
    sq = np.zeros(obs.shape[1:], np.float64)
    n = np.zeros(obs.shape[1:], np.int32)
    checked = over = 0
    for a, b, c in triplets:
        tri = obs[a] + obs[b] - obs[c]
        fin = np.isfinite(tri)
        sq[fin] += np.square(tri[fin], dtype=np.float64)
        n += fin
        checked += int(fin.sum())
        if limit is not None:
            over += int((np.abs(tri[fin]) > limit).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(sq / n), checked, over
