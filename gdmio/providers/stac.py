"""Sentinel-2 L1C/L2A from a STAC API (``pystac-client``), reading only what a job needs.

Search: collections ``sentinel-2-l1c`` / ``sentinel-2-l2a`` (the names Earth Search and
the Copernicus Data Space use), by AOI, dates and cloud cover. Fetch: only the requested
bands; for Cloud-Optimized GeoTIFF assets only the AOI window, read through GDAL's
``/vsicurl/`` with HTTP range requests (the tile is never downloaded whole), written as
a local GeoTIFF into the :class:`~gdmio.cache.SceneCache`. Assets that are not COGs
(JP2) are downloaded whole with :func:`gdmio.download.download`.

The API root is ``base_url`` or ``$GDM_STAC_URL`` (default Earth Search v1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import rasterio
import shapely
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from gdmcore import InputError
from gdmio._util import first_line, quiet_rasterio
from gdmio.atomic import atomic_path
from gdmio.cache import SceneCache
from gdmio.download import _PERMANENT, RemoteError, RetryPolicy, download
from gdmio.outbound import archive_policy, check_host, guard
from gdmio.providers import Asset, Scene, SceneQuery
from gdmio.providers._http import base_url

__all__ = ["COLLECTIONS", "DEFAULT_STAC_URL", "StacProvider", "gdal_http_options"]

log = logging.getLogger(__name__)

DEFAULT_STAC_URL = "https://earth-search.aws.element84.com/v1"
#: Collection per processing level.
COLLECTIONS = {"L1C": "sentinel-2-l1c", "L2A": "sentinel-2-l2a"}
#: Sentinel-2 band name -> STAC ``common_name`` (Earth Search names its assets by these).
COMMON_NAMES = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B10": "cirrus", "B11": "swir16", "B12": "swir22", "SCL": "scl", "TCI": "visual",
    "AOT": "aot", "WVP": "wvp",
}
_BAND_KEY = re.compile(r"^(B\d\d|B8A|SCL|TCI|AOT|WVP)(?:_(\d+)m)?$", re.IGNORECASE)
_HTTP_CODE = re.compile(r"HTTP (?:response )?code:? ?(\d{3})", re.IGNORECASE)
_COG_TYPES = ("cloud-optimized", "image/tiff", "image/geotiff")


def gdal_http_options(policy: RetryPolicy) -> dict[str, Any]:
    """GDAL configuration for reading remote COGs with few, merged range requests.

    No directory listing on open (``EMPTY_DIR``), only raster extensions probed, merged
    consecutive ranges, a block cache, and GDAL's own retries with backoff on 429/5xx
    (``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY``, doubled at each retry).
    GDAL takes proxies from the environment (``http_proxy``/``no_proxy``) like curl; none
    are configured here.
    """
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF,.jp2,.JP2",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "VSI_CACHE": "TRUE",
        "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
        "GDAL_HTTP_MAX_RETRY": str(max(0, policy.attempts - 1)),
        "GDAL_HTTP_RETRY_DELAY": str(policy.backoff),
        "GDAL_HTTP_TIMEOUT": str(int(max(1, policy.timeout))),
        "CPL_VSIL_CURL_USE_HEAD": "NO",
    }


class _RetryingIO(StacApiIO):
    """``StacApiIO`` with our retry policy and :class:`RemoteError` messages."""

    def __init__(self, policy: RetryPolicy, sleep: Callable[[float], None]) -> None:
        super().__init__(timeout=policy.timeout, max_retries=None)
        self._policy = policy
        self._sleep = sleep

    def request(self, href: str, method: str | None = None, headers: Any = None,
                parameters: Any = None) -> str:
        policy = self._policy
        last = "no attempt made"
        for attempt in range(policy.attempts):
            try:
                return super().request(href, method=method, headers=headers,
                                       parameters=parameters)
            except APIError as exc:
                code = getattr(exc, "status_code", None)
                if code in _PERMANENT:
                    raise RemoteError(f"Sentinel-2 search: {_PERMANENT[code]} (HTTP {code})",
                                      code) from None
                if code is not None and code != 429 and code < 500:
                    raise RemoteError(f"Sentinel-2 search: unexpected HTTP {code}",
                                      code) from None
                last = f"HTTP {code}" if code else ("timed out" if "timed out" in str(exc)
                                                    else "connection failed")
            if attempt + 1 < policy.attempts:
                self._sleep(policy.delay(attempt))
        raise RemoteError(f"Sentinel-2 search: giving up after {policy.attempts} attempts "
                          f"({last})", retryable=True)


def _aoi_key(aoi: Any) -> str:
    return hashlib.sha256(shapely.to_wkb(aoi, output_dimension=2)).hexdigest()[:12]


class StacProvider:
    """Search Sentinel-2 in a STAC API and fetch band windows over an AOI.

    Parameters
    ----------
    base_url
        STAC API root; default ``$GDM_STAC_URL`` or Earth Search v1.
    collections
        Collection per level (``L1C``/``L2A``), for APIs that name them differently.
    policy
        Retry policy (search, window reads, downloads).
    sleep
        Waiting function between retries.

    """

    name = "s2"

    def __init__(self, base_url: str | None = None, *,
                 collections: dict[str, str] | None = None,
                 policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = _base(base_url)
        self.collections = {**COLLECTIONS, **(collections or {})}
        self.policy = policy or RetryPolicy()
        self.sleep = sleep

    # ---------------------------------------------------------------- search
    def search(self, query: SceneQuery) -> list[Scene]:
        """Sentinel-2 items over ``query.aoi`` between ``start`` and ``end``, oldest first.

        ``query.product`` is ``L2A`` (default) or ``L1C``; ``query.max_cloud`` a percent.
        """
        level = (query.product or "L2A").upper()
        if level not in self.collections:
            raise InputError(f"Sentinel-2 level must be one of {sorted(self.collections)}, "
                             f"got {query.product!r}")
        if query.max_cloud is not None and not 0 <= query.max_cloud <= 100:
            raise InputError(f"max cloud cover must be 0..100 %, got {query.max_cloud}")
        io = _RetryingIO(self.policy, self.sleep)
        guard(io.session, archive_policy(self.base_url))
        client = Client.open(self.base_url, stac_io=io)
        kwargs: dict[str, Any] = {
            "collections": [self.collections[level]],
            "intersects": shapely.geometry.mapping(query.aoi),
            "datetime": [query.start, query.end],
            "max_items": query.max_results,
        }
        if query.max_cloud is not None and client.conforms_to("QUERY"):
            kwargs["query"] = {"eo:cloud_cover": {"lte": query.max_cloud}}
        try:
            items = list(client.search(**kwargs).items())
        except APIError as exc:  # raised outside our request wrapper (bad JSON...)
            raise RemoteError(f"Sentinel-2 search: {first_line(exc)}") from exc
        scenes = []
        for item in items:
            cloud = item.properties.get("eo:cloud_cover")
            if query.max_cloud is not None and cloud is not None and cloud > query.max_cloud:
                continue  # the API ignored the query extension
            scenes.append(self._scene(item, level))
        return sorted(scenes, key=lambda s: (s.datetime, s.id))

    def _scene(self, item: Any, level: str) -> Scene:
        assets: dict[str, Asset] = {}
        bands: dict[str, Any] = {}
        for key, a in item.assets.items():
            extra = a.extra_fields
            assets[key] = Asset(a.href, extra.get("file:size"), None, a.title or key)
            band = _band_of(key, extra)
            if band is not None:
                res = _resolution(key, extra)
                if band not in bands or res < bands[band][1]:
                    bands[band] = (key, res)
        props = {k: item.properties[k] for k in (
            "eo:cloud_cover", "platform", "proj:epsg", "proj:code", "s2:mgrs_tile",
            "grid:code", "mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square",
            "s2:processing_baseline") if k in item.properties}
        props["level"] = level
        props["collection"] = item.collection_id
        props["bands"] = {b: k for b, (k, _) in sorted(bands.items())}
        when = item.datetime or dt.datetime.fromisoformat(
            item.properties["start_datetime"].replace("Z", "+00:00"))
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
        return Scene(item.id, self.name, when, dict(item.geometry), props, assets)

    # ----------------------------------------------------------------- fetch
    def asset_for(self, scene: Scene, band: str) -> Asset:
        """The asset holding ``band`` (``B04``, ``red``, ``B8A``...) of ``scene``."""
        want = band.upper()
        by_common = {v: k for k, v in COMMON_NAMES.items()}
        want = by_common.get(band.lower(), want)
        key = scene.properties.get("bands", {}).get(want)
        if key is None:
            raise InputError(f"{scene.id} has no band {band} (has "
                             f"{', '.join(sorted(scene.properties.get('bands', {}))) or 'none'})")
        return scene.assets[key]

    def fetch(self, scene: Scene, cache: SceneCache, *, bands: Sequence[str] = ("B04",),
              aoi: Any = None) -> list[Path]:
        """Local GeoTIFFs of ``bands`` of ``scene``, cropped to ``aoi`` when given.

        With an AOI, COG assets are read by window (range requests); the file is cached
        under the scene, band and AOI, named ``<scene id>_<band>.tif``. Without one, the
        whole asset is downloaded (verified against its ``file:size`` when given).

        Raises
        ------
        InputError
            Unknown band, or an AOI that misses the scene.
        RemoteError
            The archive failed (after retries), naming scene and cause.

        """
        out = []
        for band in bands:
            asset = self.asset_for(scene, band)
            canonical = next(b for b, k in scene.properties["bands"].items()
                             if scene.assets[k] is asset)
            suffix = Path(urlsplit(asset.href).path).suffix or ".tif"
            if aoi is None:
                key = f"{scene.cache_key}#{canonical}"
                name = f"{scene.id}_{canonical}{suffix}"

                def fill(dest: Path, asset: Asset = asset, canonical: str = canonical) -> None:
                    download(asset.href, dest, label=scene.id, size=asset.size,
                             policy=self.policy, sleep=self.sleep,
                             outbound=archive_policy(self.base_url))
            else:
                key = f"{scene.cache_key}#{canonical}#aoi:{_aoi_key(aoi)}"
                name = f"{scene.id}_{canonical}.tif"

                def fill(dest: Path, asset: Asset = asset, canonical: str = canonical) -> None:
                    self._read_window(scene, canonical, asset.href, aoi, dest)
            out.append(cache.get(key, name, fill))
        return out

    def fetch_many(self, scenes: Iterable[Scene], cache: SceneCache, *,
                   bands: Sequence[str] = ("B04",), aoi: Any = None) -> list[list[Path]]:
        """:meth:`fetch` for each scene, in order."""
        return [self.fetch(s, cache, bands=bands, aoi=aoi) for s in scenes]

    def _read_window(self, scene: Scene, band: str, href: str, aoi: Any, dest: Path) -> None:
        if "://" in href:  # GDAL reads it itself: check the host first (no pinning there)
            host = urlsplit(href).hostname or ""
            check_host(host, urlsplit(href).port or 443, archive_policy(self.base_url))
        url = href if href.startswith("/vsi") or "://" not in href else f"/vsicurl/{href}"
        label = f"{scene.id} {band}"
        last = "no attempt made"
        for attempt in range(self.policy.attempts):
            try:
                with rasterio.Env(**gdal_http_options(self.policy)), quiet_rasterio(), \
                        rasterio.open(url) as ds:
                    window = _aoi_window(ds, aoi, scene.id)
                    data = ds.read(1, window=window)
                    profile = {
                        "driver": "GTiff", "width": int(window.width),
                        "height": int(window.height), "count": 1, "dtype": data.dtype.name,
                        "crs": ds.crs, "transform": ds.window_transform(window),
                        "nodata": ds.nodata, "tiled": True, "blockxsize": 256,
                        "blockysize": 256, "compress": "DEFLATE",
                        "predictor": 2 if np.issubdtype(data.dtype, np.integer) else 3,
                    }
                break
            except RasterioIOError as exc:
                msg = first_line(exc)
                m = _HTTP_CODE.search(msg)
                code = int(m.group(1)) if m else None
                if code in _PERMANENT:
                    raise RemoteError(f"{label}: {_PERMANENT[code]} (HTTP {code})",
                                      code) from None
                if code is None and ("not recognized" in msg or "not a supported" in msg):
                    raise RemoteError(f"{label}: not a readable raster ({msg})") from None
                last = f"HTTP {code}" if code else msg
            if attempt + 1 < self.policy.attempts:
                self.sleep(self.policy.delay(attempt))
        else:
            raise RemoteError(f"{label}: giving up after {self.policy.attempts} attempts "
                              f"({last})", retryable=True)
        with atomic_path(dest) as tmp, quiet_rasterio(), \
                rasterio.open(tmp, "w", **profile) as out:
            out.write(data, 1)
            out.update_tags(ACQUISITION_DATE=scene.datetime.date().isoformat(),
                            TIFFTAG_DATETIME=scene.datetime.strftime("%Y:%m:%d %H:%M:%S"),
                            SOURCE=href, STAC_ITEM=scene.id, BAND=band)
            out.set_band_description(1, band)
        log.info("%s %s: read %dx%d window", scene.id, band, profile["width"],
                 profile["height"])


def _aoi_window(ds: Any, aoi: Any, scene_id: str) -> Window:
    left, bottom, right, top = transform_bounds("EPSG:4326", ds.crs, *aoi.bounds,
                                                densify_pts=21)
    win = from_bounds(left, bottom, right, top, ds.transform)
    win = win.round_offsets(op="floor").round_lengths(op="ceil")
    full = Window(0, 0, ds.width, ds.height)
    try:
        win = win.intersection(full)
    except Exception as exc:  # rasterio raises WindowError when they do not meet
        raise InputError(f"the AOI does not overlap scene {scene_id}") from exc
    if win.width < 1 or win.height < 1:
        raise InputError(f"the AOI does not overlap scene {scene_id}")
    return Window(int(win.col_off), int(win.row_off), int(win.width), int(win.height))


def _band_of(key: str, extra: dict[str, Any]) -> str | None:
    m = _BAND_KEY.match(key)
    if m:
        return m.group(1).upper()
    by_common = {v: k for k, v in COMMON_NAMES.items()}
    for b in (extra.get("eo:bands") or extra.get("bands") or [])[:1]:
        name = str(b.get("name", ""))
        if _BAND_KEY.match(name):
            return _BAND_KEY.match(name).group(1).upper()  # type: ignore[union-attr]
        common = b.get("common_name") or b.get("eo:common_name")
        if common in by_common and not key.endswith("-jp2"):
            return by_common[common]
    if key.lower() in by_common:
        return by_common[key.lower()]
    return None


def _resolution(key: str, extra: dict[str, Any]) -> float:
    m = _BAND_KEY.match(key)
    if m and m.group(2):
        return float(m.group(2))
    gsd = extra.get("gsd")
    if gsd:
        return float(gsd)
    kind = str(extra.get("type", ""))
    return 0.0 if any(t in kind for t in _COG_TYPES) else 1000.0


def _base(given: str | None) -> str:
    return base_url(given, "GDM_STAC_URL", DEFAULT_STAC_URL)
