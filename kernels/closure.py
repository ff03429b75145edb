"""Unwrapping-error correction by phase closure, pixel by pixel (no connected components).

For a triplet of pairs ``(i, j), (j, k), (i, k)`` the unwrapped phases must close:
``phi_ij + phi_jk - phi_ik = 0`` up to noise. An unwrapping error adds ``2 pi n`` to one
pair, so the rounded closure ``w_t = round(c_t / 2 pi)`` is a non-zero integer on the
triplets through that pair. The correction looks for the integer ambiguities ``U`` (one
per pair) of smallest L1 norm that cancel every integer closure, ``C U = w`` (as the
phase-closure method of MintPy, Yunjun et al. 2019, without its LP solver): a greedy
descent on ``sum |w - C U|`` changes, at each step, the one pair ambiguity by +-1 that
cancels the most closures, and stops when no change reduces the integer misclosure.
Pairs in no closed triplet, and pixels where a pair is NaN, are left as they are for
those triplets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
from numba import prange

__all__ = ["closure_correction"]

_TWO_PI = 2.0 * np.pi


@numba.njit(cache=True, parallel=True)
def _correct(phase, tri, ptr, idx, coef, cycles, max_steps):  # pragma: no cover - compiled
    n_p, npix = phase.shape
    n_t = tri.shape[0]
    for q in prange(npix):
        w = np.zeros(n_t, np.int64)
        ok = np.zeros(n_t, np.bool_)
        any_bad = False
        for t in range(n_t):
            a = phase[tri[t, 0], q]
            b = phase[tri[t, 1], q]
            c = phase[tri[t, 2], q]
            if np.isfinite(a) and np.isfinite(b) and np.isfinite(c):
                ok[t] = True
                w[t] = np.int64(np.rint((a + b - c) / _TWO_PI))
                if w[t] != 0:
                    any_bad = True
        if not any_bad:
            continue
        u = np.zeros(n_p, np.int64)
        for _ in range(max_steps):
            best_gain = 0
            best_p = -1
            best_s = 0
            for p in range(n_p):
                if not np.isfinite(phase[p, q]):
                    continue
                for s in (-1, 1):
                    gain = 0
                    for e in range(ptr[p], ptr[p + 1]):
                        t = idx[e]
                        if not ok[t]:
                            continue
                        before = abs(w[t])
                        after = abs(w[t] - s * coef[e])
                        gain += before - after
                    if gain > best_gain:
                        best_gain = gain
                        best_p = p
                        best_s = s
            if best_p < 0:
                break
            u[best_p] += best_s
            for e in range(ptr[best_p], ptr[best_p + 1]):
                t = idx[e]
                if ok[t]:
                    w[t] -= best_s * coef[e]
        for p in range(n_p):
            if u[p] != 0:
                phase[p, q] -= _TWO_PI * u[p]
                cycles[p, q] = u[p]


def closure_correction(phase: np.ndarray, triplets: Sequence[tuple[int, int, int]]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Remove integer-cycle unwrapping errors that break phase closure, in place.

    Parameters
    ----------
    phase
        float32/float64 ``(n_pairs, ny, nx)`` unwrapped phase in radians (NaN = no data),
        all pairs referenced to the same pixel. Corrected in place.
    triplets
        ``(k_ij, k_jk, k_ik)`` pair indices of the closed triplets (see
        :func:`kernels.sbas.closure_triplets`): closure ``phi[k_ij] + phi[k_jk] -
        phi[k_ik]``.

    Returns
    -------
    tuple
        ``(phase, cycles)``: the corrected phase (same array) and the int8
        ``(n_pairs, ny, nx)`` number of cycles removed from each pair and pixel.

    Raises
    ------
    ValueError
        Wrong shapes, dtypes or triplet indices.

    """
    if not isinstance(phase, np.ndarray) or phase.dtype not in (np.float32, np.float64):
        raise ValueError("phase must be a float32 or float64 numpy array")
    if phase.ndim != 3:
        raise ValueError(f"phase must be (n_pairs, ny, nx), got shape {phase.shape}")
    n_p = phase.shape[0]
    cycles = np.zeros(phase.shape, np.int8)
    tri = np.asarray(triplets, dtype=np.int64).reshape(-1, 3)
    if tri.size == 0:
        return phase, cycles
    if tri.min() < 0 or tri.max() >= n_p:
        raise ValueError(f"triplet indices must be in 0..{n_p - 1}")
    # For each pair: the triplets it is in and its coefficient (+1, +1, -1).
    entries: list[list[tuple[int, int]]] = [[] for _ in range(n_p)]
    for t, (a, b, c) in enumerate(tri):
        entries[a].append((t, 1))
        entries[b].append((t, 1))
        entries[c].append((t, -1))
    ptr = np.zeros(n_p + 1, np.int64)
    ptr[1:] = np.cumsum([len(e) for e in entries])
    idx = np.array([t for e in entries for t, _ in e], np.int64)
    coef = np.array([s for e in entries for _, s in e], np.int64)
    flat = phase.reshape(n_p, -1)
    cyc = cycles.reshape(n_p, -1)
    if not flat.flags.c_contiguous:
        raise ValueError("phase must be C-contiguous")
    _correct(flat, tri, ptr, idx, coef, cyc, 4 * n_p)
    return phase, cycles
