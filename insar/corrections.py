"""The seam for corrections between unwrapping and inversion.

A *pair correction* takes one unwrapped interferogram (radians, not referenced, NaN
where not unwrapped) with its context and returns the corrected phase (same shape,
NaN kept); :func:`insar.pairs.process_pair` applies the ones it is given, in order,
after unwrapping and before the pair's rasters are written, and records their names in
``pair.json``. A *screen* looks at the pair records before the inversion and returns the
pairs to leave out with the reason (:func:`insar.inversion.invert_stack` lists them in
its record; never silently).

Corrections are options of the shared steps, so that gdm-sar jobs and FLATSIM campaigns
get them alike: a correction is registered here under a name (:func:`register`) and the
schedulers look names up with :func:`pair_corrections`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gdmcore import InputError
from kernels.corrections import (
    NormalEquations,
    date_rms,
    design_columns,
    evaluate_model,
    loop_counts,
    model_terms,
    network_consistent,
    phase_gradient_variance,
)

__all__ = ["PairContext", "PairCorrection", "Screen", "register", "pair_corrections",
           "apply_pair_corrections", "REGISTRY", "MASK_BITS", "PairSource", "GridGeometry",
           "grid_geometry", "weather_delays", "CorrectionPlan", "Corrections",
           "blame_misclosure", "survey_pairs", "ClosureResult", "closure_step",
           "mask_coherence", "quality_mask", "MisfitStats", "write_quality_lists",
           "prepare_corrections"]


@dataclass(frozen=True)
class PairContext:
    """What a correction may use about the pair it corrects."""

    name: str
    dates: tuple[dt.date, dt.date]
    coherence: np.ndarray
    conncomp: np.ndarray
    wavelength: float | None = None
    transform: Any = None
    crs: Any = None
    extra: dict = field(default_factory=dict)


PairCorrection = Callable[[np.ndarray, PairContext], np.ndarray]
Screen = Callable[[Sequence[dict]], dict[str, str]]

REGISTRY: dict[str, PairCorrection] = {}


def register(name: str, fn: PairCorrection | None = None) -> Any:
    """Register a pair correction under ``name``; ``@register(name)`` as a decorator."""
    if fn is None:
        return lambda f: register(name, f)
    REGISTRY[name] = fn
    return fn


def pair_corrections(names: Sequence[str]) -> list[tuple[str, PairCorrection]]:
    """The registered corrections ``names`` (ValueError naming an unknown one)."""
    out = []
    for n in names:
        if n not in REGISTRY:
            raise ValueError(f"unknown correction {n!r}; known: {', '.join(REGISTRY) or 'none'}")
        out.append((n, REGISTRY[n]))
    return out


def apply_pair_corrections(unwrapped: np.ndarray, ctx: PairContext,
                           corrections: Sequence[tuple[str, PairCorrection]]) -> np.ndarray:
    """Apply ``corrections`` in order; NaN pixels stay NaN."""
    out = unwrapped
    for name, fn in corrections:
        res = np.asarray(fn(out, ctx), np.float32)
        if res.shape != out.shape:
            raise ValueError(f"correction {name} changed the shape {out.shape} -> {res.shape}")
        out = np.where(np.isfinite(out), res, np.nan).astype(np.float32)
    return out


# =============================================================================
# Corrections, screening and quality of a network of unwrapped pairs (issue 17)
# =============================================================================
# Everything below works on LOS metres (positive towards the satellite), pairs already
# referenced to one pixel, read block of rows by block of rows through a PairSource, so
# that gdm-sar jobs and FLATSIM frames (:func:`insar.inversion.invert_stack`) and
# ``gdm sar timeseries`` run the very same corrections.

MASK_BITS = {
    "temporal_coherence": 1,
    "mean_coherence": 2,
    "network_gap": 4,
    "loop_errors": 8,
    "no_data": 16,
    "user_mask": 32,
}
"""Bits of the ``mask`` product: why a pixel is masked (0 = kept)."""


class PairSource:
    """Blocks of rows of the pairs: LOS metres referenced to one pixel, and coherence.

    Subclasses implement :meth:`read`; ``n_pairs`` pairs on a ``shape`` grid.
    """

    n_pairs: int
    shape: tuple[int, int]

    def read(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """``(obs, coherence)`` of rows ``r0:r1``, each (n_pairs, r1 - r0, nx) float32."""
        raise NotImplementedError


@dataclass
class GridGeometry:
    """Per-pixel geometry of the product grid that the corrections need.

    ``lat``/``lon`` (deg) and ``height`` (m above the ellipsoid) are (ny, nx) arrays or
    None; ``incidence_deg`` a scalar or (ny, nx).
    """

    incidence_deg: float | np.ndarray
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None
    height: np.ndarray | None = None
    source: str = "none"

    def rows(self, name: str, r0: int, r1: int) -> np.ndarray | None:
        """Rows ``r0:r1`` of a per-pixel array (or None)."""
        a = getattr(self, name)
        return None if a is None else a[r0:r1]

    def incidence_rows(self, r0: int, r1: int) -> float | np.ndarray:
        """The incidence (deg) of rows ``r0:r1``."""
        inc = self.incidence_deg
        if np.ndim(inc) == 2:
            assert isinstance(inc, np.ndarray)  # a 2-d value of float | ndarray
            return inc[r0:r1]
        return float(inc)


def _block_mean(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    ny, nx = shape
    fy, fx = a.shape[0] // ny, a.shape[1] // nx
    if fy < 1 or fx < 1:
        raise ValueError("the geometry is coarser than the grid")
    return a[:ny * fy, :nx * fx].reshape(ny, fy, nx, fx).mean(axis=(1, 3))


def grid_geometry(shape: tuple[int, int], transform: Any, crs: Any, incidence_deg: float,
                  geometry_npz: Path | None = None, heights: Path | None = None
                  ) -> GridGeometry:
    """Latitude, longitude and heights of the product grid's pixels.

    From, in order: ``geometry_npz`` (``lat``, ``lon``, ``height`` of every stack pixel,
    as ingested and simulated stacks have; averaged over the looks), the grid's CRS
    (pixel centres to WGS84) and ``heights`` (a GeoTIFF read onto the grid).
    """
    ny, nx = shape
    geo = GridGeometry(incidence_deg=incidence_deg)
    if geometry_npz is not None and Path(geometry_npz).is_file():
        try:
            with np.load(geometry_npz) as npz:
                for k in ("lat", "lon", "height"):
                    if k in npz.files:
                        setattr(geo, k, _block_mean(np.asarray(npz[k], np.float64),
                                                    shape).astype(np.float64))
                if "incidence" in npz.files:
                    geo.incidence_deg = _block_mean(np.asarray(npz["incidence"], np.float64),
                                                    shape)
        except (OSError, ValueError) as exc:
            raise InputError(f"{Path(geometry_npz).name}: unreadable geometry ({exc})") \
                from None
        geo.source = Path(geometry_npz).name
    if geo.lat is None and crs is not None:
        from rasterio.warp import transform as warp

        cols, rows = np.meshgrid(np.arange(nx) + 0.5, np.arange(ny) + 0.5)
        xs, ys = transform * (cols.ravel(), rows.ravel())
        lon, lat = warp(crs, "EPSG:4326", xs, ys)
        geo.lon = np.asarray(lon).reshape(ny, nx)
        geo.lat = np.asarray(lat).reshape(ny, nx)
        geo.source = "grid CRS" if geo.source == "none" else geo.source
    if heights is not None:
        from gdmio.grid import Grid, read_on_grid
        from gdmio.raster import open_info

        if crs is None:
            raise InputError("heights: the product grid is not georeferenced")
        h = read_on_grid(open_info(heights), Grid(crs, transform, nx, ny),
                         resampling="bilinear")
        if not np.isfinite(h).any():
            raise InputError(f"heights {Path(heights).name} do not cover the grid")
        geo.height = np.where(np.isfinite(h), h, np.nanmedian(h)).astype(np.float64)
        geo.source += f" + {Path(heights).name}"
    return geo


def weather_delays(model: Any, dates: Sequence[Any], geo: GridGeometry,
                   out_path: Path, crs: Any, transform: Any) -> np.ndarray:
    """Write the LOS delay (m) of every date on the grid (``out_path``, one band per date).

    Returns the delays at every pixel are not kept in memory: the file is read back by
    :class:`Corrections` block by block. Returns the mean delay per date (m).
    """
    from gdmio.cog import CogWriter
    from insar.troposphere import los_delay

    if geo.lat is None or geo.lon is None:
        raise InputError(f"troposphere {model.name}: the grid has no latitude/longitude "
                         "(no CRS and no geometry)")
    ny, nx = geo.lat.shape
    h = geo.height if geo.height is not None else np.zeros((ny, nx))
    means = []
    with CogWriter(out_path, nx, ny, len(dates), crs, transform,
                   descriptions=[d.isoformat() for d in dates],
                   tags={"UNITS": "m", "MODEL": model.name,
                         "CONTENT": "slant (LOS) tropospheric delay of each acquisition",
                         "HEIGHTS": "yes" if geo.height is not None else "0 (none given)"}
                   ) as w:
        for k, d in enumerate(dates):
            ztd = model.zenith_delay(d, geo.lat, geo.lon, h)
            los = los_delay(ztd, geo.incidence_deg).astype(np.float32)
            w.write(los, band=k + 1)
            means.append(float(np.nanmean(los)))
    return np.array(means)


@dataclass
class CorrectionPlan:
    """What the survey of the pairs decided: pairs kept and dropped, fitted models."""

    keep: list[int]
    dropped: list[dict]
    stats: list[dict]
    terms: tuple[str, ...]
    coef: np.ndarray | None = None          # (n_pairs, k) applied per pair (kept pairs)
    date_coef: np.ndarray | None = None     # (n_dates, k) when network-consistent
    fit_rms: np.ndarray | None = None


class Corrections:
    """Applies the weather delays and the fitted models to blocks of referenced pairs."""

    def __init__(self, pairs: Sequence[tuple[int, int]], shape: tuple[int, int],
                 ref: tuple[int, int], geo: GridGeometry | None = None,
                 weather_file: Path | None = None, terms: tuple[str, ...] = ("c",),
                 coef: np.ndarray | None = None) -> None:
        self.pairs = [tuple(p) for p in pairs]
        self.shape = shape
        self.ref = ref
        self.geo = geo
        self.weather_file = weather_file
        self.terms = terms
        self.coef = coef
        self._wref: np.ndarray | None = None
        if weather_file is not None:
            import rasterio
            from rasterio.windows import Window

            with rasterio.open(weather_file) as ds:
                self._wref = ds.read(window=Window(ref[1], ref[0], 1, 1))[:, 0, 0] \
                    .astype(np.float64)
        self._mref: np.ndarray | None = None
        if coef is not None and len(terms) > 1:
            h = None if geo is None or geo.height is None else \
                geo.height[ref[0]:ref[0] + 1]
            dcol = design_columns(terms, ref[0], ref[0] + 1, shape, h)[:, :, ref[1]:ref[1] + 1]
            self._mref = np.array([float(evaluate_model(c, dcol)[0, 0]) for c in coef])

    @property
    def active(self) -> bool:
        """Whether anything is applied."""
        return self.weather_file is not None or (self.coef is not None and len(self.terms) > 1)

    def weather_rows(self, r0: int, r1: int, c0: int = 0, c1: int | None = None
                     ) -> np.ndarray | None:
        """(n_dates, r1 - r0, c1 - c0) LOS delays of a window minus their reference value."""
        if self.weather_file is None:
            return None
        import rasterio
        from rasterio.windows import Window

        c1 = self.shape[1] if c1 is None else c1
        with rasterio.open(self.weather_file) as ds:
            d = ds.read(window=Window(c0, r0, c1 - c0, r1 - r0)).astype(np.float64)
        assert self._wref is not None  # read in __init__ with weather_file
        return d - self._wref[:, None, None]

    def apply(self, obs: np.ndarray, r0: int, r1: int, which: Sequence[int] | None = None,
              with_models: bool = True, cols: tuple[int, int] | None = None) -> np.ndarray:
        """Correct ``obs`` (pairs ``which`` of this object's pairs, LOS m) in place.

        ``obs`` covers rows ``r0:r1`` and the columns ``cols`` (default all).
        """
        which = list(range(len(self.pairs))) if which is None else list(which)
        c0, c1 = cols if cols is not None else (0, self.shape[1])
        wd = self.weather_rows(r0, r1, c0, c1)
        if wd is not None:
            for k, p in enumerate(which):
                i, j = self.pairs[p]
                obs[k] += (wd[j] - wd[i]).astype(obs.dtype)
        if with_models and self.coef is not None and len(self.terms) > 1:
            h = None if self.geo is None else self.geo.rows("height", r0, r1)
            dcol = design_columns(self.terms, r0, r1, self.shape, h)[:, :, c0:c1]
            assert self._mref is not None  # set in __init__ with coef and terms
            for k, p in enumerate(which):
                c = self.coef[p]
                if np.all(np.isfinite(c)):
                    obs[k] -= (evaluate_model(c, dcol) - self._mref[p]).astype(obs.dtype)
        return obs


def blame_misclosure(triplets: Sequence[tuple[int, int, int]], frac: np.ndarray,
                     n_pairs: int, limit: float) -> tuple[set[int], dict[int, float]]:
    """Pairs to drop for misclosure: drop the worst, forget its triplets, repeat.

    ``frac[t]``: fraction of the pixels of triplet ``t`` whose closure exceeds half a
    cycle. A pair's score is the mean fraction over its live triplets (then the number
    of its triplets above ``limit``); the worst pair is dropped while its mean exceeds
    ``limit``. Returns the dropped pairs and every scored pair's (last) mean.
    """
    alive = set(range(n_pairs))
    live = set(range(len(triplets)))
    score_of: dict[int, float] = {}
    dropped: set[int] = set()
    while True:
        scores = {}
        for k in alive:
            mine = [frac[t] for t in live if k in triplets[t]]
            if mine:
                scores[k] = (float(np.mean(mine)), sum(f > limit for f in mine))
        for k, (f, _) in scores.items():
            score_of[k] = f
        worst = max(scores, key=lambda k: scores[k], default=None)
        if worst is None or scores[worst][0] <= limit:
            return dropped, score_of
        alive.discard(worst)
        dropped.add(worst)
        live = {t for t in live if worst not in triplets[t]}


def survey_pairs(source: PairSource, pairs: Sequence[tuple[int, int]], n_dates: int,
                 names: Sequence[str], opts: Any, wavelength: float | None,
                 corrections: Corrections, rows: int, geo: GridGeometry | None = None,
                 progress: Any = None) -> CorrectionPlan:
    """One pass over the pairs: screening statistics and the ramp/elevation fits.

    Per pair: the unwrapped fraction (finite, coherence >= ``min_coherence``), the phase
    noise (:func:`kernels.corrections.phase_gradient_variance`, needs the wavelength),
    the fraction of pixels of each triplet whose closure exceeds half a cycle, and the
    normal equations of the model (``ramp`` and ``stratified`` terms, coherence-weighted,
    after the weather delays). Then pairs are screened (unwrapped fraction, phase noise,
    misclosure by :func:`blame_misclosure`), each dropped pair listed with its reason,
    and the models solved on the kept pairs (made network-consistent when asked).
    """
    from kernels.sbas import closure_triplets, coherence_weights

    ny, nx = source.shape
    n_p = len(pairs)
    terms = model_terms(opts.ramp, opts.stratified)
    fit = len(terms) > 1
    if opts.stratified and (geo is None or geo.height is None):
        raise InputError("the stratified troposphere correction needs terrain heights: "
                         "give `heights` (a DEM GeoTIFF) or a stack with geometry.npz")
    ne = NormalEquations(n_p, len(terms)) if fit else None
    valid = np.zeros(n_p, np.int64)
    var_sum = np.zeros(n_p)
    var_n = np.zeros(n_p, np.int64)
    triplets = closure_triplets(pairs)
    t_bad = np.zeros(len(triplets), np.int64)
    t_seen = np.zeros(len(triplets), np.int64)
    to_rad = 4 * math.pi / wavelength if wavelength else None
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        obs, coh = source.read(r0, r1)
        corrections.apply(obs, r0, r1, with_models=False)
        good = np.isfinite(obs) & (coh >= opts.min_coherence)
        valid += good.reshape(n_p, -1).sum(axis=1)
        if to_rad is not None:
            assert wavelength is not None  # to_rad is set from it
            for p in range(n_p):
                s, n = phase_gradient_variance(np.where(good[p], obs[p] * to_rad, np.nan))
                var_sum[p] += s
                var_n[p] += n
            half = wavelength / 4
            for t, (a, b, c) in enumerate(triplets):
                clo = obs[a] + obs[b] - obs[c]
                fin = np.isfinite(clo)
                t_seen[t] += int(fin.sum())
                t_bad[t] += int((np.abs(clo[fin]) > half).sum())
        if ne is not None:  # fit
            h = None if geo is None else geo.rows("height", r0, r1)
            dcol = design_columns(terms, r0, r1, (ny, nx), h)
            w = coherence_weights(coh.copy())
            for p in range(n_p):
                ne.add(p, dcol, obs[p], w[p], keep=good[p])
        if progress is not None:
            progress(r1 / ny, f"surveyed rows {r1}/{ny}")
    frac = valid / float(ny * nx)
    with np.errstate(invalid="ignore", divide="ignore"):
        pvar = np.where(var_n > 0, var_sum / np.maximum(var_n, 1), np.nan)
    dropped: dict[int, str] = {}
    for p in range(n_p):
        if frac[p] < opts.min_unwrapped_fraction:
            dropped[p] = (f"unwrapped fraction {frac[p]:.3f} < {opts.min_unwrapped_fraction}")
        elif np.isfinite(pvar[p]) and pvar[p] > opts.max_phase_variance:
            dropped[p] = f"phase variance {pvar[p]:.3f} rad^2 > {opts.max_phase_variance}"
    mis_score: dict[int, float] = {}
    if triplets and to_rad is not None:
        tfrac = np.where(t_seen > 0, t_bad / np.maximum(t_seen, 1), 0.0)
        live = [k for k in range(n_p) if k not in dropped]
        index = {k: n for n, k in enumerate(live)}
        sub = [(index[a], index[b], index[c]) for a, b, c in triplets
               if a in index and b in index and c in index]
        sub_frac = np.array([tfrac[t] for t, (a, b, c) in enumerate(triplets)
                             if a in index and b in index and c in index])
        bad, score = blame_misclosure(sub, sub_frac, len(live),
                                      opts.max_misclosure_fraction)
        mis_score = {live[k]: v for k, v in score.items()}
        for k in bad:
            dropped[live[k]] = (f"misclosure fraction {score[k]:.3f} > "
                                f"{opts.max_misclosure_fraction}")
    keep = [p for p in range(n_p) if p not in dropped]
    coef = date_coef = fit_rms = None
    if ne is not None:  # fit
        coef, fit_rms = ne.solve()
        coef[[p for p in dropped]] = np.nan
        if opts.correction_network and keep:
            # per-date terms from the kept pairs' fits; every pair then gets C_j - C_i
            coef, date_coef = network_consistent(
                coef, pairs, n_dates, weights=np.isin(np.arange(n_p), keep).astype(float))
    stats = []
    for p in range(n_p):
        st = {"pair": names[p], "unwrapped_fraction": round(float(frac[p]), 4),
              "phase_variance": None if not np.isfinite(pvar[p]) else round(float(pvar[p]), 4),
              "misclosure_fraction": None if p not in mis_score else
              round(float(mis_score[p]), 4)}
        if fit and coef is not None:
            st["model"] = {t: (None if not np.isfinite(v) else float(v))
                           for t, v in zip(terms, coef[p], strict=True)}
        stats.append(st)
    return CorrectionPlan(
        keep=keep, dropped=[{"pair": names[p], "reason": r} for p, r in sorted(dropped.items())],
        stats=stats, terms=terms, coef=coef, date_coef=date_coef, fit_rms=fit_rms)


@dataclass
class ClosureResult:
    """Per-pixel results of the loop-closure step on a block."""

    loop_errors: np.ndarray      # triplets above the threshold before correction
    loops: np.ndarray            # triplets checked
    corrected: np.ndarray        # pairs changed by whole cycles
    residual_errors: np.ndarray  # triplets still above the threshold after it
    cycles: np.ndarray | None = None  # (n_pairs, h, w) cycles removed, when corrected


def closure_step(obs: np.ndarray, triplets: Sequence[tuple[int, int, int]],
                 wavelength: float | None, threshold_rad: float, correct: bool
                 ) -> ClosureResult:
    """Loop-closure detection and whole-cycle correction of a block of pairs (LOS m).

    Counts, per pixel, the triplets whose closure exceeds ``threshold_rad`` (LiCSBAS's
    loop errors); with ``correct``, removes the integer cycles that the triplets
    determine (:func:`kernels.closure.closure_correction`), in place, and counts again.
    """
    shape = obs.shape[1:]
    zeros = np.zeros(shape, np.int16)
    if not triplets or not wavelength:
        return ClosureResult(zeros, zeros.copy(), zeros.copy(), zeros.copy())
    from kernels.closure import closure_correction

    k = np.float32(4 * math.pi / wavelength)
    obs *= k
    loops, before = loop_counts(obs, triplets, threshold_rad)
    corrected = zeros.copy()
    after = before
    cycles = None
    if correct:
        _, cycles = closure_correction(obs, triplets)
        corrected = np.count_nonzero(cycles, axis=0).astype(np.int16)
        if corrected.any():
            _, after = loop_counts(obs, triplets, threshold_rad)
    obs /= k
    return ClosureResult(before, loops, corrected, after, cycles)


def mask_coherence(mean_coh: np.ndarray, size: int) -> np.ndarray:
    """The coherence that the mean-coherence mask thresholds.

    The pixel's mean coherence, or its median over ``size`` x ``size`` pixels where
    that is lower. A coherence of few looks is too noisy to threshold pixel by pixel (inside a
    decorrelated area some pixels reach 0.5-0.7 by chance), and a window mean would
    lift the decorrelated pixels next to coherent ones; the median of the window
    follows the majority and the minimum keeps the pixel's own value where it is low.
    NaN (no coherence) counts as 0.
    """
    own = np.nan_to_num(np.asarray(mean_coh, np.float32), nan=0.0)
    if size <= 1:
        return own
    from scipy.ndimage import median_filter

    return np.minimum(own, median_filter(own, size=size, mode="nearest"))


def quality_mask(tcoh: np.ndarray, mean_coh_win: np.ndarray | None, gaps: np.ndarray,
                 residual_loops: np.ndarray, n_pairs: np.ndarray, opts: Any,
                 user: np.ndarray | None = None, network_gaps: int = 0) -> np.ndarray:
    """The ``mask`` bits (:data:`MASK_BITS`) of a block; 0 = kept.

    ``network_gaps``: the gaps of the whole network (bridged by the temporal model by
    design); a pixel is flagged for the gaps it has beyond those.
    """
    bits = np.zeros(tcoh.shape, np.uint8)
    bits |= np.where(~(tcoh >= opts.min_temporal_coherence),
                     MASK_BITS["temporal_coherence"], 0).astype(np.uint8)
    if mean_coh_win is not None:
        bits |= np.where(~(mean_coh_win >= opts.min_mean_coherence),
                         MASK_BITS["mean_coherence"], 0).astype(np.uint8)
    if opts.mask_network_gaps:
        bits |= np.where(gaps > network_gaps, MASK_BITS["network_gap"], 0).astype(np.uint8)
    if opts.max_loop_errors is not None:
        bits |= np.where(residual_loops > opts.max_loop_errors, MASK_BITS["loop_errors"],
                         0).astype(np.uint8)
    bits |= np.where(n_pairs == 0, MASK_BITS["no_data"], 0).astype(np.uint8)
    if user is not None:
        bits |= np.where(~user, MASK_BITS["user_mask"], 0).astype(np.uint8)
    return bits


class MisfitStats:
    """Per-pair RMS misfit after the inversion, accumulated block by block (RMSinterfero)."""

    def __init__(self, pairs: Sequence[tuple[int, int]]) -> None:
        self.pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        self.sq = np.zeros(len(self.pairs))
        self.n = np.zeros(len(self.pairs), np.int64)

    def add(self, obs: np.ndarray, series: np.ndarray, keep: np.ndarray | None = None
            ) -> None:
        """Add a block: ``obs`` (n_pairs, h, w) m, ``series`` (n_dates, h, w) m."""
        for p, (i, j) in enumerate(self.pairs):
            r = obs[p] - (series[j] - series[i])
            fin = np.isfinite(r)
            if keep is not None:
                fin &= keep
            self.sq[p] += float(np.square(r[fin], dtype=np.float64).sum())
            self.n[p] += int(fin.sum())

    def rms(self) -> np.ndarray:
        """RMS misfit (m) per pair (NaN without pixels)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, np.sqrt(self.sq / np.maximum(self.n, 1)), np.nan)


def write_quality_lists(folder: Path, names: Sequence[str], dates: Sequence[Any],
                        pairs: Sequence[tuple[int, int]], pair_rms: np.ndarray,
                        stats: Sequence[dict], dropped: Sequence[dict]) -> dict[str, Path]:
    """FLATSIM/NSBAS-style text lists: RMS per interferogram and per date, unwrapped fraction.

    ``RMSinterfero.txt`` (pair, RMS misfit in mm), ``RMSdate.txt`` (date, RMS in mm,
    from the pairs' by :func:`kernels.corrections.date_rms`), ``list_unw_frac.txt``
    (pair, unwrapped fraction, phase variance, misclosure fraction) and
    ``dropped_pairs.txt`` (pair, reason).
    """
    folder.mkdir(parents=True, exist_ok=True)
    drms = date_rms(pair_rms, pairs, len(dates))
    out = {}

    def put(name: str, lines: list[str]) -> None:
        p = folder / name
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(p)
        out[name] = p

    put("RMSinterfero.txt", ["# pair  rms_misfit_mm"] +
        [f"{n} {1000 * r:.3f}" if np.isfinite(r) else f"{n} nan"
         for n, r in zip(names, pair_rms, strict=True)])
    put("RMSdate.txt", ["# date  rms_mm"] +
        [f"{d:%Y%m%d} {1000 * r:.3f}" if np.isfinite(r) else f"{d:%Y%m%d} nan"
         for d, r in zip(dates, drms, strict=True)])
    put("list_unw_frac.txt", ["# pair  unwrapped_fraction  phase_variance_rad2  "
                              "misclosure_fraction"] +
        [f"{s['pair']} {s['unwrapped_fraction']} {s['phase_variance']} "
         f"{s['misclosure_fraction']}" for s in stats])
    put("dropped_pairs.txt", ["# pair  reason"] + [f"{d['pair']} {d['reason']}"
                                                     for d in dropped])
    return out


def prepare_corrections(opts: Any, shape: tuple[int, int], transform: Any, crs: Any,
                        incidence_deg: float, dates: Sequence[Any],
                        geometry_npz: Path | None = None, fetch_dir: Path | None = None
                        ) -> tuple[GridGeometry | None, Any]:
    """The grid geometry and weather model the options ask for (None, None if neither).

    The weather files come from ``opts.weather_dir``, else are fetched into
    ``fetch_dir`` from the archive named by ``$GDM_ERA5_URL`` / ``$GDM_GACOS_URL``
    (:class:`insar.troposphere.WeatherClient`).
    """
    from insar.troposphere import WeatherClient, open_weather

    need_geo = opts.troposphere != "none" or opts.stratified
    if not need_geo:
        return None, None
    geo = grid_geometry(shape, transform, crs, incidence_deg, geometry_npz, opts.heights)
    if opts.stratified and geo.height is None:
        raise InputError("the stratified troposphere correction needs terrain heights: "
                         "give `heights` (a DEM GeoTIFF) or a stack with geometry.npz")
    if opts.troposphere == "era5" and geo.height is None:
        raise InputError("troposphere era5 needs terrain heights (the delay is integrated "
                         "from each pixel's height): give `heights` (a DEM GeoTIFF) or a "
                         "stack with geometry.npz")
    weather = None
    if opts.troposphere != "none":
        folder = opts.weather_dir
        if folder is None:
            if fetch_dir is None:
                raise InputError(f"troposphere {opts.troposphere} needs weather_dir")
            WeatherClient(opts.troposphere).fetch(list(dates), fetch_dir)
            folder = fetch_dir
        bbox = None
        if geo.lat is not None and geo.lon is not None:
            bbox = (float(np.nanmin(geo.lon)), float(np.nanmin(geo.lat)),
                    float(np.nanmax(geo.lon)), float(np.nanmax(geo.lat)))
        weather = open_weather(opts.troposphere, folder, opts.acquisition_time, bbox)
    return geo, weather
