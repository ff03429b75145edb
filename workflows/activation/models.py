"""Activation requests and hazard defaults: what an operator asks for, checked."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gdmcore import InputError
from gdmio.providers.aoi import parse_date
from workflows.jobstore import User

__all__ = ["HAZARDS", "HazardDefaults", "ActivationError", "PairOverride", "ActivationRequest",
           "MIN_COVERAGE", "PLEIADES_STEREO_GAP_S", "SAR_CO_EVENT", "LOCAL_OPERATOR", "Sensor",
           "SENSOR_NAMES"]

MIN_COVERAGE = 0.95
"""Smallest fraction of the AOI a scene's footprint must cover to be usable."""

PLEIADES_STEREO_GAP_S = 300.0
"""Views of one platform less than this many seconds apart form one stereo acquisition."""


SAR_CO_EVENT = {"network": "nearest", "neighbours": 1, "dem_error": False}
"""GDM-SAR parameters of a co-event job (one pair: no DEM-error term can be fitted)."""

LOCAL_OPERATOR = User("local", "admin", 1000)
"""The caller when no account exists (the embedded single-user mode)."""

Sensor = Literal["s2", "s1", "pleiades"]
SENSOR_NAMES = {"s2": "Sentinel-2", "s1": "Sentinel-1", "pleiades": "Pléiades"}


@dataclass(frozen=True)
class HazardDefaults:
    """Defaults of one hazard type: sensors by priority, search window, cloud limit."""

    sensors: tuple[str, ...]
    pre_days: int
    post_days: int
    max_cloud: float
    opt_preset: str
    why: str


HAZARDS: dict[str, HazardDefaults] = {
    "earthquake": HazardDefaults(
        ("s2", "s1", "pleiades"), 90, 30, 20.0, "etq",
        "surface rupture by optical correlation, far field by InSAR, vertical offsets by "
        "DSM difference"),
    "volcano": HazardDefaults(
        ("s1", "pleiades", "s2"), 48, 24, 30.0, "etq",
        "radar first (clouds, plumes), DSM difference for erupted volumes, optical last"),
    "landslide": HazardDefaults(
        ("s2", "pleiades"), 120, 45, 30.0, "slide",
        "optical correlation and DSM difference (InSAR decorrelates on fast motion)"),
}
"""Defaults per hazard (see the module documentation)."""


class ActivationError(Exception):
    """An activation the service refuses, with an HTTP status (400, 401, 403, 404, 422)."""

    def __init__(self, status: int, message: str, activation_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.activation_id = activation_id


class PairOverride(BaseModel):
    """Scenes the operator imposes for one sensor (identifiers as the provider names them)."""

    model_config = ConfigDict(extra="forbid")
    pre: list[str] = Field(default_factory=list, max_length=3,
                           description="Pre-event scene id(s) (Pléiades: 2-3 stereo views).")
    post: list[str] = Field(default_factory=list, max_length=3,
                            description="Post-event scene id(s).")

    @field_validator("pre", "post", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class ActivationRequest(BaseModel):
    """What an operator asks (API body, CLI options and web form all validate to this)."""

    model_config = ConfigDict(extra="forbid")
    aoi: str | dict[str, Any] | list[float] = Field(
        description="Area of interest in WGS84: WKT, 'west,south,east,north' or GeoJSON.")
    event_date: str = Field(description="Event date or date-time, ISO 8601 UTC. With a date "
                            "only, scenes of that day are not used (pre or post unknown).")
    hazard: Literal["earthquake", "volcano", "landslide"] = Field(
        description="Hazard type: sets sensors, search window and cloud limit.")
    title: str | None = Field(None, max_length=200, description="Name of the event.")
    sensors: list[Sensor] | None = Field(
        None, min_length=1, max_length=3, description="Sensors by priority (default: the "
        "hazard's).")
    pre_days: int | None = Field(None, ge=1, le=730, description="Search window before the "
                                 "event, days.")
    post_days: int | None = Field(None, ge=1, le=365, description="Search window after the "
                                  "event, days.")
    max_cloud: float | None = Field(None, ge=0, le=100, description="Sentinel-2 largest "
                                    "cloud cover, percent.")
    overrides: dict[Sensor, PairOverride] = Field(
        default_factory=dict, description="Scenes imposed per sensor: {s2|s1|pleiades: "
        "{pre: [ids], post: [ids]}}.")
    s2_band: str = Field("B04", pattern=r"^(B0[1-9]|B1[0-2]|B8A)$",
                         description="Sentinel-2 band correlated by GDM-OPT.")
    s2_fetch: Literal["window", "url"] = Field(
        "window", description="window: read only the AOI of each selected band into the "
        "scene cache and hand those files to the job; url: hand the asset URLs (the job "
        "downloads whole assets).")
    opt_params: dict[str, Any] = Field(
        default_factory=dict, description="GDM-OPT job parameters (default: the hazard's "
        "preset, etq or slide).")
    slcs: list[str] | None = Field(
        None, min_length=2, description="Coregistered SLC files (stack convention, URLs or "
        "uploads) of the selected Sentinel-1 dates; without them the SAR job ingests the "
        "selected SAFE products itself.")
    sar_params: dict[str, Any] = Field(default_factory=dict,
                                       description="GDM-SAR job parameters.")
    dsm_params: dict[str, Any] = Field(default_factory=dict,
                                       description="DSM-OPT job parameters.")

    @field_validator("event_date")
    @classmethod
    def _iso(cls, v: str) -> str:
        try:
            parse_date(v)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return v.strip()

    @property
    def defaults(self) -> HazardDefaults:
        """The hazard's defaults."""
        return HAZARDS[self.hazard]

    @property
    def event(self) -> dt.datetime:
        """The event instant (start of day for a date only)."""
        return parse_date(self.event_date)

    @property
    def date_only(self) -> bool:
        """Whether the event was given without a time of day."""
        return len(self.event_date.strip()) == 10

    def effective(self) -> dict[str, Any]:
        """Sensors and window after hazard defaults (what the bulletin states)."""
        d = self.defaults
        return {"sensors": list(self.sensors or d.sensors),
                "pre_days": self.pre_days or d.pre_days,
                "post_days": self.post_days or d.post_days,
                "max_cloud": d.max_cloud if self.max_cloud is None else self.max_cloud}
