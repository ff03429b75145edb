"""The GDM-SAR chain: the shared SAR steps (:mod:`insar`) run one after the other.

1. read and check the stack; select the pair network and check its connectivity
   (:mod:`insar.network`);
2. per pair: cross-multiply and multilook (SLC rows read in blocks), debias the
   coherence, filter, unwrap; write ``wrapped``, ``coherence``, ``unwrapped`` (not
   referenced) and ``conncomp`` (:func:`insar.pairs.process_pair`);
3. mean coherence, reference pixel, per-pair reference values, then block by block the
   NSBAS inversion with the DEM error, triplet misclosure and quality layers
   (:func:`insar.inversion.invert_stack`);
4. quicklooks, network plot, report and STAC item.

Everything is written into a staging folder published only on success.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio

from gdm_sar.config import SarConfig
from gdmcore import InputError, Progress
from gdmio.products import ProductDir
from gdmio.quicklook import network_plot, pair_coherence
from gdmio.stac import write_item
from insar.corrections import prepare_corrections
from insar.inversion import StackFacts, invert_stack, temporal_fit
from insar.network import check_connected
from insar.network import select_network as _select
from insar.pairs import multilooked_shape, process_pair
from insar.products import COG_TYPE, layer, pair_name
from insar.quicklooks import sar_quicklooks
from insar.stack import Stack, read_stack
from kernels.timeseries import network_components

__all__ = ["SarOutputs", "run", "select_network", "temporal_fit"]

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
    n_pairs: Path | None = None


def select_network(stack: Stack, cfg: SarConfig) -> list[tuple[int, int]]:
    """The pairs of the job, with the baseline limits applied and connectivity checked.

    Raises
    ------
    InputError
        When a date is in no pair (the series cannot reach it) or no pair is left.

    """
    pairs = _select(stack.dates, stack.bperp, cfg.network_options())
    check_connected(stack.dates, pairs)
    return pairs


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
    la, lr = cfg.grid_looks
    ny, nx = multilooked_shape(stack.height, stack.width, (la, lr))
    if ny < 8 or nx < 8:
        raise InputError(f"the multilooked grid {nx}x{ny} is too small: fewer looks please")
    if cfg.reference is not None and not (0 <= cfg.reference[0] < ny
                                          and 0 <= cfg.reference[1] < nx):
        raise InputError(f"reference pixel {cfg.reference} is outside the {ny}x{nx} "
                         "multilooked grid")
    transform = stack.transform * stack.transform.scale(lr, la)
    crs = stack.crs
    budget = cfg.block_mb * 2**20
    opts = cfg.processing()
    report_progress(0.0, f"{len(stack.dates)} dates, {len(pairs)} pairs, "
                    f"{n_comp} network component(s)")

    with ProductDir(cfg.out) as stage:
        # corrections' inputs first: a missing DEM or weather file fails before any pair
        geometry, weather = prepare_corrections(
            opts, (ny, nx), transform, crs, stack.incidence_deg, stack.dates,
            geometry_npz=Path(cfg.stack) / "geometry.npz", fetch_dir=stage / "weather")
        ifg_dirs = [stage / "interferograms" / pair_name(stack.dates[i], stack.dates[j])
                    for i, j in pairs]
        pair_docs = []
        for p, ((i, j), folder) in enumerate(zip(pairs, ifg_dirs, strict=True)):
            pair_docs.append(process_pair(
                stack.paths[i], stack.paths[j], folder, folder.name,
                (stack.dates[i], stack.dates[j]), opts, crs, transform, budget,
                wavelength=stack.wavelength))
            report_progress(0.75 * (p + 1) / len(pairs), f"pair {folder.name}")
        report_progress(0.75, "time-series inversion")
        facts = StackFacts(dates=list(stack.dates), bperp=stack.bperp,
                           wavelength=stack.wavelength, incidence_deg=stack.incidence_deg,
                           slant_range=stack.slant_range)
        inv = invert_stack(ifg_dirs, pairs, facts, opts, stage, crs, transform, (ny, nx),
                           budget, reference=cfg.reference,
                           progress=lambda f, m: report_progress(0.75 + 0.2 * f, m),
                           geometry=geometry, weather=weather)
        paths = {n: stage / f"{n}.tif" for n in inv["layers"]}
        network_p = network_plot(
            stack.dates, stack.bperp, pairs, stage / "network.png",
            f"Interferogram network: {len(stack.dates)} dates, {len(pairs)} pairs",
            coherence=[pair_coherence(d) for d in ifg_dirs])
        looks = sar_quicklooks(stage, paths, stack.dates, ifg_dirs)
        ref = inv["reference_pixel"]
        report = {
            "process": "gdm-sar",
            "parameters": json.loads(cfg.model_dump_json(exclude={"stack", "out"})),
            "dates": [d.isoformat() for d in stack.dates],
            "perpendicular_baselines_m": np.round(stack.bperp, 3).tolist(),
            "wavelength_m": stack.wavelength,
            "geometry": {"incidence_deg": stack.incidence_deg,
                         "slant_range_m": stack.slant_range,
                         "heading_deg": stack.heading_deg},
            "network": {"pairs": [d.name for d in ifg_dirs], "components": n_comp},
            "reference_pixel": ref,
            "grid": {"width": nx, "height": ny, "looks": [la, lr],
                     "crs": crs.to_string() if crs else None},
            "unwrapping": {
                "pairs": [{"pair": d["pair"], "components": d["components"],
                           "unwrapped_fraction": d["unwrapped_fraction"]} for d in pair_docs],
                "mean_unwrapped_fraction": float(np.mean(
                    [d["unwrapped_fraction"] for d in pair_docs]))},
            "inversion": {k: inv[k] for k in (
                "triplets", "unwrapping_error_fraction", "dem_error_estimated",
                "masked_fraction", "mask_reasons", "min_temporal_coherence",
                "min_mean_coherence", "pair_references", "pairs_without_reference",
                "pairs_used")},
            "screening": inv["screening"],
            "corrections": inv["corrections"],
            "rms_interferogram_m": inv["rms_interferogram_m"],
            "conventions": "LOS positive towards the satellite; ifg_ij = slc_i conj(slc_j); "
                           "unwrapped interferograms are not referenced (pair_references)",
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        report_p = stage / "report.json"
        report_p.write_text(json.dumps(report, indent=2))
        assets = {n: {"href": p.name, "title": layer(n).title, "roles": list(layer(n).roles),
                      "type": COG_TYPE, "gdm:units": layer(n).units}
                  for n, p in paths.items()}
        for q in [*looks, network_p]:
            assets[f"{q.stem}_quicklook"] = {"href": q.name, "title": q.stem,
                                             "roles": ["overview"], "type": "image/png"}
        if (stage / "timeseries.nc").is_file():
            assets["timeseries_nc"] = {"href": "timeseries.nc", "roles": ["data"],
                                       "title": "time series, velocity and quality layers "
                                       "(CF-1.8 NetCDF)", "type": "application/x-netcdf"}
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
        mean_coherence=final(paths["mean_coherence"]),
        dem_error=final(paths["dem_error"]) if "dem_error" in paths else None,
        network=final(network_p), item=final(item_p), report=final(report_p),
        quicklooks=[final(q) for q in looks] + [final(network_p)],
        interferograms=[final(d) for d in ifg_dirs], n_pairs=final(paths["n_pairs"]),
    )
