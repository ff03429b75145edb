"""The GDM-SAR chain: network, interferograms, unwrapping, SBAS inversion, products.

Steps (each bounded in memory: full-resolution SLCs are read in blocks of rows, the
inversion reads the pair rasters window by window):

1. read and check the stack; select the pair network and check its connectivity;
2. per pair: cross-multiply and multilook (one pass), debias the coherence, filter
   (Goldstein-Werner) and write ``wrapped`` and ``coherence``;
3. choose the reference pixel (most coherent window of the mean coherence);
4. per pair: unwrap, keep the component holding the reference, subtract the
   reference value, write ``unwrapped`` and ``conncomp``;
5. block by block: SBAS inversion (NSBAS regularisation, coherence weights, DEM
   error), triplet misclosure, quality maps; write the time series and velocity;
6. quicklooks, network plot, report and STAC item.

Everything is written into a staging folder published only on success.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from gdm_sar.config import SarConfig
from gdm_sar.stack import Stack, read_stack
from gdmcore import InputError, Progress
from gdmio.cog import CogWriter, write_cog
from gdmio.products import ProductDir
from gdmio.quicklook import quicklook
from gdmio.stac import write_item
from kernels.insar import coherence_debias, goldstein, interferogram, reference_point
from kernels.sbas import (
    closure_triplets,
    coherence_weights,
    invert_sbas,
    triplet_misclosure,
    years_since_first,
)
from kernels.timeseries import network_components, select_pairs
from kernels.unwrap import unwrap

__all__ = ["SarOutputs", "run", "select_network", "temporal_fit"]

_COG = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclass
class SarOutputs:
    """Paths of the products written by :func:`run`."""

    out_dir: Path
    velocity: Path
    timeseries: Path
    velocity_std: Path
    temporal_coherence: Path
    residual: Path
    misclosure: Path
    mean_coherence: Path
    dem_error: Path | None
    network: Path
    item: Path
    report: Path
    quicklooks: list[Path] = field(default_factory=list)
    interferograms: list[Path] = field(default_factory=list)


def select_network(stack: Stack, cfg: SarConfig) -> list[tuple[int, int]]:
    """The pairs of the job, with the baseline limits applied and connectivity checked.

    Raises
    ------
    InputError
        When a date is in no pair (the series cannot reach it) or no pair is left.

    """
    limit = {} if cfg.max_bperp is None else {"bperp": stack.bperp, "max_bperp": cfg.max_bperp}
    try:
        pairs = select_pairs(stack.dates, cfg.network, max_days=cfg.max_days,
                             neighbours=cfg.neighbours, **limit)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(f"pair selection: {exc}") from None
    if not pairs:
        raise InputError("no pair satisfies the network limits (max_days / max_bperp)")
    used = {k for p in pairs for k in p}
    lonely = [stack.dates[k].isoformat() for k in range(len(stack.dates)) if k not in used]
    if lonely:
        raise InputError(f"the network cannot be connected: date(s) {', '.join(lonely)} "
                         "are in no pair (relax max_days / max_bperp or add neighbours)")
    return pairs


def _pair_name(stack: Stack, i: int, j: int) -> str:
    return f"{stack.dates[i]:%Y%m%d}_{stack.dates[j]:%Y%m%d}"


def run(cfg: SarConfig, progress: Progress | None = None) -> SarOutputs:
    """Run a GDM-SAR job and write its products into ``cfg.out``.

    Raises
    ------
    InputError
        On bad input (stack, network, reference point), before anything is published.

    """
    # GDAL's block cache defaults to 5 % of the RAM: bound it with the job's block budget
    # (the inversion reads hundreds of pair rasters window by window).
    with rasterio.Env(GDAL_CACHEMAX=cfg.block_mb * 2**20):
        return _run(cfg, progress)


def _run(cfg: SarConfig, progress: Progress | None) -> SarOutputs:
    def report_progress(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), message)

    stack = read_stack(cfg.stack)
    pairs = select_network(stack, cfg)
    n_comp = len(network_components(len(stack.dates), pairs))
    la, lr = cfg.azimuth_looks, cfg.range_looks
    ny, nx = stack.height // la, stack.width // lr
    if ny < 8 or nx < 8:
        raise InputError(f"the multilooked grid {nx}x{ny} is too small: fewer looks please")
    transform = stack.transform * stack.transform.scale(lr, la)
    crs = stack.crs
    report_progress(0.0, f"{len(stack.dates)} dates, {len(pairs)} pairs, "
                    f"{n_comp} network component(s)")

    with ProductDir(cfg.out) as stage:
        ifg_dirs = [stage / "interferograms" / _pair_name(stack, i, j) for i, j in pairs]
        mean_coh = _form_interferograms(stack, pairs, cfg, ifg_dirs, crs, transform,
                                        lambda f, m: report_progress(0.4 * f, m))
        mean_coh_p = write_cog(stage / "mean_coherence.tif", mean_coh, crs, transform)
        if cfg.reference is not None:
            ref = cfg.reference
            if not (0 <= ref[0] < ny and 0 <= ref[1] < nx):
                raise InputError(f"reference pixel {ref} is outside the {ny}x{nx} "
                                 "multilooked grid")
        else:
            try:
                ref = reference_point(mean_coh, mean_coh >= cfg.min_coherence)
            except ValueError:
                raise InputError("no coherent area to place the reference point in "
                                 f"(mean coherence below {cfg.min_coherence} everywhere)") from None
        unw_stats = _unwrap_pairs(stack, pairs, cfg, ifg_dirs, ref,
                                  lambda f, m: report_progress(0.4 + 0.35 * f, m))
        report_progress(0.75, "time-series inversion")
        paths, inv_stats = _invert(stack, pairs, cfg, ifg_dirs, stage, crs, transform,
                                   mean_coh, lambda f, m: report_progress(0.75 + 0.2 * f, m))
        network_p = _network_plot(stack, pairs, stage / "network.png")
        span = f"{stack.dates[0]} to {stack.dates[-1]}"
        looks = [
            quicklook(paths["velocity"], stage / "velocity.png", f"LOS velocity {span}",
                      "m/yr"),
            quicklook(paths["temporal_coherence"], stage / "temporal_coherence.png",
                      "Temporal coherence", "", cmap="gray", symmetric=False, vmin=0, vmax=1),
            quicklook(paths["timeseries"], stage / "displacement.png",
                      f"LOS displacement {span}", "m", band=len(stack.dates)),
        ]
        report = {
            "process": "gdm-sar",
            "parameters": json.loads(cfg.model_dump_json(exclude={"stack", "out"})),
            "dates": [d.isoformat() for d in stack.dates],
            "perpendicular_baselines_m": np.round(stack.bperp, 3).tolist(),
            "wavelength_m": stack.wavelength,
            "network": {"pairs": [_pair_name(stack, i, j) for i, j in pairs],
                        "components": n_comp},
            "reference_pixel": {"row": int(ref[0]), "col": int(ref[1])},
            "grid": {"width": nx, "height": ny, "looks": [la, lr],
                     "crs": crs.to_string() if crs else None},
            "unwrapping": unw_stats,
            "inversion": inv_stats,
            "conventions": "LOS positive towards the satellite; ifg_ij = slc_i conj(slc_j)",
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        report_p = stage / "report.json"
        report_p.write_text(json.dumps(report, indent=2))
        assets = {name: {"href": p.name, "title": name.replace("_", " "), "roles": ["data"],
                         "type": _COG} for name, p in paths.items() if p is not None}
        assets["mean_coherence"] = {"href": mean_coh_p.name, "title": "mean coherence",
                                    "roles": ["data"], "type": _COG}
        for q in [*looks, network_p]:
            assets[f"{q.stem}_quicklook"] = {"href": q.name, "title": q.stem,
                                             "roles": ["overview"], "type": "image/png"}
        assets["report"] = {"href": "report.json", "title": "job report",
                            "roles": ["metadata"], "type": "application/json"}
        start = dt.datetime.combine(stack.dates[0], dt.time(), dt.UTC)
        end = dt.datetime.combine(stack.dates[-1], dt.time(), dt.UTC)
        item_p = write_item(stage / "item.json",
                            f"gdm-sar-{stack.dates[0]:%Y%m%d}-{stack.dates[-1]:%Y%m%d}",
                            crs or "EPSG:4326", transform, nx, ny, assets, start, end,
                            properties={"gdm:process": "gdm-sar",
                                        "sar:product_type": "SLC stack",
                                        "gdm:pairs": len(pairs)})
    out = Path(cfg.out)
    report_progress(1.0, "done")

    def final(p: Path) -> Path:
        return out / p.relative_to(stage)

    return SarOutputs(
        out_dir=out, velocity=final(paths["velocity"]), timeseries=final(paths["timeseries"]),
        velocity_std=final(paths["velocity_std"]),
        temporal_coherence=final(paths["temporal_coherence"]),
        residual=final(paths["residual"]), misclosure=final(paths["misclosure"]),
        mean_coherence=final(mean_coh_p),
        dem_error=final(paths["dem_error"]) if paths.get("dem_error") else None,
        network=final(network_p), item=final(item_p), report=final(report_p),
        quicklooks=[final(q) for q in looks] + [final(network_p)],
        interferograms=[final(d) for d in ifg_dirs],
    )


def _form_interferograms(stack: Stack, pairs: list[tuple[int, int]], cfg: SarConfig,
                         ifg_dirs: list[Path], crs, transform, progress: Progress
                         ) -> np.ndarray:
    """Wrapped (filtered) phase and coherence of every pair; returns the mean coherence."""
    la, lr = cfg.azimuth_looks, cfg.range_looks
    ny, nx = stack.height // la, stack.width // lr
    rows = max(la, (cfg.block_mb * 2**20 // (16 * stack.width)) // la * la)
    coh_sum = np.zeros((ny, nx), np.float64)
    coh_n = np.zeros((ny, nx), np.int32)
    n_looks = la * lr
    for p, ((i, j), folder) in enumerate(zip(pairs, ifg_dirs, strict=True)):
        ifg = np.empty((ny, nx), np.complex64)
        coh = np.empty((ny, nx), np.float32)
        with rasterio.open(stack.paths[i]) as di, rasterio.open(stack.paths[j]) as dj:
            for r0 in range(0, ny * la, rows):
                h = min(rows, ny * la - r0)
                win = Window(0, r0, nx * lr, h)
                a = di.read(1, window=win)
                b = dj.read(1, window=win)
                blk_ifg, blk_coh = interferogram(a, b, (la, lr))
                ifg[r0 // la: r0 // la + blk_ifg.shape[0]] = blk_ifg
                coh[r0 // la: r0 // la + blk_coh.shape[0]] = blk_coh
        if n_looks >= 2:
            coh = coherence_debias(coh, n_looks)
        if cfg.filter_alpha > 0:
            ifg = goldstein(ifg, cfg.filter_alpha)
        phase = np.angle(ifg).astype(np.float32)
        phase[~np.isfinite(coh)] = np.nan
        write_cog(folder / "wrapped.tif", phase, crs, transform,
                  tags={"UNITS": "rad", "PAIR": folder.name})
        write_cog(folder / "coherence.tif", coh, crs, transform,
                  tags={"LOOKS": str(n_looks), "DEBIASED": str(n_looks >= 2)})
        ok = np.isfinite(coh)
        coh_sum[ok] += coh[ok]
        coh_n += ok
        progress((p + 1) / len(pairs), f"interferogram {folder.name}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return (coh_sum / coh_n).astype(np.float32)


def _unwrap_pairs(stack: Stack, pairs: list[tuple[int, int]], cfg: SarConfig,
                  ifg_dirs: list[Path], ref: tuple[int, int], progress: Progress) -> dict:
    """Unwrap every pair and reference it to ``ref``; returns per-pair statistics."""
    stats = []
    r, c = ref
    for p, folder in enumerate(ifg_dirs):
        with rasterio.open(folder / "wrapped.tif") as ds:
            phase = ds.read(1)
            crs, transform = ds.crs, ds.transform
        with rasterio.open(folder / "coherence.tif") as ds:
            coh = ds.read(1)
        try:
            res = unwrap(phase, coh, np.isfinite(phase),
                         backend=cfg.unwrapper, nlooks=cfg.azimuth_looks * cfg.range_looks,
                         min_coherence=cfg.min_coherence)
        except ImportError as exc:
            raise InputError(str(exc)) from None
        unw, labels = res.unwrapped, res.conncomp
        win = (slice(max(r - 2, 0), r + 3), slice(max(c - 2, 0), c + 3))
        ref_labels = labels[win][labels[win] > 0]
        if ref_labels.size:
            keep = int(np.bincount(ref_labels).argmax())
            unw = np.where(labels == keep, unw, np.nan)
            in_ref = labels[win] == keep
            unw = unw - float(np.nanmean(np.where(in_ref, unw[win], np.nan)))
        else:
            unw = np.full(unw.shape, np.nan, np.float32)
        write_cog(folder / "unwrapped.tif", unw.astype(np.float32), crs, transform,
                  tags={"UNITS": "rad", "REFERENCE_PIXEL": f"{r},{c}",
                        "UNWRAPPER": cfg.unwrapper})
        write_cog(folder / "conncomp.tif", labels.astype(np.uint16), crs, transform,
                  nodata=None, dtype="uint16")
        stats.append({"pair": folder.name, "components": int(labels.max()),
                      "unwrapped_fraction": float(np.isfinite(unw).mean())})
        progress((p + 1) / len(ifg_dirs), f"unwrapped {folder.name}")
    return {"pairs": stats,
            "mean_unwrapped_fraction": float(np.mean([s["unwrapped_fraction"] for s in stats]))}


def _invert(stack: Stack, pairs: list[tuple[int, int]], cfg: SarConfig, ifg_dirs: list[Path],
            stage: Path, crs, transform, mean_coh: np.ndarray, progress: Progress
            ) -> tuple[dict[str, Path | None], dict]:
    ny, nx = mean_coh.shape
    n_dates, n_pairs = len(stack.dates), len(pairs)
    to_m = -stack.wavelength / (4 * math.pi)
    extra = None
    if cfg.dem_error:
        sin_th = math.sin(math.radians(stack.incidence_deg))
        extra = (stack.bperp / (stack.slant_range * sin_th))[:, None]
        if np.ptp(stack.bperp) < 1.0:
            extra = None  # baselines too similar to see a height error
    t_years = years_since_first(stack.dates)
    triplets = closure_triplets(pairs)
    rows = int(max(1, min(ny, cfg.block_mb * 2**20 // (4 * 4 * n_pairs * nx))))
    tags = {"UNITS": "m", "CONVENTION": "LOS, positive towards the satellite",
            "REFERENCE": "interferograms referenced to the reference pixel"}
    names = ["velocity", "velocity_std", "temporal_coherence", "residual", "misclosure"]
    if extra is not None:
        names.append("dem_error")
    paths: dict[str, Path | None] = {n: stage / f"{n}.tif" for n in names}
    paths["timeseries"] = stage / "timeseries.tif"
    writers = {n: CogWriter(paths[n], nx, ny, 1, crs, transform, tags=tags)  # type: ignore[arg-type]
               for n in names}
    writers["timeseries"] = CogWriter(paths["timeseries"], nx, ny, n_dates, crs, transform,  # type: ignore[arg-type]
                                      descriptions=[d.isoformat() for d in stack.dates],
                                      tags=tags)
    unw_ds = [rasterio.open(d / "unwrapped.tif") for d in ifg_dirs]
    coh_ds = [rasterio.open(d / "coherence.tif") for d in ifg_dirs]
    bad_triplet_px = 0
    triplet_px = 0
    masked_px = 0
    try:
        for w in writers.values():
            w.__enter__()
        for r0 in range(0, ny, rows):
            h = min(rows, ny - r0)
            win = Window(0, r0, nx, h)
            obs = np.stack([ds.read(1, window=win) for ds in unw_ds])
            obs *= np.float32(to_m)
            # in place: the block holds obs and the coherence-derived weights only
            weights = np.stack([ds.read(1, window=win) for ds in coh_ds])
            obs[~(weights >= cfg.min_coherence)] = np.nan
            coherence_weights(weights)
            res = invert_sbas(obs, pairs, stack.dates, weights=weights,
                              wavelength=stack.wavelength, gap_weight=cfg.gap_weight)
            series = res.series
            velocity, velocity_std = res.velocity, res.velocity_std
            if extra is not None:
                velocity, velocity_std, dz = temporal_fit(series, t_years, extra)
            # Unreliable pixels are masked in the products, as MintPy does.
            unreliable = ~(res.temporal_coherence >= cfg.min_temporal_coherence) | \
                ~(mean_coh[r0:r0 + h] >= cfg.min_mean_coherence)
            masked_px += int(unreliable.sum())
            series = np.where(unreliable, np.nan, series)
            velocity = np.where(unreliable, np.nan, velocity)
            velocity_std = np.where(unreliable, np.nan, velocity_std)
            if extra is not None:
                dz = np.where(unreliable, np.nan, dz)
            if triplets:
                mis, checked, over = triplet_misclosure(obs, triplets, stack.wavelength / 4)
                triplet_px += checked
                bad_triplet_px += over
            else:
                mis = np.full((h, nx), np.nan, np.float32)
            writers["timeseries"].write(series, win)
            writers["velocity"].write(velocity, win)
            writers["velocity_std"].write(velocity_std, win)
            writers["temporal_coherence"].write(res.temporal_coherence, win)
            writers["residual"].write(res.residual_rms, win)
            writers["misclosure"].write(mis.astype(np.float32), win)
            if extra is not None:
                writers["dem_error"].write(dz[0], win)
            progress((r0 + h) / ny, f"inverted rows {r0 + h}/{ny}")
    except BaseException as exc:
        for w in writers.values():
            w.__exit__(type(exc), exc, exc.__traceback__)
        raise
    finally:
        for ds in unw_ds + coh_ds:
            ds.close()
    for w in writers.values():
        w.__exit__(None, None, None)
    stats = {"triplets": len(triplets),
             "unwrapping_error_fraction": (bad_triplet_px / triplet_px) if triplet_px else None,
             "dem_error_estimated": extra is not None,
             "masked_fraction": masked_px / (ny * nx),
             "min_temporal_coherence": cfg.min_temporal_coherence,
             "min_mean_coherence": cfg.min_mean_coherence}
    return paths, stats


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


def _network_plot(stack: Stack, pairs: list[tuple[int, int]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for i, j in pairs:
        ax.plot([stack.dates[i], stack.dates[j]], [stack.bperp[i], stack.bperp[j]],
                color="tab:blue", lw=0.8, alpha=0.7)
    ax.plot(stack.dates, stack.bperp, "o", color="tab:red", ms=4)
    ax.set_xlabel("acquisition date")
    ax.set_ylabel("perpendicular baseline (m)")
    ax.set_title(f"Interferogram network: {len(stack.dates)} dates, {len(pairs)} pairs")
    fig.autofmt_xdate()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
