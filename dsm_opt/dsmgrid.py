"""The DSM grid filled piece by piece in bounded memory, then written block by block.

A scene's DSM grid can be far larger than memory (a 40,000-pixel Pléiades scene at
0.5 m is 1.6 billion cells). :class:`BlockGrid` keeps the Gaussian-weighted sums of the
points (:func:`kernels.rasterize.splat_points`: weight, weighted height, weighted
square, weighted colour, count) in square blocks; the blocks not used lately are
written to a folder and read back when points reach them again, so only
``max_blocks`` are in memory at once. Sums add exactly, so tiles may arrive in any
order and seams need no care.

:func:`write_products` finishes the grid block by block: heights from the sums of
each pair, per-cell consensus of the pairs (triplets), closing of one-cell gaps and
optional hole filling (on the block plus a halo), and streams the product rasters
into Cloud-Optimized GeoTIFFs (:class:`gdmio.cog.CogWriter`).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from dsm_opt.products import layer
from gdmio.cog import CogWriter
from kernels.rasterize import fill_from_neighbours, fill_holes, finish_splat, splat_points

__all__ = ["BlockGrid", "write_products", "fuse_cells", "ProductStats", "align_pairs",
           "plane_at"]


class BlockGrid:
    """Splatted sums of one pair's points on the DSM grid, in blocks (see module notes).

    Parameters
    ----------
    rows, cols : int
        Grid size (cells).
    folder : Path
        Where evicted blocks are written (created).
    sigma : float
        Gaussian sigma of the splatting, in cells.
    z_ref : float
        Heights are summed relative to this (float32 sums keep centimetres).
    block : int
        Block side (cells).
    max_blocks : int
        Blocks kept in memory.

    """

    def __init__(self, rows: int, cols: int, folder: Path, sigma: float, z_ref: float,
                 block: int = 512, max_blocks: int = 96) -> None:
        self.rows, self.cols, self.block = int(rows), int(cols), int(block)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sigma, self.z_ref = float(sigma), float(z_ref)
        self.max_blocks = max(int(max_blocks), 4)
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._on_disk: set[tuple[int, int]] = set()
        self.loads = 0

    @property
    def shape(self) -> tuple[int, int]:
        """Blocks along rows and columns."""
        return (-(-self.rows // self.block), -(-self.cols // self.block))

    def _block_shape(self, bi: int, bj: int) -> tuple[int, int]:
        b = self.block
        return min(b, self.rows - bi * b), min(b, self.cols - bj * b)

    def _path(self, key: tuple[int, int]) -> Path:
        return self.folder / f"b{key[0]}_{key[1]}.npy"

    def get(self, bi: int, bj: int, create: bool = True) -> np.ndarray | None:
        """The sums (5, rows, cols) float32 of a block (None if empty and not created)."""
        key = (bi, bj)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if key in self._on_disk:
            arr = np.load(self._path(key))
            self.loads += 1
        elif create:
            arr = np.zeros((5, *self._block_shape(bi, bj)), np.float32)
        else:
            return None
        self._cache[key] = arr
        while len(self._cache) > self.max_blocks:
            old, a = self._cache.popitem(last=False)
            np.save(self._path(old), a)
            self._on_disk.add(old)
        return arr

    def add(self, east: np.ndarray, north: np.ndarray, h: np.ndarray, colour: np.ndarray,
            x0: float, y0: float, res: float) -> None:
        """Splat points (UTM metres, heights) onto the grid whose corner is (x0, y0)."""
        if east.size == 0:
            return
        i0 = max(int(np.floor((y0 - north.max()) / res)) - 2, 0)
        i1 = min(int(np.floor((y0 - north.min()) / res)) + 3, self.rows)
        j0 = max(int(np.floor((east.min() - x0) / res)) - 2, 0)
        j1 = min(int(np.floor((east.max() - x0) / res)) + 3, self.cols)
        if i1 <= i0 or j1 <= j0:
            return
        sub = np.zeros((5, i1 - i0, j1 - j0), np.float64)
        splat_points(east, north, h - self.z_ref, colour, x0 + j0 * res, y0 - i0 * res, res,
                     sub, sigma=self.sigma, radius=1)
        b = self.block
        for bi in range(i0 // b, (i1 - 1) // b + 1):
            for bj in range(j0 // b, (j1 - 1) // b + 1):
                r0, r1 = max(i0, bi * b), min(i1, (bi + 1) * b)
                c0, c1 = max(j0, bj * b), min(j1, (bj + 1) * b)
                part = sub[:, r0 - i0:r1 - i0, c0 - j0:c1 - j0]
                if not part[0].any():
                    continue
                blk = self.get(bi, bj)
                assert blk is not None
                blk[:, r0 - bi * b:r1 - bi * b, c0 - bj * b:c1 - bj * b] += part

    def window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """The sums of a window of cells (float64; zeros outside the grid)."""
        out = np.zeros((5, r1 - r0, c1 - c0), np.float64)
        b = self.block
        for bi in range(max(r0, 0) // b, (min(r1, self.rows) - 1) // b + 1):
            for bj in range(max(c0, 0) // b, (min(c1, self.cols) - 1) // b + 1):
                blk = self.get(bi, bj, create=False)
                if blk is None:
                    continue
                rr0, rr1 = max(r0, bi * b), min(r1, (bi + 1) * b, self.rows)
                cc0, cc1 = max(c0, bj * b), min(c1, (bj + 1) * b, self.cols)
                out[:, rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = \
                    blk[:, rr0 - bi * b:rr1 - bi * b, cc0 - bj * b:cc1 - bj * b]
        return out

    def finish_window(self, r0: int, r1: int, c0: int, c1: int, prior_sigma: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Heights (absolute), uncertainty, colour and count of a window of cells."""
        v, u, c, n = finish_splat(self.window(r0, r1, c0, c1), prior_sigma)
        return v + np.float32(self.z_ref), u, c, n


def fuse_cells(layers: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
               sigmas: list[float], tols: list[float]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                          np.ndarray]:
    """Per-cell consensus of several pairs' heights.

    In each cell the heights of the pairs that agree with the median of the pairs
    (within their ``tols``) are averaged with weights count / sigma² (``sigmas``: each
    pair's height precision); a cell seen by one pair keeps its height.

    Returns
    -------
    value, uncertainty, colour : numpy.ndarray
        float32.
    count : numpy.ndarray
        int32 points of all pairs.
    n_have : numpy.ndarray
        Pairs with a height in each cell.
    rejected : numpy.ndarray
        Pairs whose height was left out (disagreement) in each cell.

    """
    vals = np.stack([v for v, _, _, _ in layers])
    cnt = np.stack([n for _, _, _, n in layers]).astype(np.float32)
    cols = np.stack([c for _, _, c, _ in layers])
    sig = np.asarray(sigmas, np.float32)[:, None, None]
    tol = np.asarray(tols, np.float32)[:, None, None]
    have = np.isfinite(vals)
    n_have = have.sum(axis=0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cells no pair sees
        med = np.nanmedian(vals, axis=0)
        agree = have & (np.abs(vals - med[None]) <= tol)
        agree |= have & (n_have == 1)[None]
        w = np.where(agree, np.maximum(cnt, 1.0) / sig ** 2, 0.0)
        wsum = w.sum(axis=0)
        value = np.where(wsum > 0, (w * np.nan_to_num(vals)).sum(axis=0) / wsum, np.nan)
        unc = np.where(wsum > 0, 1.0 / np.sqrt(wsum), np.nan)
        colour = np.where(wsum > 0, (w * np.nan_to_num(cols)).sum(axis=0) / wsum, np.nan)
    return (value.astype(np.float32), unc.astype(np.float32), colour.astype(np.float32),
            cnt.sum(axis=0).astype(np.int32), n_have, (have & ~agree).sum(axis=0))


def plane_at(coef: np.ndarray, rows: int, cols: int, r0: int, r1: int, c0: int, c1: int
             ) -> np.ndarray:
    """A plane of :func:`align_pairs` on a window of cells (rows r0:r1, cols c0:c1)."""
    scale = float(max(rows, cols))
    r = (np.arange(r0, r1, dtype=np.float64) - 0.5 * rows) / scale
    c = (np.arange(c0, c1, dtype=np.float64) - 0.5 * cols) / scale
    return (coef[0] + coef[1] * r[:, None] + coef[2] * c[None, :]).astype(np.float32)


def align_pairs(grids: list[BlockGrid], sigmas: list[float], ref: int,
                max_blocks: int = 64, max_samples: int = 400_000) -> list[dict]:
    """Height offset (a plane) of each pair's DSM to the reference pair's.

    The part of a relative pointing error along the epipolar lines cannot be seen in a
    pair: it shifts the pair's heights (metres per pixel of disparity times the error).
    The pairs of a triplet share views, so these shifts differ from pair to pair and
    show as height differences between their DSMs. Each pair's difference to ``ref``
    (over the cells both see, on up to ``max_blocks`` blocks spread over the grid) is
    fitted robustly by a plane (a constant when the common cells do not spread over a
    fifth of the grid both ways); adding it to the pair's heights brings it onto the
    reference. The absolute height of the set cannot be told from the images (a
    common offset is invisible): it stays the reference pair's.

    Returns
    -------
    list of dict
        Per pair: ``coef`` (the plane, for :func:`plane_at`; zeros for ``ref`` or with
        too few common cells), ``samples``, ``median_m`` (median difference before),
        ``nmad_m`` (NMAD of the difference after).

    """
    g0 = grids[0]
    rows, cols, b = g0.rows, g0.cols, g0.block
    nbi, nbj = g0.shape
    keys = [(bi, bj) for bi in range(nbi) for bj in range(nbj)]
    if len(keys) > max_blocks:
        keys = [keys[i] for i in np.linspace(0, len(keys) - 1, max_blocks).astype(int)]
    per_block = max(max_samples // max(len(keys), 1), 1000)
    samples: list[list[np.ndarray]] = [[] for _ in grids]
    rng = np.random.default_rng(0)
    for bi, bj in keys:
        r0, r1 = bi * b, min((bi + 1) * b, rows)
        c0, c1 = bj * b, min((bj + 1) * b, cols)
        base = grids[ref].finish_window(r0, r1, c0, c1, sigmas[ref])[0]
        if not np.isfinite(base).any():
            continue
        rr, cc = np.mgrid[r0:r1, c0:c1]
        for k, g in enumerate(grids):
            if k == ref:
                continue
            v = g.finish_window(r0, r1, c0, c1, sigmas[k])[0]
            ok = np.flatnonzero(np.isfinite(v) & np.isfinite(base))
            if ok.size > per_block:
                ok = rng.choice(ok, per_block, replace=False)
            samples[k].append(np.stack([rr.ravel()[ok], cc.ravel()[ok],
                                        (base.ravel()[ok] - v.ravel()[ok])]))
    out = []
    scale = float(max(rows, cols))
    for k in range(len(grids)):
        info: dict = {"coef": np.zeros(3), "samples": 0, "median_m": 0.0, "nmad_m": 0.0}
        if k == ref or not samples[k]:
            out.append(info)
            continue
        r, c, d = np.concatenate(samples[k], axis=1)
        info["samples"] = int(d.size)
        if d.size < 200:
            out.append(info)
            continue
        x = np.column_stack([np.ones_like(d), (r - 0.5 * rows) / scale,
                             (c - 0.5 * cols) / scale])
        if min(np.ptp(r) / rows, np.ptp(c) / cols) < 0.2:
            x = x[:, :1]
        keep = np.ones(d.size, bool)
        beta = np.zeros(x.shape[1])
        for _ in range(6):
            beta = np.linalg.lstsq(x[keep], d[keep], rcond=None)[0]
            res = d - x @ beta
            nmad = 1.4826 * float(np.median(np.abs(res[keep] - np.median(res[keep]))))
            new = np.abs(res) <= max(3.0 * nmad, 0.05)
            if np.array_equal(new, keep) or new.sum() < 100:
                break
            keep = new
        coef = np.zeros(3)
        coef[:beta.size] = beta
        res = d - x @ beta
        info.update(coef=coef, median_m=float(np.median(d)),
                    nmad_m=float(1.4826 * np.median(np.abs(res - np.median(res)))))
        out.append(info)
    return out


@dataclass
class ProductStats:
    """What :func:`write_products` counted."""

    valid: int = 0
    filled: int = 0
    cells: int = 0
    by_pairs: dict[int, int] = field(default_factory=dict)
    rejected: int = 0
    per_pair: list[int] = field(default_factory=list)


def write_products(grids: list[BlockGrid], sigmas: list[float], tols: list[float],
                   stage: Path, crs: str, transform: Affine, nodata: float,
                   fill_max_cells: int | None, tags: dict[str, str],
                   progress: Callable[[float], None] | None = None,
                   offsets: list[np.ndarray] | None = None) -> ProductStats:
    """Finish the pairs' grids block by block into dsm/ortho/count/uncertainty(/filled).tif.

    Each output block is computed on the block plus a halo (one cell for the one-cell
    gaps, plus ``fill_max_cells`` when holes are filled), so the result does not depend
    on the block size except for holes wider than the halo. ``offsets``: a plane per
    pair (:func:`align_pairs`) added to its heights before they are fused.
    """
    g0 = grids[0]
    rows, cols, b = g0.rows, g0.cols, g0.block
    halo = 1 + (fill_max_cells or 0)
    stats = ProductStats(per_pair=[0] * len(grids))
    def writer(name: str, **kw: Any) -> CogWriter:
        meta = layer(name)
        extra = {k: v for k, v in tags.items() if k not in ("UNITS",)} \
            if name == "dsm" else {}
        return CogWriter(stage / meta.file, cols, rows, 1, crs, transform,
                         descriptions=meta.descriptions(), tags=meta.tags(**extra), **kw)

    writers = {
        "dsm": writer("dsm", nodata=nodata),
        "ortho": writer("ortho"),
        "count": writer("count", nodata=None, dtype="uint16"),
        "uncertainty": writer("uncertainty"),
    }
    if fill_max_cells:
        writers["filled"] = writer("filled", nodata=None, dtype="uint8")
    opened = []
    try:
        for w in writers.values():
            opened.append(w.__enter__())
        nbi, nbj = g0.shape
        for bi in range(nbi):
            for bj in range(nbj):
                r0, r1 = bi * b, min((bi + 1) * b, rows)
                c0, c1 = bj * b, min((bj + 1) * b, cols)
                wr0, wr1, wc0, wc1 = r0 - halo, r1 + halo, c0 - halo, c1 + halo
                layers = [g.finish_window(wr0, wr1, wc0, wc1, s)
                          for g, s in zip(grids, sigmas, strict=True)]
                if offsets is not None:
                    layers = [(v + plane_at(o, rows, cols, wr0, wr1, wc0, wc1), u, c, n)
                              if np.any(o) else (v, u, c, n)
                              for (v, u, c, n), o in zip(layers, offsets, strict=True)]
                core = (slice(halo, halo + r1 - r0), slice(halo, halo + c1 - c0))
                for k, (v, _, _, _) in enumerate(layers):
                    stats.per_pair[k] += int(np.isfinite(v[core]).sum())
                if len(layers) == 1:
                    value, unc, colour, count = layers[0]
                    n_have = np.isfinite(value).astype(np.int32)
                    rejected = np.zeros_like(n_have)
                else:
                    value, unc, colour, count, n_have, rejected = fuse_cells(layers, sigmas,
                                                                             tols)
                value, unc, colour = fill_from_neighbours(value, unc, colour, 2)
                filled = None
                if fill_max_cells:
                    value, filled = fill_holes(value, fill_max_cells)
                v = value[core]
                win = Window(c0, r0, c1 - c0, r1 - r0)
                writers["dsm"].write(np.where(np.isfinite(v), v, nodata).astype(np.float32),
                                     win)
                writers["ortho"].write(colour[core], win)
                writers["count"].write(np.minimum(count[core], 65535).astype(np.uint16), win)
                writers["uncertainty"].write(unc[core], win)
                if filled is not None:
                    writers["filled"].write(filled[core].astype(np.uint8), win)
                    stats.filled += int(filled[core].sum())
                stats.valid += int(np.isfinite(v).sum())
                stats.cells += v.size
                nh = n_have[core]
                for k in range(1, len(grids) + 1):
                    stats.by_pairs[k] = stats.by_pairs.get(k, 0) + int((nh == k).sum())
                stats.rejected += int(rejected[core].sum())
            if progress is not None:
                progress((bi + 1) / nbi)
    except BaseException as exc:
        for w in reversed(opened):
            w.__exit__(type(exc), exc, exc.__traceback__)
        raise
    for w in reversed(opened):
        w.__exit__(None, None, None)
    return stats
