"""GDM-OPT job configuration: one pydantic model, shared by the CLI, the service and tests."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["OptConfig", "Preset", "PRESETS", "Resolved"]


class Resolved(BaseModel):
    """Parameters after applying the preset and the explicit overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int
    step: int
    search: int
    method: Literal["freq", "ncc"]
    min_score: float
    outlier_radius: int
    nmad_k: float
    stable: str
    subpixel: Literal["translation", "affine"] = "translation"
    presmooth: float = 0.6
    match_taper: float = 0.0
    deform: bool = True
    artefacts: Literal["none", "jitter", "detectors", "all"] = "none"


class Preset(Resolved):
    """Correlation parameters tuned for one kind of deformation."""

    description: str


PRESETS: dict[str, Preset] = {
    "slide": Preset(
        description="landslides: slow, local motion; fine grid, most of the scene stable",
        window=32, step=8, search=8, method="freq", min_score=0.3, outlier_radius=1,
        nmad_k=3.0, stable="auto", artefacts="all",
    ),
    "etq": Preset(
        description="earthquakes: metre-scale co-seismic offsets over the whole scene",
        window=32, step=8, search=8, method="freq", min_score=0.3, outlier_radius=1,
        nmad_k=3.0, stable="none",
    ),
    "ice": Preset(
        description="glaciers: tens of pixels per pair, weaker texture; large windows, pyramid",
        window=64, step=16, search=40, method="freq", min_score=0.15, outlier_radius=2,
        nmad_k=3.0, stable="auto", match_taper=1.0, artefacts="all",
    ),
}


class OptConfig(BaseModel):
    """A GDM-OPT job: correlate optical images of one area at two or more dates."""

    model_config = ConfigDict(extra="forbid")

    images: list[Path] = Field(
        description="Optical images (GeoTIFF, JP2, Sentinel-2 SAFE folder or zip), "
        "one per date; the date comes from YYYYMMDD in the name or TIFFTAG_DATETIME.",
        min_length=1,
    )
    out: Path = Field(description="Output folder for the products.")
    preset: Literal["slide", "etq", "ice"] = Field(
        "etq", description="Parameter preset: slide (landslide), etq (earthquake), ice (glacier)."
    )
    window: int | None = Field(None, ge=8, le=512, description="Correlation window, pixels (even).")
    step: int | None = Field(None, ge=1, le=512, description="Distance between windows, pixels.")
    search: int | None = Field(
        None, ge=1, le=2048, description="Largest displacement searched, pixels (a pyramid "
        "is used beyond a quarter of the window)."
    )
    method: Literal["freq", "ncc"] | None = Field(
        None, description="freq: frequency-domain correlator; ncc: spatial ZNCC (low texture)."
    )
    min_score: float | None = Field(
        None, ge=0.0, le=1.0, description="Windows whose correlation score is below are rejected."
    )
    outlier_radius: int | None = Field(
        None, ge=0, le=5, description="Neighbourhood radius (windows) of the median/NMAD filter; "
        "0 disables it."
    )
    nmad_k: float | None = Field(
        None, gt=0.0, le=50.0,
        description="Reject windows further than k NMAD from the local median."
    )
    stable: str | None = Field(
        None, description="Stable-area offset correction: 'none', 'auto' (median of all valid "
        "windows) or the path of a mask raster (non-zero = stable ground)."
    )
    subpixel: Literal["translation", "affine"] | None = Field(
        None, description="Window model of the sub-pixel match: translation (with gain and "
        "offset), or affine (also the four displacement gradients; slower, for strong strain)."
    )
    presmooth: float | None = Field(
        None, ge=0.0, le=3.0, description="Gaussian sigma (pixels) applied to both images "
        "before the sub-pixel match (damps aliased frequencies); 0 disables it."
    )
    match_taper: float | None = Field(
        None, ge=0.0, le=1.0, description="Weights of the window's pixels in the sub-pixel "
        "match: Tukey taper fraction, 0 uniform (least noise) to 1 Hann (more weight at the "
        "centre, for strongly varying fields)."
    )
    deform: bool | None = Field(
        None, description="Correct each window's estimate for the deformation of the field "
        "inside it (measured from the neighbouring windows), so that it is the displacement "
        "at the window centre."
    )
    artefacts: Literal["none", "jitter", "detectors", "all"] | None = Field(
        None, description="Push-broom artefacts fitted on stable ground and removed from each "
        "pair: jitter (along-track oscillation common to all columns), detectors (one offset "
        "per detector footprint, read from the Sentinel-2 MSK_DETFOO mask when there is one, "
        "else found as steps across the track), all (both) or none."
    )
    track_angle: float | None = Field(
        None, ge=-45.0, le=45.0, description="Angle of the satellite track from the grid's "
        "columns (north-south on a UTM grid), degrees clockwise; default: from the detector "
        "footprints when they are read, else 0."
    )
    scl_mask: bool = Field(
        True, description="Mask clouds, shadows, cirrus, snow, water, saturated and no-data "
        "pixels with the Sentinel-2 L2A scene classification (SCL) of each date, when there "
        "is one (in the SAFE, or an *SCL* raster with the same date beside the image)."
    )
    pairs: Literal["all", "sequential", "span"] = Field(
        "all", description="Pairs correlated for 3+ dates: all, sequential (each date with the "
        "next `neighbours`), or span (all pairs within the span limits)."
    )
    neighbours: int = Field(2, ge=1, le=50, description="Successors per date for 'sequential'.")
    min_span_days: float = Field(0.0, ge=0.0, description="Shortest pair span, days.")
    max_span_days: float | None = Field(None, gt=0.0, description="Longest pair span, days.")
    band: str = Field("B04", description="Band read from Sentinel-2 SAFE inputs.")
    resolution: float | None = Field(
        None, gt=0.0, description="Pixel size of the common grid, metres (default: first image)."
    )
    crs: str | None = Field(
        None, description="CRS of the common grid, e.g. EPSG:32631 (default: first image's, or "
        "its UTM zone if it is geographic)."
    )
    block_windows: int = Field(
        192, ge=16, le=4096, description="Windows per side of a processing block (memory bound)."
    )

    @field_validator("window")
    @classmethod
    def _even_window(cls, v: int | None) -> int | None:
        if v is not None and v % 2:
            raise ValueError(f"window must be even, got {v}")
        return v

    @model_validator(mode="after")
    def _span_needs_limit(self) -> OptConfig:
        if self.pairs == "span" and self.max_span_days is None:
            raise ValueError("pairs='span' needs max_span_days")
        if self.max_span_days is not None and self.max_span_days < self.min_span_days:
            raise ValueError("max_span_days is shorter than min_span_days")
        return self

    def resolved(self) -> Resolved:
        """Merge the preset with the explicit parameters."""
        base = PRESETS[self.preset].model_dump()
        base.pop("description")
        for key in list(base):
            value = getattr(self, key)
            if value is not None:
                base[key] = value
        return Resolved(**base)
