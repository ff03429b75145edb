"""What every process is made of: its spec, its job context, input references, scenes.

The contract between the services and the job machinery. Each service exports one
:class:`ProcessSpec` as ``PROCESS`` from its own ``process.py`` (``gdm_opt.process``,
``gdm_sar.process``, ``dsm_opt.process``, ``flatsim.process``; ``workflows.echo``) and
declares it in the ``gdm_service.processes`` entry-point group of ``pyproject.toml``;
:mod:`workflows.processes` finds them there. A process module imports this one and its
own service, never :mod:`workflows`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from gdmcore import InputError, Progress, check_file_name
from gdmio.providers.resolve import SceneRequest

__all__ = ["ProcessSpec", "OutputSpec", "JobContext", "Cancelled", "Progress",
           "resolve_reference", "FilesOrScenes", "scene_files", "scenes_field",
           "S1SceneRequest", "S2SceneRequest", "PleiadesSceneRequest", "COG", "ServerOnly",
           "server_only",
           "product_refs", "input_files", "PACKAGE_OUTPUTS"]

COG = "image/tiff; application=geotiff; profile=cloud-optimized"


class Cancelled(Exception):
    """Raised inside a running process when its job was dismissed."""


@dataclass(frozen=True)
class OutputSpec:
    """One output of a process: a file (by reference) or a literal value."""

    title: str
    kind: str  # "file" or "literal"
    media_type: str = "application/octet-stream"
    schema: dict | None = None


PACKAGE_OUTPUTS = {
    "item": OutputSpec("STAC item", "file", "application/geo+json"),
    "report": OutputSpec("Job report", "file", "application/json"),
}
"""The outputs of the packaging step of every product-writing service (its last outputs)."""


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
        """JSON schema of every input, keyed by input name (for process descriptions).

        The inputs the job-input model declares itself (the files, ``scenes``) come
        first, then those it inherits from its config model, in the model's order.
        """
        schema = self.inputs_model.model_json_schema()
        defs = schema.get("$defs", {})
        out = {}
        required = set(schema.get("required", []))
        own = list(vars(self.inputs_model).get("__annotations__", {}))
        props = schema.get("properties", {})
        ordered = sorted(props, key=lambda n: (own.index(n) if n in own else len(own)))
        for name, prop in ((n, props[n]) for n in ordered):
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

    Accepted: an ``http(s)://`` URL (downloaded through the guarded client of
    :mod:`gdmio.outbound`: hosts checked, size capped per input and per job, deadline),
    or the name of a file uploaded to the service (``upload:NAME`` or ``NAME``). Paths
    that climb out of the uploads folder (``..``) and other schemes are refused.
    """
    inputs_dir = ctx.workdir / "inputs"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    parsed = urllib.parse.urlparse(ref)
    if parsed.scheme in ("http", "https"):
        name = Path(urllib.parse.unquote(parsed.path)).name or f"input{index}"
        check_file_name(name)
        dest = inputs_dir / name
        if dest.exists() and dest.stat().st_size > 0:
            return dest  # fetched by an earlier attempt of this job
        from gdmio.outbound import OutboundError, fetch_to_file, job_input_cap, safe_url

        fetched = sum(p.stat().st_size for p in inputs_dir.iterdir() if p.is_file())
        try:
            fetch_to_file(ref, dest, label=f"input {safe_url(ref)}",
                          budget=max(0, job_input_cap() - fetched))
        except OutboundError as exc:
            raise InputError(f"cannot fetch {exc}") from None
        return dest
    if parsed.scheme not in ("", "upload"):
        raise InputError(f"unsupported input reference {ref!r}: use http(s):// or an upload name")
    name = parsed.path if parsed.scheme == "upload" else ref
    check_file_name(name)
    src = ctx.uploads_dir / name
    if not src.is_file():
        raise InputError(f"no uploaded file named {name!r}")
    return src


# ------------------------------------------------------- files or area + dates
class S2SceneRequest(SceneRequest):
    """Sentinel-2 scenes by area and dates (found in the STAC archive, AOI read only)."""

    provider: Literal["s2"] = Field("s2", description="Sentinel-2 through the STAC API.")


class PleiadesSceneRequest(SceneRequest):
    """Pléiades stereo views by area and dates (registered DINAMIS deliveries)."""

    provider: Literal["pleiades"] = Field("pleiades",
                                          description="Registered Pléiades deliveries.")


class S1SceneRequest(SceneRequest):
    """Sentinel-1 scenes by area and dates (found in the ASF archive)."""

    provider: Literal["s1"] = Field("s1", description="Sentinel-1 through ASF search.")


class FilesOrScenes(BaseModel):
    """Inputs given either as files (``files_field``) or as ``scenes`` (area + dates)."""

    model_config = ConfigDict(extra="forbid")
    files_field: ClassVar[str] = "images"

    @model_validator(mode="after")
    def _one_source(self) -> FilesOrScenes:
        files = getattr(self, self.files_field)
        scenes = getattr(self, "scenes")  # noqa: B009  (declared by the subclasses)
        if files is None and scenes is None:
            raise ValueError(f"give the scenes either as files ('{self.files_field}') or "
                             "by area and dates ('scenes')")
        if files is not None and scenes is not None:
            raise ValueError(f"give either '{self.files_field}' or 'scenes', not both")
        return self


def scene_files(request: SceneRequest, ctx: JobContext, min_scenes: int) -> list[Path]:
    """Search and fetch the scenes of ``request`` through the shared scene cache."""
    from gdmio.providers.resolve import resolve_scenes, scene_cache_from_env

    cache = scene_cache_from_env(ctx.scene_cache)

    def progress(fraction: float, message: str) -> None:
        ctx.progress(0.1 * fraction, message)  # fetching is the first tenth of a job

    return resolve_scenes(request, cache, progress=progress, min_scenes=min_scenes)


def scenes_field(kind: type[SceneRequest], what: str) -> Any:
    """The field of the optional ``scenes`` input of a job-input model."""
    return Field(
        None, description=f"Instead of files: {what} by area of interest and dates "
        "({aoi, start, end, ...}); the service finds and fetches them.",
        json_schema_extra={"x-scene-search": kind.model_fields["provider"].default})


def _server_only(value: Any) -> None:
    if value is not None:
        raise ValueError("set by the service, not an input of a job")
    return None


ServerOnly = Annotated[None, BeforeValidator(_server_only), SkipJsonSchema()]
"""Type of a config field a job's user may not set (server paths, memory budgets):
``field: ServerOnly = server_only()`` in a job-input model derived from a config model.
The field leaves the process description, any value but null is refused, and the config
built by the process gets its default (or the value the process gives)."""


def server_only() -> Any:
    """The field of a :data:`ServerOnly` input (hidden, null only, not dumped)."""
    return Field(None, exclude=True)


def product_refs(outputs: Any, names: tuple[str, ...], ctx: JobContext) -> dict[str, Any]:
    """The products of a service's ``run`` as paths relative to the job's folder.

    ``names`` are attributes of the service's outputs dataclass (absent or None ones are
    left out); its ``quicklooks`` list, when it has one, comes as ``quicklooks``.
    """
    result: dict[str, Any] = {}
    for name in names:
        path = getattr(outputs, name, None)
        if path is not None:
            result[name] = str(Path(path).relative_to(ctx.workdir))
    looks = getattr(outputs, "quicklooks", None)
    if looks is not None:
        result["quicklooks"] = [str(Path(q).relative_to(ctx.workdir)) for q in looks]
    return result


def input_files(raw: dict[str, Any], files_field: str, request_model: type[SceneRequest],
                ctx: JobContext, min_scenes: int = 2, max_scenes: int | None = None,
                what: str = "scenes", hint: str = "narrow the dates") -> list[Path]:
    """Local paths of a job's scenes, given as files or by area and dates.

    Pops ``files_field`` and ``scenes`` from ``raw`` (a :class:`FilesOrScenes` dump):
    files are resolved as references, a scene request is searched and fetched through
    the scene cache. More than ``max_scenes`` found is an :class:`InputError` naming
    ``what`` was found and how to narrow the request (``hint``).
    """
    refs = raw.pop(files_field)
    request = raw.pop("scenes")
    if request is None:
        return [resolve_reference(ref, ctx, i) for i, ref in enumerate(refs)]
    paths = scene_files(request_model.model_validate(request), ctx, min_scenes=min_scenes)
    if max_scenes is not None and len(paths) > max_scenes:
        raise InputError(f"{len(paths)} {what} over the AOI and dates, at most "
                         f"{max_scenes} wanted: {hint}")
    return paths
