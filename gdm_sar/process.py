"""The ``gdm-sar`` process: GDM-SAR as a service process (entry point ``gdm-sar``).

Its inputs model is generated from :class:`gdm_sar.config.SarConfig`; the SLCs come as
coregistered files or SNAP products (URLs or uploads), or as Sentinel-1 IW SLC products
by area and dates (``scenes``: ASF), ingested and geocoded.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, model_validator

from gdm_sar.config import SarConfig
from gdmcore import InputError
from gdmio.atomic import replace
from gdmio.process import (
    COG,
    PACKAGE_OUTPUTS,
    FilesOrScenes,
    JobContext,
    OutputSpec,
    ProcessSpec,
    S1SceneRequest,
    ServerOnly,
    product_refs,
    resolve_reference,
    scene_files,
    scenes_field,
    server_only,
)
from insar.options import SERVER_PATH_FIELDS, CorrectionOptions

__all__ = ["PROCESS", "SarJobInputs"]


class SarJobInputs(FilesOrScenes, SarConfig):
    """Inputs of a gdm-sar job: :class:`SarConfig`, every bound and validator kept.

    The SLCs come as references or Sentinel-1 ``scenes`` instead of a stack folder; the
    output folder and the memory budget are the server's.
    """

    files_field: ClassVar[str] = "slcs"

    @model_validator(mode="after")
    def _one_source(self) -> SarJobInputs:
        given = [n for n in ("slcs", "scenes", "interferograms")
                 if getattr(self, n, None) is not None]
        if not given:
            raise ValueError("give SLCs ('slcs'), Sentinel-1 products by area and dates "
                             "('scenes') or unwrapped interferograms ('interferograms')")
        if len(given) > 1:
            raise ValueError(f"give one of 'slcs', 'scenes' and 'interferograms', not "
                             f"{' and '.join(repr(g) for g in given)}")
        return self

    slcs: list[str] | None = Field(
        None, description="Coregistered SLCs, one CFloat32 GeoTIFF per date (the stack "
        "convention), or SNAP-coregistered products (zips of a BEAM-DIMAP .dim with its "
        ".data folder, or .znap.zip; geocoded with SNAP's lat/lon): http(s) URLs or names "
        "of uploaded files.", min_length=1, max_length=1000)
    scenes: S1SceneRequest | None = scenes_field(
        S1SceneRequest, "Sentinel-1 IW SLC products (ingested: bursts over the AOI, TOPS "
        "coregistration with ESD, geocoding)")
    interferograms: list[str] | None = Field(
        None, description="Instead of SLCs: unwrapped interferograms made elsewhere, "
        "inverted into a time series (as gdm sar timeseries): ROI_PAC, GAMMA, ISCE2, "
        "LiCSAR or plain GeoTIFF files, HyP3 product zips, FLATSIM zips, or a zip of a "
        "folder of any of these; http(s) URLs or names of uploaded files.", min_length=1,
        max_length=2000)
    wavelength: float | None = Field(
        None, gt=0.001, lt=2.0, description="With 'interferograms': radar wavelength (m) "
        "where the products' metadata gives none.")
    reference_lonlat: tuple[float, float] | None = Field(
        None, description="With 'interferograms': reference point (longitude, latitude); "
        "default: coherent stable area away from the largest deformation.")
    gnss: str | None = Field(
        None, description="With 'interferograms': CSV of GNSS tie points lon,lat,velocity "
        "(LOS m/yr), as an http(s) URL or an uploaded file.")
    dem: str | None = Field(
        None, description="For Sentinel-1 products (scenes): DEM GeoTIFF in EPSG:4326 with "
        "ellipsoidal heights (m) used for coregistration and geocoding, as an http(s) URL "
        "or an uploaded file; none: the ellipsoid.")
    stack: ServerOnly = server_only()  # type: ignore[assignment]
    out: ServerOnly = server_only()  # type: ignore[assignment]
    block_mb: ServerOnly = server_only()  # type: ignore[assignment]
    # server paths never come from a web request: weather files are fetched from the
    # archive the service configures ($GDM_ERA5_URL, $GDM_GACOS_URL)
    weather_dir: ServerOnly = server_only()  # type: ignore[assignment]
    heights: ServerOnly = server_only()  # type: ignore[assignment]


_SAR_FILES = ("velocity", "timeseries", "velocity_std", "temporal_coherence", "residual",
              "misclosure", "mean_coherence", "dem_error", "network", "item", "report")
_GEOCODED = ("velocity", "velocity_std", "timeseries", "temporal_coherence", "mean_coherence")


def _precise_orbits(products: list[Path], ctx: JobContext) -> Path | None:
    """Fetch the best orbit file of each product when an orbit archive is configured.

    With ``GDM_ORBIT_URL`` set (e.g. ASF's ``s1-orbits`` bucket), the newest precise
    orbit (else a restituted one) of each product goes through the scene cache into the
    job's ``inputs/orbits``; a product without one keeps its annotation's state vectors.
    Without ``GDM_ORBIT_URL`` nothing is fetched.
    """
    import os

    from gdmio.download import RemoteError
    from gdmio.providers.orbits import OrbitClient
    from gdmio.providers.resolve import scene_cache_from_env

    if not os.environ.get("GDM_ORBIT_URL"):
        return None
    client = OrbitClient()
    cache = scene_cache_from_env(ctx.scene_cache)
    folder = ctx.workdir / "inputs" / "orbits"
    folder.mkdir(parents=True, exist_ok=True)
    for product in products:  # after the scenes (0-10 %), before the ingestion
        ctx.progress(0.1, f"orbit of {product.stem}")
        try:
            path = client.fetch(product.name, cache)
        except RemoteError as exc:  # the annotation's state vectors remain
            ctx.progress(0.1, f"no orbit file: {exc}")
            continue
        dest = folder / path.name
        if not dest.exists():
            dest.symlink_to(path.resolve())
    return folder


_MIN_AOI_DEG = 0.05  # smallest side of the area ingested around a point AOI (~5 km)


def _ingest_safe(products: list[Path], request: S1SceneRequest, dem: Path | None,
                 ctx: JobContext) -> Path:
    """Sentinel-1 SAFE products -> coregistered stack in the job's inputs (resumable)."""
    from gdmio.providers.aoi import parse_aoi
    from insar.ingest import IngestConfig, ingest, ingested

    safe_dir = ctx.workdir / "inputs" / "safe"
    safe_dir.mkdir(parents=True, exist_ok=True)
    for src in products:
        dest = safe_dir / src.name
        if not dest.exists():
            dest.symlink_to(src.resolve())
    out = ctx.workdir / "inputs" / "stack"
    if ingested(safe_dir, out):
        return out  # ingested by an earlier attempt of this job
    if out.exists():
        shutil.rmtree(out)

    def progress(fraction: float, message: str) -> None:
        ctx.progress(0.1 + 0.3 * fraction, message)  # ingest: 10-40 % of the job

    orbits = _precise_orbits(products, ctx)
    w, s, e, n = parse_aoi(request.aoi).bounds
    half = _MIN_AOI_DEG / 2  # a point or a line gets a small area around it
    if e - w < _MIN_AOI_DEG:
        w, e = (w + e) / 2 - half, (w + e) / 2 + half
    if n - s < _MIN_AOI_DEG:
        s, n = (s + n) / 2 - half, (s + n) / 2 + half
    cfg = IngestConfig(safe=safe_dir, out=out, dem=dem, orbit_source="auto", orbits=orbits,
                       aoi=(w, s, e, n))
    return ingest(cfg, progress=progress).stack_dir


_TS_FILES = {"velocity": "velocity", "timeseries": "timeseries", "netcdf": "timeseries_nc",
             "report": "report", "item": "item"}
_TS_LAYERS = ("velocity_std", "temporal_coherence", "residual", "misclosure",
              "mean_coherence", "dem_error")
_MAX_UNZIPPED = 20 << 30


def _unpack(src: Path, dest: Path) -> Path:
    """A zip that is no HyP3/FLATSIM product: its files, extracted safely into ``dest``."""
    import zipfile

    from gdmio.insar.flatsim import is_flatsim
    from gdmio.insar.hyp3 import is_hyp3

    if src.suffix.lower() != ".zip" or is_hyp3(src) or is_flatsim(src):
        return src
    try:
        with zipfile.ZipFile(src) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > _MAX_UNZIPPED:
                raise InputError(f"{src.name} unpacks to more than 20 GiB")
            for m in members:
                parts = Path(m.filename).parts
                if m.filename.startswith("/") or ".." in parts or not parts:
                    raise InputError(f"{src.name}: unsafe member path {m.filename!r}")
            folder = dest / src.stem
            if not folder.exists():
                tmp = dest / f".{src.stem}.part"
                shutil.rmtree(tmp, ignore_errors=True)
                zf.extractall(tmp, members)
                replace(tmp, folder)
            return folder
    except zipfile.BadZipFile:
        raise InputError(f"{src.name} is not a readable zip") from None


def _timeseries(raw: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The gdm-sar process on unwrapped interferograms made elsewhere."""
    from gdm_sar.timeseries import TimeseriesConfig, run_timeseries

    refs = raw.pop("interferograms")
    unpack = ctx.workdir / "inputs" / "interferograms"
    unpack.mkdir(parents=True, exist_ok=True)
    inputs = [_unpack(resolve_reference(ref, ctx, i), unpack) for i, ref in enumerate(refs)]
    gnss = resolve_reference(raw["gnss"], ctx, len(refs)) if raw.get("gnss") else None
    cfg = TimeseriesConfig(
        interferograms=inputs, out=ctx.workdir / "products", wavelength=raw.get("wavelength"),
        reference=raw.get("reference_lonlat"), gnss=gnss,
        **{k: raw[k] for k in ("min_coherence", "min_temporal_coherence",
                               "min_mean_coherence", "dem_error", "gap_weight",
                               *CorrectionOptions.model_fields)
           if raw.get(k) is not None and k not in SERVER_PATH_FIELDS})
    out = run_timeseries(cfg, progress=ctx.progress)
    result: dict[str, Any] = {}
    for attr, name in _TS_FILES.items():
        path = getattr(out, attr)
        if path is not None:
            result[name] = str(Path(path).relative_to(ctx.workdir))
    for name in _TS_LAYERS:
        if name in out.layers:
            result[name] = str(out.layers[name].relative_to(ctx.workdir))
    result["network"] = str((out.out_dir / "network.png").relative_to(ctx.workdir))
    result["quicklooks"] = [str(q.relative_to(ctx.workdir)) for q in out.quicklooks]
    return result


def execute(inputs: BaseModel, ctx: JobContext) -> dict[str, Any]:
    """Run GDM-SAR on the job's SLCs, SNAP products, Sentinel-1 scenes or interferograms."""
    from gdm_sar.pipeline import run

    raw = inputs.model_dump()
    if raw.get("interferograms") is not None:
        return _timeseries(raw, ctx)
    for name in ("wavelength", "reference_lonlat", "gnss"):
        if raw.pop(name, None) is not None:
            raise InputError(f"'{name}' applies to 'interferograms' only")
    raw.pop("interferograms", None)
    request = raw.pop("scenes")
    refs = raw.pop("slcs")
    dem_ref = raw.pop("dem")
    geocode = False
    if request is not None:
        scene_req = S1SceneRequest.model_validate(request)
        sources = scene_files(scene_req, ctx, min_scenes=2)
        tiffs = [p for p in sources if p.suffix.lower() in (".tif", ".tiff")]
        if tiffs and len(tiffs) < len(sources):
            raise InputError("the archive gave a mix of SAFE products and single bursts; "
                             "ask for one product type ('product': 'SLC')")
        if not tiffs:
            dem = resolve_reference(dem_ref, ctx, len(sources)) if dem_ref else None
            stack = _ingest_safe(sources, scene_req, dem, ctx)
            geocode = True
    elif dem_ref:
        raise InputError("'dem' applies to Sentinel-1 products given as 'scenes'; "
                         "coregistered SLCs need none")
    else:
        from gdm_sar.snap import import_snap_inputs

        sources = [resolve_reference(ref, ctx, i) for i, ref in enumerate(refs)]
        snap_stack = import_snap_inputs(sources, ctx.workdir / "inputs",
                                        lambda f, m: ctx.progress(0.1 * f, m))
        if snap_stack is not None:  # SNAP-coregistered products (BEAM-DIMAP, ZNAP)
            stack, geocode = snap_stack, True
    if not geocode:
        stack = ctx.workdir / "inputs" / "stack"
        stack.mkdir(parents=True, exist_ok=True)
        for src in sources:
            dest = stack / src.name
            if not dest.exists():
                dest.symlink_to(src.resolve())
    cfg = SarConfig(stack=stack, out=ctx.workdir / "products", **raw)
    out = run(cfg, progress=ctx.progress)
    result = product_refs(out, _SAR_FILES, ctx)
    if (out.out_dir / "timeseries.nc").is_file():
        result["timeseries_nc"] = str((out.out_dir / "timeseries.nc").relative_to(ctx.workdir))
    if geocode:
        from gdm_sar.snap import SNAP_GEOMETRY, geocode_snap_products
        from insar.geocode import geocode_products

        ctx.progress(0.97, "geocoding")
        geo = geocode_snap_products if (stack / SNAP_GEOMETRY).is_file() else geocode_products
        for path in geo(out.out_dir, stack, Path(out.out_dir) / "geocoded"):
            result[f"{path.stem}_geocoded"] = str(path.relative_to(ctx.workdir))
    return result


PROCESS = ProcessSpec(
    id="gdm-sar", title="GDM-SAR: InSAR time series and LOS velocity", version="1.0.0",
    description="Small-baseline InSAR of a coregistered Sentinel-1 SLC stack: "
    "interferograms, coherence, filtering, phase unwrapping, NSBAS time series and "
    "line-of-sight velocity (metres, positive towards the satellite).",
    inputs_model=SarJobInputs,
    outputs={
        "velocity": OutputSpec("LOS velocity (m/yr)", "file", COG),
        "timeseries": OutputSpec("LOS displacement time series (m)", "file", COG),
        "velocity_std": OutputSpec("Velocity 1-sigma (m/yr)", "file", COG),
        "temporal_coherence": OutputSpec("Temporal coherence", "file", COG),
        "residual": OutputSpec("RMS pair misfit (m)", "file", COG),
        "misclosure": OutputSpec("RMS triplet misclosure (m)", "file", COG),
        "mean_coherence": OutputSpec("Mean coherence", "file", COG),
        "dem_error": OutputSpec("DEM error (m)", "file", COG),
        "timeseries_nc": OutputSpec("LOS time series, velocity and quality layers as "
                                    "CF-1.8 NetCDF", "file", "application/x-netcdf"),
        "network": OutputSpec("Network plot", "file", "image/png"),
        **{f"{n}_geocoded": OutputSpec(f"{n.replace('_', ' ').capitalize()} on a UTM "
                                       "grid (Sentinel-1 products)", "file", COG)
           for n in _GEOCODED},
        **PACKAGE_OUTPUTS,
    },
    execute=execute, keywords=("InSAR", "Sentinel-1", "SBAS", "deformation"),
)
