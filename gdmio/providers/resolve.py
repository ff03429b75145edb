"""Jobs asked as "this area, these dates": :class:`SceneRequest` -> local files.

Services call :func:`resolve_scenes` with a request (from the job inputs ``{aoi, start,
end, ...}``) and the shared scene cache, and get local paths to feed their ``run``:

- ``s2``: one GeoTIFF per scene and band, cropped to the AOI (optical inputs, the date
  in the file name and tags);
- ``s1``: SLC zips (or burst TIFFs), oldest first;
- ``pleiades``: DIMAP files (images and RPC beside them).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gdmcore import InputError
from gdmio.cache import SceneCache
from gdmio.providers import Scene, SceneQuery
from gdmio.providers.aoi import parse_aoi, parse_date

__all__ = ["SceneRequest", "get_provider", "resolve_scenes", "scene_cache_from_env",
           "search_scenes"]

ProviderName = Literal["s1", "s2", "pleiades"]


class SceneRequest(BaseModel):
    """Scenes asked by area and dates instead of files (job input)."""

    model_config = ConfigDict(extra="forbid")

    provider: ProviderName = Field(description="s1 (Sentinel-1, ASF), s2 (Sentinel-2, STAC) "
                                   "or pleiades (registered deliveries).")
    aoi: str | dict[str, Any] | list[float] = Field(
        description="Area of interest in WGS84: WKT, 'west,south,east,north' or GeoJSON.")
    start: dt.datetime | dt.date | str = Field(description="First date (ISO 8601, UTC).")
    end: dt.datetime | dt.date | str = Field(description="Last date, inclusive (ISO 8601).")
    product: str | None = Field(None, description="s1: SLC or BURST; s2: L2A or L1C.")
    flight_direction: Literal["ASCENDING", "DESCENDING"] | None = Field(
        None, description="s1 orbit direction.")
    relative_orbit: int | None = Field(None, ge=1, le=175, description="s1 track.")
    max_cloud: float | None = Field(None, ge=0, le=100,
                                    description="s2 largest cloud cover, percent.")
    bands: list[str] = Field(default_factory=lambda: ["B04"], min_length=1, max_length=13,
                             description="s2 bands to fetch (B02, B04, B08, ...).")
    crop: bool = Field(True, description="s2: read only the AOI window of each band.")
    max_scenes: int | None = Field(None, ge=1, le=1000,
                                   description="Keep only the N most recent scenes.")

    @field_validator("flight_direction", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    def query(self) -> SceneQuery:
        """The provider query (AOI parsed, dates as UTC, end inclusive)."""
        start, end = parse_date(self.start), parse_date(self.end, end=True)
        if end < start:
            raise InputError(f"end {end:%Y-%m-%d} is before start {start:%Y-%m-%d}")
        return SceneQuery(parse_aoi(self.aoi), start, end, self.flight_direction,
                          self.relative_orbit, self.product, self.max_cloud, self.max_scenes)


def scene_cache_from_env(root: str | os.PathLike[str] | None = None) -> SceneCache:
    """The shared scene cache, configured from the environment.

    Folder: ``root``, ``$GDM_SCENE_CACHE`` or ``~/.cache/gdm/scenes``; size limit
    ``$GDM_SCENE_CACHE_MAX_GB`` (none by default).
    """
    where = root or os.environ.get("GDM_SCENE_CACHE") or Path.home() / ".cache/gdm/scenes"
    limit = os.environ.get("GDM_SCENE_CACHE_MAX_GB")
    try:
        max_bytes = int(float(limit) * 1e9) if limit else None
    except ValueError as exc:
        raise InputError(f"GDM_SCENE_CACHE_MAX_GB={limit!r} is not a number") from exc
    return SceneCache(where, max_bytes=max_bytes)


def get_provider(name: str, *, base_url: str | None = None, cache: SceneCache | None = None,
                 index: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """A provider by name (``s1``, ``s2``, ``pleiades``); base URLs default to the env."""
    if name == "s1":
        from gdmio.providers.asf import AsfProvider

        return AsfProvider(base_url, **kwargs)
    if name == "s2":
        from gdmio.providers.stac import StacProvider

        return StacProvider(base_url, **kwargs)
    if name == "pleiades":
        from gdmio.providers.pleiades import PleiadesProvider

        return PleiadesProvider(index, cache_root=cache.root if cache else None)
    raise InputError(f"unknown scene provider {name!r} (s1, s2 or pleiades)")


def search_scenes(request: SceneRequest, *, provider: Any = None,
                  cache: SceneCache | None = None, **kwargs: Any) -> list[Scene]:
    """The scenes a request selects, oldest first (for previews: nothing downloaded)."""
    prov = provider or get_provider(request.provider, cache=cache, **kwargs)
    scenes = prov.search(request.query())
    return scenes[-request.max_scenes:] if request.max_scenes else scenes


def resolve_scenes(request: SceneRequest | dict[str, Any], cache: SceneCache, *,
                   provider: Any = None,
                   progress: Callable[[float, str], None] | None = None,
                   min_scenes: int = 1, **kwargs: Any) -> list[Path]:
    """Search, fetch into ``cache`` (once, shared by workers) and return local paths.

    Parameters
    ----------
    request
        A :class:`SceneRequest` or its dict form (job inputs).
    cache
        The shared scene cache.
    provider
        A provider object (tests); default built from ``request.provider`` and the
        environment (``GDM_ASF_URL``, ``GDM_STAC_URL``, ``GDM_PLEIADES_INDEX``...).
    progress
        ``progress(fraction, message)`` callback.
    min_scenes
        Fewer scenes than this is an :class:`InputError` (a pair needs 2).
    **kwargs
        Passed to the provider constructor (``base_url``, ``policy``...).

    Raises
    ------
    InputError
        Bad request, or too few scenes over the AOI and dates.
    gdmio.download.RemoteError
        The archive failed (after retries); the message names the scene and cause.

    """
    if not isinstance(request, SceneRequest):
        request = SceneRequest.model_validate(request)
    prov = provider or get_provider(request.provider, cache=cache, **kwargs)
    query = request.query()
    scenes = search_scenes(request, provider=prov)
    if len(scenes) < min_scenes:
        raise InputError(f"{len(scenes)} {request.provider} scene(s) over the AOI between "
                         f"{query.start:%Y-%m-%d} and {query.end:%Y-%m-%d}; "
                         f"{min_scenes} needed")
    paths: list[Path] = []
    for i, scene in enumerate(scenes):
        if progress:
            progress(i / len(scenes), f"fetching {scene.id}")
        if request.provider == "s2":
            paths += prov.fetch(scene, cache, bands=request.bands,
                                aoi=query.aoi if request.crop else None)
        elif request.provider == "s1":
            got = prov.fetch(scene, cache)
            paths += [p for p in got if p.suffix.lower() in (".zip", ".tiff", ".tif")][:1]
        else:
            paths += prov.fetch(scene, cache)
    if progress:
        progress(1.0, f"{len(scenes)} scenes ready")
    return paths
