"""DSM-OPT job configuration: one pydantic model for the CLI, the service and the tests.

A preset (``mountain``, ``urban``, ``flat``) fills every matching parameter left unset;
any parameter given explicitly wins over the preset. :meth:`DsmConfig.resolved` returns
the effective values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DsmConfig", "DsmParams", "PRESETS"]

Cost = Literal["census", "zncc"]


@dataclass(frozen=True)
class DsmParams:
    """Effective matching parameters of a job (preset merged with explicit values)."""

    cost: Cost
    window: int
    p1: float
    p2: float
    subpixel: Literal["parabola", "equiangular"]
    height_margin: float
    disparity_margin: int
    target_bh: float
    speckle_size: int
    refine_window: int


PRESETS: dict[str, DsmParams] = {
    # Steep relief: wide height margin around the DEM, moderate smoothing so slopes are
    # followed, the stronger stereo angle for height precision, a wide refinement
    # window that averages the matching noise of natural surfaces ("orange peel").
    "mountain": DsmParams(cost="census", window=7, p1=8.0, p2=32.0, subpixel="equiangular",
                          height_margin=150.0, disparity_margin=4, target_bh=0.3,
                          speckle_size=100, refine_window=11),
    # Buildings: a small window keeps walls sharp, a strong P2 keeps roofs flat and a
    # weaker stereo angle limits the occlusions behind buildings.
    "urban": DsmParams(cost="census", window=5, p1=8.0, p2=64.0, subpixel="equiangular",
                       height_margin=80.0, disparity_margin=4, target_bh=0.2,
                       speckle_size=50, refine_window=5),
    # Low relief, weak texture: ZNCC on a larger window, strong smoothing, narrow range
    # and the strongest stereo angle available.
    "flat": DsmParams(cost="zncc", window=7, p1=8.0, p2=48.0, subpixel="equiangular",
                      height_margin=30.0, disparity_margin=3, target_bh=0.4,
                      speckle_size=100, refine_window=11),
}


class DsmConfig(BaseModel):
    """A DSM-OPT job: a digital surface model from a Pléiades stereo pair or triplet."""

    model_config = ConfigDict(extra="forbid")

    images: list[Path] = Field(min_length=2, max_length=3, description="Two or three "
                               "single-band images of one area with an RPC camera model "
                               "(GeoTIFF with RPC metadata, or a DIMAP DIM_*.XML / JP2).")
    rpcs: list[Path | None] | None = Field(
        None, description="RPC files, one per image in the same order (None: the image's "
        "own): DIMAP RPC_*.XML, OSSIM/OTB .geom or RPC00B text, describing the full scene "
        "when the image is a crop (its GeoTIFF transform gives the crop offset).")
    out: Path = Field(description="Output folder (created; written only when the job "
                      "succeeds).")
    preset: Literal["mountain", "urban", "flat"] = Field(
        "mountain", description="Parameter preset: 'mountain' (steep relief), 'urban' "
        "(buildings, sharp edges), 'flat' (low relief, weak texture).")
    resolution: float | None = Field(None, ge=0.1, le=100.0, description="DSM cell size "
                                     "in metres (UTM); default: the ground sampling "
                                     "distance of the images.")
    height_min: float | None = Field(None, ge=-500.0, le=9000.0, description="Lowest "
                                     "surface height above the WGS84 ellipsoid (m); with "
                                     "height_max, bounds the disparity search "
                                     "(default: from sparse matches).")
    height_max: float | None = Field(None, ge=-500.0, le=9000.0, description="Highest "
                                     "surface height above the WGS84 ellipsoid (m).")
    dem: Path | None = Field(None, description="Coarse DEM (GeoTIFF, heights above the "
                             "ellipsoid) whose range over the scene, widened by the "
                             "preset's margin, bounds the disparity search. Without it "
                             "and without height bounds, the heights of each tile come "
                             "from sparse matches.")
    cost: Cost | None = Field(None, description="Matching cost: 'census' or 'zncc' "
                              "(default: the preset's).")
    window: int | None = Field(None, ge=3, le=9, description="Odd side of the matching "
                               "window in pixels (default: the preset's).")
    p1: float | None = Field(None, gt=0, le=1000, description="SGM penalty of a one-pixel "
                             "disparity change (default: the preset's).")
    p2: float | None = Field(None, gt=0, le=5000, description="SGM penalty of a larger "
                             "disparity jump, >= p1 (default: the preset's).")
    target_bh: float | None = Field(None, gt=0, le=2, description="Preferred base-to-height "
                                    "ratio when choosing the pair of a triplet "
                                    "(default: the preset's).")
    min_bh: float = Field(0.05, gt=0, le=1, description="Pairs whose base-to-height ratio "
                          "is below this are refused (no height information).")
    lr_threshold: float = Field(1.0, gt=0, le=5, description="Left-right consistency "
                                "tolerance (pixels).")
    speckle_size: int | None = Field(None, ge=0, le=100000, description="Disparity regions "
                                     "smaller than this (pixels) are removed "
                                     "(default: the preset's; 0 = off).")
    pointing_correction: bool = Field(True, description="Measure the across-epipolar "
                                      "misalignment left by the RPCs and shift the second "
                                      "view's RPC to remove it (relative pointing "
                                      "correction).")
    pointing_direction: Literal["auto", "lines", "across"] = Field(
        "auto", description="Direction in which the second view is moved to remove the "
        "across-epipolar misalignment (the part along the epipolar lines cannot be seen): "
        "'across' the epipolar lines (the smallest shift), along its image 'lines' "
        "(in-track: timing and pitch errors), or 'auto': lines for a gross misalignment "
        "(3 px or more) when they cross the epipolar lines enough, else across.")
    fusion: bool = Field(True, description="Triplets: match every pair and fuse their "
                         "heights per cell (consensus); off: only the pair closest to the "
                         "target B/H.")
    fusion_align: bool = Field(True, description="Triplets: before fusing, bring each "
                               "pair's heights onto those of the pair with the largest "
                               "base-to-height ratio (a plane fitted to their difference: "
                               "the along-epipolar part of the relative pointing errors, "
                               "which no pair sees alone, differs between pairs).")
    refine_window: int | None = Field(None, ge=3, le=15, description="Odd window side of "
                                      "the image-based sub-pixel refinement: larger "
                                      "averages more matching noise (smoother surfaces), "
                                      "smaller keeps sharper edges (default: the "
                                      "preset's: mountain 11, urban 5, flat 11).")
    raster_sigma: float = Field(0.6, gt=0.05, le=1.5, description="Sigma (in cells) of "
                                "the Gaussian weight with which each point adds to the "
                                "cells around it when the DSM grid is filled; larger "
                                "smooths the matching noise more, at the cost of detail.")
    fill_holes: bool = Field(False, description="Fill empty DSM cells from their "
                             "neighbours (flagged in filled.tif).")
    fill_max_cells: int = Field(20, ge=1, le=1000, description="Largest distance (cells) "
                                "a hole is filled across.")
    tile: int = Field(512, ge=64, le=4096, description="Side of the epipolar tiles matched "
                      "one at a time, each with its own disparity range (bounds the "
                      "memory of the images and cost volumes).")
    overlap: int = Field(32, ge=0, le=512, description="Overlap between matching tiles "
                         "(pixels).")
    workers: int = Field(1, ge=1, le=64, description="Processes matching tiles in "
                         "parallel (Dask on a process pool); 1: in this process.")
    grid_memory_mb: int = Field(1024, ge=64, le=65536, description="Memory for the DSM "
                                "grid's sums (blocks beyond it wait on disk).")
    catalogue: Path | None = Field(None, description="STAC catalogue folder to record the "
                                   "produced DSM in (created if needed).")

    @model_validator(mode="after")
    def _check(self) -> DsmConfig:
        if (self.height_min is None) != (self.height_max is None):
            raise ValueError("give both height_min and height_max, or neither")
        if self.rpcs is not None and len(self.rpcs) != len(self.images):
            raise ValueError(f"{len(self.rpcs)} RPC files for {len(self.images)} images: "
                             "give one per image")
        if self.height_min is not None and self.height_max is not None \
                and self.height_max <= self.height_min:
            raise ValueError("height_max must be above height_min")
        if self.window is not None and self.window % 2 == 0:
            raise ValueError("window must be odd")
        if self.refine_window is not None and self.refine_window % 2 == 0:
            raise ValueError("refine_window must be odd")
        r = self.resolved()
        if r.p2 < r.p1:
            raise ValueError(f"p2 ({r.p2}) must not be below p1 ({r.p1})")
        return self

    def resolved(self) -> DsmParams:
        """The effective parameters: the preset's, overridden by explicit fields."""
        base = PRESETS[self.preset]
        return DsmParams(
            cost=self.cost or base.cost,
            window=self.window or base.window,
            p1=self.p1 if self.p1 is not None else base.p1,
            p2=self.p2 if self.p2 is not None else base.p2,
            subpixel=base.subpixel,
            height_margin=base.height_margin,
            disparity_margin=base.disparity_margin,
            target_bh=self.target_bh if self.target_bh is not None else base.target_bh,
            speckle_size=self.speckle_size if self.speckle_size is not None
            else base.speckle_size,
            refine_window=self.refine_window or base.refine_window,
        )
