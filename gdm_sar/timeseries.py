"""GDM-SAR time series from unwrapped interferograms made elsewhere.

``gdm sar timeseries`` reads unwrapped interferograms of any supported format
(:mod:`gdmio.insar`), brings them to their common grid in LOS metres (positive towards
the satellite), and runs the GDM-SAR inversion on them:

1. read and check: formats, dates, wavelength, one grid, network connectivity;
2. pass 1, pair by pair and block by block: each interferogram and its coherence on
   the common grid (``interferograms/<pair>/{los,coherence}.tif``), valid fraction,
   mean coherence, a stacked rate for the reference choice;
3. reference point: ``--reference LON LAT``, else the most coherent 5x5 window of the
   stable area outside the largest deformation; every pair is referenced to it;
4. pass 2, block by block: integer phase closures of every triplet, screening of the
   pairs (unwrapped fraction, misclosure) with the dropped ones reported;
5. pass 3, block by block: unwrapping errors removed by phase closure, coherence-
   weighted NSBAS inversion (as ``gdm sar run``), DEM error where baselines are known,
   GNSS tie (``--gnss``), masks; products through the product writer (COGs and
   ``timeseries.nc``);
6. quicklooks, network plot, report and STAC item.

Memory is bounded by ``block_mb``: the passes read the pair rasters window by window.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pydantic import ConfigDict, Field
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from gdmcore import InputError
from gdmio.cog import CogWriter, write_cog
from gdmio.grid import Grid, read_on_grid
from gdmio.insar import FORMATS, Interferogram, find_interferograms
from gdmio.insar.read import insar_grid, read_coherence, read_labels, read_metres
from gdmio.products import ProductDir
from gdmio.quicklook import network_plot, pair_coherence
from gdmio.raster import open_info
from gdmio.stac import write_item
from gdmio.writer import ProductWriter
from insar.corrections import (
    MASK_BITS,
    Corrections,
    MisfitStats,
    PairSource,
    closure_step,
    mask_coherence,
    prepare_corrections,
    quality_mask,
    survey_pairs,
    weather_delays,
    write_quality_lists,
)
from insar.inversion import StackFacts, dem_error_terms, temporal_fit
from insar.options import CorrectionOptions
from insar.products import layer as sar_layer
from insar.quicklooks import sar_quicklooks
from kernels.corrections import pixel_network_gaps
from kernels.insar import reference_point
from kernels.reference import stable_area
from kernels.sbas import (
    closure_triplets,
    coherence_weights,
    invert_sbas,
    triplet_misclosure,
    years_since_first,
)
from kernels.timeseries import network_components

__all__ = ["TimeseriesConfig", "TimeseriesOutputs", "run_timeseries"]

Progress = Callable[[float, str], None]
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_HALF = 2  # the reference is the mean of a 5x5 window


class TimeseriesConfig(CorrectionOptions):
    """A time series from unwrapped interferograms made elsewhere.

    The corrections, screening and mask options are the SAR steps' own
    (:class:`insar.options.CorrectionOptions`), as for gdm-sar jobs and FLATSIM.
    """

    model_config = ConfigDict(extra="forbid")

    interferograms: list[Path] = Field(
        min_length=1, description="Unwrapped interferograms: files or folders of any "
        f"supported format ({', '.join(FORMATS)}).")
    out: Path = Field(description="Output folder (written only when the job succeeds).")
    wavelength: float | None = Field(
        None, gt=0.001, lt=2.0, description="Radar wavelength (m) for products whose "
        "metadata does not give it.")
    reference: tuple[float, float] | None = Field(
        None, description="Reference point (longitude, latitude, WGS84); default: the most "
        "coherent 5x5 window of the stable area outside the largest deformation.")
    gnss: Path | None = Field(
        None, description="CSV of GNSS tie points: lon,lat,velocity (LOS m/yr, positive "
        "towards the satellite); the velocity and series are shifted to match them.")
    mask: Path | None = Field(
        None, description="GeoTIFF mask: pixels where it is 0 are masked in the products.")
    min_coherence: float = Field(0.3, ge=0.0, lt=1.0, description="Pixels of a pair below "
                                 "this coherence are left out of the inversion.")
    min_temporal_coherence: float = Field(0.7, ge=0.0, le=1.0, description="Pixels whose "
                                          "temporal coherence is below this are masked.")
    min_mean_coherence: float = Field(0.5, ge=0.0, le=1.0, description="Pixels whose mean "
                                      "coherence is below this are masked.")
    dem_error: bool = Field(True, description="Estimate a DEM-error term where the "
                            "perpendicular baselines, incidence and range are known.")
    bridge_gaps: bool = Field(True, description="Bridge a disconnected network with the "
                              "weak NSBAS temporal model; off: a disconnected network is "
                              "an error.")
    gap_weight: float = Field(1e-2, gt=0, le=1, description="Weight of the NSBAS temporal "
                              "model.")
    block_mb: int = Field(256, ge=16, le=8192, description="Memory budget (MiB) of one "
                          "block of rows.")


@dataclass
class TimeseriesOutputs:
    """Paths of the products written by :func:`run_timeseries`."""

    out_dir: Path
    velocity: Path
    timeseries: Path
    netcdf: Path
    report: Path
    item: Path | None
    layers: dict[str, Path] = field(default_factory=dict)
    quicklooks: list[Path] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------ inputs
def _read_gnss(path: Path) -> list[tuple[float, float, float]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read GNSS file {path}: {exc.strerror or exc}") from None
    rows = []
    for k, row in enumerate(csv.reader(line for line in text.splitlines()
                                       if line.strip() and not line.startswith("#"))):
        try:
            lon, lat, vel = (float(v) for v in row[:3])
        except (ValueError, TypeError):
            if k == 0:
                continue  # header
            raise InputError(f"{path.name} line {k + 1}: expected lon,lat,velocity") from None
        rows.append((lon, lat, vel))
    if not rows:
        raise InputError(f"{path.name}: no GNSS point (lon,lat,velocity lines)")
    return rows


def _lonlat_to_pixel(grid: Grid, lon: float, lat: float) -> tuple[int, int] | None:
    if grid.crs is None:
        raise InputError("the interferograms are not georeferenced: a point cannot be "
                         "given by longitude and latitude")
    xs, ys = warp_transform("EPSG:4326", grid.crs, [lon], [lat])
    col, row = (~grid.transform) * (xs[0], ys[0])
    r, c = int(math.floor(row)), int(math.floor(col))
    if 0 <= r < grid.height and 0 <= c < grid.width:
        return r, c
    return None


def _rows_per_block(cfg: TimeseriesConfig, layers: int, width: int, height: int) -> int:
    return int(max(1, min(height, cfg.block_mb * 2**20 // (4 * max(layers, 1) * width))))


def _date_baselines(ifgs: list[Interferogram], dates: list[dt.date]) -> np.ndarray | None:
    """Per-date perpendicular baselines (first date 0) from the pairs', least squares."""
    if any(i.bperp is None for i in ifgs):
        return None
    idx = {d: k for k, d in enumerate(dates)}
    a = np.zeros((len(ifgs), len(dates) - 1))
    b = np.array([i.bperp for i in ifgs], float)
    for p, i in enumerate(ifgs):
        if idx[i.date2]:
            a[p, idx[i.date2] - 1] = 1
        if idx[i.date1]:
            a[p, idx[i.date1] - 1] = -1
    x = np.linalg.lstsq(a, b, rcond=None)[0]
    return np.concatenate([[0.0], x])


# ------------------------------------------------------------------------------ run
def run_timeseries(cfg: TimeseriesConfig, progress: Progress | None = None
                   ) -> TimeseriesOutputs:
    """Invert unwrapped interferograms into a time series and velocity in ``cfg.out``.

    Raises
    ------
    InputError
        On bad input, before anything is published.

    """
    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), message)

    with tempfile.TemporaryDirectory(prefix="gdm-ts-") as tmp, \
            rasterio.Env(GDAL_CACHEMAX=cfg.block_mb * 2**20):
        return _run(cfg, Path(tmp), report)


def _run(cfg: TimeseriesConfig, tmp: Path, report: Progress) -> TimeseriesOutputs:
    ifgs = find_interferograms(list(cfg.interferograms), tmp, cfg.wavelength)
    grid = insar_grid(ifgs)
    dates = sorted({d for i in ifgs for d in (i.date1, i.date2)})
    if len(dates) < 3:
        raise InputError(f"a time series needs at least 3 dates; the interferograms "
                         f"span {len(dates)}")
    index = {d: k for k, d in enumerate(dates)}
    pairs = [(index[i.date1], index[i.date2]) for i in ifgs]
    n_comp = len(network_components(len(dates), pairs))
    if n_comp > 1 and not cfg.bridge_gaps:
        raise InputError(f"the network of {len(pairs)} pairs falls into {n_comp} "
                         "disconnected parts; allow the weak temporal constraint "
                         "(bridge_gaps) or add pairs")
    gnss = _read_gnss(cfg.gnss) if cfg.gnss else []
    mask_path = cfg.mask
    if mask_path is not None and not Path(mask_path).is_file():
        raise InputError(f"mask not found: {mask_path}")
    ref_px = None
    if cfg.reference is not None:
        ref_px = _lonlat_to_pixel(grid, *cfg.reference)
        if ref_px is None:
            raise InputError(f"reference point {cfg.reference} is outside the common grid")
    gnss_px = []
    for lon, lat, vel in gnss:
        px = _lonlat_to_pixel(grid, lon, lat)
        if px is not None:
            gnss_px.append((lon, lat, vel, px))
    if gnss and not gnss_px:
        raise InputError(f"none of the {len(gnss)} GNSS points is inside the common grid")
    wavelengths = {round(i.wavelength, 9) for i in ifgs if i.wavelength}
    report(0.0, f"{len(ifgs)} interferograms ({', '.join(sorted({i.fmt for i in ifgs}))}), "
           f"{len(dates)} dates, grid {grid.width}x{grid.height}")

    with ProductDir(cfg.out) as stage:
        # ---------------------------------------------------------------- pass 1
        ny, nx = grid.height, grid.width
        rows1 = _rows_per_block(cfg, 4, nx, ny)
        coh_sum = np.zeros((ny, nx), np.float32)
        coh_n = np.zeros((ny, nx), np.int16)
        num = np.zeros((ny, nx), np.float64)
        den = np.zeros((ny, nx), np.float64)
        t_years = years_since_first(dates)
        valid_frac = []
        los_paths, coh_paths, comp_paths = [], [], []
        for p, ifg in enumerate(ifgs):
            folder = stage / "interferograms" / ifg.pair
            dt_y = t_years[pairs[p][1]] - t_years[pairs[p][0]]
            n_valid = 0
            los_m, coh_m = sar_layer("los"), sar_layer("coherence")
            los_w = CogWriter(folder / los_m.file, nx, ny, 1, grid.crs, grid.transform,
                              descriptions=los_m.descriptions(),
                              tags=los_m.tags(PAIR=ifg.pair, FORMAT=ifg.fmt,
                                              SOURCE=ifg.name))
            comp_w = None
            if ifg.valid is not None:
                comp_m = sar_layer("conncomp")
                comp_w = CogWriter(folder / comp_m.file, nx, ny, 1, grid.crs,
                                   grid.transform, nodata=None, dtype="uint16",
                                   descriptions=comp_m.descriptions(),
                                   tags=comp_m.tags(PAIR=ifg.pair))
                comp_w.__enter__()
            coh_w = None
            if ifg.coherence is not None:
                coh_w = CogWriter(folder / coh_m.file, nx, ny, 1, grid.crs,
                                  grid.transform, descriptions=coh_m.descriptions(),
                                  tags=coh_m.tags(PAIR=ifg.pair))
            with los_w:
                if coh_w is not None:
                    coh_w.__enter__()
                try:
                    for r0 in range(0, ny, rows1):
                        win = Window(0, r0, nx, min(rows1, ny - r0))
                        d = read_metres(ifg, grid, win)
                        los_w.write(d, win)
                        ok = np.isfinite(d)
                        n_valid += int(ok.sum())
                        sl = slice(r0, r0 + int(win.height))
                        num[sl][ok] += d[ok] * dt_y
                        den[sl][ok] += dt_y * dt_y
                        if comp_w is not None:
                            comp_w.write(read_labels(ifg, grid, win), win)
                        if coh_w is not None:
                            c = read_coherence(ifg, grid, win)
                            coh_w.write(c, win)
                            good = np.isfinite(c)
                            coh_sum[sl][good] += c[good]
                            coh_n[sl] += good
                except BaseException as exc:
                    for w in (coh_w, comp_w):
                        if w is not None:
                            w.__exit__(type(exc), exc, exc.__traceback__)
                    raise
                for w in (coh_w, comp_w):
                    if w is not None:
                        w.__exit__(None, None, None)
            los_paths.append(folder / "los.tif")
            comp_paths.append(folder / "conncomp.tif" if comp_w is not None else None)
            coh_paths.append(folder / "coherence.tif" if coh_w is not None else None)
            valid_frac.append(n_valid / (nx * ny))
            report(0.3 * (p + 1) / len(ifgs), f"read {ifg.pair} ({ifg.fmt})")
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_coh = np.where(coh_n > 0, coh_sum / coh_n, np.nan).astype(np.float32)
            rate = np.where(den > 0, num / den, np.nan)
        del coh_sum, num, den

        # ------------------------------------------------------------- reference
        has_coh = bool(np.isfinite(mean_coh).any())
        quality = mean_coh if has_coh else np.where(np.isfinite(rate), 1.0, np.nan)
        if ref_px is None:
            try:
                stable = stable_area(rate)
                ref_px = reference_point(quality, stable)
            except ValueError:
                try:
                    ref_px = reference_point(quality)
                except ValueError:
                    raise InputError("no coherent area with data in every interferogram "
                                     "to place the reference point in") from None
            ref_mode = "automatic: most coherent window of the stable area"
        else:
            ref_mode = "given"
        r, c = ref_px
        ref_win = Window(max(c - _HALF, 0), max(r - _HALF, 0),
                         min(c + _HALF + 1, nx) - max(c - _HALF, 0),
                         min(r + _HALF + 1, ny) - max(r - _HALF, 0))
        # Each pair is referenced to the mean of the window, within the connected
        # component holding the reference (other components have unknown offsets).
        offsets: list[_Ref] = []
        for path, comp in zip(los_paths, comp_paths, strict=True):
            with rasterio.open(path) as ds:
                v = ds.read(1, window=ref_win)
            label = None
            if comp is not None:
                with rasterio.open(comp) as ds:
                    lab = ds.read(1, window=ref_win)
                good = lab[np.isfinite(v) & (lab > 0)]
                label = int(np.bincount(good).argmax()) if good.size else 0
                v = np.where(lab == label, v, np.nan)
            off = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
            offsets.append(_Ref(off, comp, label))

        # ----------------------------------------------------- screening (pass 2)
        # The SAR steps' survey (insar.corrections): weather delays, unwrapped fraction,
        # phase noise, triplet misclosure, ramp / phase-elevation fits.
        dropped: list[dict] = []
        keep = []
        for p, ifg in enumerate(ifgs):
            if not math.isfinite(offsets[p].offset):
                dropped.append({"pair": ifg.pair, "source": ifg.name,
                                "reason": "no data around the reference point"})
            else:
                keep.append(p)
        wl = ifgs[0].wavelength if len(wavelengths) == 1 else None
        inc0 = next((i.incidence_deg for i in ifgs if i.incidence_deg), None)
        if cfg.troposphere != "none" and not inc0:
            raise InputError(f"troposphere {cfg.troposphere}: the interferograms give no "
                             "incidence angle to project the delays on the line of sight")
        geo, weather = prepare_corrections(cfg, (ny, nx), grid.transform, grid.crs,
                                           inc0 or 0.0, dates, fetch_dir=stage / "weather")
        weather_file = None
        if weather is not None:
            report(0.3, f"troposphere: {weather.name} delays of {len(dates)} dates")
            weather_file = stage / "troposphere.tif"
            weather_delays(weather, dates, geo, weather_file, grid.crs, grid.transform)
        if not keep:
            raise InputError("no interferogram has data around the reference point")
        survey_pairs_idx = [pairs[p] for p in keep]
        source = _LosPairs([los_paths[p] for p in keep], [coh_paths[p] for p in keep],
                           [offsets[p] for p in keep], (ny, nx))
        plan = survey_pairs(source, survey_pairs_idx, len(dates), [ifgs[p].pair for p in keep],
                            cfg, wl, Corrections(survey_pairs_idx, (ny, nx), (r, c), geo,
                                                 weather_file),
                            _rows_per_block(cfg, 3 * len(keep), nx, ny), geo,
                            progress=lambda f, m: report(0.3 + 0.1 * f, m))
        mis_frac = {keep[k]: st["misclosure_fraction"] for k, st in enumerate(plan.stats)}
        for d in plan.dropped:
            p = next(q for q in keep if ifgs[q].pair == d["pair"])
            dropped.append({"pair": d["pair"], "source": ifgs[p].name, "reason": d["reason"]})
        corr = Corrections(survey_pairs_idx, (ny, nx), (r, c), geo, weather_file, plan.terms,
                           plan.coef)
        corr_which = list(plan.keep)
        keep = [keep[k] for k in plan.keep]
        if len(keep) < 2:
            raise InputError(f"only {len(keep)} interferogram(s) left after screening: "
                             + "; ".join(f"{d['pair']}: {d['reason']}" for d in dropped))
        used_dates = sorted({d for p in keep for d in (ifgs[p].date1, ifgs[p].date2)})
        lost = [d.isoformat() for d in dates if d not in used_dates]
        dates = used_dates
        if len(dates) < 3:
            raise InputError("fewer than 3 dates left after screening")
        index = {d: k for k, d in enumerate(dates)}
        kpairs = [(index[ifgs[p].date1], index[ifgs[p].date2]) for p in keep]
        n_comp = len(network_components(len(dates), kpairs))
        if n_comp > 1 and not cfg.bridge_gaps:
            raise InputError(f"after screening the network falls into {n_comp} "
                             "disconnected parts; allow the weak temporal constraint "
                             "(bridge_gaps)")
        triplets = closure_triplets(kpairs)
        report(0.4, f"{len(keep)} pairs kept, {len(dropped)} dropped")

        # ------------------------------------------------------- GNSS tie (small)
        kifgs = [ifgs[p] for p in keep]
        t_years = years_since_first(dates)
        extra = None
        bperp = _date_baselines(kifgs, dates) if cfg.dem_error else None
        inc = next((i.incidence_deg for i in kifgs if i.incidence_deg), None)
        rng = next((i.slant_range_m for i in kifgs if i.slant_range_m), None)
        if bperp is not None and inc and rng:
            # the SAR steps' DEM-error column, as gdm sar run and FLATSIM
            extra = dem_error_terms(StackFacts(dates, bperp, wl or 0.0, inc, rng), True)
        solver = _Solver(cfg, kpairs, dates, t_years, wl, extra, triplets, corr, corr_which)
        net_gaps = int(pixel_network_gaps(np.ones((len(kpairs), 1, 1), bool), kpairs,
                                          len(dates))[0, 0])
        shift = 0.0
        gnss_report = []
        if gnss_px:
            est = []
            for _lon, _lat, vel, (gr, gc) in gnss_px:
                win = Window(gc, gr, 1, 1)
                obs = _read_stack([los_paths[p] for p in keep], win,
                                  [offsets[p] for p in keep])
                coh = _read_coh([coh_paths[p] for p in keep], win)
                sol = solver.solve(obs, coh, gr, gr + 1, (gc, gc + 1))
                est.append((vel, float(sol["velocity"][0, 0])))
            diffs = [g - v for g, v in est if math.isfinite(v)]
            if not diffs:
                raise InputError("no GNSS point falls on a pixel with a valid time series")
            shift = float(np.mean(diffs))
            gnss_report = [{"lon": lo, "lat": la, "gnss_m_per_yr": g,
                            "insar_m_per_yr": (v + shift) if math.isfinite(v) else None}
                           for (lo, la, g, _), (_, v) in zip(gnss_px, est, strict=True)]

        # ----------------------------------------------------------- pass 3
        user_mask = None
        if mask_path is not None:
            user_mask = read_on_grid(open_info(mask_path), grid, resampling="nearest")
            user_mask = np.isfinite(user_mask) & (user_mask != 0)
        span = f"{dates[0]} to {dates[-1]}"
        ref_tag = f"{r},{c}"
        gnss_tags = {"REFERENCE": "shifted to GNSS"} if gnss_px else {}
        n_layers = 2 * len(keep) + len(dates) + 8
        rows3 = _rows_per_block(cfg, n_layers, nx, ny)
        stats = {"corrected_pixels": np.zeros(len(keep), np.int64), "masked": 0,
                 "loop_errors": 0, "loop_errors_left": 0,
                 "reasons": dict.fromkeys(MASK_BITS, 0)}
        misfit = MisfitStats(kpairs)
        mask_coh = mask_coherence(mean_coh, cfg.coherence_window) if has_coh else None
        attrs = {"title": f"GDM-SAR LOS time series {span}",
                 "source": "gdm sar timeseries: " + ", ".join(sorted({i.fmt for i in kifgs})),
                 "references": "NSBAS inversion (Doin et al. 2011; Lopez-Quiroz et al. 2009)",
                 "reference_pixel": f"{r} {c}",
                 "comment": "LOS displacement positive towards the satellite"}
        with ProductWriter(stage, grid.crs, grid.transform, nx, ny, dates=dates,
                           attrs=attrs) as pw:

            def open_layer(name: str, variable: str) -> Any:
                meta = sar_layer(name)
                return pw.layer(name, variable, meta=meta,
                                reference=ref_tag if meta.reference else None,
                                tags=gnss_tags if meta.reference else None)

            lay = {
                "timeseries": open_layer("timeseries", "displacement"),
                "velocity": open_layer("velocity", "velocity"),
                "velocity_std": open_layer("velocity_std", "velocity_std"),
                "temporal_coherence": open_layer("temporal_coherence", "temporal_coherence"),
                "residual": open_layer("residual", "residual"),
                "misclosure": open_layer("misclosure", "misclosure"),
                "mean_coherence": open_layer("mean_coherence", "mean_coherence"),
                "corrections": open_layer("unwrapping_corrections", "unwrapping_corrections"),
            }
            for name in ("loop_errors", "network_gaps", "mask"):
                tg = {"BITS": ", ".join(f"{b}={k}" for k, b in MASK_BITS.items())} \
                    if name == "mask" else {}
                lay[name] = pw.layer(name, name, meta=sar_layer(name), tags=tg,
                                     dtype="uint8" if name == "mask" else "int16",
                                     nodata=None)
            if extra is not None:
                lay["dem_error"] = open_layer("dem_error", "dem_error")
            for r0 in range(0, ny, rows3):
                h = min(rows3, ny - r0)
                win = Window(0, r0, nx, h)
                obs = _read_stack([los_paths[p] for p in keep], win,
                                  [offsets[p] for p in keep])
                coh = _read_coh([coh_paths[p] for p in keep], win)
                sol = solver.solve(obs, coh, r0, r0 + h, misfit=misfit)
                if sol["cycles"] is not None:
                    stats["corrected_pixels"] += sol["cycles"].reshape(len(keep), -1) \
                        .astype(bool).sum(axis=1)
                stats["loop_errors"] += int(sol["loop_errors"].sum())
                stats["loop_errors_left"] += int(sol["loop_errors_left"].sum())
                series, vel = sol["series"], sol["velocity"]
                if shift:
                    series = series + (shift * t_years)[:, None, None].astype(np.float32)
                    vel = vel + np.float32(shift)
                mc = mean_coh[r0:r0 + h]
                bits = quality_mask(sol["temporal_coherence"],
                                    None if mask_coh is None else mask_coh[r0:r0 + h],
                                    sol["gaps"], sol["loop_errors_left"], sol["n_pairs"], cfg,
                                    user=None if user_mask is None else user_mask[r0:r0 + h],
                                    network_gaps=net_gaps)
                bad = bits != 0
                stats["masked"] += int(bad.sum())
                for k_, b_ in MASK_BITS.items():
                    stats["reasons"][k_] += int(((bits & b_) != 0).sum())
                lay["loop_errors"].write(sol["loop_errors"].astype(np.int16), win)
                lay["network_gaps"].write(sol["gaps"].astype(np.int16), win)
                lay["mask"].write(bits, win)
                series = np.where(bad, np.nan, series)
                lay["timeseries"].write(series, win)
                lay["velocity"].write(np.where(bad, np.nan, vel), win)
                lay["velocity_std"].write(np.where(bad, np.nan, sol["velocity_std"]), win)
                lay["temporal_coherence"].write(sol["temporal_coherence"], win)
                lay["residual"].write(sol["residual"], win)
                lay["misclosure"].write(sol["misclosure"], win)
                lay["mean_coherence"].write(mc, win)
                lay["corrections"].write(sol["corrected"].astype(np.float32), win)
                if extra is not None:
                    lay["dem_error"].write(np.where(bad, np.nan, sol["dem_error"]), win)
                report(0.45 + 0.45 * (r0 + h) / ny, f"inverted rows {r0 + h}/{ny}")
            paths = {k: v.path for k, v in lay.items()}
        if weather_file is not None:
            paths["troposphere"] = weather_file
        nc_path = stage / "timeseries.nc"
        pair_rms = misfit.rms()
        write_quality_lists(stage / "quality", [ifgs[p].pair for p in keep], dates, kpairs,
                            pair_rms, plan.stats, dropped)
        looks = sar_quicklooks(stage, paths, dates, [])
        net_p = network_plot(
            dates, bperp if bperp is not None else np.zeros(len(dates)), kpairs,
            stage / "network.png",
            f"Interferogram network: {len(dates)} dates, {len(kpairs)} pairs"
            + (f" ({len(dropped)} dropped)" if dropped else ""),
            coherence=[pair_coherence(stage / "interferograms" / i.pair) for i in kifgs])
        ref_lonlat = None
        if grid.crs is not None:
            x, y = grid.transform * (c + 0.5, r + 0.5)
            lons, lats = warp_transform(grid.crs, "EPSG:4326", [x], [y])
            ref_lonlat = [round(lons[0], 7), round(lats[0], 7)]
        doc = {
            "process": "gdm-sar-timeseries",
            "parameters": json.loads(cfg.model_dump_json(exclude={"out"})),
            "inputs": [{"pair": i.pair, "format": i.fmt, "source": i.name,
                        "wavelength_m": i.wavelength, "bperp_m": i.bperp,
                        "valid_fraction": round(valid_frac[p], 4),
                        "misclosure_fraction": mis_frac.get(p)}
                       for p, i in enumerate(ifgs)],
            "dates": [d.isoformat() for d in dates],
            "dates_lost_by_screening": lost,
            "wavelength_m": wl,
            "perpendicular_baselines_m": None if bperp is None else
            np.round(bperp, 3).tolist(),
            "network": {"pairs": [ifgs[p].pair for p in keep], "components": n_comp,
                        "triplets": len(triplets)},
            "dropped": dropped,
            "reference": {"mode": ref_mode, "row": int(r), "col": int(c),
                          "lonlat": ref_lonlat},
            "gnss": {"shift_m_per_yr": shift, "points": gnss_report} if gnss_px else None,
            "screening": {"pairs": plan.stats},
            "corrections": {
                "troposphere": cfg.troposphere,
                "model_terms": list(plan.terms) if len(plan.terms) > 1 else [],
                "network_consistent": bool(cfg.correction_network and len(plan.terms) > 1),
                "geometry": None if geo is None else geo.source,
                "loop_threshold_rad": cfg.loop_threshold,
                "loop_errors": stats["loop_errors"],
                "loop_errors_left": stats["loop_errors_left"]},
            "rms_interferogram_m": {ifgs[p].pair: (None if not np.isfinite(v) else float(v))
                                    for p, v in zip(keep, pair_rms, strict=True)},
            "mask_reasons": {k: v / (nx * ny) for k, v in stats["reasons"].items()},
            "unwrapping_correction": {
                "enabled": cfg.closure_correction and wl is not None,
                "corrected_pixels": {ifgs[p].pair: int(n) for p, n in
                                     zip(keep, stats["corrected_pixels"], strict=True)}},
            "dem_error_estimated": extra is not None,
            "masked_fraction": stats["masked"] / (nx * ny),
            "grid": {"width": nx, "height": ny,
                     "crs": grid.crs.to_string() if grid.crs else None,
                     "transform": list(grid.transform)[:6]},
            "conventions": "LOS metres, positive towards the satellite; series relative "
                           "to the first date",
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        report_p = stage / "report.json"
        report_p.write_text(json.dumps(doc, indent=2))
        item_p = None
        if grid.crs is not None:
            assets = {n: {"href": p.name, "title": n.replace("_", " "), "roles": ["data"],
                          "type": _COG} for n, p in paths.items()}
            assets["netcdf"] = {"href": "timeseries.nc", "title": "CF-1.8 NetCDF time series",
                                "roles": ["data"], "type": "application/x-netcdf"}
            for q in [*looks, net_p]:
                assets[f"{q.stem}_quicklook"] = {"href": q.name, "title": q.stem,
                                                 "roles": ["overview"], "type": "image/png"}
            assets["report"] = {"href": "report.json", "title": "job report",
                                "roles": ["metadata"], "type": "application/json"}
            start = dt.datetime.combine(dates[0], dt.time(), dt.UTC)
            end = dt.datetime.combine(dates[-1], dt.time(), dt.UTC)
            item_p = write_item(stage / "item.json",
                                f"gdm-sar-ts-{dates[0]:%Y%m%d}-{dates[-1]:%Y%m%d}",
                                grid.crs, grid.transform, nx, ny, assets, start, end,
                                properties={"gdm:process": "gdm-sar-timeseries",
                                            "gdm:pairs": len(keep)})
    out = Path(cfg.out)
    report(1.0, "done")

    def final(p: Path) -> Path:
        return out / p.relative_to(stage)

    return TimeseriesOutputs(
        out_dir=out, velocity=final(paths["velocity"]), timeseries=final(paths["timeseries"]),
        netcdf=final(nc_path), report=final(report_p),
        item=final(item_p) if item_p else None,
        layers={k: final(v) for k, v in paths.items()},
        quicklooks=[final(q) for q in [*looks, net_p]], dropped=dropped)


@dataclass(frozen=True)
class _Ref:
    """How a pair is referenced: value subtracted, and its component at the reference."""

    offset: float
    comp: Path | None = None
    label: int | None = None


def _read_stack(paths: list[Path], win: Window, refs: list[_Ref]) -> np.ndarray:
    out = np.empty((len(paths), int(win.height), int(win.width)), np.float32)
    for k, (p, ref) in enumerate(zip(paths, refs, strict=True)):
        with rasterio.open(p) as ds:
            ds.read(1, window=win, out=out[k])
        if ref.comp is not None:
            with rasterio.open(ref.comp) as ds:
                lab = ds.read(1, window=win)
            out[k][lab != ref.label] = np.nan
        out[k] -= np.float32(ref.offset)
    return out


def _read_coh(paths: list[Path | None], win: Window) -> np.ndarray:
    out = np.empty((len(paths), int(win.height), int(win.width)), np.float32)
    for k, p in enumerate(paths):
        if p is None:
            out[k] = np.float32(math.sqrt(0.5))  # weight 1
            continue
        with rasterio.open(p) as ds:
            ds.read(1, window=win, out=out[k])
    return out


class _LosPairs(PairSource):
    """The interferograms on the common grid (LOS m minus their reference value)."""

    def __init__(self, los: list[Path], coh: list[Path | None], offsets: list[_Ref],
                 shape: tuple[int, int]) -> None:
        self.los, self.coh, self.offsets, self.shape = los, coh, offsets, shape
        self.n_pairs = len(los)

    def read(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        win = Window(0, r0, self.shape[1], r1 - r0)
        return _read_stack(self.los, win, self.offsets), _read_coh(self.coh, win)


class _Solver:
    """Corrections, closure correction and coherence-weighted NSBAS inversion of a block.

    The same steps as gdm sar run (:func:`insar.inversion.invert_stack`).
    """

    def __init__(self, cfg: TimeseriesConfig, pairs: list[tuple[int, int]],
                 dates: list[dt.date], t_years: np.ndarray, wavelength: float | None,
                 extra: np.ndarray | None, triplets: list[tuple[int, int, int]],
                 corr: Corrections | None = None, which: list[int] | None = None) -> None:
        self.cfg, self.pairs, self.dates, self.t = cfg, pairs, dates, t_years
        self.wl, self.extra, self.triplets = wavelength, extra, triplets
        self.corr, self.which = corr, which

    def solve(self, obs: np.ndarray, coh: np.ndarray, r0: int, r1: int,
              cols: tuple[int, int] | None = None,
              misfit: MisfitStats | None = None) -> dict[str, np.ndarray]:
        cfg = self.cfg
        if self.corr is not None and self.corr.active:
            self.corr.apply(obs, r0, r1, which=self.which, cols=cols)
        loops = closure_step(obs, self.triplets, self.wl, cfg.loop_threshold,
                             cfg.closure_correction)
        obs[~(coh >= cfg.min_coherence)] = np.nan
        weights = coherence_weights(coh)
        res = invert_sbas(obs, self.pairs, self.dates, weights=weights,
                          wavelength=self.wl, gap_weight=cfg.gap_weight)
        series, vel, vstd = res.series, res.velocity, res.velocity_std
        if misfit is not None:
            misfit.add(obs, series)
        gaps = pixel_network_gaps(np.isfinite(obs) & (weights > 0), self.pairs,
                                  len(self.dates))
        dz = None
        if self.extra is not None:
            vel, vstd, dzs = temporal_fit(series, self.t, self.extra)
            dz = dzs[0]
        if self.triplets:
            mis, _, _ = triplet_misclosure(obs, self.triplets)
            mis = mis.astype(np.float32)
        else:
            mis = np.full(obs.shape[1:], np.nan, np.float32)
        tcoh = res.temporal_coherence
        if self.wl is None:
            tcoh = np.ones(obs.shape[1:], np.float32)
        return {"series": series, "velocity": vel, "velocity_std": vstd,
                "temporal_coherence": tcoh, "residual": res.residual_rms,
                "misclosure": mis, "dem_error": dz, "corrected": loops.corrected,
                "cycles": loops.cycles, "loop_errors": loops.loop_errors,
                "loop_errors_left": loops.residual_errors, "gaps": gaps,
                "n_pairs": res.n_pairs}


def write_mask(path: Path, mask: np.ndarray, grid: Grid) -> Path:
    """Write a 0/1 mask on ``grid`` (helper for users and tests)."""
    return write_cog(path, mask.astype(np.uint8), grid.crs, grid.transform, nodata=None,
                     dtype="uint8")
