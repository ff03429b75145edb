"""Scene providers: find scenes by area and dates, fetch them once into the scene cache.

A provider answers ``search(query) -> list[Scene]`` and ``fetch(scene, cache) ->
list[Path]``. Providers:

- ``s1``: Sentinel-1 SLC products and bursts from ASF (via ``asf-search``),
  :mod:`gdmio.providers.asf`.
- ``s2``: Sentinel-2 L1C/L2A from a STAC API (via ``pystac-client``); only the bands a
  job needs, and only the AOI window of COG assets, :mod:`gdmio.providers.stac`.
- ``pleiades``: Pléiades DIMAP deliveries registered in a local index,
  :mod:`gdmio.providers.pleiades`.

Auxiliary data: Sentinel-1 orbits (:mod:`gdmio.providers.orbits`) and the Copernicus
GLO-30 DEM (:mod:`gdmio.providers.dem`). Jobs call :func:`gdmio.providers.resolve.resolve_scenes`
with a :class:`SceneRequest` (``{provider, aoi, start, end, ...}``) to get local paths.

Base URLs come from arguments or the environment (``GDM_ASF_URL``, ``GDM_STAC_URL``,
``GDM_ORBIT_URL``, ``GDM_DEM_URL``, ``GDM_PLEIADES_INDEX``), so tests and private mirrors
point at their own servers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gdmio.providers.aoi import parse_aoi, parse_date

__all__ = [
    "Asset",
    "Provider",
    "Scene",
    "SceneQuery",
    "parse_aoi",
    "parse_date",
]


@dataclass(frozen=True)
class Asset:
    """One downloadable file of a scene.

    Attributes
    ----------
    href
        URL (or local path for local providers).
    size
        Size in bytes when the archive says, else ``None``.
    checksum
        ``(algorithm, hexdigest)`` when the archive says, else ``None``.
    title
        Short description (band name, file role).

    """

    href: str
    size: int | None = None
    checksum: tuple[str, str] | None = None
    title: str = ""


@dataclass(frozen=True)
class Scene:
    """A scene found by a provider: identity, time, footprint and files.

    Attributes
    ----------
    id
        Archive identifier (product name, STAC item id, DIMAP dataset name); also the
        scene cache key (prefixed by the provider).
    provider
        ``s1``, ``s2`` or ``pleiades``.
    datetime
        Acquisition start, UTC.
    geometry
        Footprint as a GeoJSON geometry in WGS84 lon/lat.
    properties
        Provider-specific fields (orbit, direction, cloud cover, angles...).
    assets
        Files by name.

    """

    id: str
    provider: str
    datetime: dt.datetime
    geometry: dict[str, Any]
    properties: dict[str, Any] = field(default_factory=dict)
    assets: dict[str, Asset] = field(default_factory=dict)

    @property
    def cache_key(self) -> str:
        """Key of the scene in the scene cache."""
        return f"{self.provider}:{self.id}"

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable summary (no credentials: hrefs only)."""
        return {
            "id": self.id,
            "provider": self.provider,
            "datetime": self.datetime.isoformat().replace("+00:00", "Z"),
            "geometry": self.geometry,
            "properties": self.properties,
            "assets": {k: {"href": a.href, "size": a.size, "title": a.title}
                       for k, a in self.assets.items()},
        }


@dataclass(frozen=True)
class SceneQuery:
    """What to search for: an area (WGS84 geometry), a time span and filters.

    Attributes
    ----------
    aoi
        Shapely geometry in lon/lat (see :func:`parse_aoi`).
    start, end
        UTC bounds, inclusive.
    flight_direction
        Sentinel-1: ``ASCENDING`` or ``DESCENDING``.
    relative_orbit
        Sentinel-1 relative orbit (track).
    product
        Sentinel-1: ``SLC`` or ``BURST``; Sentinel-2: ``L1C`` or ``L2A``.
    max_cloud
        Sentinel-2: largest cloud cover accepted, percent.
    max_results
        Keep only the N most recent scenes (archives answer newest first).

    """

    aoi: Any
    start: dt.datetime
    end: dt.datetime
    flight_direction: str | None = None
    relative_orbit: int | None = None
    product: str | None = None
    max_cloud: float | None = None
    max_results: int | None = None


@runtime_checkable
class Provider(Protocol):
    """What every scene provider offers."""

    name: str

    def search(self, query: SceneQuery) -> list[Scene]:
        """Scenes matching ``query``, oldest first."""
        ...
