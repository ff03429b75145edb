"""Outlier rejection, stable-ground offset and small-hole filling on grids of window results.

All functions take 2-D grids of per-window results (shape ``(ny, nx)``, NaN = failed
window) as produced by a correlator on a regular grid of window centres.
"""

from __future__ import annotations

import numbers

import numba
import numpy as np
from numba import prange

__all__ = ["apply_offset", "median_fill", "reject_outliers", "stable_offset"]

_NMAD_SCALE = 1.4826
_MIN_OFFSET_WINDOWS = 10


# --------------------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _sorted_median(buf: np.ndarray, m: int) -> float:
    """Median of ``buf[:m]`` (m >= 1); sorts ``buf[:m]`` in place (insertion sort)."""
    for i in range(1, m):
        v = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    h = m // 2
    if m % 2 == 1:
        return buf[h]
    return (buf[h - 1] + buf[h]) / 2.0


@numba.njit(cache=True, nogil=True)
def _deviates(
    buf: np.ndarray, tmp: np.ndarray, m: int, value: float, k: float, floor: float
) -> bool:
    """Test ``|value - median(buf[:m])| > k * max(NMAD(buf[:m]), floor)``."""
    med = _sorted_median(buf, m)
    for i in range(m):
        tmp[i] = abs(buf[i] - med)
    nmad = _NMAD_SCALE * _sorted_median(tmp, m)
    return abs(value - med) > k * max(nmad, floor)


@numba.njit(cache=True, parallel=True)
def _reject_loop(
    drow: np.ndarray,
    dcol: np.ndarray,
    cand: np.ndarray,
    radius: int,
    k: float,
    floor: float,
    min_nb: int,
    out: np.ndarray,
) -> None:
    ny, nx = cand.shape
    size = (2 * radius + 1) * (2 * radius + 1)
    for y in prange(ny):
        br = np.empty(size, np.float64)
        bc = np.empty(size, np.float64)
        tmp = np.empty(size, np.float64)
        for x in range(nx):
            out[y, x] = False
            if not cand[y, x]:
                continue
            m = 0
            for yy in range(max(0, y - radius), min(ny, y + radius + 1)):
                for xx in range(max(0, x - radius), min(nx, x + radius + 1)):
                    if (yy != y or xx != x) and cand[yy, xx]:
                        br[m] = drow[yy, xx]
                        bc[m] = dcol[yy, xx]
                        m += 1
            if m < min_nb or m == 0:
                continue
            if _deviates(br, tmp, m, drow[y, x], k, floor):
                continue
            if _deviates(bc, tmp, m, dcol[y, x], k, floor):
                continue
            out[y, x] = True


@numba.njit(cache=True, parallel=True)
def _fill_loop(
    values: np.ndarray, ok: np.ndarray, radius: int, min_valid: int, out: np.ndarray
) -> None:
    ny, nx = ok.shape
    size = (2 * radius + 1) * (2 * radius + 1)
    for y in prange(ny):
        buf = np.empty(size, np.float64)
        for x in range(nx):
            if ok[y, x]:
                out[y, x] = values[y, x]
                continue
            m = 0
            for yy in range(max(0, y - radius), min(ny, y + radius + 1)):
                for xx in range(max(0, x - radius), min(nx, x + radius + 1)):
                    if ok[yy, xx]:
                        buf[m] = values[yy, xx]
                        m += 1
            if m >= min_valid and m > 0:
                out[y, x] = _sorted_median(buf, m)
            else:
                out[y, x] = np.nan


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _float_grid(name: str, a: object, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (ny, nx), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must have a floating dtype, got {a.dtype}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (like drow), got {a.shape}")
    return a


def _bool_grid(name: str, a: object, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.bool_:
        raise ValueError(f"{name} must be a boolean mask, got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def _int_param(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _float_param(name: str, value: object, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or (v <= minimum if strict else v < minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be finite and {op} {minimum}, got {value}")
    return v


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def reject_outliers(
    drow: np.ndarray,
    dcol: np.ndarray,
    score: np.ndarray,
    min_score: float,
    radius: int = 1,
    nmad_k: float = 3.0,
    min_neighbours: int = 3,
    *,
    nmad_floor: float = 0.05,
) -> np.ndarray:
    """Mask of valid windows after a score threshold and a local median/NMAD test.

    A window is rejected when its score is below ``min_score`` or any of ``drow``,
    ``dcol``, ``score`` is NaN (these are the *candidates* that survive). Then, in a
    single pass, each candidate is compared with the candidates in its
    ``(2*radius+1)**2`` neighbourhood (centre excluded): it is rejected when it has fewer
    than ``min_neighbours`` of them, or when, for either component,
    ``|value - median| > nmad_k * max(NMAD, nmad_floor)`` with
    ``NMAD = 1.4826 * median(|neighbours - median|)``. Single pass: the neighbour
    statistics use all candidates, including ones rejected by this test, so the result
    does not depend on the visiting order; run it again on the output to iterate. A
    candidate without any candidate neighbour is always rejected.

    Parameters
    ----------
    drow, dcol, score
        2-D float arrays of the same shape (ny, nx); NaN = failed window.
    min_score
        Minimum score of a candidate.
    radius
        Neighbourhood half-size in windows (>= 1).
    nmad_k
        Rejection threshold in NMADs (> 0).
    min_neighbours
        Minimum number of candidate neighbours (0 .. (2*radius+1)**2 - 1).
    nmad_floor
        Lower bound of the NMAD in the units of ``drow``/``dcol`` (pixels; default
        0.05), so that a perfectly smooth field does not reject everything.

    Returns
    -------
    np.ndarray
        bool (ny, nx), True for valid windows.

    Raises
    ------
    ValueError
        On wrong dtype, shape or parameter values.

    """
    _float_grid("drow", drow)
    shape = drow.shape
    _float_grid("dcol", dcol, shape)
    _float_grid("score", score, shape)
    min_score = _float_param("min_score", min_score, -np.inf, strict=True)
    radius = _int_param("radius", radius, 1)
    nmad_k = _float_param("nmad_k", nmad_k, 0.0, strict=True)
    nmad_floor = _float_param("nmad_floor", nmad_floor, 0.0, strict=False)
    min_neighbours = _int_param("min_neighbours", min_neighbours, 0)
    n_max = (2 * radius + 1) ** 2 - 1
    if min_neighbours > n_max:
        raise ValueError(
            f"min_neighbours={min_neighbours} exceeds the {n_max} neighbours of radius {radius}"
        )
    r = np.asarray(drow, np.float64)
    c = np.asarray(dcol, np.float64)
    s = np.asarray(score, np.float64)
    cand = np.isfinite(r) & np.isfinite(c) & np.isfinite(s)
    cand &= np.where(cand, s, -np.inf) >= min_score
    out = np.empty(shape, np.bool_)
    if out.size:
        _reject_loop(
            np.ascontiguousarray(r),
            np.ascontiguousarray(c),
            np.ascontiguousarray(cand),
            radius,
            nmad_k,
            nmad_floor,
            min_neighbours,
            out,
        )
    return out


def stable_offset(
    drow: np.ndarray, dcol: np.ndarray, valid: np.ndarray, stable: np.ndarray | None = None
) -> tuple[float, float]:
    """Median displacement of the valid (and stable) windows: the co-registration offset.

    Parameters
    ----------
    drow, dcol
        2-D float arrays of the same shape.
    valid
        bool mask of valid windows (e.g. from :func:`reject_outliers`).
    stable
        Optional bool mask, True where the ground is assumed not to move. None uses every
        valid window.

    Returns
    -------
    tuple[float, float]
        ``(row_offset, col_offset)``: medians over windows that are valid, stable and
        finite in both components.

    Raises
    ------
    ValueError
        On wrong dtype or shape, or when fewer than 10 windows are available.

    """
    _float_grid("drow", drow)
    shape = drow.shape
    _float_grid("dcol", dcol, shape)
    use = _bool_grid("valid", valid, shape).copy()
    if stable is not None:
        use &= _bool_grid("stable", stable, shape)
    use &= np.isfinite(drow) & np.isfinite(dcol)
    n = int(np.count_nonzero(use))
    if n < _MIN_OFFSET_WINDOWS:
        where = "valid and stable" if stable is not None else "valid"
        raise ValueError(
            f"only {n} {where} windows with finite displacement; "
            f"at least {_MIN_OFFSET_WINDOWS} are needed to estimate an offset"
        )
    return float(np.median(drow[use])), float(np.median(dcol[use]))


def apply_offset(
    drow: np.ndarray, dcol: np.ndarray, offset: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Subtract a constant ``(row_offset, col_offset)``; return new arrays (dtype kept).

    Raises
    ------
    ValueError
        On wrong dtype or shape, or an offset that is not two finite numbers.

    """
    _float_grid("drow", drow)
    _float_grid("dcol", dcol, drow.shape)
    if len(offset) != 2:
        raise ValueError(f"offset must be (row_offset, col_offset), got {offset!r}")
    o_r = _float_param("offset[0]", offset[0], -np.inf, strict=True)
    o_c = _float_param("offset[1]", offset[1], -np.inf, strict=True)
    return (drow - drow.dtype.type(o_r)), (dcol - dcol.dtype.type(o_c))


def median_fill(
    values: np.ndarray, valid: np.ndarray, radius: int = 1, *, min_valid: int = 5
) -> np.ndarray:
    """Fill small holes by the median of valid neighbours (used for pyramid priors).

    Valid, finite windows keep their value. An invalid window with at least
    ``min_valid`` valid finite windows in its ``(2*radius+1)**2`` neighbourhood gets
    their median; any other invalid window is NaN. Single pass: filled values are not
    used to fill others.

    Parameters
    ----------
    values
        2-D float array.
    valid
        bool mask of the same shape.
    radius
        Neighbourhood half-size (>= 1).
    min_valid
        Minimum number of valid neighbours to fill (>= 1; default 5).

    Returns
    -------
    np.ndarray
        New array, same shape and dtype as ``values``.

    Raises
    ------
    ValueError
        On wrong dtype, shape or parameter values.

    """
    _float_grid("values", values)
    _bool_grid("valid", valid, values.shape)
    radius = _int_param("radius", radius, 1)
    min_valid = _int_param("min_valid", min_valid, 1)
    if min_valid > (2 * radius + 1) ** 2 - 1:
        raise ValueError(
            f"min_valid={min_valid} exceeds the {(2 * radius + 1) ** 2 - 1} neighbours "
            f"of radius {radius}"
        )
    v = np.ascontiguousarray(values, np.float64)
    ok = np.ascontiguousarray(valid & np.isfinite(v))
    out = np.empty(values.shape, np.float64)
    if out.size:
        _fill_loop(v, ok, radius, min_valid, out)
    return out.astype(values.dtype, copy=False)
