"""Sentinel-1 SLC products and bursts from ASF, searched with ``asf-search``.

Search goes to NASA's CMR through ``asf-search`` (its query translation and result
parsing); downloads go through :func:`gdmio.download.download` (resumable, verified
against the size and MD5 the search results give) into the :class:`~gdmio.cache.SceneCache`.

The search endpoint is ``base_url`` or ``$GDM_ASF_URL`` (default
``https://cmr.earthdata.nasa.gov``). ``asf-search`` always builds ``https://{host}/...``;
for a plain-http mirror (a local test server) the session rewrites that prefix back to
the configured URL. Earthdata credentials (token or netrc, see
:func:`gdmio.providers._http.earthdata_credentials`) are sent as headers to ASF and
Earthdata hosts (and the configured mirror) only, and never logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asf_search
import requests
from asf_search.exceptions import ASFSearchError

from gdmcore import InputError
from gdmio.cache import SceneCache
from gdmio.download import RemoteError, RetryPolicy, download
from gdmio.outbound import archive_policy, guard
from gdmio.providers import Asset, Scene, SceneQuery
from gdmio.providers._http import Credentials, base_url, earthdata_credentials, send_with_retries
from gdmio.providers.aoi import aoi_to_wkt

__all__ = ["AsfProvider", "DEFAULT_CMR_URL"]

log = logging.getLogger(__name__)

DEFAULT_CMR_URL = "https://cmr.earthdata.nasa.gov"
_AUTH_DOMAINS = ("asf.alaska.edu", "earthdata.nasa.gov", "earthdatacloud.nasa.gov")

# asf-search would otherwise post failed queries to ASF's error-reporting service.
asf_search.REPORT_ERRORS = False


class _CmrSession(asf_search.ASFSession):
    """An ``ASFSession`` that retries like our downloads and can reach http mirrors."""

    def __init__(self, base: str, policy: RetryPolicy, sleep: Callable[[float], None]) -> None:
        super().__init__()
        parts = urlsplit(base)
        self.host = parts.netloc + parts.path
        self._https_prefix = f"https://{self.host}"
        self._base = base
        self._policy = policy
        self._sleep = sleep

    def request(self, method: str | bytes, url: str | bytes,  # type: ignore[override]
                *args: Any, **kwargs: Any) -> requests.Response:
        url = url.decode() if isinstance(url, bytes) else url
        if url.startswith(self._https_prefix):
            url = self._base + url[len(self._https_prefix):]
        kwargs.setdefault("timeout", self._policy.timeout)
        kwargs["timeout"] = min(kwargs["timeout"] or self._policy.timeout, self._policy.timeout)
        parent = super().request
        return send_with_retries(lambda: parent(method, url, *args, **kwargs),
                                 "Sentinel-1 search", self._policy, self._sleep)


def _utc(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    d = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return d.replace(tzinfo=dt.UTC) if d.tzinfo is None else d.astimezone(dt.UTC)


class AsfProvider:
    """Search and fetch Sentinel-1 SLC products (``product="SLC"``) and bursts (``"BURST"``).

    Parameters
    ----------
    base_url
        CMR search endpoint; default ``$GDM_ASF_URL`` or the real CMR.
    token, netrc_file
        Earthdata credentials (else ``$GDM_EARTHDATA_TOKEN`` or ``~/.netrc``).
    policy
        Retry policy for search and downloads.
    sleep
        Waiting function between retries (tests pass a recorder).
    workers
        Parallel downloads in :meth:`fetch_many`.

    """

    name = "s1"

    def __init__(self, base_url: str | None = None, *, token: str | None = None,
                 netrc_file: str | None = None, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, workers: int = 4) -> None:
        self.base_url = _base(base_url)
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.workers = max(1, workers)
        self.credentials: Credentials = earthdata_credentials(token, netrc_file)

    # ---------------------------------------------------------------- search
    def search(self, query: SceneQuery) -> list[Scene]:
        """Sentinel-1 scenes intersecting ``query.aoi`` between ``start`` and ``end``.

        Raises
        ------
        InputError
            Bad filters (direction, product).
        RemoteError
            The archive failed (after retries).

        """
        product = (query.product or "SLC").upper()
        if product not in ("SLC", "BURST"):
            raise InputError(f"Sentinel-1 product must be SLC or BURST, got {query.product!r}")
        kwargs: dict[str, Any] = {
            "intersectsWith": aoi_to_wkt(query.aoi),
            "start": query.start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": query.end.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if product == "SLC":
            kwargs.update(platform=asf_search.PLATFORM.SENTINEL1,
                          processingLevel=asf_search.PRODUCT_TYPE.SLC)
        else:
            kwargs.update(dataset=asf_search.DATASET.SLC_BURST)
        if query.flight_direction:
            direction = query.flight_direction.upper()
            if direction not in ("ASCENDING", "DESCENDING"):
                raise InputError("flight direction must be ASCENDING or DESCENDING, got "
                                 f"{query.flight_direction!r}")
            kwargs["flightDirection"] = direction
        if query.relative_orbit is not None:
            if not 1 <= int(query.relative_orbit) <= 175:
                raise InputError(f"Sentinel-1 relative orbit must be 1..175, got "
                                 f"{query.relative_orbit}")
            kwargs["relativeOrbit"] = int(query.relative_orbit)
        if query.max_results:
            kwargs["maxResults"] = int(query.max_results)
        session = _CmrSession(self.base_url, self.policy, self.sleep)
        guard(session, archive_policy(self.base_url))
        opts = asf_search.ASFSearchOptions(host=session.host, session=session)
        try:
            with warnings.catch_warnings():
                # asf-search still calls shapely.ops.transform (deprecated in shapely 2.2).
                warnings.filterwarnings("ignore", message=r".*shapely\.ops\.transform",
                                        category=DeprecationWarning)
                results = asf_search.search(opts=opts, **kwargs)
        except RemoteError:
            raise
        except (ASFSearchError, ValueError) as exc:
            raise InputError(f"Sentinel-1 search refused: {exc}") from exc
        found = [self._scene(p, product) for p in results]
        scenes = [s for s in found if s is not None]
        return sorted(scenes, key=lambda s: (s.datetime, s.id))

    def _scene(self, product: Any, kind: str) -> Scene | None:
        p = product.properties
        url = p.get("url")
        start = _utc(p.get("startTime"))
        if not url or start is None:
            return None
        size = p.get("bytes")
        md5 = p.get("md5sum")
        name = p.get("fileID") if kind == "BURST" else (p.get("sceneName") or p.get("fileID"))
        assets = {"product": Asset(url, int(size) if size else None,
                                   ("md5", md5) if md5 else None,
                                   p.get("fileName") or url.rsplit("/", 1)[-1])}
        if kind == "BURST":
            for extra in p.get("additionalUrls") or []:
                assets["metadata"] = Asset(extra, None, None, f"{name}.xml")
        keep = ("flightDirection", "pathNumber", "frameNumber", "polarization",
                "beamModeType", "platform", "processingLevel", "orbit", "burst", "groupID")
        props = {k: p[k] for k in keep if p.get(k) is not None}
        stop = _utc(p.get("stopTime"))
        if stop is not None:
            props["end_datetime"] = stop.isoformat().replace("+00:00", "Z")
        props["product"] = kind
        return Scene(str(name), self.name, start, dict(product.geometry), props, assets)

    # ----------------------------------------------------------------- fetch
    def _auth_headers(self, url: str) -> dict[str, str]:
        host = urlsplit(url).hostname or ""
        mirror = urlsplit(self.base_url).hostname
        trusted = host == mirror or any(host == d or host.endswith("." + d)
                                        for d in _AUTH_DOMAINS)
        return self.credentials.headers() if trusted else {}

    def fetch(self, scene: Scene, cache: SceneCache) -> list[Path]:
        """Download the scene's files into the cache once; return their local paths.

        Raises
        ------
        RemoteError
            Naming the scene and the cause, after retries.

        """
        paths = []
        for asset in scene.assets.values():
            name = asset.title or asset.href.rsplit("/", 1)[-1]

            def fill(dest: Path, asset: Asset = asset) -> None:
                log.info("fetching %s from %s", scene.id, urlsplit(asset.href).netloc)
                download(asset.href, dest, label=scene.id, size=asset.size,
                         checksum=asset.checksum, headers=self._auth_headers(asset.href),
                         policy=self.policy, sleep=self.sleep,
                         outbound=archive_policy(self.base_url))

            def valid(path: Path, asset: Asset = asset) -> bool:
                return asset.size is None or path.stat().st_size == asset.size

            paths.append(cache.get(scene.cache_key, name, fill, valid))
        return paths

    def fetch_many(self, scenes: Iterable[Scene], cache: SceneCache) -> list[list[Path]]:
        """Fetch several scenes in parallel (``workers`` at a time), in order."""
        scenes = list(scenes)
        if self.workers == 1 or len(scenes) < 2:
            return [self.fetch(s, cache) for s in scenes]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(scenes))) as pool:
            return list(pool.map(lambda s: self.fetch(s, cache), scenes))


def _base(given: str | None) -> str:
    return base_url(given, "GDM_ASF_URL", DEFAULT_CMR_URL)
