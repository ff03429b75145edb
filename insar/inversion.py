"""Steps 3-5: reference point, NSBAS time-series inversion, DEM error, quality layers.

:func:`invert_stack` reads the pairs' layers (:data:`insar.products.PAIR_LAYERS`) in
chunks of rows sized by a byte budget, so a frame whose pair cube exceeds the memory of
one machine still inverts; it writes the series layers
(:data:`insar.products.SERIES_LAYERS`) as COGs into a folder and returns its record.
Per chunk: the pairs are referenced (the component holding the reference pixel, minus
its value there), converted to LOS metres, corrected (weather-model delays, fitted
ramps and phase/elevation ratios, whole-cycle unwrapping errors by loop closure:
:mod:`insar.corrections`), masked below ``min_coherence``, weighted by coherence and
inverted (:func:`kernels.sbas.invert_sbas`, NSBAS gap bridging); a DEM error is fitted
with the velocity (:func:`temporal_fit`); unreliable pixels are masked (the reasons in
the ``mask`` layer); the RMS triplet misclosure is computed. A survey pass before
screens the pairs (unwrapped fraction, phase noise, misclosure: the dropped ones are
listed with their reason) and fits the per-pair models. Every result but the models
is per pixel, so products do not depend on the chunk size.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import rasterio
from rasterio.windows import Window

from gdmcore import InputError
from gdmio.writer import ProductWriter
from insar.corrections import (
    MASK_BITS,
    Corrections,
    GridGeometry,
    MisfitStats,
    PairSource,
    closure_step,
    mask_coherence,
    quality_mask,
    survey_pairs,
    weather_delays,
    write_quality_lists,
)
from insar.network import network_gaps
from insar.options import UnwrapOptions
from insar.products import layer
from kernels.corrections import pixel_network_gaps
from kernels.insar import reference_point
from kernels.sbas import (
    closure_triplets,
    coherence_weights,
    invert_sbas,
    triplet_misclosure,
    years_since_first,
)

__all__ = ["StackFacts", "mean_coherence", "choose_reference", "pair_references",
           "dem_error_terms", "chunk_rows", "temporal_fit", "invert_stack", "SERIES_ORDER"]

SERIES_ORDER = ("velocity", "velocity_std", "temporal_coherence", "residual", "misclosure",
                "n_pairs", "loop_errors", "unwrapping_corrections", "network_gaps", "mask",
                "dem_error")
"""Single-band series layers in the order :func:`invert_stack` computes them."""


@dataclass(frozen=True)
class StackFacts:
    """What the inversion needs to know about the stack besides its pairs."""

    dates: list[dt.date]
    bperp: np.ndarray
    wavelength: float
    incidence_deg: float
    slant_range: float


def _read_layer(dirs: Sequence[Path], fname: str, r0: int, r1: int, nx: int,
                dtype: Any) -> np.ndarray:
    out = np.empty((len(dirs), r1 - r0, nx), dtype)
    for p, d in enumerate(dirs):
        with rasterio.open(d / fname) as ds:
            out[p] = ds.read(1, window=Window(0, r0, nx, r1 - r0))
    return out


def mean_coherence(pair_dirs: Sequence[Path], ny: int, nx: int, rows: int) -> np.ndarray:
    """Coherence averaged over the pairs (NaN-aware), read ``rows`` rows at a time."""
    parts = []
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        c = _read_layer(pair_dirs, "coherence.tif", r0, r1, nx, np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            n = np.isfinite(c).sum(axis=0)
            parts.append((np.nansum(c, axis=0, dtype=np.float64) / n).astype(np.float32))
    return np.concatenate(parts)


def choose_reference(mean_coh: np.ndarray, opts: UnwrapOptions,
                     given: tuple[int, int] | None = None) -> tuple[int, int]:
    """The reference pixel: ``given`` (checked), else the most coherent 5x5 window's centre.

    Raises
    ------
    InputError
        ``given`` outside the grid, or no coherent area.

    """
    ny, nx = mean_coh.shape
    if given is not None:
        if not (0 <= given[0] < ny and 0 <= given[1] < nx):
            raise InputError(f"reference pixel {tuple(given)} is outside the {ny}x{nx} "
                             "multilooked grid")
        return int(given[0]), int(given[1])
    try:
        r, c = reference_point(mean_coh, mean_coh >= opts.min_coherence)
    except ValueError:
        raise InputError("no coherent area to place the reference point in "
                         f"(mean coherence below {opts.min_coherence} everywhere)") from None
    return int(r), int(c)


def pair_references(pair_dirs: Sequence[Path], ref: tuple[int, int]
                    ) -> list[tuple[int, float] | None]:
    """Per pair: (component holding the reference, mean unwrapped phase there) or None.

    The component is the most frequent non-zero label of the 5x5 window around ``ref``;
    the value is the mean unwrapped phase of that component's pixels in the window.
    """
    r, c = ref
    win = Window(max(c - 2, 0), max(r - 2, 0), 5, 5)
    refs: list[tuple[int, float] | None] = []
    for d in pair_dirs:
        with rasterio.open(d / "conncomp.tif") as ds:
            lab = ds.read(1, window=win).astype(np.int64)
        with rasterio.open(d / "unwrapped.tif") as ds:
            unw = ds.read(1, window=win)
        good = lab[lab > 0]
        if good.size == 0:
            refs.append(None)
            continue
        label = int(np.bincount(good).argmax())
        vals = unw[(lab == label) & np.isfinite(unw)]
        refs.append((label, float(vals.mean())) if vals.size else None)
    return refs


def dem_error_terms(facts: StackFacts, enabled: bool) -> np.ndarray | None:
    """Per-date DEM-error design column ``B_k / (R sin theta)`` or None.

    None when disabled or when the baselines span less than 1 m (a height error is then
    invisible).
    """
    if not enabled:
        return None
    bperp = np.asarray(facts.bperp, float)
    if np.ptp(bperp) < 1.0:
        return None
    sin_th = math.sin(math.radians(facts.incidence_deg))
    return (bperp / (facts.slant_range * sin_th))[:, None]


def chunk_rows(budget_bytes: int, n_pairs: int, n_dates: int, nx: int, ny: int) -> int:
    """Rows of one inversion chunk: the budget over the bytes one row needs.

    A row holds, per pair, the unwrapped phase, components, coherence, the observation
    and its weight (and the float64 copies of the solver), and per date the series.
    """
    per_row = nx * (n_pairs * 48 + n_dates * 40 + 512)
    return int(max(1, min(ny, int(budget_bytes) // per_row)))


def temporal_fit(series: np.ndarray, t: np.ndarray, extra: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``v t + c + extra p`` to each pixel's series and remove the extra terms.

    Terms that depend on the date only, like the DEM error (``B_k dz / (R sin theta)``
    at date ``k``), are indistinguishable from displacement in the pairs when every
    date's displacement is free; as in MintPy they are estimated from the series,
    jointly with the velocity. ``series`` (n_dates, ny, nx) is corrected in place
    (it stays relative to the first date). Returns the velocity, its 1-sigma from the
    scatter about the fit, and the extra parameters (k, ny, nx).
    """
    n = t.size
    g = np.column_stack([t, np.ones(n), extra])
    pinv = np.linalg.pinv(g)
    s = series.astype(np.float64).reshape(n, -1)
    ok = np.all(np.isfinite(s), axis=0)
    s0 = np.where(ok, s, 0.0)
    params = pinv @ s0
    resid = s0 - g @ params
    dof = n - g.shape[1]
    cov_vv = np.linalg.inv(g.T @ g)[0, 0]
    std = np.sqrt((resid * resid).sum(axis=0) / dof * cov_vv) if dof > 0 else \
        np.full(ok.shape, np.nan)
    p = params[2:]
    correction = ((extra - extra[0]) @ p).reshape(series.shape)
    series -= np.where(ok.reshape(series.shape[1:]), correction, 0.0).astype(series.dtype)
    shape = series.shape[1:]
    vel = np.where(ok, params[0], np.nan).reshape(shape).astype(np.float32)
    std = np.where(ok, std, np.nan).reshape(shape).astype(np.float32)
    extra_p = np.where(ok, p, np.nan).reshape((p.shape[0],) + shape).astype(np.float32)
    return vel, std, extra_p


class _StackPairs(PairSource):
    """The pairs of a stack's folders: referenced, in LOS metres (for the corrections)."""

    def __init__(self, pair_dirs: Sequence[Path], refs: Sequence[tuple[int, float] | None],
                 to_m: float, shape: tuple[int, int]) -> None:
        self.dirs, self.refs, self.to_m = list(pair_dirs), list(refs), np.float32(to_m)
        self.shape = shape
        self.n_pairs = len(self.dirs)

    def read(self, r0: int, r1: int, which: Sequence[int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        which = list(range(self.n_pairs)) if which is None else list(which)
        dirs = [self.dirs[k] for k in which]
        nx = self.shape[1]
        unw = _read_layer(dirs, "unwrapped.tif", r0, r1, nx, np.float32)
        lab = _read_layer(dirs, "conncomp.tif", r0, r1, nx, np.uint16)
        for p, k in enumerate(which):
            rv = self.refs[k]
            if rv is None:
                unw[p] = np.nan
            else:
                unw[p] = np.where(lab[p] == rv[0], unw[p] - np.float32(rv[1]), np.nan)
        del lab
        unw *= self.to_m
        return unw, _read_layer(dirs, "coherence.tif", r0, r1, nx, np.float32)


class _Counts(TypedDict):
    """Pixel and triplet tallies of :func:`invert_stack` over its row blocks."""

    masked: int
    triplet_px: int
    bad_triplet_px: int
    loop_errors: int
    loop_errors_left: int
    corrected_px: int
    reasons: dict[str, int]  # masked pixels per MASK_BITS reason


def invert_stack(pair_dirs: Sequence[Path], pairs: Sequence[tuple[int, int]],
                 facts: StackFacts, opts: Any, out_dir: Path, crs: Any, transform: Any,
                 shape: tuple[int, int], budget_bytes: int,
                 reference: tuple[int, int] | None = None,
                 planned: Sequence[tuple[int, int]] | None = None,
                 rows: int | None = None, progress: Any = None,
                 geometry: GridGeometry | None = None, weather: Any = None) -> dict:
    """Invert the pairs of ``pair_dirs`` and write the series layers into ``out_dir``.

    Parameters
    ----------
    pair_dirs, pairs
        The pairs' folders (:func:`insar.pairs.process_pair`) and their date indices.
    facts
        Dates, baselines and geometry of the stack.
    opts
        A model with the :class:`InversionOptions`, :class:`UnwrapOptions` and
        :class:`CorrectionOptions` fields.
    out_dir
        Folder of the products (``<layer>.tif``); the caller stages and publishes it.
    crs, transform, shape
        The multilooked grid.
    budget_bytes
        Memory for one chunk of rows (see :func:`chunk_rows`).
    reference
        Reference pixel (row, col), default automatic (:func:`choose_reference`).
    planned
        The pairs planned before some failed (for the gap report); default ``pairs``.
    rows
        Chunk height (default from the budget).
    progress
        ``progress(fraction, message)`` after each chunk, or None.
    geometry
        Latitude, longitude, heights of the grid (:func:`insar.corrections.grid_geometry`)
        for the weather and stratified corrections.
    weather
        A weather model (:func:`insar.troposphere.open_weather`), or None.

    Returns
    -------
    dict
        The inversion record: layers, reference pixel and per-pair references, network
        and gaps, screening (pairs dropped with their reason, per-pair statistics and
        models), triplets, loop errors and corrections, masked fraction, chunking.

    """
    t0 = time.perf_counter()
    pair_dirs = [Path(d) for d in pair_dirs]
    if not pair_dirs:
        raise InputError("no interferogram to invert")
    pairs = [(int(p[0]), int(p[1])) for p in pairs]
    dates = list(facts.dates)
    ny, nx = shape
    n_dates, n_pairs = len(dates), len(pairs)
    rows = rows or chunk_rows(budget_bytes, n_pairs, n_dates, nx, ny)
    spans = [(r0, min(ny, r0 + rows)) for r0 in range(0, ny, rows)]
    wavelength = facts.wavelength
    to_m = np.float32(-wavelength / (4 * math.pi))
    names_p = [d.name for d in pair_dirs]

    def report(f: float, m: str) -> None:
        if progress is not None:
            progress(min(max(f, 0.0), 1.0), m)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mean_coh = mean_coherence(pair_dirs, ny, nx, rows)
    ref = choose_reference(mean_coh, opts, reference)
    refs = pair_references(pair_dirs, ref)
    source = _StackPairs(pair_dirs, refs, float(to_m), (ny, nx))
    weather_file = None
    if weather is not None:
        if geometry is None:
            raise InputError(f"troposphere {weather.name}: no geometry for the grid")
        report(0.0, f"troposphere: {weather.name} delays of {n_dates} dates")
        weather_file = out_dir / "troposphere.tif"
        weather_delays(weather, dates, geometry, weather_file, crs, transform)
    plan = survey_pairs(source, pairs, n_dates, names_p, opts, wavelength,
                        Corrections(pairs, (ny, nx), ref, geometry, weather_file), rows,
                        geometry, progress=lambda f, m: report(0.3 * f, m))
    keep = plan.keep
    if len(keep) < 1:
        raise InputError("every interferogram was dropped by the screening: "
                         + "; ".join(f"{d['pair']}: {d['reason']}" for d in plan.dropped))
    corr = Corrections(pairs, (ny, nx), ref, geometry, weather_file, plan.terms, plan.coef)
    kpairs = [pairs[k] for k in keep]
    kdirs = [pair_dirs[k] for k in keep]
    extra = dem_error_terms(facts, opts.dem_error)
    t_years = years_since_first(dates)
    triplets = closure_triplets(kpairs)
    mean_coh_win = mask_coherence(mean_coh, opts.coherence_window)
    misfit = MisfitStats(kpairs)
    net_gaps = int(pixel_network_gaps(np.ones((len(kpairs), 1, 1), bool), kpairs,
                                      n_dates)[0, 0])
    names = [n for n in SERIES_ORDER if n != "dem_error" or extra is not None]
    counts: _Counts = {"masked": 0, "triplet_px": 0, "bad_triplet_px": 0,
                       "loop_errors": 0, "loop_errors_left": 0, "corrected_px": 0,
                       "reasons": {k: 0 for k in MASK_BITS}}

    def invert_rows(r0: int, r1: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        h = r1 - r0
        obs, weights = source.read(r0, r1, keep)
        corr.apply(obs, r0, r1, which=keep)
        loops = closure_step(obs, triplets, wavelength, opts.loop_threshold,
                             opts.closure_correction)
        obs[~(weights >= opts.min_coherence)] = np.nan
        coherence_weights(weights)
        res = invert_sbas(obs, kpairs, dates, weights=weights, wavelength=wavelength,
                          gap_weight=opts.gap_weight)
        series, vel, vstd = res.series, res.velocity, res.velocity_std
        misfit.add(obs, series)
        gaps = pixel_network_gaps(np.isfinite(obs) & (weights > 0), kpairs, n_dates)
        del weights
        dz = None
        if extra is not None:
            vel, vstd, dzs = temporal_fit(series, t_years, extra)
            dz = dzs[0]
        bits = quality_mask(res.temporal_coherence, mean_coh_win[r0:r1], gaps,
                            loops.residual_errors, res.n_pairs, opts,
                            network_gaps=net_gaps)
        bad = bits != 0
        counts["masked"] += int(bad.sum())
        for k, b in MASK_BITS.items():
            counts["reasons"][k] += int(((bits & b) != 0).sum())
        counts["loop_errors"] += int(loops.loop_errors.sum())
        counts["loop_errors_left"] += int(loops.residual_errors.sum())
        counts["corrected_px"] += int(loops.corrected.sum())
        series = np.where(bad, np.nan, series)
        vel, vstd = np.where(bad, np.nan, vel), np.where(bad, np.nan, vstd)
        if triplets:
            mis, checked, over = triplet_misclosure(obs, triplets, wavelength / 4)
            counts["triplet_px"] += checked
            counts["bad_triplet_px"] += over
        else:
            mis = np.full((h, nx), np.nan)
        out = {"velocity": vel, "velocity_std": vstd,
               "temporal_coherence": res.temporal_coherence,
               "residual": res.residual_rms, "misclosure": mis, "n_pairs": res.n_pairs,
               "loop_errors": loops.loop_errors,
               "unwrapping_corrections": loops.corrected, "network_gaps": gaps,
               "mask": bits}
        if dz is not None:
            out["dem_error"] = np.where(bad, np.nan, dz)
        return {k: (v if k in _INTEGER_LAYERS else np.asarray(v, np.float32))
                for k, v in out.items()}, series.astype(np.float32)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_tag = f"{ref[0]},{ref[1]}"
    # One product-writer seam: a COG per layer and the CF NetCDF time series beside; the
    # units, descriptions and tags of every layer come from the product table.
    pw = ProductWriter(out_dir, crs, transform, nx, ny, dates=dates, netcdf="timeseries.nc",
                       attrs={"title": f"LOS time series {dates[0]} to {dates[-1]}",
                              "comment": "LOS displacement positive towards the satellite",
                              "reference_pixel": f"{ref[0]} {ref[1]}"})

    def open_layer(name: str, variable: str) -> Any:
        meta = layer(name)
        extra: dict[str, Any] = {}
        if name == "mask":
            extra["tags"] = {"BITS": ", ".join(f"{b}={k}" for k, b in MASK_BITS.items())}
        if name in _INTEGER_LAYERS:
            extra.update(dtype=_INTEGER_LAYERS[name], nodata=None)
        return pw.layer(name, variable, meta=meta,
                        reference=ref_tag if meta.reference else None, **extra)

    with pw:
        writers = {n: open_layer(n, n) for n in names}
        writers["timeseries"] = open_layer("timeseries", "displacement")
        for k, (r0, r1) in enumerate(spans):
            blocks, series = invert_rows(r0, r1)
            win = Window(0, r0, nx, r1 - r0)
            for n in names:
                writers[n].write(blocks[n].astype(_INTEGER_LAYERS.get(n, np.float32)), win)
            writers["timeseries"].write(series, win)
            report(0.3 + 0.7 * (k + 1) / len(spans), f"inverted rows {r1}/{ny}")
        pw.write_array("mean_coherence", mean_coh, "mean_coherence",
                       meta=layer("mean_coherence"))
    pair_rms = misfit.rms()
    lists = write_quality_lists(out_dir / "quality", [names_p[k] for k in keep], dates,
                                kpairs, pair_rms, plan.stats, plan.dropped)
    names_all = ["timeseries", *names, "mean_coherence"] + \
        (["troposphere"] if weather_file is not None else [])
    used_dates = {d for p in kpairs for d in p}
    return {
        "layers": names_all,
        "pairs_used": [Path(d).name for d in kdirs],
        "pairs_planned": len(planned) if planned is not None else n_pairs,
        "network": network_gaps(dates, list(planned) if planned is not None else pairs,
                                kpairs),
        "reference_pixel": {"row": ref[0], "col": ref[1]},
        "pair_references": {Path(d).name: (None if rv is None else
                                           {"component": rv[0], "phase_rad": rv[1]})
                            for d, rv in zip(pair_dirs, refs, strict=True)},
        "pairs_without_reference": [Path(d).name for d, rv in zip(pair_dirs, refs,
                                                                  strict=True) if rv is None],
        "screening": {"dropped": plan.dropped, "pairs": plan.stats,
                      "dates_without_pairs": [dates[k].isoformat() for k in range(n_dates)
                                              if k not in used_dates]},
        "corrections": {
            "troposphere": getattr(weather, "name", "none"),
            "model_terms": list(plan.terms) if len(plan.terms) > 1 else [],
            "network_consistent": bool(opts.correction_network and len(plan.terms) > 1),
            "date_models": None if plan.date_coef is None else
            {d.isoformat(): dict(zip(plan.terms, map(float, c), strict=True))
             for d, c in zip(dates, plan.date_coef, strict=True)},
            "geometry": None if geometry is None else geometry.source,
            "closure_correction": bool(opts.closure_correction),
            "loop_threshold_rad": opts.loop_threshold,
            "loop_errors": counts["loop_errors"],
            "loop_errors_left": counts["loop_errors_left"],
            "corrected_pair_pixels": counts["corrected_px"],
        },
        "rms_interferogram_m": {names_p[k]: (None if not np.isfinite(r) else float(r))
                                for k, r in zip(keep, pair_rms, strict=True)},
        "quality_lists": sorted(lists),
        "triplets": len(triplets),
        "unwrapping_error_fraction": (counts["bad_triplet_px"] / counts["triplet_px"]
                                      if counts["triplet_px"] else None),
        "dem_error_estimated": extra is not None,
        "masked_fraction": counts["masked"] / (ny * nx),
        "mask_reasons": {k: v / (ny * nx) for k, v in counts["reasons"].items()},
        "min_temporal_coherence": opts.min_temporal_coherence,
        "min_mean_coherence": opts.min_mean_coherence,
        "chunk_rows": rows, "chunks": len(spans), "grid": {"width": nx, "height": ny},
        "seconds": round(time.perf_counter() - t0, 3),
    }


_INTEGER_LAYERS = {"loop_errors": "int16",
                   "unwrapping_corrections": "int16", "network_gaps": "int16",
                   "mask": "uint8"}
"""Count and flag layers written as integers (no nodata)."""
