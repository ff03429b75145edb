"""The processes the service offers, generated from the services' own config models.

Each :class:`ProcessSpec` couples a pydantic inputs model (the process description that
WPS, OGC API - Processes and the web form show is generated from it) with an
``execute(inputs, ctx)`` function that runs the service's ``run(cfg)`` in a job's work
folder. Nothing here knows about HTTP or Celery.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from gdm_opt.config import OptConfig
from gdm_sar.config import SarConfig
from gdmcore import InputError
from workflows.process_base import (
    Cancelled,
    FilesOrScenes,
    JobContext,
    OutputSpec,
    PleiadesSceneRequest,
    ProcessSpec,
    S1SceneRequest,
    S2SceneRequest,
    input_files,
    product_refs,
    resolve_reference,
    scene_files,
    scenes_field,
)

__all__ = ["ProcessSpec", "OutputSpec", "JobContext", "PROCESSES", "get_process",
           "resolve_reference", "Cancelled", "FilesOrScenes", "scene_files", "scenes_field",
           "S1SceneRequest", "S2SceneRequest", "PleiadesSceneRequest"]

# ---------------------------------------------------------------------- echo
class EchoInputs(BaseModel):
    """Inputs of the echo process."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field(description="Any text; returned unchanged as output 'message'.",
                         max_length=100_000)


def _echo(inputs: BaseModel, ctx: JobContext) -> dict[str, Any]:
    assert isinstance(inputs, EchoInputs)
    ctx.progress(1.0, "echoed")
    return {"message": inputs.message}


# -------------------------------------------------------------------- gdm-opt
# -------------------------------------------------------------------- gdm-opt
_OPT_FIELDS = {name: (f.annotation, f) for name, f in OptConfig.model_fields.items()
               if name not in ("images", "out")}
OptJobInputs = create_model(  # type: ignore[call-overload]
    "OptJobInputs",
    __base__=FilesOrScenes,
    images=(list[str] | None, Field(
        None, description="Images, one per date: http(s) URLs or names of uploaded files "
        "(GeoTIFF, JP2, Sentinel-2 SAFE zip).", min_length=2, max_length=200)),
    scenes=scenes_field(S2SceneRequest, "Sentinel-2 scenes"),
    **_OPT_FIELDS,
)

_OPT_FILES = ("east", "north", "magnitude", "score", "timeseries_east", "timeseries_north",
              "velocity_east", "velocity_north", "residual", "item", "report")
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"


def _gdm_opt(inputs: BaseModel, ctx: JobContext) -> dict[str, Any]:
    from gdm_opt.pipeline import run

    raw = inputs.model_dump()
    images = input_files(raw, "images", S2SceneRequest, ctx)
    if raw.get("stable") not in (None, "none", "auto"):
        # A mask comes like any other input file (URL or upload), never as a server path.
        raw["stable"] = str(resolve_reference(raw["stable"], ctx, len(images)))
    cfg = OptConfig(images=images, out=ctx.workdir / "products", **raw)
    return product_refs(run(cfg, progress=ctx.progress), _OPT_FILES, ctx)


# -------------------------------------------------------------------- gdm-sar
_SAR_FIELDS = {name: (f.annotation, f) for name, f in SarConfig.model_fields.items()
               if name not in ("stack", "out", "block_mb")}  # memory is the server's call


class _SarBase(FilesOrScenes):
    files_field: ClassVar[str] = "slcs"


SarJobInputs = create_model(  # type: ignore[call-overload]
    "SarJobInputs",
    __base__=_SarBase,
    slcs=(list[str] | None, Field(
        None, description="Coregistered SLCs, one CFloat32 GeoTIFF per date (the stack "
        "convention), or SNAP-coregistered products (zips of a BEAM-DIMAP .dim with its "
        ".data folder, or .znap.zip; geocoded with SNAP's lat/lon): http(s) URLs or names "
        "of uploaded files.", min_length=1,
        max_length=1000)),
    scenes=scenes_field(S1SceneRequest, "Sentinel-1 IW SLC products (ingested: bursts "
                        "over the AOI, TOPS coregistration with ESD, geocoding)"),
    dem=(str | None, Field(
        None, description="For Sentinel-1 products (scenes): DEM GeoTIFF in EPSG:4326 with "
        "ellipsoidal heights (m) used for coregistration and geocoding, as an http(s) URL "
        "or an uploaded file; none: the ellipsoid.")),
    **_SAR_FIELDS,
)
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


def _gdm_sar(inputs: BaseModel, ctx: JobContext) -> dict[str, Any]:
    from gdm_sar.pipeline import run

    raw = inputs.model_dump()
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
    if geocode:
        from gdm_sar.snap import SNAP_GEOMETRY, geocode_snap_products
        from insar.geocode import geocode_products

        ctx.progress(0.97, "geocoding")
        geo = geocode_snap_products if (stack / SNAP_GEOMETRY).is_file() else geocode_products
        for path in geo(out.out_dir, stack, Path(out.out_dir) / "geocoded"):
            result[f"{path.stem}_geocoded"] = str(path.relative_to(ctx.workdir))
    return result


PROCESSES: dict[str, ProcessSpec] = {
    "echo": ProcessSpec(
        id="echo", title="Echo", version="1.0.0",
        description="Returns its input 'message' unchanged (for clients and test suites).",
        inputs_model=EchoInputs,
        outputs={"message": OutputSpec("The input message", "literal", "text/plain",
                                       {"type": "string"})},
        execute=_echo, keywords=("test",),
    ),
    "gdm-opt": ProcessSpec(
        id="gdm-opt", title="GDM-OPT: ground displacement from optical images",
        version="1.0.0",
        description="Sub-pixel correlation of two or more optical images of one area "
        "(Sentinel-2 or any GeoTIFF/JP2): East/North displacement maps in metres, and for "
        "three dates or more a time series and a velocity.",
        inputs_model=OptJobInputs,
        outputs={
            "east": OutputSpec("East displacement (m)", "file", _COG),
            "north": OutputSpec("North displacement (m)", "file", _COG),
            "magnitude": OutputSpec("Displacement magnitude (m)", "file", _COG),
            "score": OutputSpec("Correlation score", "file", _COG),
            "timeseries_east": OutputSpec("East time series (m), 3+ dates", "file", _COG),
            "timeseries_north": OutputSpec("North time series (m), 3+ dates", "file", _COG),
            "velocity_east": OutputSpec("East velocity (m/yr), 3+ dates", "file", _COG),
            "velocity_north": OutputSpec("North velocity (m/yr), 3+ dates", "file", _COG),
            "residual": OutputSpec("RMS pair misfit (m), 3+ dates", "file", _COG),
            "item": OutputSpec("STAC item", "file", "application/geo+json"),
            "report": OutputSpec("Job report", "file", "application/json"),
        },
        execute=_gdm_opt, keywords=("optical", "correlation", "Sentinel-2", "deformation"),
    ),
    "gdm-sar": ProcessSpec(
        id="gdm-sar", title="GDM-SAR: InSAR time series and LOS velocity", version="1.0.0",
        description="Small-baseline InSAR of a coregistered Sentinel-1 SLC stack: "
        "interferograms, coherence, filtering, phase unwrapping, NSBAS time series and "
        "line-of-sight velocity (metres, positive towards the satellite).",
        inputs_model=SarJobInputs,
        outputs={
            "velocity": OutputSpec("LOS velocity (m/yr)", "file", _COG),
            "timeseries": OutputSpec("LOS displacement time series (m)", "file", _COG),
            "velocity_std": OutputSpec("Velocity 1-sigma (m/yr)", "file", _COG),
            "temporal_coherence": OutputSpec("Temporal coherence", "file", _COG),
            "residual": OutputSpec("RMS pair misfit (m)", "file", _COG),
            "misclosure": OutputSpec("RMS triplet misclosure (m)", "file", _COG),
            "mean_coherence": OutputSpec("Mean coherence", "file", _COG),
            "dem_error": OutputSpec("DEM error (m)", "file", _COG),
            "network": OutputSpec("Network plot", "file", "image/png"),
            **{f"{n}_geocoded": OutputSpec(f"{n.replace('_', ' ').capitalize()} on a UTM "
                                           "grid (Sentinel-1 products)", "file", _COG)
               for n in _GEOCODED},
            "item": OutputSpec("STAC item", "file", "application/geo+json"),
            "report": OutputSpec("Job report", "file", "application/json"),
        },
        execute=_gdm_sar, keywords=("InSAR", "Sentinel-1", "SBAS", "deformation"),
    ),
}


def get_process(process_id: str) -> ProcessSpec:
    """A process by identifier (KeyError naming the known ones otherwise)."""
    try:
        return PROCESSES[process_id]
    except KeyError:
        raise KeyError(f"unknown process {process_id!r}; known: {', '.join(PROCESSES)}") from None


def _register_service_processes() -> None:
    """Add the processes defined in their own modules (they import this one)."""
    from workflows.process_dsm import DSM_OPT_PROCESS
    from workflows.process_flatsim import FLATSIM_PROCESS

    for spec in (DSM_OPT_PROCESS, FLATSIM_PROCESS):
        PROCESSES[spec.id] = spec


_register_service_processes()
