"""Option models of the SAR steps, shared by the gdm-sar CLI and process and by FLATSIM.

Each step of :mod:`insar` takes its own small model; the schedulers compose them:

- :class:`NetworkOptions` (pair selection) is FLATSIM's ``network`` section;
- :class:`ProcessingOptions` (= :class:`InterferogramOptions` + :class:`UnwrapOptions`
  + :class:`InversionOptions`) is FLATSIM's ``processing`` section;
- :class:`SarOptions` is the flat form the gdm-sar CLI and process expose (the network
  options as ``network``, ``neighbours``, ``max_days``, ``max_bperp``, plus a reference
  pixel), :meth:`SarOptions.network_options` gives them back as a :class:`NetworkOptions`.

Every field is declared once here, with its description and bounds; the gdm-sar job
inputs and the FLATSIM spec (and so their process descriptions and OpenAPI schemas) are
generated from these models.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["NetworkOptions", "InterferogramOptions", "UnwrapOptions", "InversionOptions",
           "CorrectionOptions", "ProcessingOptions", "SarOptions", "NETWORK_MODES",
           "SERVER_PATH_FIELDS"]

NetworkMode = Literal["nearest", "all", "span"]
NETWORK_MODES = ("nearest", "all", "span")

_MODE_DOC = ("Pair selection: 'nearest' pairs each date with its `neighbours` next dates "
             "(small baselines, as FLATSIM), 'all' every pair, 'span' every pair within "
             "`max_days`.")


def _neighbours() -> int:
    return Field(3, ge=1, le=20, description="Successors paired with each date "
                 "('nearest').")


def _max_days() -> float | None:
    return Field(None, gt=0, le=3650, description="Longest temporal baseline of a pair "
                 "in days (required by 'span').")


def _max_bperp() -> float | None:
    return Field(None, gt=0, le=5000, description="Largest perpendicular baseline "
                 "difference of a pair in metres.")


class NetworkOptions(BaseModel):
    """Which pairs a stack's network holds (:func:`insar.network.select_network`)."""

    model_config = ConfigDict(extra="forbid")

    mode: NetworkMode = Field("nearest", description=_MODE_DOC)
    neighbours: int = _neighbours()
    max_days: float | None = _max_days()
    max_bperp: float | None = _max_bperp()

    @model_validator(mode="after")
    def _check(self) -> NetworkOptions:
        if self.mode == "span" and self.max_days is None:
            raise ValueError("network mode 'span' needs max_days")
        return self


class InterferogramOptions(BaseModel):
    """Interferogram formation, coherence and filtering (:mod:`insar.pairs`)."""

    model_config = ConfigDict(extra="forbid")

    azimuth_looks: int = Field(2, ge=1, le=64, description="Looks along azimuth (rows).")
    range_looks: int = Field(2, ge=1, le=64, description="Looks along range (columns).")
    filter_alpha: float = Field(0.5, ge=0.0, le=1.0, description="Goldstein-Werner filter "
                                "strength (0 = no filtering).")
    series_looks: int = Field(1, ge=1, le=16, description="Extra looks (each direction) "
                              "from the interferograms to the unwrapping and time-series "
                              "grid, as FLATSIM (interferograms at 2 looks, series at 8): "
                              "with n > 1 each pair also keeps its wrapped phase and "
                              "coherence at the interferogram looks (wrapped_fine, "
                              "coherence_fine).")

    @property
    def looks(self) -> tuple[int, int]:
        """(azimuth, range) looks of the interferograms."""
        return self.azimuth_looks, self.range_looks

    @property
    def grid_looks(self) -> tuple[int, int]:
        """(azimuth, range) looks of the unwrapped pairs and the time series."""
        return self.azimuth_looks * self.series_looks, self.range_looks * self.series_looks


class UnwrapOptions(BaseModel):
    """Phase unwrapping (:func:`insar.pairs.unwrap_pair`)."""

    model_config = ConfigDict(extra="forbid")

    unwrapper: Literal["mcf", "snaphu"] = Field(
        "mcf", description="Phase unwrapper: 'mcf' (ours, minimum-cost flow) or 'snaphu'.")
    min_coherence: float = Field(0.3, ge=0.0, lt=1.0, description="Pixels of a pair below "
                                 "this (debiased) coherence are left out of unwrapping "
                                 "components and of the inversion.")

    @field_validator("unwrapper")
    @classmethod
    def _unwrapper_installed(cls, value: str) -> str:
        if value == "snaphu" and importlib.util.find_spec("snaphu") is None:
            raise ValueError("unwrapper 'snaphu' needs the snaphu package, which is not "
                             "installed (pip install snaphu)")
        return value


class InversionOptions(BaseModel):
    """Time-series inversion, DEM error and masking (:mod:`insar.inversion`)."""

    model_config = ConfigDict(extra="forbid")

    min_temporal_coherence: float = Field(
        0.7, ge=0.0, le=1.0, description="Pixels whose temporal coherence (consistency of "
        "the network after inversion) is below this are masked (NaN) in the time series "
        "and velocity products, as MintPy does; 0 keeps every pixel.")
    min_mean_coherence: float = Field(
        0.5, ge=0.0, le=1.0, description="Pixels whose coherence averaged over all pairs is "
        "below this (see `coherence_window`) are masked in the time series and velocity "
        "products (their series is a random walk of noisy short pairs); 0 keeps every "
        "pixel.")
    dem_error: bool = Field(True, description="Estimate and remove a DEM-error term from the "
                            "perpendicular baselines.")
    gap_weight: float = Field(1e-2, gt=0, le=1, description="Weight of the NSBAS temporal "
                              "model that bridges gaps in the network.")


class CorrectionOptions(BaseModel):
    """Corrections, screening and masks of the pairs before and in the inversion.

    Applied by :mod:`insar.corrections` for gdm-sar jobs, FLATSIM frames and
    ``gdm sar timeseries`` alike (see the README for what each one does).
    """

    model_config = ConfigDict(extra="forbid")

    troposphere: Literal["none", "era5", "gacos"] = Field(
        "none", description="Weather-model tropospheric correction: 'era5' (ERA5 "
        "pressure-level NetCDF files: delay integrated from geopotential, temperature and "
        "humidity, hydrostatic + wet, interpolated in height and space), 'gacos' (GACOS "
        "ZTD grids, YYYYMMDD.ztd + .rsc), projected on the line of sight; files from "
        "`weather_dir`, else fetched from the archive of $GDM_ERA5_URL / $GDM_GACOS_URL.")
    weather_dir: Path | None = Field(
        None, description="Folder of the weather-model files (ERA5 *.nc, GACOS *.ztd).")
    acquisition_time: dt.time | None = Field(
        None, description="Time of day (UTC, HH:MM) of the acquisitions, to interpolate "
        "ERA5 between its hours; default: the one model time of each date.")
    stratified: bool = Field(
        False, description="Empirical stratified troposphere (FLATSIM/NSBAS): a "
        "phase/elevation ratio fitted on each interferogram (with the ramp, if any) and "
        "removed; needs terrain heights (`heights`, or the stack's geometry).")
    ramp: Literal["none", "linear", "quadratic"] = Field(
        "none", description="Ramp fitted on each interferogram and removed: planar "
        "('linear') or 'quadratic' in image coordinates.")
    correction_network: bool = Field(
        True, description="Make the fitted ramps and phase/elevation ratios consistent "
        "with the network (inverted into per-date terms, as NSBAS) instead of removing "
        "each pair's own fit.")
    heights: Path | None = Field(
        None, description="Terrain heights (m) as a GeoTIFF on any grid (read onto the "
        "product grid), for the stratified and ERA5 corrections; default: the stack's "
        "geometry.npz (ingested or simulated stacks).")
    closure_correction: bool = Field(
        True, description="Remove unwrapping errors (whole cycles) that break the phase "
        "closure of triplets, pixel by pixel, where the triplets determine them.")
    loop_threshold: float = Field(
        1.5, gt=0, le=3.1416, description="A triplet whose phase closure exceeds this "
        "(rad) is a loop error (LiCSBAS: 1.5 rad); counted per pixel (loop_errors).")
    min_unwrapped_fraction: float = Field(
        0.1, ge=0.0, le=1.0, description="Pairs with a smaller fraction of the grid "
        "unwrapped in the reference component and above min_coherence are dropped.")
    max_phase_variance: float = Field(
        1.0, gt=0, description="Pairs whose phase noise (variance of the wrapped "
        "differences between neighbouring pixels, rad^2; pure noise gives about 3.3) "
        "exceeds this are dropped.")
    max_misclosure_fraction: float = Field(
        0.3, ge=0.0, le=1.0, description="Pairs whose triplets have a larger mean "
        "fraction of pixels with a closure above half a cycle are dropped (the worst "
        "first, until none is left).")
    coherence_window: int = Field(
        5, ge=1, le=31, description="The mean-coherence mask thresholds the lower of the "
        "pixel's mean coherence and its median over this many pixels square (a coherence "
        "of few looks is too noisy to threshold pixel by pixel); 1: the pixel's own.")
    mask_network_gaps: bool = Field(
        True, description="Mask pixels whose own network (the pairs valid there) has more "
        "gaps than the whole network (LiCSBAS n_gap): dates left unconnected there are "
        "bridged by the temporal model only.")
    max_loop_errors: int | None = Field(
        None, ge=0, description="Mask pixels with more loop errors left after the closure "
        "correction; default: no such mask (the count is a product).")


SERVER_PATH_FIELDS = ("weather_dir", "heights")
"""Option fields naming server paths: kept out of web process inputs."""


class ProcessingOptions(InterferogramOptions, UnwrapOptions, InversionOptions,
                        CorrectionOptions):
    """Every processing option of the SAR steps (FLATSIM's ``processing``)."""

    model_config = ConfigDict(extra="forbid")


class SarOptions(ProcessingOptions):
    """The SAR steps' options in the flat form of the gdm-sar CLI and process."""

    model_config = ConfigDict(extra="forbid")

    network: NetworkMode = Field("nearest", description=_MODE_DOC)
    neighbours: int = _neighbours()
    max_days: float | None = _max_days()
    max_bperp: float | None = _max_bperp()
    reference: tuple[int, int] | None = Field(
        None, description="Reference pixel (row, col) on the multilooked grid; default: the "
        "centre of the most coherent 5x5 window.")

    @model_validator(mode="after")
    def _check_network(self) -> SarOptions:
        if self.network == "span" and self.max_days is None:
            raise ValueError("network 'span' needs max_days")
        return self

    def network_options(self) -> NetworkOptions:
        """The network fields as a :class:`NetworkOptions`."""
        return NetworkOptions(mode=self.network, neighbours=self.neighbours,
                              max_days=self.max_days, max_bperp=self.max_bperp)

    def processing(self) -> ProcessingOptions:
        """The processing fields as a :class:`ProcessingOptions`."""
        return ProcessingOptions(**{k: getattr(self, k)
                                    for k in ProcessingOptions.model_fields})
