"""GDM-SAR job configuration: one pydantic model for the CLI, the service and the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SarConfig"]


class SarConfig(BaseModel):
    """A GDM-SAR job: interferograms, unwrapping and time series of a coregistered stack."""

    model_config = ConfigDict(extra="forbid")

    stack: Path = Field(description="Folder of coregistered SLCs: one complex GeoTIFF "
                        "(CFloat32) per date with YYYYMMDD in its name and the metadata "
                        "ACQUISITION_DATE, WAVELENGTH, PERPENDICULAR_BASELINE, "
                        "INCIDENCE_ANGLE, SLANT_RANGE, HEADING.")
    out: Path = Field(description="Output folder (created; written only when the job "
                      "succeeds).")
    network: Literal["nearest", "all", "span"] = Field(
        "nearest", description="Pair selection: 'nearest' pairs each date with its "
        "`neighbours` next dates (small baselines, as FLATSIM), 'all' every pair, "
        "'span' every pair within `max_days`.")
    neighbours: int = Field(3, ge=1, le=20, description="Successors paired with each date "
                            "('nearest').")
    max_days: float | None = Field(None, gt=0, le=3650, description="Longest temporal "
                                   "baseline of a pair in days (required by 'span').")
    max_bperp: float | None = Field(None, gt=0, le=5000, description="Largest perpendicular "
                                    "baseline difference of a pair in metres.")
    azimuth_looks: int = Field(2, ge=1, le=64, description="Looks along azimuth (rows).")
    range_looks: int = Field(2, ge=1, le=64, description="Looks along range (columns).")
    filter_alpha: float = Field(0.5, ge=0.0, le=1.0, description="Goldstein-Werner filter "
                                "strength (0 = no filtering).")
    unwrapper: Literal["mcf", "snaphu"] = Field(
        "mcf", description="Phase unwrapper: 'mcf' (ours, minimum-cost flow) or 'snaphu'.")
    min_coherence: float = Field(0.3, ge=0.0, lt=1.0, description="Pixels of a pair below "
                                 "this (debiased) coherence are left out of unwrapping "
                                 "components and of the inversion.")
    min_temporal_coherence: float = Field(
        0.7, ge=0.0, le=1.0, description="Pixels whose temporal coherence (consistency of "
        "the network after inversion) is below this are masked (NaN) in the time series "
        "and velocity products, as MintPy does; 0 keeps every pixel.")
    min_mean_coherence: float = Field(
        0.5, ge=0.0, le=1.0, description="Pixels whose coherence averaged over all pairs is "
        "below this are masked in the time series and velocity products (their series is "
        "a random walk of noisy short pairs); 0 keeps every pixel.")
    dem_error: bool = Field(True, description="Estimate and remove a DEM-error term from the "
                            "perpendicular baselines.")
    reference: tuple[int, int] | None = Field(
        None, description="Reference pixel (row, col) on the multilooked grid; default: the "
        "centre of the most coherent 5x5 window.")
    gap_weight: float = Field(1e-2, gt=0, le=1, description="Weight of the NSBAS temporal "
                              "model that bridges gaps in the network.")
    block_mb: int = Field(256, ge=16, le=8192, description="Memory budget (MiB) of one block "
                          "of rows: full-resolution SLC rows read at a time, and pair rasters "
                          "read at a time by the inversion. Peak memory grows with it.")

    @model_validator(mode="after")
    def _check(self) -> SarConfig:
        if self.network == "span" and self.max_days is None:
            raise ValueError("network 'span' needs max_days")
        return self
