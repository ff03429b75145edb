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

import numba
import numpy as np
from scipy import ndimage

from kernels import subpixel
from kernels._cholesky import chol_factor, chol_substitute
from kernels.correlation import freq_correlate
from kernels.types import Correlation

__all__ = ["WindowGrid", "GridCorrelation", "window_grid", "pyramid_levels", "correlate_grid",
           "downsample2", "local_warps"]

WARP_REACH = 0.75
WARP_RADIUS_MAX = 6
WARP_SIGNIFICANCE = 3.0
MAX_CORRECTION_PX = 0.5
DEFORM_MIN_SCORE = 0.6
"""Windows matched with a lower ZNCC do not feed the local deformation of others."""
"""Largest deformation correction applied to a window's estimate (pixels)."""

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


@numba.njit(cache=True)
def _inverse_diag6(lo, out):
    """Diagonal of (L L^T)^-1 from the Cholesky factor L."""
    inv_l = np.zeros((6, 6))
    for a in range(6):
        inv_l[a, a] = 1.0 / lo[a, a]
        for b in range(a):
            sm = 0.0
            for k in range(b, a):
                sm -= lo[a, k] * inv_l[k, b]
            inv_l[a, b] = sm / lo[a, a]
    for a in range(6):
        v = 0.0
        for k in range(a, 6):
            v += inv_l[k, a] * inv_l[k, a]
        out[a] = v


@numba.njit(cache=True)
def _fit_one(drow, dcol, ok, i, j, design, offsets, z, use, vals, out):
    """Robust quadratic fit of the field around window (i, j) (see local_warps).

    ``design`` holds the basis (1, y, x, y^2/2, y x, x^2/2) of the neighbour offsets
    ``offsets`` (grid steps). Returns False with too few neighbours or a singular fit.
    """
    ny, nx = drow.shape
    m = offsets.shape[0]
    n_use = 0
    for k in range(m):
        ii = i + offsets[k, 0]
        jj = j + offsets[k, 1]
        good = 0 <= ii < ny and 0 <= jj < nx and ok[ii, jj]
        use[k] = good
        if good:
            vals[k, 0] = drow[ii, jj]
            vals[k, 1] = dcol[ii, jj]
            n_use += 1
    if n_use < 12:
        return False
    ata = np.zeros((6, 6))
    lo = np.zeros((6, 6))
    rhs = np.zeros((2, 6))
    coef = np.zeros((2, 6))
    diag = np.zeros(6)
    for rep in range(2):
        ata[:, :] = 0.0
        rhs[:, :] = 0.0
        for k in range(m):
            if not use[k]:
                continue
            for a in range(6):
                da = design[k, a]
                rhs[0, a] += da * vals[k, 0]
                rhs[1, a] += da * vals[k, 1]
                for b in range(a + 1):
                    ata[a, b] += da * design[k, b]
        for a in range(6):
            for b in range(a):
                ata[b, a] = ata[a, b]
        # The diagonal of the normal matrix is a sum of squares, never negative.
        if not chol_factor(ata, lo, 6, 1e-9):
            return False
        chol_substitute(lo, rhs[0], coef[0], 6)
        chol_substitute(lo, rhs[1], coef[1], 6)
        # Residuals; after the first fit, neighbours beyond three times the mean
        # residual (a step of the field, an outlier) are dropped and the fit redone.
        ss = 0.0
        sa = 0.0
        cnt = 0
        for k in range(m):
            if not use[k]:
                continue
            r2 = 0.0
            for c in range(2):
                pred = 0.0
                for a in range(6):
                    pred += design[k, a] * coef[c, a]
                r2 += (vals[k, c] - pred) ** 2
            vals[k, 2] = np.sqrt(r2)
            ss += r2
            sa += vals[k, 2]
            cnt += 1
        if rep == 1:
            break
        limit = max(3.0 * 1.25 * sa / cnt, 0.02)
        dropped = 0
        for k in range(m):
            if use[k] and vals[k, 2] > limit:
                use[k] = False
                dropped += 1
        if dropped == 0:
            break
        if n_use - dropped < 12:
            return False
        n_use -= dropped
    sigma = np.sqrt(ss / max(cnt - 6, 1) / 2.0)  # per component
    # Coefficients within z standard errors of zero are noise: set to zero.
    _inverse_diag6(lo, diag)
    for a in range(1, 6):
        se = sigma * np.sqrt(diag[a])
        for c in range(2):
            out[c, a - 1] = coef[c, a] if abs(coef[c, a]) > z * se else 0.0
    return True


@numba.njit(cache=True, parallel=True)
def _fit_warps(drow, dcol, ok, design, offsets, z, out):
    ny, nx = drow.shape
    m = offsets.shape[0]
    for i in numba.prange(ny):
        use = np.empty(m, np.bool_)
        vals = np.empty((m, 3))
        for j in range(nx):
            if not _fit_one(drow, dcol, ok, i, j, design, offsets, z, use, vals, out[i, j]):
                out[i, j, :, :] = np.nan


def local_warps(drow: np.ndarray, dcol: np.ndarray, step: int, window: int) -> np.ndarray:
    """Local deformation of every window from its neighbours' displacements.

    Around each window, a quadratic surface is fitted by least squares to the valid
    displacements of the windows within about one window's size (at least one grid
    step; neighbours the fit does not explain, beyond three robust sigmas, are dropped
    and the fit is redone), for the row and the column displacement separately.

    Parameters
    ----------
    drow, dcol
        (ny, nx) displacements on a regular grid of windows, NaN where invalid.
    step
        Grid step, pixels.
    window
        Window side, pixels (sets the neighbourhood: radius ``round(window / step / 2)``
        grid steps, 1..3).

    Returns
    -------
    numpy.ndarray
        float64 (ny, nx, 2, 5): for the row and the column displacement, the derivatives
        (d/dy, d/dx, d2/dy2, d2/dydx, d2/dx2) in pixels per pixel (per pixel squared) at
        each window, NaN where fewer than 12 neighbours are valid.

    """
    dr = np.asarray(drow, dtype=np.float64)
    dc = np.asarray(dcol, dtype=np.float64)
    if dr.ndim != 2 or dr.shape != dc.shape:
        raise ValueError("drow and dcol must be 2-D arrays of the same shape")
    if step < 1 or window < 2:
        raise ValueError("step must be >= 1 and window >= 2")
    radius = int(min(WARP_RADIUS_MAX, max(1, round(WARP_REACH * window / step))))
    di, dj = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    offsets = np.stack([di.ravel(), dj.ravel()], axis=1).astype(np.int64)
    y = offsets[:, 0] * float(step)
    x = offsets[:, 1] * float(step)
    design = np.stack([np.ones_like(y), y, x, 0.5 * y * y, y * x, 0.5 * x * x], axis=1)
    ok = np.isfinite(dr) & np.isfinite(dc)
    out = np.empty(dr.shape + (2, 5))
    _fit_warps(np.where(ok, dr, 0.0), np.where(ok, dc, 0.0), ok, design, offsets,
               float(WARP_SIGNIFICANCE), out)
    return out


def _deformation_correction(resp: np.ndarray, g: WindowGrid, window: int,
                            res: GridCorrelation, passes: int = 2) -> GridCorrelation:
    """Bring each window's estimate back to its centre (see ``deform`` in correlate_grid).

    ``resp`` is the (ny, nx, 2, 2, 5) deformation response of the windows.
    """
    raw_r = res.drow.astype(np.float64)
    raw_c = res.dcol.astype(np.float64)
    # Only well-matched windows tell the local deformation (not clouds, water...).
    reliable = res.score >= DEFORM_MIN_SCORE
    cur_r, cur_c = raw_r, raw_c
    for _ in range(passes):
        warps = local_warps(np.where(reliable, cur_r, np.nan), np.where(reliable, cur_c, np.nan),
                            g.step, window)
        corr = np.einsum("ijact,ijct->ija", resp, warps)
        # Beyond half a pixel the first-order model is not to be trusted: keep the raw
        # estimate there (as where the neighbours or the window statistics are missing).
        use = np.isfinite(corr).all(axis=2) & (np.abs(np.nan_to_num(corr)).max(axis=2)
                                               <= MAX_CORRECTION_PX)
        cur_r = np.where(use, raw_r - corr[..., 0], raw_r)
        cur_c = np.where(use, raw_c - corr[..., 1], raw_c)
    return GridCorrelation(g, cur_r.astype(np.float32), cur_c.astype(np.float32), res.score,
                           res.snr)


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
    deform: bool = True,
    **kwargs: float | int | str | None,
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
    deform
        With the image-domain sub-pixel stage and the translation model (the
        defaults): a window correlator measures a (texture-weighted) mean of the
        displacement inside its window, which differs from the displacement at its
        centre where the field is strained or curved (near a fault, on a glacier). The
        local derivatives of the field are measured from the neighbouring windows
        (:func:`local_warps`) and each estimate is corrected by the first-order effect
        of that deformation on its own window
        (:func:`kernels.subpixel.deformation_response`), twice (the
        derivatives are measured again on the corrected field). A correction larger
        than ``MAX_CORRECTION_PX`` is not applied.
    **kwargs
        Passed to the correlator (e.g. ``taper``, ``power``, ``refine`` for ``freq``),
        except ``presmooth``, ``model`` and ``refine_taper`` (the Tukey weights of the
        window in the match), which go to the image-domain refinement
        (:func:`kernels.subpixel.refine`).

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

    image_refine = (kwargs.get("refine", "image" if method == "freq" else True)
                    in ("image", True))
    translation = kwargs.get("model", "translation") == "translation"
    prepared = None
    if image_refine:
        presmooth = float(kwargs.get("presmooth", subpixel.DEFAULT_PRESMOOTH))  # type: ignore[arg-type]
        prepared = subpixel.prepare(pyramid[0][0], pyramid[0][1], presmooth)
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
        for key in ("presmooth", "model", "refine_taper"):
            kw.pop(key, None)
        max_masked = float(kwargs.get("max_masked", subpixel.DEFAULT_MAX_MASKED))  # type: ignore[arg-type]
        if level > 0 or prepared is not None:
            # Coarse levels only feed integer priors; at full resolution the image-domain
            # refinement is run below, on the pair prepared once.
            kw["refine"] = "none" if method == "freq" else False
        if method == "ncc":
            kw.pop("max_masked", None)
        res = _run(method, r_img, s_img, lr, lc, window, lsearch, prow, pcol, kw)
        shape = (g.ny, g.nx)
        resp = None
        if level == 0 and prepared is not None:
            todo = np.isfinite(res.drow)
            out = subpixel.refine(prepared, lr, lc, window, res.drow.astype(np.float64),
                                  res.dcol.astype(np.float64), todo,
                                  model=kwargs.get("model", "translation"),  # type: ignore[arg-type]
                                  taper=float(kwargs.get("refine_taper", 0.0)),  # type: ignore[arg-type]
                                  max_masked=max_masked, with_response=deform and translation)
            fine = Correlation(out[0].astype(np.float32), out[1].astype(np.float32),
                               np.clip(out[2], 0.0, 1.0).astype(np.float32),
                               np.where(np.isfinite(out[0]), res.snr, np.nan).astype(np.float32))
            res = fine
            if len(out) == 4:
                resp = out[3].reshape(g.ny, g.nx, 2, 2, 5)
        coarse = GridCorrelation(g, res.drow.reshape(shape), res.dcol.reshape(shape),
                                 res.score.reshape(shape), res.snr.reshape(shape))
    assert coarse is not None
    if resp is not None:
        coarse = _deformation_correction(resp, grid, window, coarse)
    return coarse
