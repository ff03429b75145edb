"""Scene selection: the closest usable pre- and post-event pairs of each sensor.

Pure functions of the scenes found (:func:`select_s2`, :func:`select_s1`,
:func:`select_pleiades`) and the search that feeds them (:func:`search_and_select`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely
from shapely.geometry import shape

from gdmio.download import RetryPolicy
from gdmio.providers import Scene, SceneQuery
from gdmio.providers.aoi import parse_aoi
from gdmio.providers.resolve import get_provider, scene_cache_from_env
from workflows.activation.models import (
    MIN_COVERAGE,
    PLEIADES_STEREO_GAP_S,
    SENSOR_NAMES,
    ActivationError,
    ActivationRequest,
    PairOverride,
)

__all__ = ["Selection", "s2_tile", "s2_orbit", "s2_cloud", "s1_track", "coverage",
           "scene_summary", "select_s2", "select_s1", "pleiades_acquisitions",
           "select_pleiades", "ProviderFactory", "SEARCH_POLICY_S", "default_provider",
           "search_and_select"]

log = logging.getLogger(__name__)


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
