"""The ``dsm-opt`` process: DSM-OPT as a service process, generated from :class:`DsmConfig`.

Exported as :data:`PROCESS` (entry point ``dsm-opt``). The stereo views come as files
(``images``) or by area and dates (``scenes``: registered Pléiades deliveries, which
must select one stereo acquisition of 2 or 3 views).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from dsm_opt.config import DsmConfig
from gdmio.process import (
    COG,
    PACKAGE_OUTPUTS,
    FilesOrScenes,
    JobContext,
    OutputSpec,
    PleiadesSceneRequest,
    ProcessSpec,
    ServerOnly,
    input_files,
    product_refs,
    resolve_reference,
    scenes_field,
    server_only,
)

__all__ = ["PROCESS", "DsmJobInputs"]


class DsmJobInputs(FilesOrScenes, DsmConfig):
    """Inputs of a dsm-opt job: :class:`DsmConfig`, every bound and validator kept.

    The views and the DEM come as references or ``scenes`` instead of paths. Server-side paths and
    resources are not the user's to choose: the output folder is the job's, the catalogue
    the service's configuration, tiling and workers the server's.
    """

    images: list[str] | None = Field(  # type: ignore[assignment]
        None, description="The stereo pair or triplet: 2 or 3 single-band images with an "
        "RPC model (GeoTIFF with RPC metadata), as http(s) URLs or names of uploaded files.",
        min_length=2, max_length=3)
    scenes: PleiadesSceneRequest | None = scenes_field(PleiadesSceneRequest,
                                                        "the Pléiades stereo views")
    dem: str | None = Field(  # type: ignore[assignment]
        None, description="Optional coarse DEM (GeoTIFF, ellipsoidal heights) bounding the "
        "height search: URL or uploaded file.")
    out: ServerOnly = server_only()  # type: ignore[assignment]
    rpcs: ServerOnly = server_only()  # type: ignore[assignment]
    catalogue: ServerOnly = server_only()  # type: ignore[assignment]
    tile: ServerOnly = server_only()  # type: ignore[assignment]
    overlap: ServerOnly = server_only()  # type: ignore[assignment]
    workers: ServerOnly = server_only()  # type: ignore[assignment]
    grid_memory_mb: ServerOnly = server_only()  # type: ignore[assignment]


_DSM_FILES = ("dsm", "ortho", "count", "uncertainty", "quicklook", "item", "report", "filled")


def execute(inputs: BaseModel, ctx: JobContext) -> dict[str, Any]:
    """Run DSM-OPT on the job's stereo views (files or scenes)."""
    from dsm_opt.pipeline import run

    raw = inputs.model_dump()
    images = input_files(raw, "images", PleiadesSceneRequest, ctx, max_scenes=3,
                         what="Pléiades views",
                         hint="narrow the dates to one stereo acquisition (2 or 3 views)")
    if raw.get("dem"):
        raw["dem"] = resolve_reference(raw["dem"], ctx, len(images))
    cfg = DsmConfig(images=images, out=ctx.workdir / "products", **raw)
    return product_refs(run(cfg, progress=ctx.progress), _DSM_FILES, ctx)


PROCESS = ProcessSpec(
    id="dsm-opt", title="DSM-OPT: digital surface model from a stereo pair or triplet",
    version="1.0.0",
    description="Digital surface model from Pléiades (or any RPC-modelled) stereo images: "
    "pair selection by base-to-height ratio, epipolar rectification from the RPCs, "
    "semi-global matching, triangulation and rasterisation on the UTM grid of the scene "
    "(heights in metres above the WGS84 ellipsoid), with an ortho-image.",
    inputs_model=DsmJobInputs,
    outputs={
        "dsm": OutputSpec("DSM (m above the WGS84 ellipsoid)", "file", COG),
        "ortho": OutputSpec("Ortho-image", "file", COG),
        "count": OutputSpec("Points per cell", "file", COG),
        "uncertainty": OutputSpec("Height 1-sigma (m)", "file", COG),
        "quicklook": OutputSpec("Hillshade quicklook", "file", "image/png"),
        "filled": OutputSpec("Cells filled by interpolation (fill_holes)", "file", COG),
        **PACKAGE_OUTPUTS,
    },
    execute=execute, keywords=("optical", "stereo", "DSM", "Pléiades", "photogrammetry"),
)
