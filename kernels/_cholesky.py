"""Cholesky factorization and substitution for the small dense systems of the Numba loops."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def chol_factor(h, lo, n, rel):
    """Cholesky factor of the symmetric ``h[:n, :n]`` into the lower triangle of ``lo``.

    False where a pivot is not positive or falls below ``rel`` times its diagonal entry
    of ``h`` (nearly singular); ``h`` is left unchanged.
    """
    for i in range(n):
        for j in range(i + 1):
            s = h[i, j]
            for k in range(j):
                s -= lo[i, k] * lo[j, k]
            if i == j:
                if s <= rel * h[i, i] or s <= 0.0:
                    return False
                lo[i, i] = np.sqrt(s)
            else:
                lo[i, j] = s / lo[j, j]
    return True


@numba.njit(cache=True, inline="always")
def chol_substitute(lo, rhs, out, n):
    """Solve ``L L^T x = rhs[:n]`` into ``out[:n]`` (L the lower triangle of ``lo``).

    ``out`` may be ``rhs`` (solved in place).
    """
    for i in range(n):
        s = rhs[i]
        for k in range(i):
            s -= lo[i, k] * out[k]
        out[i] = s / lo[i, i]
    for i in range(n - 1, -1, -1):
        s = out[i]
        for k in range(i + 1, n):
            s -= lo[k, i] * out[k]
        out[i] = s / lo[i, i]
