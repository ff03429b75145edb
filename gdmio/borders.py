"""Country borders of Natural Earth (1:50m) for location maps, read from bundled TopoJSON.

The data are ``countries-50m.json`` of the npm package ``world-atlas`` (Natural Earth
4.1.0 Admin 0 countries, public domain; see ``gdmio/data/world-atlas/README.md``),
shipped with the package so that nothing is downloaded at run time. TopoJSON stores
each shared border once as an *arc* of delta-encoded quantized positions; a country is
a list of polygons whose rings are sequences of arcs (``~i`` meaning arc ``i`` reversed).

* :func:`countries` -- every country as ``(name, [rings])`` in lon/lat degrees;
* :func:`border_lines` -- every arc once (borders and coasts) as lon/lat polylines;
* :func:`countries_in` -- the names of the countries that meet a box;
* :func:`country_at` -- the country containing a point.
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

import numpy as np

__all__ = ["countries", "border_lines", "countries_in", "country_at", "DATA_FILE"]

DATA_FILE = "data/world-atlas/countries-50m.json"


@functools.cache
def _topology() -> dict[str, Any]:
    return json.loads(files("gdmio").joinpath(DATA_FILE).read_text(encoding="utf-8"))


@functools.cache
def _arcs() -> tuple[np.ndarray, ...]:
    """Decoded arcs: each an (n, 2) array of lon/lat degrees."""
    topo = _topology()
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    out = []
    for arc in topo["arcs"]:
        q = np.cumsum(np.asarray(arc, dtype=np.float64), axis=0)  # delta-encoded
        out.append(np.column_stack([q[:, 0] * sx + tx, q[:, 1] * sy + ty]))
    return tuple(out)


def _ring(indices: list[int]) -> np.ndarray:
    arcs = _arcs()
    parts = []
    for k, i in enumerate(indices):
        arc = arcs[i] if i >= 0 else arcs[~i][::-1]
        parts.append(arc if k == 0 else arc[1:])  # consecutive arcs share an end point
    return np.concatenate(parts)


@functools.cache
def countries() -> tuple[tuple[str, tuple[np.ndarray, ...]], ...]:
    """Every country: its name and its rings (outer rings and holes), lon/lat degrees."""
    out = []
    for geom in _topology()["objects"]["countries"]["geometries"]:
        name = (geom.get("properties") or {}).get("name", "?")
        if geom["type"] == "Polygon":
            polys = [geom["arcs"]]
        elif geom["type"] == "MultiPolygon":
            polys = geom["arcs"]
        else:
            continue
        rings = tuple(_ring(r) for poly in polys for r in poly)
        out.append((name, rings))
    return tuple(out)


def border_lines(bbox: tuple[float, float, float, float] | None = None) -> list[np.ndarray]:
    """Every arc once (country borders and coasts), those meeting ``bbox`` (W, S, E, N)."""
    arcs = _arcs()
    if bbox is None:
        return list(arcs)
    w, s, e, n = bbox
    return [a for a in arcs if a[:, 0].max() >= w and a[:, 0].min() <= e
            and a[:, 1].max() >= s and a[:, 1].min() <= n]


def country_at(lon: float, lat: float) -> str | None:
    """The name of the country containing a point (even-odd rule over its rings), or None."""
    from matplotlib.path import Path

    for name, rings in countries():
        hits = 0
        for r in rings:
            if r[:, 0].min() <= lon <= r[:, 0].max() and r[:, 1].min() <= lat <= r[:, 1].max():
                hits += bool(Path(r).contains_point((lon, lat)))
        if hits % 2:
            return name
    return None


def countries_in(bbox: tuple[float, float, float, float]) -> list[str]:
    """Names of the countries meeting ``bbox`` (W, S, E, N), sorted.

    A country meets the box when a point of its outline is in it or when it contains the
    box's centre.
    """
    w, s, e, n = bbox
    names = set()
    for name, rings in countries():
        for r in rings:
            inside = (r[:, 0] >= w) & (r[:, 0] <= e) & (r[:, 1] >= s) & (r[:, 1] <= n)
            if inside.any():
                names.add(name)
                break
    centre = country_at((w + e) / 2, (s + n) / 2)
    if centre:
        names.add(centre)
    return sorted(names)
