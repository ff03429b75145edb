"""Correlation on a regular grid of windows, coarse to fine.

A single correlation level finds displacements up to about a quarter of the window.
Larger ones are found on an image pyramid: each level halves the resolution, the
coarsest level is searched over the whole range, and each finer level only refines
around the prior from the level above (upsampled, median-filtered, holes filled from
the nearest valid window), so the cost stays close to that of a single level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from kernels.correlation import freq_correlate
from kernels.types import Correlation

__all__ = ["WindowGrid", "GridCorrelation", "window_grid", "pyramid_levels", "correlate_grid",
           "downsample2"]

Method = Literal["freq", "ncc"]


@dataclass(frozen=True)
class WindowGrid:
    """Window centres ``row0 + i * step`` (i < ny) and ``col0 + j * step`` (j < nx)."""

    row0: int
    col0: int
    step: int
    ny: int
    nx: int

    @property
    def rows(self) -> np.ndarray:
        """Row of each grid line (int64, ny)."""
        return self.row0 + self.step * np.arange(self.ny, dtype=np.int64)

    @property
    def cols(self) -> np.ndarray:
        """Column of each grid column (int64, nx)."""
        return self.col0 + self.step * np.arange(self.nx, dtype=np.int64)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Flattened (rows, cols) of every window centre, row-major."""
        rr, cc = np.meshgrid(self.rows, self.cols, indexing="ij")
        return rr.ravel(), cc.ravel()


@dataclass(frozen=True)
class GridCorrelation:
    """Correlation results on a :class:`WindowGrid`, each array of shape (ny, nx)."""

    grid: WindowGrid
    drow: np.ndarray
    dcol: np.ndarray
    score: np.ndarray
    snr: np.ndarray


def window_grid(height: int, width: int, window: int, step: int, margin: int = 0) -> WindowGrid:
    """Regular grid of window centres whose windows (plus ``margin``) fit in the image.

    Centres are multiples of ``step`` so that grids of adjacent image blocks line up.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    lo = window // 2 + margin
    hi_r = height - (window - window // 2) - margin
    hi_c = width - (window - window // 2) - margin
    row0 = -(-lo // step) * step
    col0 = row0
    ny = max(0, (hi_r - row0) // step + 1)
    nx = max(0, (hi_c - col0) // step + 1)
    return WindowGrid(row0, col0, step, ny, nx)


def pyramid_levels(window: int, search: int) -> int:
    """Number of halvings needed so that ``search`` fits in a quarter of the window."""
    quarter = max(window // 4, 1)
    if search <= quarter:
        return 0
    return int(math.ceil(math.log2(search / quarter)))


def downsample2(img: np.ndarray) -> np.ndarray:
    """Halve the resolution by 2x2 block means (NaN wherever a block holds a NaN)."""
    h, w = img.shape
    h2, w2 = h // 2, w // 2
    view = img[: 2 * h2, : 2 * w2].reshape(h2, 2, w2, 2)
    return view.mean(axis=(1, 3), dtype=np.float32).astype(np.float32)


def _run(method: Method, ref, sec, rows, cols, window, search, prow, pcol, kwargs) -> Correlation:
    if method == "freq":
        return freq_correlate(ref, sec, rows, cols, window, search, prow, pcol, **kwargs)
    if method == "ncc":
        from kernels.ncc import ncc_correlate

        return ncc_correlate(ref, sec, rows, cols, window, search, prow, pcol, **kwargs)
    raise ValueError(f"unknown correlation method {method!r}; use 'freq' or 'ncc'")


def _prior_from(coarse: GridCorrelation, fine_rows: np.ndarray, fine_cols: np.ndarray,
                min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer prior (in fine pixels) for every fine window from a coarser level."""
    ok = np.isfinite(coarse.drow) & (coarse.score >= min_score)
    if not ok.any():
        return np.zeros(fine_rows.size, np.int64), np.zeros(fine_rows.size, np.int64)
    fields = []
    for comp in (coarse.drow, coarse.dcol):
        filled = np.where(ok, comp, np.nan)
        # Fill holes from the nearest valid window, then drop isolated outliers.
        _, (ii, jj) = ndimage.distance_transform_edt(~ok, return_indices=True)
        filled = filled[ii, jj]
        if min(filled.shape) >= 3:
            filled = ndimage.median_filter(filled, size=3, mode="nearest")
        fields.append(filled)
    g = coarse.grid
    # Fine centre (r, c) is at coarse pixel ((r + 0.5) / 2 - 0.5); grid index from there.
    yi = (((fine_rows + 0.5) / 2.0 - 0.5) - g.row0) / g.step
    xi = (((fine_cols + 0.5) / 2.0 - 0.5) - g.col0) / g.step
    coords = np.vstack([yi, xi])
    prior = []
    for f in fields:
        val = ndimage.map_coordinates(f.astype(np.float64), coords, order=1, mode="nearest")
        prior.append(np.rint(2.0 * val).astype(np.int64))
    return prior[0], prior[1]


def correlate_grid(
    ref: np.ndarray,
    sec: np.ndarray,
    grid: WindowGrid,
    window: int,
    search: int,
    *,
    method: Method = "freq",
    levels: int | None = None,
    refine_search: int = 3,
    prior_min_score: float = 0.2,
    **kwargs: float | int | None,
) -> GridCorrelation:
    """Correlate ``ref`` and ``sec`` on ``grid``, coarse to fine when ``search`` is large.

    Parameters
    ----------
    ref, sec
        2-D float32 images on the same grid (NaN = no data).
    grid
        Window centres (see :func:`window_grid`).
    window
        Window side in pixels (even).
    search
        Largest displacement expected, pixels at full resolution.
    method
        ``"freq"`` (frequency-domain, default) or ``"ncc"`` (spatial ZNCC, for
        low-texture scenes).
    levels
        Pyramid levels above full resolution; default :func:`pyramid_levels`.
    refine_search
        Search radius around the prior on the finer levels, pixels of that level.
    prior_min_score
        Coarse windows below this score do not feed the prior.
    **kwargs
        Passed to the correlator (e.g. ``taper``, ``power`` for ``freq``).

    Returns
    -------
    GridCorrelation
        Displacements in full-resolution pixels on ``grid``.

    """
    if levels is None:
        levels = pyramid_levels(window, search)
    half = window // 2 - 1
    rows, cols = grid.centres()
    if grid.ny == 0 or grid.nx == 0:
        empty = np.zeros((grid.ny, grid.nx), np.float32)
        return GridCorrelation(grid, empty, empty.copy(), empty.copy(), empty.copy())
    pyramid = [(np.asarray(ref, np.float32), np.asarray(sec, np.float32))]
    for _ in range(levels):
        r, s = pyramid[-1]
        if min(r.shape) < 2 * window:
            break
        pyramid.append((downsample2(r), downsample2(s)))
    top = len(pyramid) - 1

    coarse: GridCorrelation | None = None
    for level in range(top, -1, -1):
        r_img, s_img = pyramid[level]
        if level == 0:
            g = grid
        else:
            h, w = r_img.shape
            g = window_grid(h, w, window, max(grid.step, window // 4))
        lr, lc = g.centres()
        if coarse is None:
            prow = np.zeros(lr.size, np.int64)
            pcol = np.zeros(lc.size, np.int64)
            lsearch = min(half, max(1, int(math.ceil(search / 2**level)) + 1))
        else:
            prow, pcol = _prior_from(coarse, lr, lc, prior_min_score)
            lsearch = min(half, refine_search)
        kw = dict(kwargs)
        if level > 0:  # coarse levels only feed integer priors: no sub-pixel refinement
            kw["refine"] = "none" if method == "freq" else False
        res = _run(method, r_img, s_img, lr, lc, window, lsearch, prow, pcol, kw)
        shape = (g.ny, g.nx)
        coarse = GridCorrelation(g, res.drow.reshape(shape), res.dcol.reshape(shape),
                                 res.score.reshape(shape), res.snr.reshape(shape))
    assert coarse is not None
    return coarse
