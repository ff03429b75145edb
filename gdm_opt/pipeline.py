"""GDM-OPT: ``run(cfg)`` turns two or more optical images into displacement products.

Steps: open the images and bring them to a common grid; choose pairs; correlate each
pair block by block on a regular grid of windows (coarse to fine when the search range
is large); reject outliers (score threshold, then a median/NMAD filter); correct the
stable-area offset; for three dates or more, invert the pair network per window for a
time series and a velocity; write COGs, quicklooks and a STAC item, all at once into the
output folder (nothing is left there when a step fails).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from gdm_opt.config import OptConfig, Resolved
from gdm_opt.products import layer as opt_layer
from gdmcore import InputError, Progress
from gdmio.atomic import write_text
from gdmio.blocks import iter_blocks
from gdmio.cog import write_cog
from gdmio.grid import Grid, common_grid, read_on_grid
from gdmio.products import ProductDir
from gdmio.quicklook import quicklook_layer
from gdmio.raster import RasterInfo, open_info
from gdmio.s2meta import check_scl, find_detfoo, find_scl, read_detector_map, read_scl_mask
from gdmio.stac import write_item
from gdmio.writer import write_layers
from kernels.outliers import apply_offset, reject_outliers, stable_offset
from kernels.pyramid import WindowGrid, correlate_grid, pyramid_levels, window_grid
from kernels.s2artefacts import estimate_artefacts, track_angle_from_labels
from kernels.timeseries import invert_timeseries, select_pairs

__all__ = ["MAX_ARTEFACT_PX", "OptOutputs", "PairResult", "run", "Progress"]

#: Largest push-broom artefact (jitter amplitude, detector offset) believed, pixels.
MAX_ARTEFACT_PX = 1.0


@dataclass
class PairResult:
    """Correlation of one pair on the output grid (pixels of the common grid)."""

    i: int
    j: int
    drow: np.ndarray
    dcol: np.ndarray
    score: np.ndarray
    offset: tuple[float, float] = (0.0, 0.0)
    valid_fraction: float = 0.0
    quality: dict = field(default_factory=dict)
    artefacts: dict | None = None


@dataclass
class OptOutputs:
    """Paths of the products written by :func:`run`."""

    out_dir: Path
    east: Path
    north: Path
    magnitude: Path
    score: Path
    item: Path
    report: Path
    quicklooks: list[Path] = field(default_factory=list)
    timeseries_east: Path | None = None
    timeseries_north: Path | None = None
    velocity_east: Path | None = None
    velocity_north: Path | None = None
    residual: Path | None = None
    pair_products: list[Path] = field(default_factory=list)
    timeseries_east_std: Path | None = None
    timeseries_north_std: Path | None = None
    velocity_std_east: Path | None = None
    velocity_std_north: Path | None = None

    def all_paths(self) -> list[Path]:
        """Every product file."""
        paths = [self.east, self.north, self.magnitude, self.score, self.item, self.report]
        for p in (self.timeseries_east, self.timeseries_north, self.velocity_east,
                  self.velocity_north, self.residual, self.timeseries_east_std,
                  self.timeseries_north_std, self.velocity_std_east, self.velocity_std_north):
            if p is not None:
                paths.append(p)
        return paths + list(self.quicklooks) + list(self.pair_products)


def _target_crs(info: RasterInfo, crs: str | None) -> CRS:
    if crs is not None:
        try:
            return CRS.from_user_input(crs)
        except Exception as exc:  # rasterio raises CRSError
            raise InputError(f"unknown CRS {crs!r}: {exc}") from None
    if info.crs.is_projected:
        return info.crs
    # Geographic input: work in the UTM zone of the image centre, in metres.
    lon, lat = info.transform @ (info.width / 2, info.height / 2)
    zone = int((lon + 180) // 6) + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _open_all(cfg: OptConfig) -> tuple[list[RasterInfo], list[Path]]:
    """Check the inputs; their descriptions and source paths, sorted by date."""
    if len(cfg.images) < 2:
        raise InputError(f"GDM-OPT needs at least 2 images, got {len(cfg.images)}")
    infos = [open_info(p, band=cfg.band if _is_safe(p) else None) for p in cfg.images]
    for info in infos:
        if info.date is None:
            raise InputError(
                f"no acquisition date for {info.name}: put YYYYMMDD in the file name or set "
                "TIFFTAG_DATETIME"
            )
    order = sorted(range(len(infos)), key=lambda k: infos[k].date)  # type: ignore[arg-type, return-value]
    infos = [infos[k] for k in order]
    paths = [Path(cfg.images[k]) for k in order]
    for a, b in zip(infos, infos[1:], strict=False):
        if a.date == b.date:
            raise InputError(f"two images have the same date {a.date}: {a.name} and {b.name}")
    return infos, paths


def _is_safe(path: Path) -> bool:
    name = Path(path).name.upper()
    return name.endswith(".SAFE") or name.endswith(".ZIP")


def _output_transform(grid: Grid, wgrid: WindowGrid) -> Affine:
    """Geotransform of the output raster whose pixel (i, j) is centred on window (i, j)."""
    s = wgrid.step
    return grid.transform @ Affine.translation(
        wgrid.col0 + 0.5 - s / 2.0, wgrid.row0 + 0.5 - s / 2.0
    ) @ Affine.scale(s)


def _correlate_pair(
    ref: RasterInfo,
    sec: RasterInfo,
    grid: Grid,
    wgrid: WindowGrid,
    par: Resolved,
    block_windows: int,
    progress: Callable[[int], None],
    scl: tuple[RasterInfo | None, RasterInfo | None] = (None, None),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlate one pair block by block; returns (drow, dcol, score) on the window grid.

    Pixels that either date's scene classification masks (clouds, shadows...) are no-data
    in both images.
    """
    drow = np.full((wgrid.ny, wgrid.nx), np.nan, np.float32)
    dcol = np.full_like(drow, np.nan)
    score = np.zeros_like(drow)
    levels = pyramid_levels(par.window, par.search)
    margin = par.window // 2 + par.search + 2 * 2**levels + 2
    for block in iter_blocks(wgrid.nx, wgrid.ny, block_size=block_windows, overlap=0):
        core = block.core
        i0, j0 = int(core.row_off), int(core.col_off)
        ni, nj = int(core.height), int(core.width)
        r_first = wgrid.row0 + i0 * wgrid.step
        c_first = wgrid.col0 + j0 * wgrid.step
        r_last = r_first + (ni - 1) * wgrid.step
        c_last = c_first + (nj - 1) * wgrid.step
        top = max(0, r_first - margin)
        left = max(0, c_first - margin)
        bottom = min(grid.height, r_last + margin + 1)
        right = min(grid.width, c_last + margin + 1)
        win = Window(left, top, right - left, bottom - top)
        a = read_on_grid(ref, grid, win)
        b = read_on_grid(sec, grid, win)
        masked = np.zeros(a.shape, np.bool_)
        for scl_info in scl:
            if scl_info is not None:
                masked |= read_scl_mask(scl_info, grid, win)
        if masked.any():
            a[masked] = np.nan
            b[masked] = np.nan
        local = WindowGrid(r_first - top, c_first - left, wgrid.step, ni, nj)
        res = correlate_grid(a, b, local, par.window, par.search, method=par.method,
                             levels=levels, deform=par.deform, presmooth=par.presmooth,
                             model=par.subpixel, refine_taper=par.match_taper)
        drow[i0:i0 + ni, j0:j0 + nj] = res.drow
        dcol[i0:i0 + ni, j0:j0 + nj] = res.dcol
        score[i0:i0 + ni, j0:j0 + nj] = res.score
        progress(ni * nj)
    return drow, dcol, score


def _stable_mask(spec: str, grid: Grid, out_transform: Affine, shape: tuple[int, int]
                 ) -> np.ndarray | None | str:
    if spec == "none":
        return "none"
    if spec == "auto":
        return None
    path = Path(spec)
    info = open_info(path)
    out_grid = Grid(grid.crs, out_transform, shape[1], shape[0])
    mask = read_on_grid(info, out_grid, resampling="nearest")
    return np.isfinite(mask) & (mask != 0)


def _scl_of(cfg: OptConfig, info: RasterInfo, src: Path, grid: Grid) -> RasterInfo | None:
    """The checked scene classification of one input, when masking is asked and it has one."""
    if not cfg.scl_mask:
        return None
    scl = find_scl(src, info.date)
    if scl is not None:
        check_scl(scl, grid)
    return scl


def _detectors_of(cfg: OptConfig, par: Resolved, info: RasterInfo, src: Path,
                  out_grid: Grid) -> np.ndarray | None:
    """Detector number per output window of one input (-1: none), when it has a mask."""
    if par.artefacts not in ("detectors", "all"):
        return None
    name = find_detfoo(src, cfg.band.upper(), info.date)
    return None if name is None else read_detector_map(name, out_grid)


def _track_angle(cfg: OptConfig, detectors: list[np.ndarray | None]) -> float:
    """Track angle: the configured one, else measured on the detector strips, else 0."""
    if cfg.track_angle is not None:
        return float(cfg.track_angle)
    for det in detectors:
        if det is not None:
            angle = track_angle_from_labels(det.astype(np.int64), min_cells=8)
            if angle is not None and abs(angle) <= 45.0:
                return angle
    return 0.0


def _pair_labels(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """One label per combination of the two dates' detectors (-1 where either is none)."""
    if a is None and b is None:
        return None
    ref = a if a is not None else b
    assert ref is not None
    a = a if a is not None else np.zeros_like(ref)
    b = b if b is not None else np.zeros_like(ref)
    lab = a.astype(np.int64) * 16 + b.astype(np.int64)
    return np.where((a < 0) | (b < 0), -1, lab)


def _remove_artefacts(drow: np.ndarray, dcol: np.ndarray, valid: np.ndarray,
                      stable: np.ndarray | None | str, par: Resolved,
                      labels: np.ndarray | None, angle: float, what: str,
                      explicit: bool = True
                      ) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray | None]:
    """Fit and subtract jitter and detector offsets.

    Returns the corrected components, the fit's summary for the report and the windows
    the fit kept as stable ground (the deforming zone rejected).

    With ``stable='none'`` (the whole scene may move) only the varying part of the
    artefacts is removed: the fit's mean over the windows used is put back. When the fit
    is impossible (too few stable windows) it is bad input if the user asked for it
    (``explicit``), else (a preset's default) the pair is left as it is and the report
    says why.
    """
    usable = valid & np.isfinite(drow) & np.isfinite(dcol)
    if isinstance(stable, np.ndarray):
        usable &= stable
    jitter = par.artefacts in ("jitter", "all")
    dets = par.artefacts in ("detectors", "all")
    try:
        fit = estimate_artefacts(np.stack([drow, dcol]), usable,
                                 labels if dets else None, jitter=jitter, angle_deg=angle,
                                 find_detectors=dets and labels is None)
    except ValueError as exc:
        if explicit:
            raise InputError(f"artefact correction impossible for {what}: {exc}") from None
        return drow, dcol, {"mode": par.artefacts, "skipped": str(exc)}, None
    known_off = fit.offsets[:, fit.labels >= 0]
    spread = float(np.max(np.abs(known_off - np.median(known_off, axis=1, keepdims=True)))
                   ) if known_off.size else 0.0
    largest = max(float(np.max(fit.jitter_amplitude)), spread)
    if largest > MAX_ARTEFACT_PX:
        # Sentinel-2 jitter and detector offsets are a few tenths of a pixel: a larger
        # fit is ground motion that the stable ground did not exclude.
        return drow, dcol, {"mode": par.artefacts, "skipped": (
            f"fitted artefacts of {largest:.2f} px exceed {MAX_ARTEFACT_PX} px: ground "
            "motion, not sensor artefacts (give a stable-area mask)")}, None
    corr = fit.correction
    if isinstance(stable, str):  # 'none': keep the global offset
        corr = corr - corr[:, fit.used].mean(axis=1)[:, None, None]
    new_r = np.where(valid, drow - corr[0], np.nan).astype(np.float32)
    new_c = np.where(valid, dcol - corr[1], np.nan).astype(np.float32)
    known = fit.labels >= 0
    summary = {
        "mode": par.artefacts,
        "track_angle_deg": angle,
        "detectors_from": ("footprints" if labels is not None else
                           "estimated steps" if dets else None),
        "detector_boundaries_windows": [float(b) for b in fit.boundaries],
        "jitter_amplitude_px": {"row": float(fit.jitter_amplitude[0]),
                                "col": float(fit.jitter_amplitude[1])},
        "detector_offsets_px": [
            {"label": int(lab), "row": float(fit.offsets[0, k]),
             "col": float(fit.offsets[1, k]), "windows": int(fit.counts[k])}
            for k, lab in enumerate(fit.labels) if known[k]],
        "rejected": list(fit.rejected),
        "windows_used": int(np.count_nonzero(fit.used)),
        "correction_rms_px": float(np.sqrt(np.mean(corr[:, usable] ** 2))) if usable.any()
        else 0.0,
    }
    return new_r, new_c, summary, fit.used


def _pair_weight(r: PairResult) -> float:
    """Weight of a pair in the time series: 1 / sigma^2 (pixels), sigma at least 0.01 px."""
    sigma = r.quality.get("sigma_px", float("nan"))
    if not np.isfinite(sigma):
        return 1.0
    return float(1.0 / max(sigma, 0.01) ** 2)


def _median_score(r: PairResult) -> float:
    """Median score of the pair's valid windows (1 when there is none)."""
    ok = np.isfinite(r.drow) & np.isfinite(r.score)
    return float(max(np.median(r.score[ok]), 1e-3)) if ok.any() else 1.0


def _nmad(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def _pair_quality(drow: np.ndarray, dcol: np.ndarray, valid: np.ndarray,
                  stable: np.ndarray | None | str, kept: np.ndarray | None,
                  resolution: float) -> dict:
    """Per-pair quality: valid fraction and the robust scatter of the corrected field.

    The scatter is the NMAD of both components on stable ground: the stable mask if one
    was given, else the windows the artefact fit kept (deforming zone rejected). Without
    either, it is measured on the differences between neighbouring windows (divided by
    sqrt 2), which smooth motion hardly changes.
    """
    ok = valid & np.isfinite(drow) & np.isfinite(dcol)
    if isinstance(stable, np.ndarray):
        ok_st = ok & stable
    elif kept is not None:
        ok_st = ok & kept
    else:
        ok_st = None
    if ok_st is not None and np.count_nonzero(ok_st) >= 10:
        sig = [_nmad(c[ok_st]) for c in (drow, dcol)]
        source = "stable ground"
    else:
        sig = []
        for c in (drow, dcol):
            d = np.concatenate([np.diff(c, axis=0).ravel(), np.diff(c, axis=1).ravel()])
            d = d[np.isfinite(d)]
            sig.append(_nmad(d) / np.sqrt(2.0))
        source = "neighbour differences"
    sigma = float(np.sqrt(0.5 * (sig[0] ** 2 + sig[1] ** 2))) if np.all(
        np.isfinite(sig)) else float("nan")
    return {"valid_fraction": float(ok.mean()), "sigma_px": sigma,
            "sigma_m": sigma * resolution, "sigma_row_px": float(sig[0]),
            "sigma_col_px": float(sig[1]), "sigma_from": source}


def _to_metres(transform: Affine, drow: np.ndarray, dcol: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel displacements to map East/North metres with the grid's linear part."""
    east = transform.a * dcol + transform.b * drow
    north = transform.d * dcol + transform.e * drow
    return east.astype(np.float32), north.astype(np.float32)


def _decimal_years(dates: list[dt.date]) -> np.ndarray:
    t0 = dates[0]
    return np.array([(d - t0).days / 365.25 for d in dates], dtype=np.float64)


def run(cfg: OptConfig, progress: Progress | None = None) -> OptOutputs:
    """Run a GDM-OPT job and write its products into ``cfg.out``.

    Raises
    ------
    InputError
        For bad input (fewer than two images, unreadable file, no overlap, no date...).

    """
    report_progress = progress or (lambda frac, msg: None)
    par = cfg.resolved()
    if par.window % 2:
        raise InputError(f"window must be even, got {par.window}")
    if par.stable not in ("none", "auto") and not Path(par.stable).exists():
        raise InputError(f"stable-area mask not found: {par.stable}")
    infos, sources = _open_all(cfg)
    dates = [i.date for i in infos]
    assert all(d is not None for d in dates)
    crs = _target_crs(infos[0], cfg.crs)
    grid = common_grid(infos, resolution=cfg.resolution, crs=crs)
    wgrid = window_grid(grid.height, grid.width, par.window, par.step)
    if wgrid.ny < 3 or wgrid.nx < 3:
        raise InputError(
            f"overlap of the images ({grid.width}x{grid.height} px) is too small for "
            f"{par.window}-px windows every {par.step} px"
        )
    if len(infos) == 2:
        pairs = [(0, 1)]
    else:
        pairs = select_pairs(dates, mode=cfg.pairs, max_span_days=cfg.max_span_days,  # type: ignore[arg-type]
                             min_span_days=cfg.min_span_days, neighbours=cfg.neighbours)
        if not pairs:
            raise InputError("no pair of dates satisfies the span limits")
    out_transform = _output_transform(grid, wgrid)
    shape = (wgrid.ny, wgrid.nx)
    stable = _stable_mask(par.stable, grid, out_transform, shape)
    out_grid = Grid(grid.crs, out_transform, shape[1], shape[0])
    scls = [_scl_of(cfg, info, src, grid) for info, src in zip(infos, sources, strict=True)]
    detectors = [_detectors_of(cfg, par, info, src, out_grid)
                 for info, src in zip(infos, sources, strict=True)]
    angle = _track_angle(cfg, detectors)

    total = len(pairs) * wgrid.ny * wgrid.nx
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        report_progress(0.9 * done / total, "correlating")

    results: list[PairResult] = []
    for i, j in pairs:
        drow, dcol, score = _correlate_pair(infos[i], infos[j], grid, wgrid, par,
                                            cfg.block_windows, tick, (scls[i], scls[j]))
        valid = reject_outliers(drow, dcol, score, par.min_score, radius=par.outlier_radius,
                                nmad_k=par.nmad_k) if par.outlier_radius > 0 else (
            np.isfinite(drow) & (score >= par.min_score))
        cloudy = np.zeros(shape, np.bool_)
        for k in (i, j):
            if scls[k] is not None:
                cloudy |= read_scl_mask(scls[k], out_grid)  # type: ignore[arg-type]
        valid &= ~cloudy
        drow = np.where(valid, drow, np.nan).astype(np.float32)
        dcol = np.where(valid, dcol, np.nan).astype(np.float32)
        offset = (0.0, 0.0)
        if not isinstance(stable, str):
            try:
                offset = stable_offset(drow, dcol, valid, stable)
            except ValueError as exc:
                raise InputError(f"stable-area correction impossible: {exc}") from None
            drow, dcol = apply_offset(drow, dcol, offset)
        art = None
        kept = None
        if par.artefacts != "none":
            drow, dcol, art, kept = _remove_artefacts(
                drow, dcol, valid, stable, par, _pair_labels(detectors[i], detectors[j]),
                angle, f"{dates[i]} to {dates[j]}", explicit=cfg.artefacts is not None)
        quality = _pair_quality(drow, dcol, valid, stable, kept, grid.resolution)
        quality["scl_masked_fraction"] = float(cloudy.mean())
        results.append(PairResult(i, j, drow, dcol, score, offset, float(valid.mean()),
                                  quality, art))

    report_progress(0.9, "writing products")
    with ProductDir(cfg.out) as stage:
        outputs = _write_products(stage, cfg, par, infos, grid, out_transform, results)
    outputs = _relocate(outputs, stage, Path(cfg.out))
    report_progress(1.0, "done")
    return outputs


def _write_products(stage: Path, cfg: OptConfig, par: Resolved, infos: list[RasterInfo],
                    grid: Grid, transform: Affine, results: list[PairResult]) -> OptOutputs:
    dates = [i.date for i in infos]
    crs = grid.crs
    n_dates = len(infos)

    params = {"WINDOW": str(par.window), "STEP": str(par.step), "SEARCH": str(par.search),
              "METHOD": par.method, "SUBPIXEL": par.subpixel}
    span_tags = {"START_DATE": f"{dates[0]}", "END_DATE": f"{dates[-1]}"}

    def cog(file: str, key: str, data: np.ndarray, **extra: str) -> Path:
        meta = opt_layer(key)
        reference = f"{dates[0]}" if meta.reference else None
        return write_cog(stage / file, data, crs, transform,
                         descriptions=meta.descriptions(dates if meta.per_date else None),
                         tags=meta.tags(reference, **params, **extra))

    ts_paths: dict[str, Path] = {}
    pair_paths: list[Path] = []
    residual_path = None
    if n_dates == 2:
        r = results[0]
        east, north = _to_metres(transform_pixel(grid), r.drow, r.dcol)
        score = r.score
    else:
        pairs = np.array([(r.i, r.j) for r in results], dtype=np.int64)
        t_years = _decimal_years(dates)  # type: ignore[arg-type]
        # Inverse variances: 1/sigma^2 of the pair, modulated per window by its score
        # relative to the pair's median score (so the typical window keeps 1/sigma^2).
        weights = np.stack([np.where(np.isfinite(r.drow), np.maximum(r.score, 1e-3), 0)
                            / _median_score(r) * _pair_weight(r)
                            for r in results]).astype(np.float32)
        ts = {}
        for comp in ("drow", "dcol"):
            obs = np.stack([getattr(r, comp) for r in results]).astype(np.float32)
            ts[comp] = invert_timeseries(pairs, obs, weights, t_years, inverse_variance=True)
        ser_e, ser_n = _to_metres(transform_pixel(grid), ts["drow"].series, ts["dcol"].series)
        vel_e, vel_n = _to_metres(transform_pixel(grid), ts["drow"].velocity,
                                  ts["dcol"].velocity)
        res_px = np.hypot(ts["drow"].residual_rms, ts["dcol"].residual_rms)
        tr = transform_pixel(grid)

        def std_m(s_row: np.ndarray, s_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            e = np.hypot(tr.a * s_col, tr.b * s_row).astype(np.float32)
            n = np.hypot(tr.d * s_col, tr.e * s_row).astype(np.float32)
            return e, n

        ser_std_e, ser_std_n = std_m(ts["drow"].series_std, ts["dcol"].series_std)  # type: ignore[arg-type]
        # Velocity sigma: the larger of the formal one (propagated through the network)
        # and the scatter of the series about the line (date-specific errors, nonlinearity).
        vs = {c: np.fmax(ts[c].velocity_std, ts[c].velocity_formal_std)  # type: ignore[arg-type]
              for c in ("drow", "dcol")}
        vel_std_e, vel_std_n = std_m(vs["drow"], vs["dcol"])

        def table(key: str, **extra: str) -> dict:
            meta = opt_layer(key)
            return {"meta": meta, "tags": {**params, **extra},
                    "reference": f"{dates[0]}" if meta.reference else None}

        # Through the product-writer seam: the COGs and timeseries.nc (CF-1.8) beside.
        written = write_layers(stage, crs, transform, {
            "timeseries_east": ("displacement_east", ser_e, table("timeseries_east")),
            "timeseries_north": ("displacement_north", ser_n, table("timeseries_north")),
            "velocity_east": ("velocity_east", vel_e, table("velocity_east", **span_tags)),
            "velocity_north": ("velocity_north", vel_n, table("velocity_north", **span_tags)),
            "residual": ("residual", (res_px * grid.resolution).astype(np.float32),
                         table("residual", **span_tags)),
            "timeseries_east_std": ("displacement_east_std", ser_std_e,
                                    table("timeseries_east_std")),
            "timeseries_north_std": ("displacement_north_std", ser_std_n,
                                     table("timeseries_north_std")),
            "velocity_std_east": ("velocity_east_std", vel_std_e,
                                  table("velocity_std_east", **span_tags)),
            "velocity_std_north": ("velocity_north_std", vel_std_n,
                                   table("velocity_std_north", **span_tags)),
        }, dates=dates, attrs={"title": "GDM-OPT displacement time series",
                               "comment": "East and North positive; later minus earlier"})
        ts_paths.update({k: v for k, v in written.items() if k != "residual"})
        residual_path = written["residual"]
        east, north = ser_e[-1], ser_n[-1]
        score = np.mean(np.stack([r.score for r in results]), axis=0).astype(np.float32)
        (stage / "pairs").mkdir(exist_ok=True)
        for r in results:
            e, n = _to_metres(transform_pixel(grid), r.drow, r.dcol)
            tag = f"{dates[r.i]:%Y%m%d}_{dates[r.j]:%Y%m%d}"  # type: ignore[str-format]
            pair = {"START_DATE": f"{dates[r.i]}", "END_DATE": f"{dates[r.j]}"}
            pair_paths.append(cog(f"pairs/{tag}_east.tif", "pair_east", e, **pair))
            pair_paths.append(cog(f"pairs/{tag}_north.tif", "pair_north", n, **pair))
            pair_paths.append(cog(f"pairs/{tag}_score.tif", "pair_score", r.score, **pair))
    magnitude = np.hypot(east, north).astype(np.float32)
    span = f"{dates[0]} to {dates[-1]}"
    east_p = cog("east.tif", "east", east, **span_tags)
    north_p = cog("north.tif", "north", north, **span_tags)
    mag_p = cog("magnitude.tif", "magnitude", magnitude, **span_tags)
    score_p = cog("score.tif", "score",
                  np.where(np.isfinite(score), score, 0).astype(np.float32), **span_tags)

    looks = [quicklook_layer(path, stage / f"{key}.png", opt_layer(key), title)
             for key, path, title in (
                 ("east", east_p, f"East displacement {span}"),
                 ("north", north_p, f"North displacement {span}"),
                 ("magnitude", mag_p, f"Displacement magnitude {span}"),
                 ("score", score_p, "Correlation score"))]
    if "velocity_east" in ts_paths:
        looks += [quicklook_layer(ts_paths[key], stage / f"{key}.png", opt_layer(key),
                                  f"{title} velocity {span}")
                  for key, title in (("velocity_east", "East"), ("velocity_north", "North"))]

    valid = [r.valid_fraction for r in results]
    report = {
        "process": "gdm-opt",
        "preset": cfg.preset,
        "parameters": par.model_dump(),
        "inputs": [{"name": i.name, "path": i.path, "date": i.date.isoformat()}  # type: ignore[union-attr]
                   for i in infos],
        "grid": {"crs": grid.crs.to_string(), "resolution_m": grid.resolution,
                 "width": grid.width, "height": grid.height},
        "pairs": [{"earlier": dates[r.i].isoformat(), "later": dates[r.j].isoformat(),  # type: ignore[union-attr]
                   "valid_fraction": r.valid_fraction,
                   "stable_offset_px": {"row": r.offset[0], "col": r.offset[1]},
                   "quality": r.quality, "weight": _pair_weight(r), "artefacts": r.artefacts}
                  for r in results],
        "valid_fraction": float(np.mean(valid)),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    report_p = write_text(stage / "report.json", json.dumps(report, indent=2))

    assets: dict[str, dict] = {}
    media_cog = "image/tiff; application=geotiff; profile=cloud-optimized"
    for name, p in [("east", east_p), ("north", north_p), ("magnitude", mag_p),
                    ("score", score_p), *ts_paths.items()]:
        assets[name] = {"href": p.name, "title": name.replace("_", " "),
                        "roles": list(opt_layer(name).roles), "type": media_cog}
    if residual_path is not None:
        assets["residual"] = {"href": residual_path.name, "title": "RMS pair misfit",
                              "roles": ["data"], "type": media_cog}
    for q in looks:
        assets[f"{q.stem}_quicklook"] = {"href": q.name, "title": f"{q.stem} quicklook",
                                         "roles": ["overview"], "type": "image/png"}
    assets["report"] = {"href": report_p.name, "title": "job report", "roles": ["metadata"],
                        "type": "application/json"}
    start = dt.datetime.combine(dates[0], dt.time(), dt.UTC)  # type: ignore[arg-type]
    end = dt.datetime.combine(dates[-1], dt.time(), dt.UTC)  # type: ignore[arg-type]
    ny, nx = east.shape
    item_p = write_item(stage / "item.json", f"gdm-opt-{dates[0]:%Y%m%d}-{dates[-1]:%Y%m%d}",  # type: ignore[str-format]
                        crs, transform, nx, ny, assets, start, end,
                        properties={"gdm:process": "gdm-opt", "gdm:preset": cfg.preset,
                                    "gdm:window": par.window, "gdm:step": par.step})
    return OptOutputs(
        out_dir=stage, east=east_p, north=north_p, magnitude=mag_p, score=score_p,
        item=item_p, report=report_p, quicklooks=looks,
        timeseries_east=ts_paths.get("timeseries_east"),
        timeseries_north=ts_paths.get("timeseries_north"),
        velocity_east=ts_paths.get("velocity_east"),
        velocity_north=ts_paths.get("velocity_north"),
        residual=residual_path, pair_products=pair_paths,
        timeseries_east_std=ts_paths.get("timeseries_east_std"),
        timeseries_north_std=ts_paths.get("timeseries_north_std"),
        velocity_std_east=ts_paths.get("velocity_std_east"),
        velocity_std_north=ts_paths.get("velocity_std_north"),
    )


def transform_pixel(grid: Grid) -> Affine:
    """The common grid's transform (its linear part converts pixels to map metres)."""
    return grid.transform


def _relocate(outputs: OptOutputs, stage: Path, out: Path) -> OptOutputs:
    """Rewrite staging paths to their final place in the output folder."""

    def move(p: Path | None) -> Path | None:
        return None if p is None else out / p.relative_to(stage)

    return OptOutputs(
        out_dir=out, east=move(outputs.east), north=move(outputs.north),  # type: ignore[arg-type]
        magnitude=move(outputs.magnitude), score=move(outputs.score),  # type: ignore[arg-type]
        item=move(outputs.item), report=move(outputs.report),  # type: ignore[arg-type]
        quicklooks=[move(q) for q in outputs.quicklooks],  # type: ignore[misc]
        timeseries_east=move(outputs.timeseries_east),
        timeseries_north=move(outputs.timeseries_north),
        velocity_east=move(outputs.velocity_east), velocity_north=move(outputs.velocity_north),
        residual=move(outputs.residual),
        pair_products=[move(p) for p in outputs.pair_products],  # type: ignore[misc]
        timeseries_east_std=move(outputs.timeseries_east_std),
        timeseries_north_std=move(outputs.timeseries_north_std),
        velocity_std_east=move(outputs.velocity_std_east),
        velocity_std_north=move(outputs.velocity_std_north),
    )
