"""Pair selection and per-pixel time-series inversion of pair displacements.

A pair ``(i, j)`` (``i < j``, date ``i`` earlier) observes ``d_j - d_i``, where ``d_k`` is
the displacement at date ``k`` relative to the first date (``d_0 = 0``).
"""

from __future__ import annotations

import datetime
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
from numba import prange

from kernels._cholesky import chol_substitute

__all__ = [
    "TimeseriesResult",
    "invert_timeseries",
    "network_components",
    "select_pairs",
]

_SECONDS_PER_DAY = 86400.0
# Pixels per block of the shared-matrix fast path.
_FAST_BLOCK = 1 << 16
# Pixels per parallel work item of the per-pixel path.
_SLOW_CHUNK = 512
# Cholesky pivots below this fraction of the largest diagonal term mean "singular".
_PIVOT_REL = 1e-12


@dataclass(frozen=True)
class TimeseriesResult:
    """Result of :func:`invert_timeseries`.

    Attributes
    ----------
    series
        float32 (n_dates, ny, nx) displacement relative to the first date (first band
        zeros); NaN where not solvable (no valid pair).
    velocity
        float32 (ny, nx) units/yr: weighted least-squares slope of the series against
        ``t_years`` (date weights: summed weights of the valid pairs that touch the date,
        so dates without data do not count).
    velocity_std
        float32 (ny, nx) formal 1-sigma of the slope from the scatter of the series about
        the line; NaN with fewer than 3 dates carrying data.
    residual_rms
        float32 (ny, nx) weighted RMS of the pair misfits ``obs - (d_j - d_i)`` over the
        valid pairs.
    n_pairs
        int16 (ny, nx) number of valid pairs used.
    series_std
        float32 (n_dates, ny, nx) formal 1-sigma of each date's displacement: the square
        root of the diagonal of the inverse weighted normal matrix ``(A^T W A)^-1``,
        scaled by the a-posteriori variance factor ``s0^2 = r^T W r / (P - rank)`` of the
        pixel's pair misfits (see ``inverse_variance`` of :func:`invert_timeseries`);
        0 for the first date, NaN where not solvable.
    velocity_formal_std
        float32 (ny, nx) formal 1-sigma of ``velocity`` propagated from the same scaled
        covariance of the series (``s^T C s``, ``s`` the slope weights of the dates): unlike
        ``velocity_std`` it sees the errors that a chain of pairs accumulates, not the
        scatter of date-specific errors.

    """

    series: np.ndarray
    velocity: np.ndarray
    velocity_std: np.ndarray
    residual_rms: np.ndarray
    n_pairs: np.ndarray
    series_std: np.ndarray | None = None
    velocity_formal_std: np.ndarray | None = None


# --------------------------------------------------------------------------------------
# Pair selection and network topology
# --------------------------------------------------------------------------------------


def _as_naive_utc(d: object, k: int) -> datetime.datetime:
    if isinstance(d, datetime.datetime):
        if d.tzinfo is not None:
            d = d.astimezone(datetime.UTC).replace(tzinfo=None)
        return d
    if isinstance(d, datetime.date):
        return datetime.datetime(d.year, d.month, d.day)
    raise ValueError(f"dates[{k}] must be a datetime.date, got {type(d).__name__}")


def select_pairs(
    dates: Sequence[datetime.date],
    mode: Literal["all", "span", "sequential", "nearest"] = "all",
    max_span_days: float | None = None,
    min_span_days: float = 0.0,
    neighbours: int | None = None,
    *,
    max_days: float | None = None,
    bperp: Sequence[float] | np.ndarray | None = None,
    max_bperp: float | None = None,
) -> list[tuple[int, int]]:
    """Choose the pairs ``(i, j)``, ``i < j``, to correlate.

    Parameters
    ----------
    dates
        Acquisition dates (``datetime.date`` or ``datetime.datetime``; aware datetimes
        are compared in UTC), strictly increasing, at least 2.
    mode
        ``"all"``: every pair whose span is within ``[min_span_days, max_span_days]``
        (no upper limit when ``max_span_days`` is None). ``"span"``: the same selection,
        but ``max_span_days`` is required. ``"sequential"``: each date with its
        ``neighbours`` next dates, then filtered by the same span limits.
        ``"nearest"``: the same as ``"sequential"`` (the k nearest successors in time,
        small-baseline InSAR networks) but ``neighbours`` is required.
    max_span_days, min_span_days
        Span limits in days (inclusive); ``0 <= min_span_days <= max_span_days``.
    neighbours
        Number of following dates paired with each date in ``"sequential"`` mode
        (default 1) and ``"nearest"`` mode (required); ignored by the other modes (so a
        config default can be passed through).
    max_days
        Keyword alias of ``max_span_days`` (give one or the other).
    bperp, max_bperp
        Perpendicular baselines of the dates (metres, any common origin) and the
        largest ``|bperp_j - bperp_i|`` of a pair (inclusive); both or neither.

    Returns
    -------
    list[tuple[int, int]]
        Pairs sorted by ``i`` then ``j``.

    Raises
    ------
    ValueError
        On fewer than 2 dates, dates not strictly increasing, or bad parameters.

    """
    if mode not in ("all", "span", "sequential", "nearest"):
        raise ValueError(
            f"mode must be 'all', 'span', 'sequential' or 'nearest', got {mode!r}")
    if mode == "nearest" and neighbours is None:
        raise ValueError("mode='nearest' needs neighbours (the number of successors)")
    if max_days is not None:
        if max_span_days is not None and max_span_days != max_days:
            raise ValueError(
                f"max_days={max_days} and max_span_days={max_span_days} disagree; give one")
        max_span_days = max_days
    bp = _check_bperp(bperp, max_bperp, len(dates))
    dts = [_as_naive_utc(d, k) for k, d in enumerate(dates)]
    if len(dts) < 2:
        raise ValueError(f"at least 2 dates are needed to form a pair, got {len(dts)}")
    for k in range(1, len(dts)):
        if dts[k] <= dts[k - 1]:
            what = "a duplicate of" if dts[k] == dts[k - 1] else "earlier than"
            raise ValueError(
                f"dates must be strictly increasing: dates[{k}]={dates[k]} is {what} "
                f"dates[{k - 1}]={dates[k - 1]}"
            )
    if isinstance(min_span_days, bool) or not isinstance(min_span_days, numbers.Real):
        raise ValueError(f"min_span_days must be a number, got {min_span_days!r}")
    if not (np.isfinite(min_span_days) and min_span_days >= 0):
        raise ValueError(f"min_span_days must be finite and >= 0, got {min_span_days}")
    if max_span_days is None:
        if mode == "span":
            raise ValueError("mode='span' needs max_span_days")
        hi = np.inf
    else:
        if isinstance(max_span_days, bool) or not isinstance(max_span_days, numbers.Real):
            raise ValueError(f"max_span_days must be a number or None, got {max_span_days!r}")
        if not (np.isfinite(max_span_days) and max_span_days >= min_span_days):
            raise ValueError(
                f"max_span_days must be finite and >= min_span_days={min_span_days}, "
                f"got {max_span_days}"
            )
        hi = float(max_span_days)
    if mode in ("sequential", "nearest"):
        nb = 1 if neighbours is None else neighbours
        if isinstance(nb, bool) or not isinstance(nb, numbers.Integral) or nb < 1:
            raise ValueError(f"neighbours must be an integer >= 1, got {neighbours!r}")
        nb = int(nb)
    else:
        nb = len(dts)
    lo = float(min_span_days)
    bp_max = float(max_bperp) if max_bperp is not None else np.inf
    pairs: list[tuple[int, int]] = []
    for i in range(len(dts)):
        for j in range(i + 1, min(len(dts), i + nb + 1)):
            span = (dts[j] - dts[i]).total_seconds() / _SECONDS_PER_DAY
            if lo <= span <= hi and (bp is None or abs(bp[j] - bp[i]) <= bp_max):
                pairs.append((i, j))
    return pairs


def _check_bperp(bperp: object, max_bperp: float | None, n_dates: int) -> np.ndarray | None:
    """Validate the perpendicular-baseline filter of :func:`select_pairs`."""
    if bperp is None and max_bperp is None:
        return None
    if bperp is None or max_bperp is None:
        raise ValueError("bperp and max_bperp must be given together")
    if isinstance(max_bperp, bool) or not isinstance(max_bperp, numbers.Real):
        raise ValueError(f"max_bperp must be a number, got {max_bperp!r}")
    if not (np.isfinite(max_bperp) and max_bperp >= 0):
        raise ValueError(f"max_bperp must be finite and >= 0, got {max_bperp}")
    bp = np.asarray(bperp)
    if bp.shape != (n_dates,):
        raise ValueError(f"bperp must have one value per date ({n_dates}), got shape {bp.shape}")
    if not (np.issubdtype(bp.dtype, np.floating) or np.issubdtype(bp.dtype, np.integer)):
        raise ValueError(f"bperp must be real numbers, got dtype {bp.dtype}")
    bp = bp.astype(np.float64)
    if not np.all(np.isfinite(bp)):
        raise ValueError("bperp contains non-finite values")
    return bp


def _check_pairs(pairs: object, n_dates: int) -> np.ndarray:
    arr = np.asarray(pairs)
    if arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"pairs must have shape (P, 2), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"pairs must hold integer date indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = (arr[:, 0] < 0) | (arr[:, 1] >= n_dates) | (arr[:, 0] >= arr[:, 1])
    if np.any(bad):
        p = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"pairs[{p}]=({arr[p, 0]}, {arr[p, 1]}) is not (i, j) with 0 <= i < j < {n_dates}"
        )
    return arr


def network_components(n_dates: int, pairs: object) -> list[list[int]]:
    """Find the connected components of the graph of dates (nodes) and pairs (edges).

    Parameters
    ----------
    n_dates
        Number of dates (>= 1).
    pairs
        ``(P, 2)`` integer array or sequence of ``(i, j)`` with ``0 <= i < j < n_dates``.

    Returns
    -------
    list[list[int]]
        Components as sorted lists of date indices, ordered by their first date; a date
        in no pair is a component of its own.

    """
    if isinstance(n_dates, bool) or not isinstance(n_dates, numbers.Integral) or n_dates < 1:
        raise ValueError(f"n_dates must be an integer >= 1, got {n_dates!r}")
    arr = _check_pairs(pairs, int(n_dates))
    parent = list(range(int(n_dates)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in arr.tolist():
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for k in range(int(n_dates)):
        groups.setdefault(find(k), []).append(k)
    return sorted(groups.values(), key=lambda g: g[0])


# --------------------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------------------


@numba.njit(cache=True, parallel=True)
def _classify(
    obs: np.ndarray, w: np.ndarray, has_w: bool, cls: np.ndarray, npair: np.ndarray
) -> None:
    """Per pixel: number of valid pairs and class (0: none, 1: shared fast path, 2: own)."""
    n_p, npix = obs.shape
    nblk = (npix + 4095) // 4096
    for b in prange(nblk):
        lo = b * 4096
        hi = min(npix, lo + 4096)
        for q in range(lo, hi):
            cnt = 0
            same = True
            w0 = 1.0
            for p in range(n_p):
                v = obs[p, q]
                wt = np.float64(w[p, q]) if has_w else 1.0
                if np.isfinite(v) and np.isfinite(wt) and wt > 0:
                    cnt += 1
                    if cnt == 1:
                        w0 = wt
                    elif wt != w0:
                        same = False
            npair[q] = cnt
            if cnt == 0:
                cls[q] = 0
            elif cnt == n_p and same:
                cls[q] = 1
            else:
                cls[q] = 2


@numba.njit(cache=True, nogil=True)
def _find(parent: np.ndarray, a: int) -> int:
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@numba.njit(cache=True, nogil=True)
def _chol_solve(g: np.ndarray, rhs: np.ndarray, m: int) -> bool:
    """Solve ``g[:m, :m] x = rhs[:m]`` in place (x in rhs) by Cholesky; False if singular."""
    dmax = 0.0
    for i in range(m):
        dmax = max(dmax, g[i, i])
    if dmax <= 0.0:
        return False
    for j in range(m):
        s = g[j, j]
        for k in range(j):
            s -= g[j, k] * g[j, k]
        if s <= _PIVOT_REL * dmax:
            return False
        d = np.sqrt(s)
        g[j, j] = d
        for i in range(j + 1, m):
            s = g[i, j]
            for k in range(j):
                s -= g[i, k] * g[j, k]
            g[i, j] = s / d
    chol_substitute(g, rhs, rhs, m)
    return True


@numba.njit(cache=True, nogil=True)
def _chol_inv_diag(g: np.ndarray, m: int, out: np.ndarray) -> None:
    """Diagonal of ``G^-1`` into ``out[:m, 0]`` from the Cholesky factor L in ``g``.

    ``G^-1 = L^-T L^-1``, so ``diag_k = sum_i (L^-1)_ik^2``: column k of ``L^-1`` is
    found by forward substitution into ``out[:, 1]`` (scratch).
    """
    for k in range(m):
        acc = 0.0
        for i in range(k, m):
            s = 1.0 if i == k else 0.0
            for j in range(k, i):
                s -= g[i, j] * out[j, 1]
            out[i, 1] = s / g[i, i]
            acc += out[i, 1] * out[i, 1]
        out[k, 0] = acc


@numba.njit(cache=True, nogil=True)
def _slope(d: np.ndarray, c: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Weighted LS slope of ``d`` against ``t`` (weights ``c``) and its formal sigma."""
    n = d.shape[0]
    sw = 0.0
    st = 0.0
    sd = 0.0
    m = 0
    for k in range(n):
        if c[k] > 0:
            sw += c[k]
            st += c[k] * t[k]
            sd += c[k] * d[k]
            m += 1
    if m < 2:
        return np.nan, np.nan
    tm = st / sw
    dm = sd / sw
    sxx = 0.0
    sxy = 0.0
    for k in range(n):
        if c[k] > 0:
            sxx += c[k] * (t[k] - tm) * (t[k] - tm)
            sxy += c[k] * (t[k] - tm) * (d[k] - dm)
    slope = sxy / sxx
    if m < 3:
        return slope, np.nan
    see = 0.0
    for k in range(n):
        if c[k] > 0:
            e = d[k] - dm - slope * (t[k] - tm)
            see += c[k] * e * e
    return slope, np.sqrt(see / (m - 2) / sxx)


@numba.njit(cache=True, parallel=True)
def _solve_pixels(
    pairs: np.ndarray,
    obs: np.ndarray,
    w: np.ndarray,
    has_w: bool,
    tau: np.ndarray,
    gamma: float,
    idx: np.ndarray,
    series: np.ndarray,
    vel: np.ndarray,
    vel_std: np.ndarray,
    rms: np.ndarray,
    std: np.ndarray,
    inv_var: bool,
    vel_sig: np.ndarray,
) -> None:
    """Per-pixel weighted least squares for the pixels ``idx`` (see invert_timeseries)."""
    n_p = pairs.shape[0]
    n_d = tau.shape[0]
    nq = idx.shape[0]
    nchunk = (nq + _SLOW_CHUNK - 1) // _SLOW_CHUNK
    for b in prange(nchunk):
        g = np.empty((n_d, n_d), np.float64)
        rhs = np.empty(n_d, np.float64)
        parent = np.empty(n_d, np.int64)
        c = np.empty(n_d, np.float64)
        d = np.empty(n_d, np.float64)
        linv = np.empty((n_d, n_d), np.float64)
        for qq in range(b * _SLOW_CHUNK, min(nq, (b + 1) * _SLOW_CHUNK)):
            q = idx[qq]
            g[:, :] = 0.0
            rhs[:] = 0.0
            c[:] = 0.0
            for k in range(n_d):
                parent[k] = k
            wsum = 0.0
            cnt = 0
            for p in range(n_p):
                v = obs[p, q]
                wt = np.float64(w[p, q]) if has_w else 1.0
                if not (np.isfinite(v) and np.isfinite(wt) and wt > 0):
                    continue
                cnt += 1
                wsum += wt
                i = pairs[p, 0]
                j = pairs[p, 1]
                c[i] += wt
                c[j] += wt
                ri = _find(parent, i)
                rj = _find(parent, j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
                # unknown x[k-1] = d_k (k >= 1); row: +1 at j, -1 at i
                rhs[j - 1] += wt * v
                g[j - 1, j - 1] += wt
                if i >= 1:
                    rhs[i - 1] -= wt * v
                    g[i - 1, i - 1] += wt
                    g[i - 1, j - 1] -= wt
                    g[j - 1, i - 1] -= wt
            if cnt == 0:
                continue
            connected = True
            n_comp = 0
            for k in range(n_d):
                if _find(parent, k) == k:
                    n_comp += 1
                if _find(parent, k) != 0:
                    connected = False
            m = n_d - 1
            if not connected:
                # weak linear-model constraints d_k - v * tau_k = 0, unknown v = x[n_d-1]
                ge = gamma * wsum / cnt
                m = n_d
                for k in range(1, n_d):
                    g[k - 1, k - 1] += ge
                    g[k - 1, n_d - 1] -= ge * tau[k]
                    g[n_d - 1, k - 1] -= ge * tau[k]
                    g[n_d - 1, n_d - 1] += ge * tau[k] * tau[k]
            if not _chol_solve(g, rhs, m):
                continue
            d[0] = 0.0
            for k in range(1, n_d):
                d[k] = rhs[k - 1]
            for k in range(n_d):
                series[k, q] = d[k]
            swr = 0.0
            for p in range(n_p):
                v = obs[p, q]
                wt = np.float64(w[p, q]) if has_w else 1.0
                if not (np.isfinite(v) and np.isfinite(wt) and wt > 0):
                    continue
                r = v - (d[pairs[p, 1]] - d[pairs[p, 0]])
                swr += wt * r * r
            rms[q] = np.sqrt(swr / wsum)
            # Formal sigma: diag of g^-1 from its Cholesky factor (lower triangle of g).
            red = cnt - (n_d - n_comp)
            f2 = swr / red if red > 0 else np.nan
            if inv_var:
                f2 = max(1.0, f2) if red > 0 else 1.0
            _chol_inv_diag(g, m, linv)
            std[0, q] = 0.0
            for k in range(1, n_d):
                std[k, q] = np.sqrt(linv[k - 1, 0] * f2)
            s, sd = _slope(d, c, tau)
            vel[q] = s
            vel_std[q] = sd
            # Formal sigma of the slope: v = sum_k s_k d_k, var = f2 s^T G^-1 s.
            sw = 0.0
            st = 0.0
            for k in range(n_d):
                if c[k] > 0:
                    sw += c[k]
                    st += c[k] * tau[k]
            if sw > 0:
                tm = st / sw
                sxx = 0.0
                for k in range(n_d):
                    if c[k] > 0:
                        sxx += c[k] * (tau[k] - tm) * (tau[k] - tm)
                if sxx > 0:
                    for k in range(m):
                        kk = k + 1
                        srow = c[kk] * (tau[kk] - tm) / sxx if (kk < n_d and c[kk] > 0) else 0.0
                        acc = srow
                        for j in range(k):
                            acc -= g[k, j] * linv[j, 1]
                        linv[k, 1] = acc / g[k, k]
                    qv = 0.0
                    for k in range(m):
                        qv += linv[k, 1] * linv[k, 1]
                    vel_sig[q] = np.sqrt(qv * f2)


# --------------------------------------------------------------------------------------
# Shared-matrix fast path
# --------------------------------------------------------------------------------------


def _shared_operator(pairs: np.ndarray, tau: np.ndarray, gamma: float) -> np.ndarray:
    """Build the operator of the shared fast path.

    One matrix maps the P pair values of a fully-valid, equally-weighted pixel to
    ``[d_1..d_{N-1}; pair residuals (P); velocity (1); line residuals (N)]``.
    """
    n_p = pairs.shape[0]
    n_d = tau.shape[0]
    a = np.zeros((n_p, n_d))
    a[np.arange(n_p), pairs[:, 1]] = 1.0
    a[np.arange(n_p), pairs[:, 0]] = -1.0
    a1 = a[:, 1:]
    if len(network_components(n_d, pairs)) == 1:
        m = np.linalg.pinv(a1)
    else:
        con = np.hstack([np.eye(n_d - 1), -tau[1:, None]]) * np.sqrt(gamma)
        aug = np.vstack([np.hstack([a1, np.zeros((n_p, 1))]), con])
        m = np.linalg.pinv(aug)[: n_d - 1, :n_p]
    full = np.vstack([np.zeros((1, n_p)), m])  # series incl. d_0 = 0
    resid = np.eye(n_p) - a @ full
    c = np.abs(a).sum(axis=0)  # date weights: pairs touching each date (equal weights)
    use = c > 0
    tm = np.sum(c * tau) / np.sum(c)
    sxx = np.sum(c * (tau - tm) ** 2)
    srow = np.where(use, c * (tau - tm) / sxx, 0.0)
    x = np.stack([np.ones(n_d), tau - tm], axis=1)
    hat = x @ np.linalg.solve(x.T @ (c[:, None] * x), x.T * c[None, :])
    line_res = np.where(use[:, None], (np.eye(n_d) - hat) @ full, 0.0)
    return np.vstack([m, resid, srow[None, :] @ full, line_res])


def _shared_cofactor(pairs: np.ndarray, tau: np.ndarray, gamma: float
                     ) -> tuple[np.ndarray, int, float]:
    """Cofactors of the shared path and the redundancy ``P - rank``.

    The diagonal of ``(A^T A)^-1`` for dates 1..N-1 (with the constraints of the
    per-pixel path added when the network is not connected), the redundancy and the
    cofactor ``s^T (A^T A)^-1 s`` of the velocity (``s``: slope weights of the dates).
    """
    n_p = pairs.shape[0]
    n_d = tau.shape[0]
    a = np.zeros((n_p, n_d))
    a[np.arange(n_p), pairs[:, 1]] = 1.0
    a[np.arange(n_p), pairs[:, 0]] = -1.0
    a1 = a[:, 1:]
    comps = len(network_components(n_d, pairs))
    if comps == 1:
        g = a1.T @ a1
    else:
        g = np.zeros((n_d, n_d))
        g[: n_d - 1, : n_d - 1] = a1.T @ a1
        con = np.hstack([np.eye(n_d - 1), -tau[1:, None]])
        g += gamma * con.T @ con
    ginv = np.linalg.inv(g)
    q = np.diag(ginv)[: n_d - 1]
    c = np.abs(a).sum(axis=0)
    tm = np.sum(c * tau) / np.sum(c)
    srow = np.where(c > 0, c * (tau - tm) / np.sum(c * (tau - tm) ** 2), 0.0)[1:]
    qv = float(srow @ ginv[: n_d - 1, : n_d - 1] @ srow)
    return q, n_p - (n_d - comps), qv


def _fast_path(
    op: np.ndarray,
    pairs: np.ndarray,
    tau: np.ndarray,
    obs2: np.ndarray,
    cls: np.ndarray,
    series2: np.ndarray,
    vel: np.ndarray,
    vel_std: np.ndarray,
    rms: np.ndarray,
    w2: np.ndarray,
    has_w: bool,
    std: np.ndarray,
    inv_var: bool,
    gamma: float,
    vel_sig: np.ndarray,
) -> None:
    """Apply the shared operator to the class-1 pixels, block by block.

    A block whose pixels are all class 1 is used as a contiguous slice (no gather).
    """
    q, red, qv = _shared_cofactor(pairs, tau, gamma)
    n_p = pairs.shape[0]
    n_d = tau.shape[0]
    c = np.zeros(n_d)
    np.add.at(c, pairs[:, 0], 1.0)
    np.add.at(c, pairs[:, 1], 1.0)
    m_dates = int(np.count_nonzero(c))
    tm = np.sum(c * tau) / np.sum(c)
    sxx = float(np.sum(c * (tau - tm) ** 2))
    npix = obs2.shape[1]
    for lo in range(0, npix, _FAST_BLOCK):
        hi = min(npix, lo + _FAST_BLOCK)
        is_fast = cls[lo:hi] == 1
        sel: slice | np.ndarray
        if is_fast.all():
            sel = slice(lo, hi)
        elif is_fast.any():
            sel = lo + np.flatnonzero(is_fast)
        else:
            continue
        y = op @ obs2[:, sel]
        series2[0, sel] = 0.0
        series2[1:, sel] = y[: n_d - 1]
        r = y[n_d - 1 : n_d - 1 + n_p]
        rms[sel] = np.sqrt(np.mean(r * r, axis=0))
        vel[sel] = y[n_d - 1 + n_p]
        # Every pair valid with one weight w0: N = w0 A^T A, s0^2 = w0 r.r / red.
        w0 = w2[0, sel].astype(np.float64) if has_w else np.ones(y.shape[1])
        rr = np.sum(r * r, axis=0)
        if inv_var:
            f2 = np.maximum(1.0, w0 * rr / red) / w0 if red > 0 else 1.0 / w0
        else:
            f2 = rr / red if red > 0 else np.full(y.shape[1], np.nan)
        std[0, sel] = 0.0
        std[1:, sel] = np.sqrt(q[:, None] * f2[None, :])
        vel_sig[sel] = np.sqrt(qv * f2)
        if m_dates >= 3:
            e = y[n_d + n_p :]
            vel_std[sel] = np.sqrt(np.sum(c[:, None] * e * e, axis=0) / (m_dates - 2) / sxx)


# --------------------------------------------------------------------------------------
# Public inversion
# --------------------------------------------------------------------------------------


def invert_timeseries(
    pairs: np.ndarray,
    obs: np.ndarray,
    weights: np.ndarray | None,
    t_years: np.ndarray,
    gamma: float = 1e-4,
    *,
    use_shared: bool = True,
    inverse_variance: bool = False,
) -> TimeseriesResult:
    """Invert pair displacements into a displacement time series, pixel by pixel.

    Per pixel, the valid pairs (finite ``obs``, finite positive weight) give weighted
    least squares for ``d_1..d_{N-1}`` (``d_0 = 0``). When they do not connect all dates
    (a rank-deficient network: disconnected components or dates without data), NSBAS-style
    constraints ``d_k - v (t_k - t_0) = 0`` (k >= 1, extra unknown ``v``) are added with
    weight ``gamma * mean(valid pair weights)``: the data fix the shape within each
    component and the linear model bridges the gaps between them. The constraints are
    added *only* for such pixels, so a connected network gives the unbiased weighted
    least-squares solution.

    Pixels whose pairs are all valid with equal weights share one pseudo-inverse (one
    matrix product per block of pixels); the others are solved in a Numba loop (normal
    equations, Cholesky).

    Parameters
    ----------
    pairs
        Integer (P, 2) date indices ``(i, j)`` with ``0 <= i < j < n_dates``.
    obs
        float32 (P, ny, nx) pair displacements ``d_j - d_i``; NaN where invalid.
    weights
        float32 (P, ny, nx) non-negative weights (e.g. correlation score) or None (ones).
        A zero or NaN weight makes that pair invalid at that pixel.
    t_years
        (n_dates,) acquisition times in decimal years, strictly increasing.
    gamma
        Relative weight of the linear-model constraints (> 0).
    use_shared
        Use the shared-matrix fast path (default). False solves every pixel in the
        per-pixel loop (same result; for testing).
    inverse_variance
        How ``series_std`` is scaled. False (weights are relative): by the a-posteriori
        variance factor ``s0^2`` (NaN without redundancy, e.g. a chain of consecutive
        pairs). True (weights are ``1/sigma^2`` of the pairs): by ``max(1, s0^2)``, so the
        a-priori sigmas are trusted unless the misfits say they are too small, and the
        sigma is the a-priori one without redundancy.

    Returns
    -------
    TimeseriesResult
        See :class:`TimeseriesResult`. Pixels without a valid pair are NaN (``n_pairs``
        0).

    Raises
    ------
    ValueError
        On wrong dtype, shape or values of the inputs.

    """
    t = np.asarray(t_years)
    if t.ndim != 1 or t.shape[0] < 2:
        raise ValueError(f"t_years must be 1-D with at least 2 dates, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.floating) and not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"t_years must be real numbers, got dtype {t.dtype}")
    t = t.astype(np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError("t_years contains non-finite values")
    if np.any(np.diff(t) <= 0):
        k = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise ValueError(
            f"t_years must be strictly increasing: "
            f"t_years[{k}]={t[k]} <= t_years[{k - 1}]={t[k - 1]}"
        )
    n_d = t.shape[0]
    pr = _check_pairs(pairs, n_d)
    n_p = pr.shape[0]
    if n_p == 0:
        raise ValueError("pairs is empty")
    if n_p > np.iinfo(np.int16).max:
        raise ValueError(f"at most {np.iinfo(np.int16).max} pairs are supported, got {n_p}")
    if not isinstance(obs, np.ndarray):
        raise ValueError(f"obs must be a numpy array, got {type(obs).__name__}")
    if obs.dtype != np.float32:
        raise ValueError(f"obs must be float32, got {obs.dtype}")
    if obs.ndim != 3 or obs.shape[0] != n_p:
        raise ValueError(f"obs must have shape (P={n_p}, ny, nx), got {obs.shape}")
    if weights is not None:
        if not isinstance(weights, np.ndarray):
            raise ValueError(f"weights must be a numpy array or None, got {type(weights).__name__}")
        if weights.dtype != np.float32:
            raise ValueError(f"weights must be float32, got {weights.dtype}")
        if weights.shape != obs.shape:
            raise ValueError(f"weights must have the shape of obs {obs.shape}, got {weights.shape}")
        if np.any(weights < 0):
            raise ValueError("weights must be >= 0 (NaN marks an invalid pair)")
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise ValueError(f"gamma must be a real number, got {gamma!r}")
    if not (np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be finite and > 0, got {gamma}")
    gamma = float(gamma)

    _, ny, nx = obs.shape
    npix = ny * nx
    tau = t - t[0]
    obs2 = np.ascontiguousarray(obs).reshape(n_p, npix)
    has_w = weights is not None
    w2 = np.ascontiguousarray(weights).reshape(n_p, npix) if has_w else np.ones((1, 1), np.float32)

    series = np.full((n_d, npix), np.nan, np.float32)
    vel = np.full(npix, np.nan, np.float32)
    vel_std = np.full(npix, np.nan, np.float32)
    std = np.full((n_d, npix), np.nan, np.float32)
    vel_sig = np.full(npix, np.nan, np.float32)
    rms = np.full(npix, np.nan, np.float32)
    cls = np.empty(npix, np.int8)
    npair = np.empty(npix, np.int16)
    if npix:
        _classify(obs2, w2, has_w, cls, npair)
        if use_shared:
            slow = np.flatnonzero(cls == 2)
            if slow.size < npix:
                op = _shared_operator(pr, tau, gamma)
                _fast_path(op, pr, tau, obs2, cls, series, vel, vel_std, rms, w2, has_w, std,
                           inverse_variance, gamma, vel_sig)
        else:
            slow = np.flatnonzero(cls != 0)
        if slow.size:
            _solve_pixels(pr, obs2, w2, has_w, tau, gamma, slow, series, vel, vel_std, rms,
                          std, inverse_variance, vel_sig)
    return TimeseriesResult(
        series=series.reshape(n_d, ny, nx),
        velocity=vel.reshape(ny, nx),
        velocity_std=vel_std.reshape(ny, nx),
        residual_rms=rms.reshape(ny, nx),
        n_pairs=npair.reshape(ny, nx),
        series_std=std.reshape(n_d, ny, nx),
        velocity_formal_std=vel_sig.reshape(ny, nx),
    )
