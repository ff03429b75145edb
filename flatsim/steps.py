"""The steps of a FLATSIM frame: the shared SAR steps (:mod:`insar`) with campaign state.

=========  ==============================================  ================================
step       writes (under ``<root>/<frame>/``)                skipped when
=========  ==============================================  ================================
ingest     ``stack/`` (the frame's coregistered SLCs),      ``ingest.json`` reads and every
           ``ingest.json`` (dates, dropped dates, pairs)    listed SLC exists
pair       ``interferograms/<d1>_<d2>/``: wrapped,          ``pair.json`` and the 4 rasters
           coherence, unwrapped, conncomp, ``pair.json``    open on the frame grid
invert     ``ts/``: time series, velocity, quality          ``ts/inversion.json`` and its
           layers, ``inversion.json``                       rasters open
package    quicklooks, ``network.png``, ``item.json``       ``metadata.json`` reads and its
           (STAC), ``metadata.json`` (written last)         files exist
=========  ==============================================  ================================

The pair and inversion steps are :func:`insar.pairs.process_pair` and
:func:`insar.inversion.invert_stack`, the very functions a gdm-sar job runs, with the
same options (the spec's ``processing`` and ``network``): a frame's products equal a
gdm-sar job's on the same stack. This module adds what a campaign needs: staging and
atomic publication, the skip-when-done checks, budgets from ``memory_limit``, and the
step records.

Each step writes into a hidden temporary folder or name and publishes it by one
rename, so a step killed half-way leaves nothing that looks done; two workers running
the same step at once (a redelivered message) both write complete, identical results
and the second rename is a no-op. Every step is deterministic (seeds, block sizes from
the spec's ``memory_limit``, not from the machine), so a re-run gives the same bytes of
data.

The frame inversion is chunked by rows; the chunk height comes from ``memory_limit``,
so a frame whose stack or pair cube is larger than the memory of one machine still runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from flatsim.plan import Step, frame_head, plan_frame
from flatsim.spec import BASELINE_RSS_BYTES, CampaignSpec, FrameSpec
from gdmcore import InputError
from gdmio.atomic import publish_dir, write_text
from insar.corrections import prepare_corrections
from insar.inversion import StackFacts, invert_stack
from insar.network import lonely_dates, select_network
from insar.pairs import process_pair
from insar.products import COG_TYPE, PAIR_FILES, QUALITY, layer, pair_name

__all__ = ["FrameJob", "ingest", "run_pair", "invert", "package", "verify_ingest",
           "verify_pair", "verify_inversion", "verify_package", "frame_plan", "raster_sha256",
           "archive_stack",
           "run_step", "run_frame_local", "run_campaign_local", "StepOutcome",
           "INVERSION_LAYERS", "QUALITY_LAYERS"]

_REQUIRED = ("ACQUISITION_DATE", "WAVELENGTH", "PERPENDICULAR_BASELINE", "INCIDENCE_ANGLE",
             "SLANT_RANGE", "HEADING")
QUALITY_LAYERS = QUALITY
INVERSION_LAYERS = ("velocity", "timeseries", *QUALITY_LAYERS)


# ============================================================================ context
@dataclass(frozen=True)
class FrameJob:
    """One frame of one campaign and where its products go."""

    spec: CampaignSpec
    campaign: str
    frame: FrameSpec
    root: Path

    @property
    def dir(self) -> Path:
        """The frame's product folder."""
        return self.root / self.frame.id

    @property
    def budget(self) -> int:
        """Bytes of data a step may plan for.

        Three quarters of the memory limit less a worker's baseline: the last quarter
        covers the temporaries of kernels and writers.
        """
        return max(32 * 2**20, (self.spec.memory_bytes - BASELINE_RSS_BYTES) * 3 // 4)


def _atomic_json(path: Path, doc: dict) -> None:
    write_text(path, json.dumps(doc, indent=2))


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _tmp_dir(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".tmp-{name}-{secrets.token_hex(4)}"
    tmp.mkdir()
    return tmp


def raster_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a raster's pixel values (all bands, as stored): a layout-free checksum."""
    h = hashlib.sha256()
    with rasterio.open(path) as ds:
        h.update(f"{ds.count}x{ds.height}x{ds.width}:{ds.dtypes[0]}".encode())
        for b in range(1, ds.count + 1):
            h.update(np.ascontiguousarray(ds.read(b)).tobytes())
    return h.hexdigest()


# ============================================================================= ingest
def _check_slc(path: Path, block_bytes: int, deep: bool = True) -> tuple[dict, str | None]:
    """Header facts of one SLC and why it is unusable (None when it is fine).

    The whole raster is read (in row blocks), so truncated or damaged files, and
    files full of non-finite values or zeros, are caught here and not in a pair step
    (``deep`` False: the header only, for stacks this service ingested itself).
    """
    facts: dict[str, Any] = {"file": path.name}
    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
            facts.update(width=ds.width, height=ds.height, crs=ds.crs.to_string()
                         if ds.crs else None, transform=list(ds.transform)[:6])
            if ds.count != 1 or not ds.dtypes[0].startswith("complex"):
                return facts, f"not one complex band ({ds.count} x {ds.dtypes[0]})"
            missing = [k for k in _REQUIRED if k not in tags]
            if missing:
                return facts, f"missing metadata {', '.join(missing)}"
            facts["tags"] = {k: tags[k] for k in _REQUIRED}
            rows = max(1, block_bytes // (8 * ds.width * 4))
            if not deep:
                return facts, None
            nonzero = False
            for r0 in range(0, ds.height, rows):
                a = ds.read(1, window=Window(0, r0, ds.width, min(rows, ds.height - r0)))
                if not np.isfinite(a).all():
                    return facts, f"non-finite values from row {r0}"
                nonzero = nonzero or bool(np.any(a != 0))
            if not nonzero:
                return facts, "every pixel is zero"
    except (RasterioError, OSError) as exc:
        return facts, f"unreadable: {str(exc).splitlines()[0][:200]}"
    return facts, None


def _file_date(path: Path) -> dt.date | None:
    import re

    m = re.search(r"(?<!\d)(\d{8})(?!\d)", path.name)
    if not m:
        return None
    try:
        return dt.datetime.strptime(m.group(1), "%Y%m%d").date()
    except ValueError:
        return None


HEARTBEAT_S = 60.0
"""Seconds between two heartbeats of a long step (the archive ingestion)."""


def _throttled(heartbeat: Callable[[], None] | None) -> Callable[[float, str], None] | None:
    if heartbeat is None:
        return None
    last = [time.monotonic()]

    def progress(_fraction: float, _message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= HEARTBEAT_S:
            last[0] = now
            heartbeat()

    return progress


def archive_stack(job: FrameJob, heartbeat: Callable[[], None] | None = None) -> Path:
    """The frame's coregistered stack from the Sentinel-1 archive (``<frame>/slc/``).

    Searches the archive (the ASF provider: IW SLC products of the frame's track and
    direction over its bbox between the campaign's dates), fetches them into the scene
    cache, fetches each product's precise orbit (the orbit provider) and the DEM over
    the products (the DEM provider), and runs the shared ingestion
    (:func:`insar.ingest.ingest`: slices joined, subswaths merged, bursts streamed).
    Idempotent: a finished ``slc/`` for the same products is kept; fetched files come
    from the cache. Archive URLs and the cache come from the environment
    (``GDM_ASF_URL``, ``GDM_ORBIT_URL``, ``GDM_DEM_URL``, ``GDM_SCENE_CACHE``).
    ``heartbeat`` is called about every minute while the ingestion runs (the campaign's
    watchdog then sees activity during a step that takes hours on a real frame).
    """
    from shapely.geometry import box

    from gdmio.download import RemoteError
    from gdmio.providers import SceneQuery
    from gdmio.providers.asf import AsfProvider
    from gdmio.providers.dem import DemClient
    from gdmio.providers.orbits import OrbitClient
    from gdmio.providers.resolve import scene_cache_from_env
    from insar.ingest import IngestConfig, ingested
    from insar.ingest import ingest as ingest_safe

    spec, frame, opts = job.spec, job.frame, job.spec.archive
    final = job.dir / "slc"
    safe_dir = job.dir / "safe"
    if safe_dir.is_dir() and ingested(safe_dir, final):
        return final
    cache = scene_cache_from_env()
    area = box(*frame.bbox)  # type: ignore[misc]
    query = SceneQuery(aoi=area,
                       start=dt.datetime.combine(spec.start, dt.time(), dt.UTC),
                       end=dt.datetime.combine(spec.end, dt.time(23, 59, 59), dt.UTC),
                       flight_direction=frame.pass_direction.upper(),
                       relative_orbit=frame.track, product="SLC")
    try:
        provider = AsfProvider()
        scenes = provider.search(query)
        if not scenes:
            raise InputError(f"frame {frame.id}: no Sentinel-1 IW SLC product of track "
                             f"{frame.track} {frame.pass_direction} over {frame.bbox} "
                             f"between {spec.start} and {spec.end}")
        if len(scenes) > opts.max_products:
            raise InputError(f"frame {frame.id}: {len(scenes)} products found, more than "
                             f"archive.max_products={opts.max_products}")
        fetched = provider.fetch_many(scenes, cache)
    except RemoteError as exc:
        raise RuntimeError(f"frame {frame.id}: archive: {exc}") from exc  # retried
    tmp = _tmp_dir(job.dir, "safe")
    for files in fetched:
        for f in files:
            if f.suffix.lower() == ".zip" or f.suffix.upper() == ".SAFE":
                (tmp / f.name).symlink_to(f.resolve())
    if safe_dir.exists() and sorted(os.listdir(safe_dir)) != sorted(os.listdir(tmp)):
        old = job.dir / f".old-safe-{secrets.token_hex(4)}"
        os.rename(safe_dir, old)  # the archive now holds other products
        shutil.rmtree(old, ignore_errors=True)
    publish_dir(tmp, safe_dir)
    orbit_dir = _tmp_dir(job.dir, "orbits")
    client = OrbitClient()
    missing = []
    for sc in scenes:
        try:
            orbit = client.fetch(sc.id, cache)
        except RemoteError as exc:
            missing.append(f"{sc.id}: {exc}")
            continue
        if not (orbit_dir / orbit.name).exists():
            (orbit_dir / orbit.name).symlink_to(orbit.resolve())
    if missing and opts.orbit_source == "precise":
        shutil.rmtree(orbit_dir, ignore_errors=True)
        raise RuntimeError(f"frame {frame.id}: no precise orbit for {'; '.join(missing)}")
    dem = None
    if opts.dem:
        from shapely.geometry import shape
        from shapely.ops import unary_union

        cover = unary_union([shape(sc.geometry) for sc in scenes]).intersection(
            area.buffer(0.5))
        try:
            dem = DemClient().fetch(cover if not cover.is_empty else area, cache,
                                    margin=0.05)
        except RemoteError as exc:
            raise RuntimeError(f"frame {frame.id}: DEM: {exc}") from exc
    out = job.dir / f".tmp-slc-{secrets.token_hex(4)}"
    looks = spec.processing.grid_looks
    try:
        ingest_safe(IngestConfig(
            safe=safe_dir, out=out, orbits=orbit_dir, dem=dem,
            orbit_source="precise" if opts.orbit_source == "precise" else "auto",
            aoi=frame.bbox, swath=opts.swath, polarisation=opts.polarisation,
            block_lines=opts.block_lines, geometry_step=max(1, min(looks))),
            progress=_throttled(heartbeat))
        if final.exists() and not ingested(safe_dir, final):
            old = job.dir / f".old-slc-{secrets.token_hex(4)}"
            os.rename(final, old)  # an earlier ingestion of other products
            shutil.rmtree(old, ignore_errors=True)
        # first writer wins: a duplicate attempt (a redelivered message, the watchdog)
        # that finishes second drops its identical copy
        publish_dir(out, final)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return final


def _source_files(job: FrameJob, heartbeat: Callable[[], None] | None = None) -> list[Path]:
    """Bring the frame's SLCs (simulate, list a folder, or ingest from the archive)."""
    if job.frame.source == "archive":
        folder = archive_stack(job, heartbeat)
        return sorted(p for p in folder.iterdir() if p.suffix == ".tif")
    if job.frame.source == "simulated":
        from simulators.sar import SimulateSarConfig, simulate

        sim_dir = job.dir / "sim"
        done = sim_dir / "stack"
        sim = job.spec.simulation
        if not (sim_dir / "truth" / "truth.json").is_file():
            tmp = _tmp_dir(job.dir, "sim")
            simulate(SimulateSarConfig(
                out=tmp, dates=sim.dates, size=sim.size, interval_days=sim.interval_days,
                start=job.spec.start, seed=job.spec.frame_seed(job.frame.id),
                atmosphere_m=sim.atmosphere_m, topography_m=sim.topography_m,
                stratified=sim.stratified))
            # sim/ only ever appears complete (one rename); a concurrent attempt that
            # published first wins and this identical copy is dropped
            publish_dir(tmp, sim_dir)
        return sorted(p for p in done.iterdir() if p.suffix == ".tif")
    folder = Path(job.frame.path)  # type: ignore[arg-type]
    if not folder.is_dir():
        raise InputError(f"frame {job.frame.id}: stack folder not found: {folder}")
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in (".tif", ".tiff") and not p.name.startswith("."))


def verify_ingest(job: FrameJob) -> dict | None:
    """The frame's ingest record when it is complete, else None."""
    doc = _read_json(job.dir / "ingest.json")
    if doc is None or doc.get("frame") != job.frame.id:
        return None
    stack = job.dir / "stack"
    if not all((stack / f).exists() for f in doc.get("files", [])):
        return None
    return doc


def ingest(job: FrameJob, heartbeat: Callable[[], None] | None = None) -> dict:
    """Ingest a frame: find its SLCs, drop broken dates, plan its network.

    ``heartbeat`` (optional) is called now and then during a long archive ingestion.

    Returns the ingest record (also written to ``ingest.json``): valid dates and
    files, dropped dates with their reason, geometry, the planned pairs.

    Raises
    ------
    InputError
        When fewer than ``min_dates`` valid dates remain or no network can be formed.

    """
    done = verify_ingest(job)
    if done is not None:
        return done
    files = _source_files(job, heartbeat)
    spec = job.spec
    kept: list[tuple[dt.date, Path, dict]] = []
    dropped: list[dict] = []
    outside = 0
    for path in files:
        date = _file_date(path)
        if date is None:
            dropped.append({"date": None, "file": path.name,
                            "reason": "no YYYYMMDD date in the file name"})
            continue
        if not spec.start <= date <= spec.end:
            outside += 1
            continue
        facts, reason = _check_slc(path, job.budget // 4,
                                   deep=job.frame.source != "archive")
        if reason is None:
            acq = facts["tags"]["ACQUISITION_DATE"][:10]
            if acq != date.isoformat():
                reason = f"ACQUISITION_DATE {acq} disagrees with the file name"
        if reason is not None:
            dropped.append({"date": date.isoformat(), "file": path.name, "reason": reason})
            continue
        kept.append((date, path, facts))
    kept.sort(key=lambda r: r[0])
    # one grid: the most common one wins, others are dropped
    if kept:
        grids = [(f["width"], f["height"], f["crs"], tuple(f["transform"])) for _, _, f in kept]
        main = max(set(grids), key=grids.count)
        for (date, path, _f), g in zip(list(kept), grids, strict=True):
            if g != main:
                dropped.append({"date": date.isoformat(), "file": path.name,
                                "reason": "not on the stack's grid (not coregistered)"})
        kept = [k for k, g in zip(kept, grids, strict=True) if g == main]
    seen: set[dt.date] = set()
    unique = []
    for rec in kept:
        if rec[0] in seen:
            dropped.append({"date": rec[0].isoformat(), "file": rec[1].name,
                            "reason": "duplicate date"})
        else:
            seen.add(rec[0])
            unique.append(rec)
    kept = unique
    if len(kept) < spec.min_dates:
        raise InputError(f"frame {job.frame.id}: {len(kept)} valid date(s) in "
                         f"{spec.start}..{spec.end}, fewer than min_dates={spec.min_dates}"
                         + (f" ({len(dropped)} dropped)" if dropped else ""))
    dates = [k[0] for k in kept]
    tags = [k[2]["tags"] for k in kept]
    bperp = np.array([float(t["PERPENDICULAR_BASELINE"]) for t in tags])
    bperp = bperp - bperp[0]
    pairs = select_network(dates, bperp, spec.network)
    lonely = lonely_dates(dates, pairs)
    # stack of links to the valid files (the coregistered stack convention)
    tmp = _tmp_dir(job.dir, "stack")
    names = []
    for date, path, _ in kept:
        name = f"slc_{date:%Y%m%d}.tif"
        (tmp / name).symlink_to(path.resolve())
        names.append(name)
    final = job.dir / "stack"
    if final.is_dir() and sorted(os.listdir(final)) != names:
        # an earlier attempt kept other dates (its source folder changed): set it aside
        old = job.dir / f".old-stack-{secrets.token_hex(4)}"
        os.rename(final, old)
        shutil.rmtree(old, ignore_errors=True)
    publish_dir(tmp, final)
    f0 = kept[0][2]
    doc = {
        "frame": job.frame.id, "track": job.frame.track,
        "pass_direction": job.frame.pass_direction, "source": job.frame.source,
        "dates": [d.isoformat() for d in dates], "files": names,
        "dropped": sorted(dropped, key=lambda d: d["date"] or ""),
        "outside_range": outside,
        "bperp_m": np.round(bperp, 3).tolist(),
        "wavelength_m": float(np.mean([float(t["WAVELENGTH"]) for t in tags])),
        "incidence_deg": float(np.mean([float(t["INCIDENCE_ANGLE"]) for t in tags])),
        "slant_range_m": float(np.mean([float(t["SLANT_RANGE"]) for t in tags])),
        "heading_deg": float(np.mean([float(t["HEADING"]) for t in tags])),
        "width": f0["width"], "height": f0["height"], "crs": f0["crs"],
        "transform": f0["transform"],
        "pairs": [list(p) for p in pairs],
        "pair_names": [pair_name(dates[i], dates[j]) for i, j in pairs],
        "dates_in_no_pair": lonely,
    }
    _atomic_json(job.dir / "ingest.json", doc)
    return doc


def frame_plan(job: FrameJob, info: dict | None = None) -> list[Step]:
    """The frame's steps (only its ingest step until it is ingested)."""
    info = info or verify_ingest(job)
    if info is None:
        return [frame_head(job.campaign, job.frame.id)]
    dates = [dt.date.fromisoformat(d) for d in info["dates"]]
    return plan_frame(job.campaign, job.frame.id, dates, [tuple(p) for p in info["pairs"]])


# =============================================================================== pairs
def _grid(info: dict, job: FrameJob) -> tuple[int, int, Any, Any]:
    from affine import Affine

    la, lr = job.spec.processing.grid_looks
    ny, nx = info["height"] // la, info["width"] // lr
    transform = Affine(*info["transform"]) * Affine.scale(lr, la)
    return ny, nx, info["crs"], transform


def verify_pair(job: FrameJob, info: dict, name: str) -> dict | None:
    """The pair's record when its four rasters are complete on the frame grid, else None."""
    folder = job.dir / "interferograms" / name
    doc = _read_json(folder / "pair.json")
    if doc is None or doc.get("pair") != name:
        return None
    ny, nx, _, _ = _grid(info, job)
    try:
        for f in PAIR_FILES:
            with rasterio.open(folder / f) as ds:
                if (ds.height, ds.width) != (ny, nx):
                    return None
    except (RasterioError, OSError):
        return None
    return doc


def run_pair(job: FrameJob, info: dict, name: str) -> dict:
    """The shared pair step (:func:`insar.pairs.process_pair`) of one pair of the frame.

    Independent of every other pair (the reference point is applied in the inversion),
    so pairs run in any order on any worker. Returns the pair record.
    """
    done = verify_pair(job, info, name)
    if done is not None:
        return done
    k = info["pair_names"].index(name)
    i, j = info["pairs"][k]
    ny, nx, crs, transform = _grid(info, job)
    if ny < 8 or nx < 8:
        raise InputError(f"frame {job.frame.id}: multilooked grid {nx}x{ny} is too small")
    stack = job.dir / "stack"
    tmp = _tmp_dir(job.dir / "interferograms", name)
    try:
        with rasterio.Env(GDAL_CACHEMAX=min(64 * 2**20, job.budget // 8)):
            doc = process_pair(stack / info["files"][i], stack / info["files"][j], tmp, name,
                               (info["dates"][i], info["dates"][j]), job.spec.processing,
                               crs, transform, job.budget // 4,
                               wavelength=info["wavelength_m"])
        publish_dir(tmp, job.dir / "interferograms" / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return doc


# ============================================================================ inversion
def frame_geometry(job: FrameJob) -> Path | None:
    """The frame's ``geometry.npz`` (latitude, longitude, height per pixel), if it has one.

    Beside the SLCs of its source: the archive ingestion's stack, the simulation's
    stack, or the frame's folder.
    """
    if job.frame.source == "archive":
        src = job.dir / "slc"  # ingested from the SAFE products
    elif job.frame.source == "simulated":
        src = job.dir / "sim" / "stack"
    else:
        src = Path(job.frame.path)  # type: ignore[arg-type]
    p = src / "geometry.npz"
    return p if p.is_file() else None


def verify_inversion(job: FrameJob) -> dict | None:
    """The inversion record when ``ts/`` is complete, else None."""
    ts = job.dir / "ts"
    doc = _read_json(ts / "inversion.json")
    if doc is None:
        return None
    try:
        for name in doc.get("layers", []):
            with rasterio.open(ts / f"{name}.tif"):
                pass
    except (RasterioError, OSError):
        return None
    return doc


def invert(job: FrameJob, info: dict, available: list[str] | None = None,
           rows: int | None = None) -> dict:
    """The shared inversion step (:func:`insar.inversion.invert_stack`) of the frame.

    Parameters
    ----------
    job, info
        The frame and its ingest record.
    available
        Pair names to use (default: every planned pair whose outputs verify; pairs that
        failed are left out and the network gaps they open are reported).
    rows
        Chunk height (default: half the step's budget, :func:`insar.inversion.chunk_rows`).

    Returns
    -------
    dict
        The inversion record (also ``ts/inversion.json``).

    """
    done = verify_inversion(job)
    if done is not None:
        return done
    dates = [dt.date.fromisoformat(d) for d in info["dates"]]
    planned = [tuple(p) for p in info["pairs"]]
    if available is None:
        available = [n for n in info["pair_names"] if verify_pair(job, info, n) is not None]
    keep = [k for k, n in enumerate(info["pair_names"]) if n in set(available)]
    if not keep:
        raise InputError(f"frame {job.frame.id}: no interferogram to invert")
    pairs = [planned[k] for k in keep]
    names = [info["pair_names"][k] for k in keep]
    ny, nx, crs, transform = _grid(info, job)
    facts = StackFacts(dates=dates, bperp=np.asarray(info["bperp_m"]),
                       wavelength=info["wavelength_m"], incidence_deg=info["incidence_deg"],
                       slant_range=info["slant_range_m"])
    ts_tmp = _tmp_dir(job.dir, "ts")
    try:
        with rasterio.Env(GDAL_CACHEMAX=min(64 * 2**20, job.budget // 8)):
            try:
                geometry, weather = prepare_corrections(
                    job.spec.processing, (ny, nx), transform, crs, info["incidence_deg"],
                    dates, geometry_npz=frame_geometry(job), fetch_dir=job.dir / "weather")
                inv = invert_stack([job.dir / "interferograms" / n for n in names], pairs,
                                   facts, job.spec.processing, ts_tmp, crs, transform,
                                   (ny, nx), job.budget // 2, planned=planned, rows=rows,
                                   geometry=geometry, weather=weather)
            except InputError as exc:
                raise InputError(f"frame {job.frame.id}: {exc}") from None
        doc = {"frame": job.frame.id, **inv}
        _atomic_json(ts_tmp / "inversion.json", doc)
        final = job.dir / "ts"
        if final.exists() and verify_inversion(job) is None:
            shutil.rmtree(final)  # an incomplete earlier result (should not happen)
        publish_dir(ts_tmp, final)
    except BaseException:
        shutil.rmtree(ts_tmp, ignore_errors=True)
        raise
    return doc


# ============================================================================= package
def verify_package(job: FrameJob) -> dict | None:
    """The frame's metadata when its package is complete, else None."""
    doc = _read_json(job.dir / "metadata.json")
    if doc is None or doc.get("frame") != job.frame.id:
        return None
    if not all((job.dir / f).exists() for f in doc.get("files", [])):
        return None
    return doc


def dates_of(info: dict) -> list[dt.date]:
    """The dates of a frame's ingest info."""
    return [dt.date.fromisoformat(d) for d in info["dates"]]


def _network_plot(info: dict, inv: dict, path: Path) -> Path:
    from gdmio.quicklook import network_plot, pair_coherence

    dates = dates_of(info)
    used = set(inv["pairs_used"])
    folder = path.parent / "interferograms"
    missing = len(info["pairs"]) - len(used)
    return network_plot(
        dates, info["bperp_m"], [tuple(p) for p in info["pairs"]], path,
        f"{info['frame']}: {len(dates)} dates, {len(used)} pairs"
        + (f", {missing} failed (dashed red)" if missing else "")
        + (f", {len(info['dropped'])} dropped date(s) (orange)" if info["dropped"] else ""),
        coherence=[pair_coherence(folder / n) if n in used else None
                   for n in info["pair_names"]],
        failed=[n not in used for n in info["pair_names"]],
        dropped=[dt.date.fromisoformat(x["date"]) for x in info["dropped"] if x["date"]])


STALE_TMP_S = 600
"""Temporary folders older than this are leftovers of killed attempts (removed at packaging)."""


def sweep_leftovers(job: FrameJob, min_age_s: float = STALE_TMP_S) -> list[str]:
    """Remove the temporary folders killed attempts left in the frame; returns their names."""
    now = time.time()
    gone = []
    for parent in (job.dir, job.dir / "interferograms"):
        if not parent.is_dir():
            continue
        for p in parent.iterdir():
            if p.name.startswith((".tmp-", ".old-")) and p.is_dir() and \
                    now - p.stat().st_mtime > min_age_s:
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p.name)
    return gone


GEOCODED_SERIES = ("velocity", "timeseries", "velocity_std", "temporal_coherence",
                   "mean_coherence", "dem_error")


def _geocode(job: FrameJob, inv: dict, wanted: set[str]) -> dict[str, dict[str, Path]]:
    """Frames with a radar geometry (from the archive): every product on UTM and WGS84.

    The series layers, and with ``interferograms`` every pair's unwrapped phase and
    coherence (series grid) and wrapped phase and coherence at the interferogram looks;
    the lookup tables, LOS vectors and DEM on the map grids and the radar grid
    (:func:`insar.geocode.geocode_frame`).
    """
    from insar.geocode import geocode_frame

    stack = job.dir / "slc"
    if not (stack / "geometry.json").is_file():
        return {}
    proc = job.spec.processing
    ts = job.dir / "ts"
    layers = {n: ts / f"{n}.tif" for n in GEOCODED_SERIES if n in inv["layers"]}
    more = []
    if "interferograms" in wanted:
        for name in inv["pairs_used"]:
            folder = job.dir / "interferograms" / name
            more.append((f"interferograms/{name}", {"unwrapped": folder / "unwrapped.tif",
                                                    "coherence": folder / "coherence.tif"},
                         proc.grid_looks))
            if proc.series_looks > 1:
                more.append((f"interferograms/{name}",
                             {"wrapped_fine": folder / "wrapped_fine.tif",
                              "coherence_fine": folder / "coherence_fine.tif"}, proc.looks))
    return geocode_frame(layers, stack, job.dir / "geocoded", proc.grid_looks,
                         radar_dir=job.dir / "geometry", more=more)


def package(job: FrameJob, info: dict, inv: dict) -> dict:
    """Quicklooks, network plot, STAC item and ``metadata.json`` (last) of a frame."""
    from gdmio.stac import write_item
    from insar.quicklooks import sar_quicklooks

    done = verify_package(job)
    if done is not None:
        return done
    d = job.dir
    ts = d / "ts"
    ifg_dirs = [d / "interferograms" / n for n in inv["pairs_used"]]
    ts_paths = {n: ts / f"{n}.tif" for n in ("velocity", "timeseries", "temporal_coherence",
                                             "mean_coherence", "dem_error")}
    looks = {q.stem: q for q in sar_quicklooks(d, ts_paths, dates_of(info), ifg_dirs,
                                               prefix=f"{job.frame.id} ")}
    looks["network"] = _network_plot(info, inv, d / "network.png")
    wanted = set(job.spec.products)
    assets: dict[str, dict] = {}

    def add(name: str, href: str, key: str | None = None, title: str | None = None) -> None:
        lay = layer(name)
        assets[key or name] = {"href": href, "title": title or lay.title,
                               "roles": list(lay.roles), "type": COG_TYPE,
                               "gdm:units": lay.units}

    if "velocity" in wanted:
        add("velocity", "ts/velocity.tif")
    if "timeseries" in wanted:
        add("timeseries", "ts/timeseries.tif")
        if (ts / "timeseries.nc").is_file():
            assets["timeseries_nc"] = {"href": "ts/timeseries.nc", "roles": ["data"],
                                       "title": "time series, velocity and quality layers "
                                       "(CF-1.8 NetCDF)", "type": "application/x-netcdf"}
    if "quality" in wanted:
        for q in inv["layers"]:
            if q in QUALITY_LAYERS or q == "dem_error":
                add(q, f"ts/{q}.tif")
    if "interferograms" in wanted:
        for name in inv["pairs_used"]:
            add("unwrapped", f"interferograms/{name}/unwrapped.tif", f"unwrapped_{name}",
                f"unwrapped phase {name} (rad, not referenced)")
    geocoded = _geocode(job, inv, wanted)
    for gname, files in geocoded.items():
        for name, path in files.items():
            lay = layer(name.rsplit("/", 1)[-1])
            key = f"{name.replace('/', '_')}_{gname}"
            grid_desc = {"utm": "UTM", "wgs84": "EPSG:4326", "radar": "radar geometry"}
            assets[key] = {"href": str(path.relative_to(d)),
                           "title": f"{lay.title} ({grid_desc[gname]})",
                           "roles": list(lay.roles), "type": COG_TYPE,
                           "gdm:units": lay.units, "gdm:grid": gname}
    for key, p in looks.items():
        assets[f"{key}_quicklook"] = {"href": p.name, "title": key.replace("_", " "),
                                      "roles": ["overview"], "type": "image/png"}
    assets["metadata"] = {"href": "metadata.json", "title": "frame metadata",
                          "roles": ["metadata"], "type": "application/json"}
    ny, nx, crs, transform = _grid(info, job)
    item = write_item(
        d / "item.json", f"{job.campaign}-{job.frame.id}", crs or "EPSG:4326", transform,
        nx, ny, assets, dt.date.fromisoformat(info["dates"][0]),
        dt.date.fromisoformat(info["dates"][-1]),
        properties={"gdm:process": "flatsim-campaign", "gdm:campaign": job.campaign,
                    "sat:relative_orbit": job.frame.track,
                    "sat:orbit_state": job.frame.pass_direction,
                    "gdm:pairs": len(inv["pairs_used"]), "gdm:dates": len(info["dates"])})
    vel_sha = raster_sha256(ts / "velocity.tif")
    sweep_leftovers(job)
    failed = inv["network"]["missing_pairs"]
    files = ([f"ts/{n}.tif" for n in inv["layers"]]
             + [str(p.relative_to(d)) for g in geocoded.values() for p in g.values()]
             + [f"interferograms/{n}/{f}" for n in inv["pairs_used"] for f in PAIR_FILES]
             + [p.name for p in looks.values()] + [item.name])
    if "flatsim" in wanted:
        from flatsim.package import package_flatsim

        files += package_flatsim(job, info, inv, (ny, nx, crs, transform),
                                 frame_geometry(job))
    meta = {
        "frame": job.frame.id, "campaign": job.campaign, "track": job.frame.track,
        "pass_direction": job.frame.pass_direction, "source": job.frame.source,
        "dates": info["dates"], "dropped_dates": info["dropped"],
        "pairs_planned": len(info["pairs"]), "pairs_used": len(inv["pairs_used"]),
        "failed_pairs": failed, "network": inv["network"],
        "reference_pixel": inv["reference_pixel"],
        "wavelength_m": info["wavelength_m"], "incidence_deg": info["incidence_deg"],
        "heading_deg": info["heading_deg"], "grid": inv["grid"],
        "looks": list(job.spec.processing.grid_looks),
        "interferogram_looks": list(job.spec.processing.looks),
        "conventions": "LOS metres, positive towards the satellite; "
                       "ifg_ij = slc_i conj(slc_j), i earlier",
        "velocity_sha256": vel_sha, "products": list(job.spec.products), "files": files,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _atomic_json(d / "metadata.json", meta)
    return meta


def write_catalog(spec: CampaignSpec, campaign: str, root: Path, frames: list[str]) -> Path:
    """The campaign's STAC catalogue linking the items of its packaged frames."""
    import pystac

    links = [{"rel": "root", "href": "./catalog.json", "type": "application/json"},
             {"rel": "self", "href": "./catalog.json", "type": "application/json"}]
    links += [{"rel": "item", "href": f"./{f}/item.json", "type": "application/geo+json",
               "title": f} for f in frames if (root / f / "item.json").is_file()]
    doc = {"type": "Catalog", "stac_version": pystac.get_stac_version(), "id": campaign,
           "title": f"FLATSIM campaign {spec.name}",
           "description": f"Systematic InSAR time series of {len(spec.all_frames())} "
                          f"frame(s), {spec.start} to {spec.end}: interferograms, "
                          "LOS time series, velocity, quality layers.",
           "links": links}
    path = root / "catalog.json"
    _atomic_json(path, doc)
    return path


# ============================================================================ running
@dataclass
class StepOutcome:
    """What running one step did: ``done``, ``skipped``, ``failed``, ``retry`` or ``stopped``."""

    status: str
    result: Any = None
    error: str | None = None


def _already(step: Step, job: FrameJob, info: dict | None) -> Any:
    if step.kind == "ingest":
        return verify_ingest(job)
    if info is None:
        return None
    if step.kind == "pair":
        return verify_pair(job, info, step.pair)  # type: ignore[arg-type]
    if step.kind == "invert":
        return verify_inversion(job)
    return verify_package(job)


def run_step(state: Any, job: FrameJob, step: Step, fn: Callable[[], Any], worker: str,
             max_failures: int = 2) -> StepOutcome:
    """Run one step with its bookkeeping: skip if done, record start/finish/failure.

    An :class:`InputError` fails the step at once (it will not get better); any other
    exception counts one failure, and at ``max_failures`` the step is ``failed`` for
    good (a pair is then left out of its frame). Returns the outcome; never raises for
    a step's own error.
    """
    if not state.is_active(job.campaign):
        return StepOutcome("stopped")
    row = state.step(step.id)
    if row is not None and row["status"] == "failed":
        return StepOutcome("failed", error=row["error"])
    info = verify_ingest(job) if step.kind != "ingest" else None
    prior = _already(step, job, info)
    if prior is not None:
        if row is None or row["status"] != "done":
            state.ensure_steps([step])
            state.finish_step(step.id, info=prior if step.kind == "ingest" else None,
                              skipped=True, seconds=0.0)
        return StepOutcome("skipped", prior)
    state.ensure_steps([step])
    state.start_step(step.id, worker)
    t0 = time.perf_counter()
    try:
        result = fn()
    except InputError as exc:
        state.fail_step(step.id, f"InputError: {exc}", max_failures=1)
        return StepOutcome("failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - recorded, counted, retried or given up
        msg = f"{type(exc).__name__}: {exc}"
        n = state.fail_step(step.id, msg, max_failures=max_failures)
        return StepOutcome("failed" if n >= max_failures else "retry", error=msg)
    state.finish_step(step.id, info=result if step.kind == "ingest" else None,
                      seconds=time.perf_counter() - t0)
    return StepOutcome("done", result)


def frame_job(spec: CampaignSpec, campaign: str, root: Path, frame_id: str) -> FrameJob:
    """The :class:`FrameJob` of one frame of a campaign."""
    return FrameJob(spec, campaign, spec.frame(frame_id), Path(root))


def run_frame_local(state: Any, job: FrameJob, worker: str = "local") -> dict:
    """Run every step of one frame in this process (tests, benchmarks, inline jobs).

    A pair is tried up to twice; its failure is recorded and the frame goes on without
    it. Returns ``{"status": done|failed|stopped, "metadata": ...}``.
    """
    step = frame_head(job.campaign, job.frame.id)
    out = run_step(state, job, step,
                   lambda: ingest(job, lambda: state.touch_campaign(job.campaign)), worker)
    if out.status in ("failed", "stopped"):
        return {"status": out.status, "error": out.error}
    info = out.result
    steps = frame_plan(job, info)
    state.ensure_steps(steps)
    for st in steps:
        if st.kind != "pair":
            continue
        while True:
            o = run_step(state, job, st, lambda s=st: run_pair(job, info, s.pair), worker)
            if o.status != "retry":
                break
        if o.status == "stopped":
            return {"status": "stopped"}
    inv_step = next(s for s in steps if s.kind == "invert")
    while (o := run_step(state, job, inv_step, lambda: invert(job, info),
                         worker)).status == "retry":
        pass
    if o.status != "done" and o.status != "skipped":
        return {"status": o.status, "error": o.error}
    inv = o.result
    pkg_step = next(s for s in steps if s.kind == "package")
    while (o := run_step(state, job, pkg_step, lambda: package(job, info, inv),
                         worker)).status == "retry":
        pass
    if o.status not in ("done", "skipped"):
        return {"status": o.status, "error": o.error}
    return {"status": "done", "metadata": o.result}


def run_campaign_local(state: Any, spec: CampaignSpec, campaign: str, root: Path,
                       progress: Callable[[float, str], None] | None = None) -> dict:
    """Run a registered campaign frame after frame in this process; then its report."""
    from flatsim.report import write_report

    frames = [f.id for f in spec.all_frames()]
    results = {}
    for k, fid in enumerate(frames):
        if progress:
            progress(k / len(frames), f"frame {fid}")
        results[fid] = run_frame_local(state, frame_job(spec, campaign, root, fid))
        if results[fid]["status"] == "stopped":
            return {"status": "stopped", "frames": results}
    write_catalog(spec, campaign, Path(root), frames)
    write_report(state, campaign)
    ok = all(r["status"] == "done" for r in results.values())
    state.set_campaign_status(campaign, "finished" if ok else "finished_with_failures",
                              only_from=["running"])
    if progress:
        progress(1.0, "campaign finished")
    return {"status": "done" if ok else "partial", "frames": results}
