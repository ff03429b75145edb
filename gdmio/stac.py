"""STAC items describing a product folder (self-contained: relative asset hrefs)."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pystac
from affine import Affine
from pystac.extensions.projection import ProjectionExtension
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_geom

from gdmcore import InputError
from gdmio._util import first_line, quiet_rasterio
from gdmio.atomic import write_text

__all__ = ["footprint_wgs84", "to_utc", "write_item"]

_EDGE_POINTS = 16  # points per grid edge, so curved edges in lon/lat are followed


def to_utc(value: dt.datetime | dt.date) -> dt.datetime:
    """Return a timezone-aware UTC datetime (naive values taken as UTC, dates as 00:00)."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def footprint_wgs84(
    crs: CRS | str, transform: Affine, width: int, height: int
) -> tuple[dict[str, Any], list[float]]:
    """Footprint polygon of a grid in WGS84 (GeoJSON dict) and its ``[W, S, E, N]`` bbox."""
    pts: list[tuple[float, float]] = []
    corners = [(0, 0), (width, 0), (width, height), (0, height)]
    for (c0, r0), (c1, r1) in zip(corners, corners[1:] + corners[:1], strict=True):
        for k in range(_EDGE_POINTS):
            f = k / _EDGE_POINTS
            pts.append(transform @ (c0 + f * (c1 - c0), r0 + f * (r1 - r0)))
    pts.append(pts[0])
    # Counter-clockwise exterior ring (RFC 7946) for a north-up grid: reverse the
    # clockwise pixel-space order (rows grow southwards).
    ring = [list(p) for p in reversed(pts)]
    try:
        with quiet_rasterio():
            geom = transform_geom(crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    except (CRSError, ValueError) as exc:
        raise InputError(f"cannot express the grid footprint in WGS84: {first_line(exc)}") from exc
    coords = [xy for poly in _polygons(geom) for xy in poly[0]]
    lons = [float(x) for x, _ in coords]
    lats = [float(y) for _, y in coords]
    return dict(geom), [min(lons), min(lats), max(lons), max(lats)]


def _polygons(geom: Mapping[str, Any]) -> list[Any]:
    if geom["type"] == "Polygon":
        return [geom["coordinates"]]
    return list(geom["coordinates"])


def write_item(
    path: str | os.PathLike[str],
    item_id: str,
    crs: CRS | str,
    transform: Affine,
    width: int,
    height: int,
    assets: Mapping[str, Mapping[str, Any]],
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date | None = None,
    properties: Mapping[str, Any] | None = None,
) -> Path:
    """Write a STAC item (JSON, atomically) describing products on one grid.

    Parameters
    ----------
    path : str or PathLike
        The item JSON to write.
    item_id : str
        Item identifier.
    crs, transform, width, height
        The products' grid (footprint, ``proj:*`` fields).
    assets : mapping
        ``key -> {"href", "title", "roles", "type", ...}``. Hrefs are written relative to
        the item's folder (absolute paths are made relative); other keys become asset
        fields as they are.
    start, end : datetime or date
        Time span (UTC; naive values taken as UTC). With ``end`` (and ``end != start``)
        the item has ``start_datetime``/``end_datetime`` and a null ``datetime``.
    properties : mapping, optional
        Extra item properties.

    Returns
    -------
    pathlib.Path
        ``path``.

    """
    dest = Path(path)
    crs_obj = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    geometry, bbox = footprint_wgs84(crs_obj, transform, width, height)
    t0 = to_utc(start)
    t1 = to_utc(end) if end is not None else None
    if t1 is not None and t1 < t0:
        raise ValueError(f"end {t1.isoformat()} is before start {t0.isoformat()}")
    props = dict(properties or {})
    if t1 is None or t1 == t0:
        item = pystac.Item(item_id, geometry, bbox, t0, props)
    else:
        item = pystac.Item(item_id, geometry, bbox, None, props, start_datetime=t0,
                           end_datetime=t1)
    item.common_metadata.created = dt.datetime.now(dt.UTC).replace(microsecond=0)

    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs_obj.to_epsg()
    if epsg is not None:
        proj.epsg = epsg
    else:
        proj.wkt2 = crs_obj.to_wkt()
    proj.shape = [int(height), int(width)]
    proj.transform = [float(v) for v in tuple(transform)[:6]]

    folder = dest.parent
    for key, spec in assets.items():
        if "href" not in spec:
            raise ValueError(f"asset {key!r} has no href")
        href = os.fspath(spec["href"])
        if os.path.isabs(href):
            href = os.path.relpath(href, folder.absolute())
        href = Path(href).as_posix()
        extra = {k: v for k, v in spec.items() if k not in ("href", "title", "roles", "type",
                                                             "description")}
        item.add_asset(key, pystac.Asset(
            href=href,
            title=spec.get("title"),
            description=spec.get("description"),
            media_type=spec.get("type"),
            roles=list(spec["roles"]) if spec.get("roles") else None,
            extra_fields=extra or None,
        ))

    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_text(dest, json.dumps(data, indent=2) + "\n")
    return dest
