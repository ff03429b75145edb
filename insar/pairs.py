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
                       looks: tuple[int, int], budget_bytes: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Multilooked ``slc_i * conj(slc_j)`` and its (biased) coherence, block by block.

    Both rasters are read in blocks of rows sized by ``budget_bytes``; the result does
    not depend on the block size (blocks are whole multiples of the azimuth looks).
    """
    la, lr = looks
    with rasterio.open(slc_i) as di, rasterio.open(slc_j) as dj:
        if (di.height, di.width) != (dj.height, dj.width):
            raise InputError(f"{Path(slc_j).name}: {dj.width}x{dj.height} differs from "
                             f"{Path(slc_i).name} ({di.width}x{di.height})")
        ny, nx = multilooked_shape(di.height, di.width, looks)
        rows = block_rows(budget_bytes, di.width, la)
        ifg = np.empty((ny, nx), np.complex64)
        coh = np.empty((ny, nx), np.float32)
        for r0 in range(0, ny * la, rows):
            h = min(rows, ny * la - r0)
            win = Window(0, r0, nx * lr, h)
            b_ifg, b_coh = interferogram(di.read(1, window=win), dj.read(1, window=win),
                                         (la, lr))
            ifg[r0 // la: r0 // la + b_ifg.shape[0]] = b_ifg
            coh[r0 // la: r0 // la + b_coh.shape[0]] = b_coh
    return ifg, coh


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

    ``transform`` is the multilooked grid's. The caller publishes ``folder`` (write it
    under a temporary name and rename it: a folder with ``pair.json`` is complete).
    """
    t0 = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_looks = opts.azimuth_looks * opts.range_looks
    ifg, coh = form_interferogram(slc_i, slc_j, opts.looks, budget_bytes)
    if min(ifg.shape) < 8:
        raise InputError(f"the multilooked grid {ifg.shape[1]}x{ifg.shape[0]} is too small: "
                         "fewer looks please")
    phase, coh = filter_phase(ifg, coh, opts)
    del ifg
    res = unwrap_pair(phase, coh, opts, n_looks)
    unw = res.unwrapped.astype(np.float32)
    if corrections:
        ctx = PairContext(name=name, dates=(dates[0], dates[1]), coherence=coh,
                          conncomp=res.conncomp, wavelength=wavelength, transform=transform,
                          crs=crs)
        unw = apply_pair_corrections(unw, ctx, corrections)
    write_cog(folder / "wrapped.tif", phase, crs, transform,
              tags={"UNITS": "rad", "PAIR": name})
    write_cog(folder / "coherence.tif", coh, crs, transform,
              tags={"LOOKS": str(n_looks), "DEBIASED": str(n_looks >= 2)})
    write_cog(folder / "unwrapped.tif", unw, crs, transform,
              tags={"UNITS": "rad", "REFERENCED": "no (see the reference values in the "
                    "report)", "UNWRAPPER": opts.unwrapper,
                    "CORRECTIONS": ",".join(n for n, _ in corrections) or "none"})
    write_cog(folder / "conncomp.tif", res.conncomp.astype(np.uint16), crs, transform,
              nodata=None, dtype="uint16")
    doc = {"pair": name, "dates": [str(d) for d in dates[:2]],
           "components": int(res.conncomp.max()),
           "unwrapped_fraction": float(np.isfinite(unw).mean()),
           "mean_coherence": float(np.nanmean(coh)) if np.isfinite(coh).any() else None,
           "corrections": [n for n, _ in corrections],
           "seconds": round(time.perf_counter() - t0, 3)}
    (folder / "pair.json").write_text(json.dumps(doc, indent=2))
    return doc
