"""The ``gdm-opt`` process: GDM-OPT as a service process (entry point ``gdm-opt``).

Its inputs model is generated from :class:`gdm_opt.config.OptConfig`; the images come as
files (URLs or uploads) or by area and dates (``scenes``: Sentinel-2 through STAC).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gdm_opt.config import OptConfig
from gdmio.process import (
    COG,
    PACKAGE_OUTPUTS,
    FilesOrScenes,
    JobContext,
    OutputSpec,
    ProcessSpec,
    S2SceneRequest,
    ServerOnly,
    input_files,
    product_refs,
    resolve_reference,
    scenes_field,
    server_only,
)

__all__ = ["PROCESS", "OptJobInputs"]


class OptJobInputs(FilesOrScenes, OptConfig):
    """Inputs of a gdm-opt job: :class:`OptConfig`, every bound and validator kept.

    The images come as references or ``scenes`` instead of paths; no output folder.
    """

    images: list[str] | None = Field(  # type: ignore[assignment]
        None, description="Images, one per date: http(s) URLs or names of uploaded files "
        "(GeoTIFF, JP2, Sentinel-2 SAFE zip).", min_length=2, max_length=200)
    scenes: S2SceneRequest | None = scenes_field(S2SceneRequest, "Sentinel-2 scenes")
    out: ServerOnly = server_only()  # type: ignore[assignment]


_OPT_FILES = ("east", "north", "magnitude", "score", "timeseries_east", "timeseries_north",
              "velocity_east", "velocity_north", "residual", "item", "report")


def execute(inputs: BaseModel, ctx: JobContext) -> dict[str, Any]:
    """Run GDM-OPT on the job's images (files or scenes); products relative to the job."""
    from gdm_opt.pipeline import run

    raw = inputs.model_dump()
    images = input_files(raw, "images", S2SceneRequest, ctx)
    if raw.get("stable") not in (None, "none", "auto"):
        # A mask comes like any other input file (URL or upload), never as a server path.
        raw["stable"] = str(resolve_reference(raw["stable"], ctx, len(images)))
    cfg = OptConfig(images=images, out=ctx.workdir / "products", **raw)
    return product_refs(run(cfg, progress=ctx.progress), _OPT_FILES, ctx)


PROCESS = ProcessSpec(
    id="gdm-opt", title="GDM-OPT: ground displacement from optical images",
    version="1.0.0",
    description="Sub-pixel correlation of two or more optical images of one area "
    "(Sentinel-2 or any GeoTIFF/JP2): East/North displacement maps in metres, and for "
    "three dates or more a time series and a velocity.",
    inputs_model=OptJobInputs,
    outputs={
        "east": OutputSpec("East displacement (m)", "file", COG),
        "north": OutputSpec("North displacement (m)", "file", COG),
        "magnitude": OutputSpec("Displacement magnitude (m)", "file", COG),
        "score": OutputSpec("Correlation score", "file", COG),
        "timeseries_east": OutputSpec("East time series (m), 3+ dates", "file", COG),
        "timeseries_north": OutputSpec("North time series (m), 3+ dates", "file", COG),
        "velocity_east": OutputSpec("East velocity (m/yr), 3+ dates", "file", COG),
        "velocity_north": OutputSpec("North velocity (m/yr), 3+ dates", "file", COG),
        "residual": OutputSpec("RMS pair misfit (m), 3+ dates", "file", COG),
        **PACKAGE_OUTPUTS,
    },
    execute=execute, keywords=("optical", "correlation", "Sentinel-2", "deformation"),
)
