"""The processes the service offers, generated from the services' own config models.

Each :class:`ProcessSpec` couples a pydantic inputs model (the process description that
WPS, OGC API - Processes and the web form show is generated from it) with an
``execute(inputs, ctx)`` function that runs the service's ``run(cfg)`` in a job's work
folder. Nothing here knows about HTTP or Celery.
"""

from __future__ import annotations

import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from gdm_opt.config import OptConfig
from gdm_sar.config import SarConfig
from gdmio.errors import InputError
from gdmio.providers.resolve import SceneRequest

__all__ = ["ProcessSpec", "OutputSpec", "JobContext", "PROCESSES", "get_process",
           "resolve_reference", "Cancelled"]

Progress = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised inside a running process when its job was dismissed."""


@dataclass(frozen=True)
class OutputSpec:
    """One output of a process: a file (by reference) or a literal value."""

    title: str
    kind: str  # "file" or "literal"
    media_type: str = "application/octet-stream"
    schema: dict | None = None


@dataclass
class JobContext:
    """What a process needs from its job: a work folder, uploads, progress."""

    job_id: str
    workdir: Path
    uploads_dir: Path
    progress: Progress
    scene_cache: Path | None = None


@dataclass(frozen=True)
class ProcessSpec:
    """A process: identifier, description, inputs model, outputs and its execute function."""

    id: str
    title: str
    description: str
    version: str
    inputs_model: type[BaseModel]
    outputs: dict[str, OutputSpec]
    execute: Callable[[BaseModel, JobContext], dict[str, Any]]
    default_queue: str = "ondemand"
    keywords: tuple[str, ...] = ()

    def validate_inputs(self, raw: dict[str, Any]) -> BaseModel:
        """Inputs checked against the model (raises pydantic.ValidationError)."""
        return self.inputs_model.model_validate(raw)

    def input_schemas(self) -> dict[str, dict[str, Any]]:
        """JSON schema of every input, keyed by input name (for process descriptions)."""
        schema = self.inputs_model.model_json_schema()
        defs = schema.get("$defs", {})
        out = {}
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            prop = _inline_refs(prop, defs)
            prop["x-required"] = name in required
            out[name] = prop
        return out


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs.get(node["$ref"].split("/")[-1], {})
            merged = {**_inline_refs(target, defs),
                      **{k: v for k, v in node.items() if k != "$ref"}}
            return merged
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


# ------------------------------------------------------------------ references
def resolve_reference(ref: str, ctx: JobContext, index: int = 0) -> Path:
    """Bring an input file into the job's work folder and return its path.

    Accepted: an ``http(s)://`` URL (downloaded), or the name of a file uploaded to the
    service (``upload:NAME`` or ``NAME``). Paths that climb out of the uploads folder
    (``..``) and other schemes are refused.
    """
    inputs_dir = ctx.workdir / "inputs"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    parsed = urllib.parse.urlparse(ref)
    if parsed.scheme in ("http", "https"):
        name = Path(urllib.parse.unquote(parsed.path)).name or f"input{index}"
        _check_name(name)
        dest = inputs_dir / name
        if dest.exists() and dest.stat().st_size > 0:
            return dest  # fetched by an earlier attempt of this job
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            with urllib.request.urlopen(ref, timeout=120) as resp, open(tmp, "wb") as fh:
                shutil.copyfileobj(resp, fh, length=1 << 20)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InputError(f"cannot fetch input {ref}: {exc}") from None
        tmp.replace(dest)
        return dest
    if parsed.scheme not in ("", "upload"):
        raise InputError(f"unsupported input reference {ref!r}: use http(s):// or an upload name")
    name = parsed.path if parsed.scheme == "upload" else ref
    _check_name(name)
    src = ctx.uploads_dir / name
    if not src.is_file():
        raise InputError(f"no uploaded file named {name!r}")
    return src


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise InputError(f"refused file name {name!r}")


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
# ------------------------------------------------------- files or area + dates
class S2SceneRequest(SceneRequest):
    """Sentinel-2 scenes by area and dates (found in the STAC archive, AOI read only)."""

    provider: Literal["s2"] = Field("s2", description="Sentinel-2 through the STAC API.")


class S1SceneRequest(SceneRequest):
    """Sentinel-1 scenes by area and dates (found in the ASF archive)."""

    provider: Literal["s1"] = Field("s1", description="Sentinel-1 through ASF search.")


class _FilesOrScenes(BaseModel):
    """Inputs given either as files (``files_field``) or as ``scenes`` (area + dates)."""

    model_config = ConfigDict(extra="forbid")
    files_field: ClassVar[str] = "images"

    @model_validator(mode="after")
    def _one_source(self) -> _FilesOrScenes:
        files = getattr(self, self.files_field)
        scenes = getattr(self, "scenes")  # noqa: B009  (declared by the subclasses)
        if files is None and scenes is None:
            raise ValueError(f"give the scenes either as files ('{self.files_field}') or "
                             "by area and dates ('scenes')")
        if files is not None and scenes is not None:
            raise ValueError(f"give either '{self.files_field}' or 'scenes', not both")
        return self


def _scene_files(request: SceneRequest, ctx: JobContext, min_scenes: int) -> list[Path]:
    """Search and fetch the scenes of ``request`` through the shared scene cache."""
    from gdmio.providers.resolve import resolve_scenes, scene_cache_from_env

    cache = scene_cache_from_env(ctx.scene_cache)

    def progress(fraction: float, message: str) -> None:
        ctx.progress(0.1 * fraction, message)  # fetching is the first tenth of a job

    return resolve_scenes(request, cache, progress=progress, min_scenes=min_scenes)


def _scenes_field(kind: type[SceneRequest], what: str) -> tuple[Any, Any]:
    return (kind | None, Field(
        None, description=f"Instead of files: {what} by area of interest and dates "
        "({aoi, start, end, ...}); the service finds and fetches them.",
        json_schema_extra={"x-scene-search": kind.model_fields["provider"].default}))


# -------------------------------------------------------------------- gdm-opt
_OPT_FIELDS = {name: (f.annotation, f) for name, f in OptConfig.model_fields.items()
               if name not in ("images", "out")}
OptJobInputs = create_model(  # type: ignore[call-overload]
    "OptJobInputs",
    __base__=_FilesOrScenes,
    images=(list[str] | None, Field(
        None, description="Images, one per date: http(s) URLs or names of uploaded files "
        "(GeoTIFF, JP2, Sentinel-2 SAFE zip).", min_length=2, max_length=200)),
    scenes=_scenes_field(S2SceneRequest, "Sentinel-2 scenes"),
    **_OPT_FIELDS,
)

_OPT_FILES = ("east", "north", "magnitude", "score", "timeseries_east", "timeseries_north",
              "velocity_east", "velocity_north", "residual", "item", "report")
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"


def _gdm_opt(inputs: BaseModel, ctx: JobContext) -> dict[str, Any]:
    from gdm_opt.pipeline import run

    raw = inputs.model_dump()
    request = raw.pop("scenes")
    refs = raw.pop("images")
    if request is not None:
        images = _scene_files(S2SceneRequest.model_validate(request), ctx, min_scenes=2)
    else:
        images = [resolve_reference(ref, ctx, i) for i, ref in enumerate(refs)]
    if raw.get("stable") not in (None, "none", "auto"):
        # A mask comes like any other input file (URL or upload), never as a server path.
        raw["stable"] = str(resolve_reference(raw["stable"], ctx, len(images)))
    cfg = OptConfig(images=images, out=ctx.workdir / "products", **raw)
    out = run(cfg, progress=ctx.progress)
    result: dict[str, Any] = {}
    for name in _OPT_FILES:
        path = getattr(out, name, None)
        if path is not None:
            result[name] = str(Path(path).relative_to(ctx.workdir))
    result["quicklooks"] = [str(Path(q).relative_to(ctx.workdir)) for q in out.quicklooks]
    return result


# -------------------------------------------------------------------- gdm-sar
_SAR_FIELDS = {name: (f.annotation, f) for name, f in SarConfig.model_fields.items()
               if name not in ("stack", "out", "block_mb")}  # memory is the server's call


class _SarBase(_FilesOrScenes):
    files_field: ClassVar[str] = "slcs"


SarJobInputs = create_model(  # type: ignore[call-overload]
    "SarJobInputs",
    __base__=_SarBase,
    slcs=(list[str] | None, Field(
        None, description="Coregistered SLCs, one CFloat32 GeoTIFF per date (the stack "
        "convention): http(s) URLs or names of uploaded files.", min_length=2,
        max_length=1000)),
    scenes=_scenes_field(S1SceneRequest, "Sentinel-1 scenes"),
    **_SAR_FIELDS,
)
_SAR_FILES = ("velocity", "timeseries", "velocity_std", "temporal_coherence", "residual",
              "misclosure", "mean_coherence", "dem_error", "network", "item", "report")


def _gdm_sar(inputs: BaseModel, ctx: JobContext) -> dict[str, Any]:
    from gdm_sar.pipeline import run

    raw = inputs.model_dump()
    stack = ctx.workdir / "inputs" / "stack"
    stack.mkdir(parents=True, exist_ok=True)
    request = raw.pop("scenes")
    refs = raw.pop("slcs")
    if request is not None:
        sources = _scene_files(S1SceneRequest.model_validate(request), ctx, min_scenes=2)
        safe = [p.name for p in sources if p.suffix.lower() not in (".tif", ".tiff")]
        if safe:
            raise InputError(
                f"the archive gave Sentinel-1 SAFE products ({', '.join(safe[:3])}"
                f"{', ...' if len(safe) > 3 else ''}); turning SAFE products into a "
                "coregistered stack is not available yet: give coregistered SLCs in 'slcs'")
    else:
        sources = [resolve_reference(ref, ctx, i) for i, ref in enumerate(refs)]
    for src in sources:
        dest = stack / src.name
        if not dest.exists():
            dest.symlink_to(src.resolve())
    cfg = SarConfig(stack=stack, out=ctx.workdir / "products", **raw)
    out = run(cfg, progress=ctx.progress)
    result: dict[str, Any] = {}
    for name in _SAR_FILES:
        path = getattr(out, name, None)
        if path is not None:
            result[name] = str(Path(path).relative_to(ctx.workdir))
    result["quicklooks"] = [str(Path(q).relative_to(ctx.workdir)) for q in out.quicklooks]
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
