"""CIEST² rapid activations: from an event (area, date, hazard) to maps, at top priority.

An activation is one operator's request "this happened here on that day". It

1. searches the scene providers around the event date (Sentinel-2 through STAC,
   Sentinel-1 through ASF, registered Pléiades deliveries) and chooses, with the pure
   functions :func:`select_s2`, :func:`select_s1` and :func:`select_pleiades`, the
   closest usable pre-event and post-event acquisitions (the operator may override
   any choice by scene identifier);
2. launches the jobs on the ``rapid`` queue (its own workers, so they start before
   any waiting ``ondemand`` or ``batch`` job): GDM-OPT on the Sentinel-2 pair, the
   GDM-SAR co-event interferogram on the Sentinel-1 pair, DSM-OPT on the pre and post
   Pléiades stereo acquisitions (their difference is computed by the bulletin);
3. keeps a bulletin (:mod:`workflows.bulletin`: one HTML page and one PDF page with the
   maps, scale bars, dates, scenes used and processing parameters) up to date as each
   job ends, and an activation log (who, when, what).

Hazard defaults (:data:`HAZARDS`; every value can be overridden per activation):

==========  ======================  ==========  ==========  =========  ==========
hazard      sensors, by priority    days before days after  max cloud  OPT preset
==========  ======================  ==========  ==========  =========  ==========
earthquake  S2, S1, Pléiades        90          30          20 %       etq
volcano     S1, Pléiades, S2        48          24          30 %       etq
landslide   S2, Pléiades            120         45          30 %       slide
==========  ======================  ==========  ==========  =========  ==========

Earthquakes: optical correlation gives the horizontal surface rupture, InSAR the
far field, a DSM difference the vertical offsets. Volcanoes: radar first (clouds and
plumes), then DSM difference (lava volumes). Landslides: optical correlation and DSM
difference (InSAR decorrelates on fast, large motions). The first job launched is the
first sensor of the list that has a usable pair.

Scene rules (the same for every sensor): a scene is usable when its footprint covers
at least :data:`MIN_COVERAGE` of the AOI (and, for Sentinel-2, its cloud cover is at
most the limit). When the event is given as a date without a time, scenes acquired on
that day are refused (they may be before or after the event); give a time
(``2023-02-06T01:17Z``) to use them. Pairs are formed within one acquisition geometry
(Sentinel-2: same MGRS tile and relative orbit; Sentinel-1: same relative orbit and
flight direction), the latest usable scene before the event with the earliest usable one
after it; among geometries, the shortest pair wins.

Sentinel-1: the co-event GDM-SAR job asks for the selected pair by area and dates
(``scenes``: the pre and post acquisition days on the selected track and direction);
the worker fetches the SAFE products, ingests the bursts over the AOI (TOPS
coregistration with ESD) and geocodes the products. An operator may instead hand
coregistered stack files (``slcs``) of the selected dates.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from shapely.geometry import shape
from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from gdmcore import InputError, user_uploads
from gdmio.locks import file_lock
from gdmio.providers import Scene, SceneQuery
from gdmio.providers.aoi import aoi_to_wkt, parse_aoi, parse_date
from workflows.jobstore import FINAL_STATUSES, JobStore, User
from workflows.settings import Settings

__all__ = [
    "HAZARDS", "HazardDefaults", "ActivationRequest", "ActivationError", "Selection",
    "ActivationStore", "Activation", "select_s2", "select_s1", "select_pleiades",
    "search_and_select", "activate", "refresh_bulletin", "bulletin_dir", "LOCAL_OPERATOR",
    "MIN_COVERAGE",
]

log = logging.getLogger(__name__)

MIN_COVERAGE = 0.95
"""Smallest fraction of the AOI a scene's footprint must cover to be usable."""

PLEIADES_STEREO_GAP_S = 300.0
"""Views of one platform less than this many seconds apart form one stereo acquisition."""

"""State of a selected Sentinel-1 pair that cannot run (no coregistered stack)."""

"""State of a job whose process this installation does not offer (e.g. DSM-OPT)."""

SAR_CO_EVENT = {"network": "nearest", "neighbours": 1, "dem_error": False}
"""GDM-SAR parameters of a co-event job (one pair: no DEM-error term can be fitted)."""

LOCAL_OPERATOR = User("local", "admin", 1000)
"""The caller when no account exists (the embedded single-user mode)."""

Sensor = Literal["s2", "s1", "pleiades"]
SENSOR_NAMES = {"s2": "Sentinel-2", "s1": "Sentinel-1", "pleiades": "Pléiades"}


# ------------------------------------------------------------------ hazards
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


# --------------------------------------------------------------- selection
@dataclass
class Selection:
    """The outcome of choosing scenes for one sensor.

    ``status`` is ``selected`` or ``no usable scene``; ``reason`` says why in words;
    ``rejected`` lists ``(scene id, why)`` for every scene found but not used.
    """

    sensor: str
    status: str
    pre: list[Scene] = field(default_factory=list)
    post: list[Scene] = field(default_factory=list)
    geometry: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    rejected: list[tuple[str, str]] = field(default_factory=list)
    found: int = 0
    override: bool = False

    @property
    def ok(self) -> bool:
        """Whether a pair was chosen."""
        return self.status == "selected"

    def to_json(self) -> dict[str, Any]:
        """JSON form stored with the activation and shown in the bulletin."""
        return {"sensor": self.sensor, "name": SENSOR_NAMES.get(self.sensor, self.sensor),
                "status": self.status, "reason": self.reason, "found": self.found,
                "override": self.override, "geometry": self.geometry,
                "pre": [scene_summary(s) for s in self.pre],
                "post": [scene_summary(s) for s in self.post],
                "rejected": [{"id": i, "why": w} for i, w in self.rejected]}


_S2_TILE_ID = re.compile(r"_T?(\d{2}[C-X][A-Z]{2})_")
_S2_ORBIT_ID = re.compile(r"_R(\d{3})_")


def s2_tile(scene: Scene) -> str | None:
    """The MGRS tile of a Sentinel-2 scene (properties, else its identifier)."""
    p = scene.properties
    tile = p.get("s2:mgrs_tile") or p.get("mgrs:tile")
    if not tile and p.get("grid:code"):
        tile = str(p["grid:code"]).split("-")[-1]
    if not tile and p.get("mgrs:utm_zone") and p.get("mgrs:latitude_band"):
        tile = f"{int(p['mgrs:utm_zone']):02d}{p['mgrs:latitude_band']}" \
               f"{p.get('mgrs:grid_square', '')}"
    if not tile:
        m = _S2_TILE_ID.search(scene.id + "_")
        tile = m.group(1) if m else None
    return str(tile).upper() if tile else None


def s2_orbit(scene: Scene) -> int | None:
    """The relative orbit of a Sentinel-2 scene (properties, else ``_Rnnn_`` in its id)."""
    p = scene.properties
    for key in ("sat:relative_orbit", "s2:relative_orbit", "relative_orbit"):
        if p.get(key) is not None:
            return int(p[key])
    m = _S2_ORBIT_ID.search(scene.id + "_")
    return int(m.group(1)) if m else None


def s2_cloud(scene: Scene) -> float | None:
    """Cloud cover of a Sentinel-2 scene, percent (None when the archive does not say)."""
    value = scene.properties.get("eo:cloud_cover")
    return None if value is None else float(value)


def s1_track(scene: Scene) -> tuple[int | None, str | None]:
    """Relative orbit and flight direction of a Sentinel-1 scene."""
    p = scene.properties
    path = p.get("pathNumber", p.get("relative_orbit"))
    direction = p.get("flightDirection", p.get("flight_direction"))
    return (None if path is None else int(path),
            None if direction is None else str(direction).upper())


def coverage(scene: Scene, aoi: Any) -> float:
    """Fraction of the AOI's area inside the scene footprint (1 for a point AOI inside)."""
    foot = shape(scene.geometry)
    if aoi.area == 0:
        return 1.0 if foot.intersects(aoi) else 0.0
    return float(shapely.intersection(foot, aoi).area / aoi.area)


def scene_summary(scene: Scene) -> dict[str, Any]:
    """What the bulletin and the API show of a scene."""
    out: dict[str, Any] = {"id": scene.id, "provider": scene.provider,
                           "datetime": scene.datetime.isoformat().replace("+00:00", "Z")}
    if scene.provider == "s2":
        out.update(cloud=s2_cloud(scene), tile=s2_tile(scene), orbit=s2_orbit(scene),
                   platform=scene.properties.get("platform"))
    elif scene.provider == "s1":
        track, direction = s1_track(scene)
        out.update(track=track, direction=direction,
                   platform=scene.properties.get("platform"))
    else:
        out.update(platform=scene.properties.get("platform"),
                   incidence=scene.properties.get("incidence_angle"))
    return out


def _day(t: dt.datetime) -> str:
    return f"{t:%Y-%m-%d}"


def _side(scene: Scene, event: dt.datetime, date_only: bool) -> str:
    """``pre``, ``post`` or ``event-day`` (a date-only event's own day)."""
    if date_only and scene.datetime.date() == event.date():
        return "event-day"
    return "pre" if scene.datetime < event else "post"


def _common_rejections(scenes: Sequence[Scene], aoi: Any, event: dt.datetime,
                       date_only: bool, extra: Callable[[Scene], str | None] | None = None
                       ) -> tuple[list[Scene], list[tuple[str, str]]]:
    usable, rejected = [], []
    for s in scenes:
        cov = coverage(s, aoi)
        why = None
        if _side(s, event, date_only) == "event-day":
            why = (f"acquired on the event day {_day(s.datetime)} with no event time given: "
                   "pre or post unknown")
        elif cov < MIN_COVERAGE:
            why = f"covers only {100 * cov:.0f}% of the AOI (at least " \
                  f"{100 * MIN_COVERAGE:.0f}% needed)"
        elif extra is not None:
            why = extra(s)
        if why:
            rejected.append((s.id, why))
        else:
            usable.append(s)
    return usable, rejected


def _pair_in_groups(usable: Sequence[Scene], key: Callable[[Scene], Any],
                    event: dt.datetime) -> tuple[Any, Scene, Scene] | None:
    """The (group, pre, post) with the shortest span among groups with both sides."""
    groups: dict[Any, list[Scene]] = {}
    for s in usable:
        groups.setdefault(key(s), []).append(s)
    best = None
    for g, members in groups.items():
        pre = [s for s in members if s.datetime < event]
        post = [s for s in members if s.datetime >= event]
        if not pre or not post:
            continue
        a = max(pre, key=lambda s: (s.datetime, s.id))
        b = min(post, key=lambda s: (s.datetime, s.id))
        rank = (b.datetime - a.datetime, event - a.datetime, str(g))
        if best is None or rank < best[0]:
            best = (rank, g, a, b)
    return None if best is None else best[1:]


def _no_pair_reason(sensor: str, scenes: Sequence[Scene], usable: Sequence[Scene],
                    rejected: Sequence[tuple[str, str]], event: dt.datetime,
                    window: tuple[dt.datetime, dt.datetime] | None, geom_word: str,
                    key: Callable[[Scene], Any], fmt: Callable[[Any], str]) -> str:
    name = SENSOR_NAMES[sensor]
    span = f" between {_day(window[0])} and {_day(window[1])}" if window else ""
    if not scenes:
        return f"{name}: no scene over the AOI{span}"
    pre = [s for s in usable if s.datetime < event]
    post = [s for s in usable if s.datetime >= event]
    parts = []
    if not pre:
        parts.append("no usable scene before the event")
    if not post:
        parts.append("no usable scene after the event")
    if pre and post:
        parts.append(f"usable scenes before ({', '.join(sorted({fmt(key(s)) for s in pre}))}) "
                     f"and after ({', '.join(sorted({fmt(key(s)) for s in post}))}) the event "
                     f"are never on the same {geom_word}")
    text = f"{name}: {'; '.join(parts)} ({len(scenes)} scene(s) found{span}"
    if rejected:
        shown = "; ".join(f"{i}: {w}" for i, w in rejected[:6])
        more = f"; and {len(rejected) - 6} more" if len(rejected) > 6 else ""
        text += f", {len(rejected)} rejected: {shown}{more}"
    return text + ")"


def _apply_override(sensor: str, scenes: Sequence[Scene], override: PairOverride,
                    event: dt.datetime, n: int) -> Selection:
    by_id = {s.id: s for s in scenes}
    missing = [i for i in override.pre + override.post if i not in by_id]
    if missing:
        raise ActivationError(400, f"{SENSOR_NAMES[sensor]} override: no scene "
                              f"{', '.join(missing)} over the AOI in the search window "
                              f"(found: {', '.join(sorted(by_id)) or 'none'})")
    if len(override.pre) < n or len(override.post) < n:
        raise ActivationError(400, f"{SENSOR_NAMES[sensor]} override needs at least {n} "
                              "pre and post scene(s)")
    pre = [by_id[i] for i in override.pre]
    post = [by_id[i] for i in override.post]
    late = [s.id for s in pre if s.datetime >= event]
    early = [s.id for s in post if s.datetime < event]
    if late or early:
        raise ActivationError(400, f"{SENSOR_NAMES[sensor]} override: "
                              + "; ".join([f"{i} is not before the event" for i in late]
                                          + [f"{i} is not after the event" for i in early]))
    return Selection(sensor, "selected", pre, post, reason="chosen by the operator",
                     found=len(scenes), override=True,
                     rejected=[(s.id, "not chosen by the operator") for s in scenes
                               if s.id not in override.pre + override.post])


def _pick_pair(sensor: str, scenes: Sequence[Scene], usable: list[Scene],
               rejected: list[tuple[str, str]], event: dt.datetime,
               window: tuple[dt.datetime, dt.datetime] | None, what: str,
               key: Callable[[Scene], Any], fmt: Callable[[Any], str]
               ) -> Selection | tuple[Any, Scene, Scene]:
    """The closest pre/post pair within one acquisition geometry (``key``).

    The other usable scenes are added to ``rejected`` with the reason; with no pair, the
    refusal (a :class:`Selection`) is returned instead.
    """
    got = _pair_in_groups(usable, key, event)
    if got is None:
        return Selection(sensor, "no usable scene", found=len(scenes), rejected=rejected,
                         reason=_no_pair_reason(sensor, scenes, usable, rejected, event,
                                                window, what, key, fmt))
    g, pre, post = got
    rejected += [(s.id, f"{fmt(key(s))}, not the chosen {fmt(g)}") for s in usable
                 if key(s) != g]
    rejected += [(s.id, "not the closest to the event") for s in usable
                 if key(s) == g and s not in (pre, post)]
    return g, pre, post


def select_s2(scenes: Sequence[Scene], aoi: Any, event: dt.datetime, *, max_cloud: float,
              date_only: bool = False, override: PairOverride | None = None,
              window: tuple[dt.datetime, dt.datetime] | None = None) -> Selection:
    """Closest usable pre/post Sentinel-2 scenes of one tile and relative orbit.

    Usable: cloud cover at most ``max_cloud`` percent, AOI covered, not on a date-only
    event's day. Pair: latest usable scene before the event and earliest one after, in
    the same (tile, orbit); the shortest such pair over all (tile, orbit) wins.
    """
    if override is not None and (override.pre or override.post):
        sel = _apply_override("s2", scenes, override, event, 1)
        sel.geometry = {"tile": s2_tile(sel.pre[0]), "orbit": s2_orbit(sel.pre[0])}
        return sel

    def cloudy(s: Scene) -> str | None:
        c = s2_cloud(s)
        return f"cloud cover {c:.0f}% > {max_cloud:g}%" if c is not None and c > max_cloud \
            else None

    usable, rejected = _common_rejections(scenes, aoi, event, date_only, cloudy)

    def key(s: Scene) -> tuple[str, int]:
        return (s2_tile(s) or "?", s2_orbit(s) or 0)

    def fmt(k: tuple[str, int]) -> str:
        return f"tile {k[0]} orbit R{k[1]:03d}"

    got = _pick_pair("s2", scenes, usable, rejected, event, window, "tile and orbit", key,
                     fmt)
    if isinstance(got, Selection):
        return got
    g, pre, post = got
    return Selection("s2", "selected", [pre], [post], {"tile": g[0], "orbit": g[1]},
                     reason=f"closest usable pair on {fmt(g)}: {_day(pre.datetime)} "
                     f"(cloud {s2_cloud(pre)}%) and {_day(post.datetime)} "
                     f"(cloud {s2_cloud(post)}%)", rejected=rejected, found=len(scenes))


def select_s1(scenes: Sequence[Scene], aoi: Any, event: dt.datetime, *,
              date_only: bool = False, override: PairOverride | None = None,
              window: tuple[dt.datetime, dt.datetime] | None = None) -> Selection:
    """Closest pre/post Sentinel-1 acquisitions of one track (relative orbit + direction)."""
    if override is not None and (override.pre or override.post):
        sel = _apply_override("s1", scenes, override, event, 1)
        tracks = {s1_track(s) for s in sel.pre + sel.post}
        if len(tracks) > 1:
            raise ActivationError(400, "Sentinel-1 override: the scenes are on different "
                                  f"tracks ({sorted(tracks, key=str)}); an interferogram "
                                  "needs one track")
        t, d = tracks.pop()
        sel.geometry = {"track": t, "direction": d}
        return sel
    usable, rejected = _common_rejections(scenes, aoi, event, date_only)

    def key(s: Scene) -> tuple[int, str]:
        t, d = s1_track(s)
        return (t or 0, d or "?")

    def fmt(k: tuple[int, str]) -> str:
        return f"track {k[0]} {k[1].lower()}"

    got = _pick_pair("s1", scenes, usable, rejected, event, window, "track", key, fmt)
    if isinstance(got, Selection):
        return got
    g, pre, post = got
    days = (post.datetime - pre.datetime).total_seconds() / 86400
    return Selection("s1", "selected", [pre], [post], {"track": g[0], "direction": g[1]},
                     reason=f"closest pair on {fmt(g)}: {_day(pre.datetime)} and "
                     f"{_day(post.datetime)} ({days:.0f} days)", rejected=rejected,
                     found=len(scenes))


def pleiades_acquisitions(scenes: Sequence[Scene]) -> list[list[Scene]]:
    """Views grouped into stereo acquisitions (one platform, views minutes apart)."""
    groups: list[list[Scene]] = []
    for s in sorted(scenes, key=lambda s: (str(s.properties.get("platform")), s.datetime)):
        last = groups[-1][-1] if groups else None
        if last is not None and last.properties.get("platform") == \
                s.properties.get("platform") and \
                (s.datetime - last.datetime).total_seconds() <= PLEIADES_STEREO_GAP_S:
            groups[-1].append(s)
        else:
            groups.append([s])
    return sorted(groups, key=lambda g: g[0].datetime)


def select_pleiades(scenes: Sequence[Scene], aoi: Any, event: dt.datetime, *,
                    date_only: bool = False, override: PairOverride | None = None,
                    window: tuple[dt.datetime, dt.datetime] | None = None) -> Selection:
    """Closest pre and post stereo acquisitions (2-3 views each) covering the AOI."""
    if override is not None and (override.pre or override.post):
        return _apply_override("pleiades", scenes, override, event, 2)
    usable, rejected = _common_rejections(scenes, aoi, event, date_only)
    acqs = pleiades_acquisitions(usable)
    stereo = []
    for g in acqs:
        if len(g) < 2:
            rejected.append((g[0].id, "single view: no stereo acquisition for a DSM"))
        else:
            stereo.append(g[:3])
            rejected += [(s.id, "fourth view of an acquisition (3 used)") for s in g[3:]]
    pre = [g for g in stereo if g[-1].datetime < event]
    post = [g for g in stereo if g[0].datetime >= event]
    if not pre or not post:
        parts = []
        if not pre:
            parts.append("no stereo acquisition before the event")
        if not post:
            parts.append("no stereo acquisition after the event")
        span = f" between {_day(window[0])} and {_day(window[1])}" if window else ""
        reason = (f"Pléiades: no registered delivery over the AOI{span}" if not scenes else
                  f"Pléiades: {'; '.join(parts)} ({len(scenes)} registered view(s) found"
                  f"{span}" + (", rejected: " + "; ".join(f"{i}: {w}" for i, w in rejected)
                               if rejected else "") + ")")
        return Selection("pleiades", "no usable scene", found=len(scenes), rejected=rejected,
                         reason=reason)
    a, b = pre[-1], post[0]
    rejected += [(s.id, "not the closest acquisition to the event") for g in stereo
                 if g is not a and g is not b for s in g]
    return Selection("pleiades", "selected", list(a), list(b),
                     {"platform": a[0].properties.get("platform")},
                     reason=f"closest stereo acquisitions: {_day(a[0].datetime)} "
                     f"({len(a)} views) and {_day(b[0].datetime)} ({len(b)} views)",
                     rejected=rejected, found=len(scenes))


# ---------------------------------------------------------------- providers
ProviderFactory = Callable[[str], Any]


SEARCH_POLICY_S = (3, 30.0)
"""Attempts and time-out (s) of archive requests while an operator waits."""


def default_provider(sensor: str) -> Any:
    """The provider of a sensor, configured from the environment.

    ``GDM_STAC_URL``, ``GDM_ASF_URL``, ``GDM_PLEIADES_INDEX``; with a short retry policy
    (an operator is waiting).
    """
    from gdmio.download import RetryPolicy
    from gdmio.providers.resolve import get_provider, scene_cache_from_env

    kwargs: dict[str, Any] = {}
    if sensor in ("s1", "s2"):
        kwargs["policy"] = RetryPolicy(attempts=SEARCH_POLICY_S[0], backoff=0.5,
                                       timeout=SEARCH_POLICY_S[1])
    return get_provider(sensor, cache=scene_cache_from_env(), **kwargs)


def search_and_select(request: ActivationRequest, *,
                      providers: ProviderFactory = default_provider) -> list[Selection]:
    """Search every sensor of the request around the event and select its pair.

    A provider that fails (unreachable archive, no Pléiades index) gives a selection
    ``no usable scene`` whose reason names the failure; it does not stop the others.
    """
    aoi = parse_aoi(request.aoi)
    eff = request.effective()
    event = request.event
    start = event - dt.timedelta(days=eff["pre_days"])
    end = event + dt.timedelta(days=eff["post_days"])
    out = []
    for sensor in eff["sensors"]:
        override = request.overrides.get(sensor)
        query = SceneQuery(aoi, start, end, product="L2A" if sensor == "s2" else None)
        try:
            scenes = providers(sensor).search(query)
        except ActivationError:
            raise
        except Exception as exc:  # noqa: BLE001 - one archive down must not stop the rest
            out.append(Selection(sensor, "no usable scene",
                                 reason=f"{SENSOR_NAMES[sensor]}: search failed: {exc}"))
            continue
        kw: dict[str, Any] = {"date_only": request.date_only, "override": override,
                              "window": (start, end)}
        if sensor == "s2":
            sel = select_s2(scenes, aoi, event, max_cloud=eff["max_cloud"], **kw)
        elif sensor == "s1":
            sel = select_s1(scenes, aoi, event, **kw)
        else:
            sel = select_pleiades(scenes, aoi, event, **kw)
        out.append(sel)
    return out


# -------------------------------------------------------------------- store
class _Base(DeclarativeBase):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


class _ActivationRow(_Base):
    __tablename__ = "activations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128), index=True)
    hazard: Mapped[str] = mapped_column(String(32))
    event_date: Mapped[str] = mapped_column(String(40))
    aoi: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32), index=True)
    request: Mapped[dict] = mapped_column(JSON)
    selections: Mapped[list] = mapped_column(JSON)
    jobs: Mapped[list] = mapped_column(JSON)
    bulletin_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)


class _LogRow(_Base):
    __tablename__ = "activation_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    activation_id: Mapped[str] = mapped_column(ForeignKey("activations.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    who: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)


class _JobLinkRow(_Base):
    __tablename__ = "activation_jobs"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    activation_id: Mapped[str] = mapped_column(ForeignKey("activations.id"), index=True)


@dataclass(frozen=True)
class Activation:
    """A snapshot of one activation with its log (detached from the database)."""

    id: str
    created: dt.datetime
    updated: dt.datetime
    created_by: str
    hazard: str
    event_date: str
    aoi: str
    title: str
    status: str
    request: dict[str, Any]
    selections: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    bulletin_at: dt.datetime | None
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def job_ids(self) -> list[str]:
        """Identifiers of the jobs launched."""
        return [j["job_id"] for j in self.jobs if j.get("job_id")]

    def to_json(self) -> dict[str, Any]:
        """JSON form (API answers, ``gdm activation show``)."""
        def iso(t: dt.datetime | None) -> str | None:
            return None if t is None else t.isoformat().replace("+00:00", "Z")

        return {"id": self.id, "title": self.title, "hazard": self.hazard,
                "event_date": self.event_date, "aoi": self.aoi, "status": self.status,
                "created": iso(self.created), "updated": iso(self.updated),
                "created_by": self.created_by, "parameters": self.request,
                "selections": self.selections, "jobs": self.jobs,
                "bulletin_updated": iso(self.bulletin_at), "log": self.log}


class ActivationStore:
    """Activations and their log, in the job store's database (two more tables)."""

    _ready: weakref.WeakSet = weakref.WeakSet()  # engines whose tables were checked

    def __init__(self, store: JobStore) -> None:
        self.jobs = store
        self.engine = store.engine
        if self.engine not in self._ready:
            _Base.metadata.create_all(self.engine)
            self._ready.add(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._session() as s, s.begin():
            yield s

    @staticmethod
    def _snapshot(s: Session, row: _ActivationRow) -> Activation:
        logs = s.scalars(select(_LogRow).where(_LogRow.activation_id == row.id)
                         .order_by(_LogRow.id))
        return Activation(
            id=row.id, created=_aware(row.created), updated=_aware(row.updated),  # type: ignore[arg-type]
            created_by=row.created_by, hazard=row.hazard, event_date=row.event_date,
            aoi=row.aoi, title=row.title, status=row.status, request=dict(row.request),
            selections=list(row.selections), jobs=[dict(j) for j in row.jobs],
            bulletin_at=_aware(row.bulletin_at),
            log=[{"at": _aware(r.at).isoformat().replace("+00:00", "Z"),  # type: ignore[union-attr]
                  "who": r.who, "action": r.action, "detail": r.detail} for r in logs])

    def create(self, who: str, request: ActivationRequest, status: str) -> Activation:
        """Record a new activation (its log starts with who asked what)."""
        now = _now()
        row = _ActivationRow(
            id=str(uuid.uuid4()), created=now, updated=now, created_by=who,
            hazard=request.hazard, event_date=request.event_date,
            aoi=aoi_to_wkt(parse_aoi(request.aoi)),
            title=request.title or f"{request.hazard} of {request.event_date}",
            status=status, request=request.model_dump(mode="json"), selections=[], jobs=[])
        with self._tx() as s:
            s.add(row)
            s.flush()
            s.add(_LogRow(activation_id=row.id, at=now, who=who, action="activate",
                          detail=f"{request.hazard} on {request.event_date} over {row.aoi}"))
        got = self.get(row.id)
        assert got is not None
        return got

    def update(self, activation_id: str, **values: Any) -> None:
        """Change fields of an activation (``status``, ``selections``, ``jobs``...).

        Jobs listed in ``jobs`` are linked to the activation (see :meth:`find_by_job`).
        """
        with self._tx() as s:
            row = s.get(_ActivationRow, activation_id, with_for_update=True)
            if row is None:
                raise KeyError(activation_id)
            for k, v in values.items():
                setattr(row, k, v)
            row.updated = _now()
            for entry in values.get("jobs") or []:
                job_id = entry.get("job_id")
                if job_id and s.get(_JobLinkRow, job_id) is None:
                    s.add(_JobLinkRow(job_id=job_id, activation_id=activation_id))

    def log(self, activation_id: str, who: str, action: str, detail: str) -> None:
        """Append an entry to the activation log."""
        with self._tx() as s:
            s.add(_LogRow(activation_id=activation_id, at=_now(), who=who, action=action,
                          detail=detail[:4000]))

    def get(self, activation_id: str) -> Activation | None:
        """An activation by id, or None."""
        with self._tx() as s:
            row = s.get(_ActivationRow, activation_id)
            return None if row is None else self._snapshot(s, row)

    def list(self, limit: int = 100) -> list[Activation]:
        """Activations, newest first."""
        with self._tx() as s:
            rows = s.scalars(select(_ActivationRow).order_by(
                _ActivationRow.created.desc()).limit(limit))
            return [self._snapshot(s, r) for r in rows]

    def find_by_job(self, job_id: str) -> Activation | None:
        """The activation a job belongs to, or None (one indexed look-up)."""
        with self._tx() as s:
            link = s.get(_JobLinkRow, job_id)
            if link is None:
                return None
            row = s.get(_ActivationRow, link.activation_id)
            return None if row is None else self._snapshot(s, row)


# ------------------------------------------------------------------ activate
def check_operator(user: User | None) -> User:
    """The caller if they may activate (operators and admins), else ActivationError."""
    if user is None:
        raise ActivationError(401, "a valid API token is required to activate")
    if not user.may_use_rapid:
        raise ActivationError(403, f"user {user.name!r} (role {user.role}) may not "
                              "activate: rapid activations are for operators and admins")
    return user


def parse_request(raw: Any) -> ActivationRequest:
    """Validate a request body (ActivationError 400 naming each problem)."""
    if isinstance(raw, ActivationRequest):
        return raw
    if not isinstance(raw, dict):
        raise ActivationError(400, "the activation must be a JSON object")
    try:
        req = ActivationRequest.model_validate(raw)
        parse_aoi(req.aoi)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}"
                 for e in exc.errors()]
        raise ActivationError(400, "invalid activation: " + "; ".join(parts)) from None
    except InputError as exc:
        raise ActivationError(400, f"invalid activation: aoi: {exc}") from None
    return req


def bulletin_dir(activation_id: str, settings: Settings) -> Path:
    """Folder of an activation's bulletin (HTML, PDF, maps)."""
    return settings.products_dir / "activations" / activation_id


def _upload_name(scene: Scene, band: str, activation_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", scene.id)[:120]
    return f"S2_{scene.datetime:%Y%m%d}_{activation_id[:8]}_{safe}_{band}.tif"


def _s2_images(sel: Selection, request: ActivationRequest, user: User, settings: Settings,
               activation_id: str, providers: ProviderFactory) -> list[str]:
    prov = providers("s2")
    scenes = sel.pre + sel.post
    if request.s2_fetch == "url":
        return [prov.asset_for(s, request.s2_band).href for s in scenes]
    from gdmio.providers.resolve import scene_cache_from_env

    cache = scene_cache_from_env()
    aoi = parse_aoi(request.aoi)
    folder = user_uploads(settings.uploads_dir, user.name)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for s in scenes:
        path = prov.fetch(s, cache, bands=[request.s2_band], aoi=aoi)[0]
        name = _upload_name(s, request.s2_band, activation_id)
        shutil.copyfile(path, folder / name)
        names.append(name)
    return names


def _pleiades_images(views: Sequence[Scene], user: User, settings: Settings,
                     activation_id: str) -> list[str]:
    folder = user_uploads(settings.uploads_dir, user.name)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for v in views:
        image = next((a.href for k, a in sorted(v.assets.items()) if k.startswith("image")),
                     None)
        if image is None or not Path(image).is_file():
            raise InputError(f"{v.id}: its image file is missing (register the delivery "
                             "again)")
        src = Path(image)
        name = re.sub(r"[^A-Za-z0-9._-]", "_",
                      f"PHR_{v.datetime:%Y%m%d}_{activation_id[:8]}_{v.id}{src.suffix}")
        shutil.copyfile(src, folder / name)
        names.append(name)
    return names


def _launch(sel: Selection, request: ActivationRequest, user: User, settings: Settings,
            store: JobStore, activation_id: str, providers: ProviderFactory,
            enqueue: bool) -> list[dict[str, Any]]:
    """Submit the jobs of one selection on ``rapid``; returns their entries."""
    from workflows.submit import SubmitError, submit

    scenes = {"pre": [scene_summary(s) for s in sel.pre],
              "post": [scene_summary(s) for s in sel.post]}
    entries: list[dict[str, Any]] = []

    def run(role: str, process: str, inputs: dict[str, Any], product: str,
            scn: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"role": role, "sensor": sel.sensor, "process": process,
                                 "product": product, "scenes": scn,
                                 "parameters": {k: v for k, v in inputs.items()
                                                if k not in ("images", "slcs")},
                                 "inputs": inputs, "job_id": None}
        try:
            job = submit(process, inputs, user, store=store, queue="rapid", enqueue=enqueue)
        except SubmitError as exc:
            entry.update(state="refused", status="failed", message=exc.message)
        else:
            entry.update(state="submitted", job_id=job.id, status=job.status,
                         message=job.message)
        entries.append(entry)

    if sel.sensor == "s2":
        try:
            images = _s2_images(sel, request, user, settings, activation_id, providers)
        except Exception as exc:  # noqa: BLE001 - recorded in the bulletin, others go on
            entries.append({"role": "opt", "sensor": "s2", "process": "gdm-opt",
                            "product": "displacement", "scenes": scenes, "job_id": None,
                            "state": "failed", "status": "failed",
                            "message": f"cannot fetch the selected scenes: {exc}"})
            return entries
        params = {"preset": request.defaults.opt_preset, **request.opt_params}
        run("opt", "gdm-opt", {"images": images, **params}, "displacement", scenes)
    elif sel.sensor == "s1":
        if request.slcs:
            run("sar", "gdm-sar", {"slcs": list(request.slcs),
                                   **{**SAR_CO_EVENT, **request.sar_params}},
                "interferogram", scenes)
        else:
            pre, post = sel.pre[0].datetime, sel.post[-1].datetime
            by_area = {"aoi": request.aoi, "start": pre.date().isoformat(),
                       "end": post.date().isoformat(), "product": "SLC",
                       "relative_orbit": sel.geometry["track"],
                       "flight_direction": sel.geometry["direction"]}
            run("sar", "gdm-sar", {"scenes": by_area, **{**SAR_CO_EVENT, **request.sar_params}},
                "interferogram", scenes)
    else:
        for role, views in (("dsm-pre", sel.pre), ("dsm-post", sel.post)):
            side = role.split("-")[1]
            try:
                images = _pleiades_images(views, user, settings, activation_id)
            except InputError as exc:
                entries.append({"role": role, "sensor": "pleiades", "process": "dsm-opt",
                                "product": "dsm difference", "job_id": None,
                                "scenes": {side: scenes[side]}, "state": "failed",
                                "status": "failed", "message": str(exc)})
                continue
            run(role, "dsm-opt", {"images": images, **request.dsm_params}, "dsm difference",
                {side: scenes[side]})
    return entries


def _check_slcs(request: ActivationRequest, selections: Sequence[Selection]) -> None:
    """Coregistered SLCs given for the co-event job must hold the selected S1 dates."""
    if not request.slcs:
        return
    from gdmio.raster import date_from_name

    sel = next((s for s in selections if s.sensor == "s1"), None)
    if sel is None:
        raise ActivationError(400, "slcs were given but no Sentinel-1 pair was selected")
    names = [ref.rstrip("/").rsplit("/", 1)[-1] for ref in request.slcs]
    have = {date_from_name(n) for n in names}
    want = [s.datetime.date() for s in sel.pre + sel.post]
    missing = [d.isoformat() for d in want if d not in have]
    if missing:
        raise ActivationError(400, f"slcs: no file for the selected Sentinel-1 date(s) "
                              f"{', '.join(missing)} (YYYYMMDD in the file names: "
                              f"{', '.join(names)})")


def activate(raw: dict[str, Any] | ActivationRequest, user: User | None, *, store: JobStore,
             settings: Settings, providers: ProviderFactory = default_provider,
             enqueue: bool = True) -> Activation:
    """Create an activation: check the caller, select scenes, launch the rapid jobs.

    Returns
    -------
    Activation
        Recorded with its selections, jobs and log; the bulletin is written.

    Raises
    ------
    ActivationError
        401/403 for a caller who is not an operator, 400 for a bad request or override,
        422 when no sensor has a usable pair (the message names each sensor and why;
        the refused activation is still recorded and logged, its id in the error).

    """
    user = check_operator(user)
    request = parse_request(raw)
    astore = ActivationStore(store)
    selections = search_and_select(request, providers=providers)
    _check_slcs(request, [s for s in selections if s.ok])
    activation = astore.create(user.name, request, "selecting")
    aid = activation.id
    for sel in selections:
        astore.log(aid, "system", "select" if sel.ok else "unusable", sel.reason)
    usable = [s for s in selections if s.ok]
    if not usable:
        message = "no usable scene: " + " | ".join(s.reason for s in selections)
        astore.update(aid, status="no usable scene",
                      selections=[s.to_json() for s in selections])
        astore.log(aid, user.name, "refused", message)
        refresh_bulletin(aid, store=store, settings=settings)
        raise ActivationError(422, message, aid)
    jobs: list[dict[str, Any]] = []
    for sel in usable:
        got = _launch(sel, request, user, settings, store, aid, providers, enqueue)
        jobs += got
        astore.update(aid, jobs=jobs, status="running")  # the first job is already queued
        for e in got:
            what = f"{e['process']} ({e['role']})"
            if e.get("job_id"):
                astore.log(aid, user.name, "submit", f"{what} job {e['job_id']} on rapid")
            else:
                astore.log(aid, "system", "not run", f"{what}: {e['state']}: {e['message']}")
    status = "running" if any(j.get("job_id") for j in jobs) else "complete"
    astore.update(aid, selections=[s.to_json() for s in selections], jobs=jobs,
                  status=status)
    return refresh_bulletin(aid, store=store, settings=settings, force=True)


# ----------------------------------------------------------------- bulletin
def refresh_bulletin(activation_id: str, *, store: JobStore, settings: Settings,
                     force: bool = False) -> Activation:
    """Bring an activation up to date with its jobs and rewrite its bulletin if needed.

    Called when a job of the activation ends (the worker's ``task_postrun`` hook and the
    ``gdm.activation.refresh`` task, :mod:`workflows.activation_tasks`) and when the
    API, web page or CLI shows it. Each job's new final status is logged once; the
    bulletin (HTML, PDF, maps) is rewritten only when something changed, or with
    ``force``, or when its files are missing.

    Raises
    ------
    ActivationError
        404 for an unknown activation.

    """
    from workflows.bulletin import write_bulletin

    astore = ActivationStore(store)
    folder = bulletin_dir(activation_id, settings)
    with file_lock(folder / ".lock"):
        act = astore.get(activation_id)
        if act is None:
            raise ActivationError(404, f"no activation {activation_id!r}")
        changed = False
        jobs = [dict(j) for j in act.jobs]
        for entry in jobs:
            if not entry.get("job_id"):
                continue
            job = store.get(entry["job_id"])
            if job is None:
                continue
            if job.status != entry.get("status") or job.progress != entry.get("progress"):
                if job.status != entry.get("status") and job.status in FINAL_STATUSES:
                    astore.log(activation_id, "system", f"job {job.status}",
                               f"{entry['process']} ({entry['role']}) job {job.id}: "
                               f"{job.message}")
                    changed = True
                elif job.status != entry.get("status"):
                    changed = True
                entry.update(status=job.status, progress=job.progress, message=job.message,
                             started=job.started.isoformat() if job.started else None,
                             finished=job.finished.isoformat() if job.finished else None)
        launched = [j for j in jobs if j.get("job_id")]
        status = act.status
        if act.status in ("running", "selecting") and launched and \
                all(j.get("status") in FINAL_STATUSES for j in launched):
            ok = all(j["status"] == "successful" for j in launched)
            status = "complete" if ok else "complete with failures"
            changed = True
        html = folder / "bulletin.html"
        if changed or force or not html.is_file() or not (folder / "bulletin.pdf").is_file():
            astore.update(activation_id, jobs=jobs, status=status)
            act = astore.get(activation_id)
            assert act is not None
            maps = write_bulletin(act, folder, store=store, settings=settings)
            astore.update(activation_id, bulletin_at=_now())
            astore.log(activation_id, "system", "bulletin",
                       f"bulletin updated ({status}; maps: {', '.join(maps) or 'none yet'})")
            # the log entry itself belongs in the page: write once more, cheaply
            act = astore.get(activation_id)
            assert act is not None
            write_bulletin(act, folder, store=store, settings=settings, maps_only_cached=True)
        act = astore.get(activation_id)
        assert act is not None
        return act
