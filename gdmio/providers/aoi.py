"""Areas of interest and dates as users write them: WKT, bbox, GeoJSON; ISO 8601 dates."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import shapely
from shapely.errors import GEOSException, ShapelyError
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from gdmcore import InputError

__all__ = ["parse_aoi", "parse_date", "aoi_to_wkt"]


def _check(geom: BaseGeometry, what: str) -> BaseGeometry:
    if geom.is_empty:
        raise InputError(f"AOI {what} is empty")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise InputError(f"AOI {what} is not in lon/lat degrees (WGS84): bounds "
                         f"{minx:g}, {miny:g}, {maxx:g}, {maxy:g}")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return geom


def parse_aoi(value: Any) -> BaseGeometry:
    """Read an area of interest in WGS84 lon/lat.

    Parameters
    ----------
    value
        A shapely geometry; a GeoJSON geometry, Feature or FeatureCollection (dict or
        text); WKT (``POLYGON((...))``, ``POINT(lon lat)``); a bbox
        ``"west,south,east,north"`` or a 4-sequence; or the path of a ``.geojson`` /
        ``.json`` / ``.wkt`` file holding one of these.

    Returns
    -------
    shapely.geometry.base.BaseGeometry
        A valid, non-empty geometry.

    Raises
    ------
    InputError
        When the text is none of these, or the geometry is empty or out of range.

    """
    if isinstance(value, BaseGeometry):
        return _check(value, "geometry")
    if isinstance(value, (list, tuple)) and len(value) == 4 and \
            all(isinstance(v, (int, float)) for v in value):
        return _bbox([float(v) for v in value])
    if isinstance(value, dict):
        return _geojson(value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"AOI must be WKT, a bbox or GeoJSON, got {type(value).__name__}")
    text = value.strip()
    if len(text) < 4096 and Path(text).suffix.lower() in (".geojson", ".json", ".wkt") and \
            Path(text).is_file():
        text = Path(text).read_text().strip()
    if text.startswith("{"):
        try:
            return _geojson(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InputError(f"AOI is not valid GeoJSON: {exc.msg}") from exc
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 4:
        try:
            return _bbox([float(p) for p in parts])
        except ValueError:
            pass
    try:
        geom = shapely.from_wkt(text)
    except (GEOSException, ShapelyError, ValueError) as exc:
        raise InputError(f"AOI {text[:60]!r} is neither WKT, a bbox "
                         "'west,south,east,north' nor GeoJSON") from exc
    return _check(geom, "WKT")


def _bbox(v: list[float]) -> BaseGeometry:
    w, s, e, n = v
    if not (w < e and s < n):
        raise InputError(f"AOI bbox must be west,south,east,north with west < east and "
                         f"south < north, got {w:g},{s:g},{e:g},{n:g}")
    return _check(box(w, s, e, n), "bbox")


def _geojson(obj: dict[str, Any]) -> BaseGeometry:
    kind = obj.get("type")
    if kind == "FeatureCollection":
        geoms = [_geojson(f) for f in obj.get("features", [])]
        if not geoms:
            raise InputError("AOI FeatureCollection has no features")
        return _check(shapely.union_all(geoms), "GeoJSON")
    if kind == "Feature":
        if not obj.get("geometry"):
            raise InputError("AOI Feature has no geometry")
        return _geojson(obj["geometry"])
    try:
        return _check(shape(obj), "GeoJSON")
    except (GEOSException, ShapelyError, ValueError, KeyError, TypeError,
            AttributeError) as exc:
        raise InputError(f"AOI is not a GeoJSON geometry (type {kind!r})") from exc


def aoi_to_wkt(geom: BaseGeometry) -> str:
    """WKT of a geometry with at most 6 decimals (about 0.1 m)."""
    return shapely.to_wkt(geom, rounding_precision=6, trim=True)


def parse_date(value: Any, *, end: bool = False) -> dt.datetime:
    """Read an ISO 8601 date or date-time as an aware UTC datetime.

    A bare date is the start of that day, or its last microsecond when ``end`` is true
    (so ``--end 2023-01-31`` includes the 31st). Naive times are UTC.
    """
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, dt.date):
        d = dt.datetime.combine(value, dt.time.max if end else dt.time())
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                d = dt.datetime.combine(dt.date.fromisoformat(text),
                                        dt.time.max if end else dt.time())
            else:
                d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputError(f"date {text!r} is not ISO 8601 (YYYY-MM-DD or "
                             "YYYY-MM-DDTHH:MM:SSZ)") from exc
    else:
        raise InputError(f"date must be ISO 8601 text, got {type(value).__name__}")
    if d.tzinfo is None:
        return d.replace(tzinfo=dt.UTC)
    return d.astimezone(dt.UTC)
