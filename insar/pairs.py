"""Step 2: one pair: interferogram + coherence, filtering, unwrapping, corrections.

:func:`form_interferogram` cross-multiplies and multilooks two coregistered SLCs read in
blocks of rows (memory bounded by a byte budget, whatever the frame size);
:func:`filter_phase` debiases the coherence and applies the Goldstein-Werner filter;
:func:`unwrap_pair` unwraps; :func:`process_pair` chains them, applies the pair
corrections (:mod:`insar.corrections`) and writes the pair's layers
(:data:`insar.products.PAIR_LAYERS`) and ``pair.json`` into a folder.

A pair is independent of every other pair: the unwrapped phase is *not* referenced
(the reference pixel is chosen from all pairs and applied by the inversion), so pairs
run in any order, on any worker.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from gdmcore import InputError
from gdmio.cog import write_cog
from insar.corrections import PairContext, PairCorrection, apply_pair_corrections
from insar.options import InterferogramOptions, ProcessingOptions, UnwrapOptions
from insar.products import PAIR_LAYERS, layer
from kernels.insar import coherence_debias, goldstein, interferogram
from kernels.unwrap import UnwrapResult, unwrap

__all__ = ["form_interferogram", "filter_phase", "unwrap_pair", "process_pair",
           "block_rows", "multilooked_shape"]

_BYTES_PER_SLC_PIXEL = 48
"""Two complex64 SLC blocks, their product and the kernel's temporaries: ~6 x 8 bytes."""


def multilooked_shape(height: int, width: int, looks: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of the multilooked grid of a ``height`` x ``width`` stack."""
    return height // looks[0], width // looks[1]


def block_rows(budget_bytes: int, width: int, azimuth_looks: int) -> int:
    """Full-resolution rows read at a time: a multiple of the looks within the budget."""
    la = azimuth_looks
    return max(la, (int(budget_bytes) // (_BYTES_PER_SLC_PIXEL * width)) // la * la)


def form_interferogram(slc_i: str | os.PathLike[str], slc_j: str | os.PathLike[str],
                       looks: tuple[int, int], budget_bytes: int,
                       *more_looks: tuple[int, int]) -> Any:
    """Multilooked ``slc_i * conj(slc_j)`` and its (biased) coherence, block by block.

    Both rasters are read in blocks of rows sized by ``budget_bytes``; the result does
    not depend on the block size (blocks are whole multiples of the azimuth looks).
    With ``more_looks`` (coarser looks, multiples of ``looks``), the same reads also give
    the interferogram at those looks: a list of ``(ifg, coh)`` is returned, one per
    looks, instead of one pair.
    """
    all_looks = [(int(lk[0]), int(lk[1])) for lk in (looks, *more_looks)]
    step = int(np.lcm.reduce([lk[0] for lk in all_looks]))
    with rasterio.open(slc_i) as di, rasterio.open(slc_j) as dj:
        if (di.height, di.width) != (dj.height, dj.width):
            raise InputError(f"{Path(slc_j).name}: {dj.width}x{dj.height} differs from "
                             f"{Path(slc_i).name} ({di.width}x{di.height})")
        shapes = [multilooked_shape(di.height, di.width, lk) for lk in all_looks]
        outs = [(np.empty(sh, np.complex64), np.empty(sh, np.float32)) for sh in shapes]
        rows = block_rows(budget_bytes, di.width, step)
        la0, lr0 = all_looks[0]
        height = shapes[0][0] * la0
        for r0 in range(0, height, rows):
            h = min(rows, height - r0)
            a = di.read(1, window=Window(0, r0, shapes[0][1] * lr0, h))
            b = dj.read(1, window=Window(0, r0, shapes[0][1] * lr0, h))
            for (la, lr), (ny, nx), (ifg, coh) in zip(all_looks, shapes, outs, strict=True):
                hh = min(h, ny * la - r0)
                if hh < la:
                    continue
                b_ifg, b_coh = interferogram(a[:hh, :nx * lr], b[:hh, :nx * lr], (la, lr))
                ifg[r0 // la: r0 // la + b_ifg.shape[0]] = b_ifg
                coh[r0 // la: r0 // la + b_coh.shape[0]] = b_coh
    return outs if more_looks else outs[0]


def filter_phase(ifg: np.ndarray, coh: np.ndarray, opts: InterferogramOptions
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Debiased coherence and the (Goldstein-Werner filtered) wrapped phase (NaN outside)."""
    n_looks = opts.azimuth_looks * opts.range_looks
    if n_looks >= 2:
        coh = coherence_debias(coh, n_looks)
    if opts.filter_alpha > 0:
        ifg = goldstein(ifg, opts.filter_alpha)
    phase = np.angle(ifg).astype(np.float32)
    phase[~np.isfinite(coh)] = np.nan
    return phase, coh


def unwrap_pair(phase: np.ndarray, coh: np.ndarray, opts: UnwrapOptions, n_looks: int
                ) -> UnwrapResult:
    """Unwrap one filtered phase (minimum-cost flow, or SNAPHU)."""
    try:
        return unwrap(phase, coh, np.isfinite(phase), backend=opts.unwrapper,
                      nlooks=n_looks, min_coherence=opts.min_coherence)
    except ImportError as exc:  # snaphu not installed
        raise InputError(str(exc)) from None


def process_pair(slc_i: str | os.PathLike[str], slc_j: str | os.PathLike[str],
                 folder: str | os.PathLike[str], name: str, dates: Sequence[Any],
                 opts: ProcessingOptions, crs: Any, transform: Any, budget_bytes: int,
                 corrections: Sequence[tuple[str, PairCorrection]] = (),
                 wavelength: float | None = None) -> dict:
    """Every step of one pair, written into ``folder`` (created); returns its record.

    ``transform`` is the grid of the unwrapped pair (``opts.grid_looks``). With
    ``series_looks`` > 1 the interferogram is also kept at ``opts.looks``
    (``wrapped_fine``, ``coherence_fine``); the unwrapping runs on the coarser grid. The
    caller publishes ``folder`` (write it under a temporary name and rename it: a
    folder with ``pair.json`` is complete).
    """
    t0 = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    f = getattr(opts, "series_looks", 1)
    fine_written = []
    if f > 1:
        from affine import Affine

        (ifg_f, coh_f), (ifg, coh) = form_interferogram(slc_i, slc_j, opts.looks,
                                                        budget_bytes, opts.grid_looks)
        phase_f, coh_f = filter_phase(ifg_f, coh_f, opts)
        del ifg_f
        fine_tr = (transform if transform is not None else Affine.identity()) * \
            Affine.scale(1 / f, 1 / f)
        n_fine = opts.azimuth_looks * opts.range_looks
        for lay, data, extra in (
                (layer("wrapped_fine"), phase_f,
                 {"LOOKS": f"{opts.azimuth_looks}x{opts.range_looks}"}),
                (layer("coherence_fine"), coh_f,
                 {"LOOKS": str(n_fine), "DEBIASED": str(n_fine >= 2)})):
            write_cog(folder / lay.file, data, crs, fine_tr, descriptions=lay.descriptions(),
                      tags=lay.tags(PAIR=name, **extra))
        fine_written = [list(phase_f.shape)]
        del phase_f, coh_f
        opts_grid = opts.model_copy(update={"azimuth_looks": opts.grid_looks[0],
                                            "range_looks": opts.grid_looks[1],
                                            "series_looks": 1})
    else:
        ifg, coh = form_interferogram(slc_i, slc_j, opts.looks, budget_bytes)
        opts_grid = opts
    n_looks = opts_grid.azimuth_looks * opts_grid.range_looks
    if min(ifg.shape) < 8:
        raise InputError(f"the multilooked grid {ifg.shape[1]}x{ifg.shape[0]} is too small: "
                         "fewer looks please")
    phase, coh = filter_phase(ifg, coh, opts_grid)
    del ifg
    res = unwrap_pair(phase, coh, opts, n_looks)
    unw = res.unwrapped.astype(np.float32)
    if corrections:
        ctx = PairContext(name=name, dates=(dates[0], dates[1]), coherence=coh,
                          conncomp=res.conncomp, wavelength=wavelength, transform=transform,
                          crs=crs)
        unw = apply_pair_corrections(unw, ctx, corrections)
    meta = {lay.name: lay for lay in PAIR_LAYERS}

    def pair_cog(key: str, data: np.ndarray, nodata: float | None = float("nan"),
                 dtype: str = "float32", **tags: str) -> None:
        lay = meta[key]
        write_cog(folder / lay.file, data, crs, transform, nodata=nodata, dtype=dtype,
                  tags=lay.tags(PAIR=name, **tags), descriptions=lay.descriptions())

    pair_cog("wrapped", phase)
    pair_cog("coherence", coh, LOOKS=str(n_looks), DEBIASED=str(n_looks >= 2))
    pair_cog("unwrapped", unw, REFERENCED="no (see the reference values in the report)",
             UNWRAPPER=opts.unwrapper,
             CORRECTIONS=",".join(n for n, _ in corrections) or "none")
    pair_cog("conncomp", res.conncomp.astype(np.uint16), nodata=None, dtype="uint16")
    doc = {"pair": name, "dates": [str(d) for d in dates[:2]],
           "components": int(res.conncomp.max()),
           "unwrapped_fraction": float(np.isfinite(unw).mean()),
           "mean_coherence": float(np.nanmean(coh)) if np.isfinite(coh).any() else None,
           "corrections": [n for n, _ in corrections],
           "grids": {"series": list(phase.shape), "fine": fine_written[0] if fine_written
                     else None},
           "seconds": round(time.perf_counter() - t0, 3)}
    (folder / "pair.json").write_text(json.dumps(doc, indent=2))
    return doc
