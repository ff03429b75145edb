"""Kernels of the interferogram corrections: ramps and phase/elevation, screening, network.

Pure functions on NumPy arrays (``ValueError`` on bad input):

- :func:`design_columns`: the columns of a per-interferogram model on a block of rows
  (offset, planar or quadratic ramp in normalised image coordinates, and the terrain
  height for the stratified troposphere), so that a model fitted on the whole grid
  can be accumulated block by block (:class:`NormalEquations`) and applied block by
  block (:func:`evaluate_model`): memory does not grow with the frame.
- :func:`network_consistent`: pair coefficients made consistent with the network by
  inverting them into per-date coefficients (``c_ij = C_j - C_i``, first date 0), as
  NSBAS does for its ramps and phase/elevation ratios.
- :func:`phase_gradient_variance`: the variance of the wrapped phase differences
  between neighbouring pixels (rad^2), a measure of phase noise that smooth signals
  (deformation, atmosphere) hardly change.
- :func:`pixel_network_gaps`: per pixel, the number of gaps of its own network (the
  pairs valid at that pixel leave the dates in how many more than one connected parts),
  LiCSBAS's ``n_gap``.
- :func:`loop_counts`: per pixel, the number of closed triplets checked and the number
  whose phase closure exceeds a threshold (LiCSBAS's ``n_loop_err``).
- :func:`date_rms`: per-date RMS from per-pair RMS (``rms_ij^2 = s_i^2 + s_j^2``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

__all__ = ["MODEL_TERMS", "model_terms", "design_columns", "NormalEquations",
           "evaluate_model", "network_consistent", "phase_gradient_variance",
           "pixel_network_gaps", "loop_counts", "date_rms"]

MODEL_TERMS = {
    "none": (),
    "linear": ("x", "y"),
    "quadratic": ("x", "y", "x2", "xy", "y2"),
}
"""Ramp terms per ramp kind (x: columns, y: rows, both normalised to [-1, 1])."""


def model_terms(ramp: str, stratified: bool) -> tuple[str, ...]:
    """The terms of a per-interferogram model (the offset ``c`` is always first)."""
    if ramp not in MODEL_TERMS:
        raise ValueError(f"unknown ramp {ramp!r}; known: {', '.join(MODEL_TERMS)}")
    return ("c", *MODEL_TERMS[ramp], *(("h",) if stratified else ()))


def design_columns(terms: Sequence[str], r0: int, r1: int, shape: tuple[int, int],
                   height: np.ndarray | None = None) -> np.ndarray:
    """Design columns ``(k, r1 - r0, nx)`` of the model terms on rows ``r0:r1``.

    ``x`` and ``y`` are the column and row of the pixel centre, normalised to [-1, 1]
    over the whole grid ``shape`` (so coefficients do not depend on the block);
    ``h`` is ``height`` (metres, the block's rows, ``(r1 - r0, nx)``) in km.
    """
    ny, nx = shape
    if not 0 <= r0 < r1 <= ny:
        raise ValueError(f"rows {r0}:{r1} outside a grid of {ny} rows")
    y = ((np.arange(r0, r1, dtype=np.float64) + 0.5) / ny * 2 - 1)[:, None]
    x = ((np.arange(nx, dtype=np.float64) + 0.5) / nx * 2 - 1)[None, :]
    out = np.empty((len(terms), r1 - r0, nx), np.float64)
    for k, t in enumerate(terms):
        if t == "c":
            out[k] = 1.0
        elif t == "x":
            out[k] = x
        elif t == "y":
            out[k] = y
        elif t == "x2":
            out[k] = x * x
        elif t == "xy":
            out[k] = x * y
        elif t == "y2":
            out[k] = y * y
        elif t == "h":
            if height is None or height.shape != (r1 - r0, nx):
                raise ValueError("the height term needs heights of the block's shape")
            out[k] = height / 1000.0
        else:
            raise ValueError(f"unknown model term {t!r}")
    return out


class NormalEquations:
    """Weighted least-squares normal equations of one model per pair, accumulated by block.

    ``add(p, design, obs, weights)`` adds the finite pixels of one block of pair ``p``;
    ``solve()`` returns the coefficients ``(n_pairs, k)`` (NaN for a pair without
    enough pixels) and the weighted RMS misfit per pair.
    """

    def __init__(self, n_pairs: int, n_terms: int) -> None:
        if n_pairs < 1 or n_terms < 1:
            raise ValueError("need at least one pair and one term")
        self.gtg = np.zeros((n_pairs, n_terms, n_terms))
        self.gtd = np.zeros((n_pairs, n_terms))
        self.dtd = np.zeros(n_pairs)
        self.wsum = np.zeros(n_pairs)
        self.count = np.zeros(n_pairs, np.int64)

    def add(self, p: int, design: np.ndarray, obs: np.ndarray,
            weights: np.ndarray | None = None, keep: np.ndarray | None = None) -> None:
        """Accumulate pair ``p``: ``design`` (k, h, w), ``obs`` (h, w), ``weights`` (h, w)."""
        ok = np.isfinite(obs) & np.all(np.isfinite(design), axis=0)
        if weights is not None:
            ok &= np.isfinite(weights) & (weights > 0)
        if keep is not None:
            ok &= keep
        n = int(ok.sum())
        if not n:
            return
        g = design[:, ok].T  # (n, k)
        d = obs[ok].astype(np.float64)
        w = np.ones(n) if weights is None else weights[ok].astype(np.float64)
        gw = g * w[:, None]
        self.gtg[p] += gw.T @ g
        self.gtd[p] += gw.T @ d
        self.dtd[p] += float(np.dot(w * d, d))
        self.wsum[p] += float(w.sum())
        self.count[p] += n

    def solve(self, min_pixels: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients ``(n_pairs, k)`` and weighted RMS misfit ``(n_pairs,)``."""
        n_p, k = self.gtd.shape
        coef = np.full((n_p, k), np.nan)
        rms = np.full(n_p, np.nan)
        for p in range(n_p):
            if self.count[p] < max(min_pixels, 2 * k):
                continue
            a = self.gtg[p]
            scale = np.sqrt(np.maximum(np.diag(a), 1e-300))
            an = a / scale[:, None] / scale[None, :]
            x = np.linalg.lstsq(an, self.gtd[p] / scale, rcond=1e-10)[0] / scale
            coef[p] = x
            sse = self.dtd[p] - 2 * x @ self.gtd[p] + x @ a @ x
            rms[p] = np.sqrt(max(sse, 0.0) / max(self.wsum[p], 1e-300))
        return coef, rms


def evaluate_model(coef: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``sum_k coef[k] design[k]`` (h, w); NaN coefficients give 0 (nothing removed)."""
    coef = np.nan_to_num(np.asarray(coef, np.float64))
    if coef.shape[0] != design.shape[0]:
        raise ValueError(f"{coef.shape[0]} coefficients for {design.shape[0]} columns")
    return np.tensordot(coef, design, axes=1)


def network_consistent(coef: np.ndarray, pairs: Sequence[tuple[int, int]], n_dates: int,
                       weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pair coefficients made consistent with the network.

    Solves ``coef[p] = C[j] - C[i]`` for per-date coefficients ``C`` (``C[0] = 0``, one
    least-squares problem per term, ``weights`` per pair, NaN pairs left out; dates no
    pair reaches get 0) and returns ``(C[j] - C[i] per pair, C)``.
    """
    coef = np.asarray(coef, np.float64)
    pr = np.asarray(pairs, np.int64).reshape(-1, 2)
    if coef.ndim != 2 or coef.shape[0] != len(pr):
        raise ValueError("coef must be (n_pairs, k)")
    if pr.size and (pr.min() < 0 or pr.max() >= n_dates):
        raise ValueError("pair indices outside the dates")
    n_p, k = coef.shape
    w = np.ones(n_p) if weights is None else np.asarray(weights, np.float64)
    ok = np.all(np.isfinite(coef), axis=1) & np.isfinite(w) & (w > 0)
    a = np.zeros((n_p, n_dates))
    a[np.arange(n_p), pr[:, 1]] = 1.0
    a[np.arange(n_p), pr[:, 0]] -= 1.0
    per_date = np.zeros((n_dates, k))
    if ok.any():
        sw = np.sqrt(w[ok])[:, None]
        sol = np.linalg.lstsq(a[ok][:, 1:] * sw, coef[ok] * sw, rcond=None)[0]
        per_date[1:] = sol
        # Dates no kept pair touches are undetermined: lstsq gives them 0 already, but a
        # disconnected part floats: tie each part's earliest date to 0.
        reached = np.zeros(n_dates, bool)
        reached[pr[ok].ravel()] = True
        per_date[~reached] = 0.0
        for comp in _components(pr[ok], n_dates):
            first = min(comp)
            if first != 0:
                per_date[list(comp)] -= per_date[first]
    return per_date[pr[:, 1]] - per_date[pr[:, 0]], per_date


def _components(pairs: np.ndarray, n_dates: int) -> list[set[int]]:
    parent = list(range(n_dates))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in pairs:
        parent[find(int(i))] = find(int(j))
    groups: dict[int, set[int]] = {}
    touched = set(int(v) for v in pairs.ravel())
    for d in touched:
        groups.setdefault(find(d), set()).add(d)
    return list(groups.values())


def phase_gradient_variance(phase: np.ndarray) -> tuple[float, int]:
    """Sum of squared wrapped neighbour differences (rows and columns) and their count.

    ``phase`` (h, w) radians, NaN = no data. The variance of a block is
    ``sum / count``; sums of blocks add up (differences across block edges are not
    counted).
    """
    if phase.ndim != 2:
        raise ValueError("phase must be 2-D")
    total, n = 0.0, 0
    for d in (np.diff(phase, axis=0), np.diff(phase, axis=1)):
        d = np.angle(np.exp(1j * d[np.isfinite(d)]))
        total += float(np.dot(d, d))
        n += d.size
    return total, n


@numba.njit(cache=True)
def _find(parent, a):  # pragma: no cover - compiled
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@numba.njit(cache=True, parallel=True)
def _gaps(valid, pairs, n_dates, out):  # pragma: no cover - compiled
    n_p, npix = valid.shape
    for q in numba.prange(npix):
        parent = np.arange(n_dates)
        touched = np.zeros(n_dates, np.bool_)
        for p in range(n_p):
            if valid[p, q]:
                a = _find(parent, pairs[p, 0])
                b = _find(parent, pairs[p, 1])
                touched[pairs[p, 0]] = True
                touched[pairs[p, 1]] = True
                if a != b:
                    parent[a] = b
        roots = 0
        for d in range(n_dates):
            if _find(parent, d) == d:
                roots += 1
        out[q] = roots - 1


def pixel_network_gaps(valid: np.ndarray, pairs: Sequence[tuple[int, int]],
                       n_dates: int) -> np.ndarray:
    """Per pixel, the number of connected parts of its own network minus one.

    ``valid`` (n_pairs, h, w) bool: the pairs valid at each pixel. 0 means every date is
    reached; a date that no valid pair reaches counts as a part of its own (so a pixel
    with no valid pair has ``n_dates - 1`` gaps).
    """
    valid = np.asarray(valid, bool)
    pr = np.asarray(pairs, np.int64).reshape(-1, 2)
    if valid.ndim != 3 or valid.shape[0] != len(pr):
        raise ValueError("valid must be (n_pairs, h, w) with one layer per pair")
    if pr.size and (pr.min() < 0 or pr.max() >= n_dates):
        raise ValueError("pair indices outside the dates")
    out = np.zeros(valid.shape[1] * valid.shape[2], np.int32)
    _gaps(np.ascontiguousarray(valid.reshape(len(pr), -1)), pr, int(n_dates), out)
    return out.reshape(valid.shape[1:]).astype(np.int16)


def loop_counts(phase: np.ndarray, triplets: Sequence[tuple[int, int, int]],
                threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: closed triplets checked, and those with ``|closure| > threshold``.

    ``phase`` (n_pairs, h, w) radians (all pairs referenced to one pixel); closure
    ``phase[a] + phase[b] - phase[c]`` for each triplet ``(a, b, c)``.
    """
    if phase.ndim != 3:
        raise ValueError("phase must be (n_pairs, h, w)")
    checked = np.zeros(phase.shape[1:], np.int16)
    bad = np.zeros(phase.shape[1:], np.int16)
    for a, b, c in triplets:
        clo = phase[a] + phase[b] - phase[c]
        fin = np.isfinite(clo)
        checked += fin
        bad += fin & (np.abs(np.where(fin, clo, 0)) > threshold)
    return checked, bad


def date_rms(pair_rms: np.ndarray, pairs: Sequence[tuple[int, int]], n_dates: int
             ) -> np.ndarray:
    """Per-date RMS ``s`` that best explains the pairs' RMS: ``rms_ij^2 = s_i^2 + s_j^2``.

    Least squares on the squares with non-negative values (NaN pairs left out; a date
    without a pair gets NaN).
    """
    from scipy.optimize import nnls

    pr = np.asarray(pairs, np.int64).reshape(-1, 2)
    r = np.asarray(pair_rms, np.float64)
    ok = np.isfinite(r)
    a = np.zeros((len(pr), n_dates))
    a[np.arange(len(pr)), pr[:, 0]] = 1
    a[np.arange(len(pr)), pr[:, 1]] = 1
    out = np.full(n_dates, np.nan)
    if not ok.any():
        return out
    s2, _ = nnls(a[ok], r[ok] ** 2)
    seen = a[ok].sum(axis=0) > 0
    out[seen] = np.sqrt(s2[seen])
    return out
