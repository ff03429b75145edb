"""A STAC catalogue of produced DSMs, searchable by area and date.

Layout (a static STAC catalogue any STAC tool can read)::

    ROOT/catalog.json                  the catalogue, one ``item`` link per DSM
    ROOT/items/ID/ID.json              a copy of each product's item, asset hrefs absolute

Adding an item with an identifier already present replaces it (a job rerun). Writers
take an exclusive lock on ``ROOT/.lock`` so concurrent jobs do not lose each other's
entries.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pystac
from shapely.geometry import box, shape

from gdmcore import InputError
from gdmio.atomic import write_text
from gdmio.locks import file_lock
from gdmio.stac import to_utc

__all__ = ["add_item", "search", "catalogue_items"]

_TITLE = "DSM-OPT products"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def _load_catalog(root: Path) -> dict[str, Any]:
    path = root / "catalog.json"
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a readable STAC catalogue ({exc})") from None
        if data.get("type") != "Catalog":
            raise InputError(f"{path}: not a STAC catalogue")
        return data
    cat = pystac.Catalog(id="dsm-opt", description="Digital surface models produced by "
                         "DSM-OPT", title=_TITLE)
    return cat.to_dict(include_self_link=False)


def add_item(root: str | os.PathLike[str], item_path: str | os.PathLike[str]) -> Path:
    """Record a product's STAC item in the catalogue at ``root`` (created if needed).

    Returns
    -------
    pathlib.Path
        The catalogue's copy of the item.

    """
    root = Path(root)
    src = Path(item_path)
    try:
        item = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{src}: not a readable STAC item ({exc})") from None
    if item.get("type") != "Feature" or "id" not in item:
        raise InputError(f"{src}: not a STAC item")
    item_id = str(item["id"])
    if "/" in item_id or item_id.startswith("."):
        raise InputError(f"refused item id {item_id!r}")
    for asset in item.get("assets", {}).values():
        href = asset.get("href", "")
        if href and "://" not in href and not os.path.isabs(href):
            asset["href"] = str((src.parent / href).resolve())
    item["links"] = [lk for lk in item.get("links", []) if lk.get("rel") not in
                     ("root", "parent", "self", "collection")]
    item["links"] += [{"rel": "root", "href": "../../catalog.json", "type": "application/json"},
                      {"rel": "parent", "href": "../../catalog.json",
                       "type": "application/json"}]
    dest = root / "items" / item_id / f"{item_id}.json"
    with file_lock(root / ".lock"):
        cat = _load_catalog(root)
        href = f"./items/{item_id}/{item_id}.json"
        links = [lk for lk in cat.get("links", []) if not (lk.get("rel") == "item"
                                                            and lk.get("href") == href)]
        links.append({"rel": "item", "href": href, "type": "application/geo+json",
                      "title": item_id})
        if not any(lk.get("rel") == "root" for lk in links):
            links.insert(0, {"rel": "root", "href": "./catalog.json",
                             "type": "application/json", "title": _TITLE})
        cat["links"] = links
        _write_json(dest, item)
        _write_json(root / "catalog.json", cat)
    return dest


def catalogue_items(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every item of the catalogue (dicts, in catalogue order)."""
    root = Path(root)
    if not (root / "catalog.json").exists():
        raise InputError(f"{root}: no STAC catalogue (catalog.json) there")
    cat = _load_catalog(root)
    items = []
    for lk in cat.get("links", []):
        if lk.get("rel") == "item":
            p = (root / lk["href"]).resolve()
            if p.exists():
                items.append(json.loads(p.read_text(encoding="utf-8")))
    return items


def _span(item: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    props = item.get("properties", {})
    if props.get("datetime"):
        t = to_utc(dt.datetime.fromisoformat(props["datetime"].replace("Z", "+00:00")))
        return t, t
    a = dt.datetime.fromisoformat(props["start_datetime"].replace("Z", "+00:00"))
    b = dt.datetime.fromisoformat(props["end_datetime"].replace("Z", "+00:00"))
    return to_utc(a), to_utc(b)


def search(root: str | os.PathLike[str],
           bbox: tuple[float, float, float, float] | None = None,
           start: dt.datetime | dt.date | None = None,
           end: dt.datetime | dt.date | None = None) -> list[dict[str, Any]]:
    """Items whose footprint intersects ``bbox`` and whose time span meets [start, end].

    Parameters
    ----------
    root : str or PathLike
        Catalogue folder.
    bbox : tuple of float, optional
        ``(west, south, east, north)`` in WGS84 degrees.
    start, end : datetime or date, optional
        Inclusive UTC bounds (a date alone: the whole day for ``end``).

    Returns
    -------
    list of dict
        Matching items, earliest first.

    """
    area = None
    if bbox is not None:
        w, s, e, n = (float(v) for v in bbox)
        if not (w < e and s < n):
            raise InputError(f"bbox must be west south east north, got {bbox}")
        area = box(w, s, e, n)
    t0 = to_utc(start) if start is not None else None
    t1 = None
    if end is not None:
        t1 = to_utc(end)
        if not isinstance(end, dt.datetime):
            t1 = t1 + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    found = []
    for item in catalogue_items(root):
        a, b = _span(item)
        if t0 is not None and b < t0:
            continue
        if t1 is not None and a > t1:
            continue
        if area is not None and not shape(item["geometry"]).intersects(area):
            continue
        found.append((a, item))
    return [it for _, it in sorted(found, key=lambda x: x[0])]
