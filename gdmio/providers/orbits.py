"""Sentinel-1 orbit files (precise, else restituted) for a scene, cached.

The archive is an S3-style bucket laid out like ASF's public ``s1-orbits`` bucket:
``AUX_POEORB/<name>.EOF`` and ``AUX_RESORB/<name>.EOF``, listed with the S3
``ListObjectsV2`` API (``?list-type=2&prefix=...&start-after=...``). Names look like
``S1A_OPER_AUX_POEORB_OPOD_20230121T080750_V20221231T225942_20230102T005942.EOF``:
production time, then validity start and stop. For a scene we take the most recently
produced precise orbit whose validity covers the scene (with a margin), else a
restituted one. Base URL: argument or ``$GDM_ORBIT_URL``.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from gdmcore import InputError
from gdmio.cache import SceneCache
from gdmio.download import RemoteError, RetryPolicy, download
from gdmio.outbound import archive_policy, guard
from gdmio.providers._http import base_url, send_with_retries

__all__ = ["DEFAULT_ORBIT_URL", "OrbitClient", "OrbitFile", "parse_scene_name"]

DEFAULT_ORBIT_URL = "https://s1-orbits.s3.us-west-2.amazonaws.com"
_SCENE = re.compile(r"^(S1[A-D])_.*?_(\d{8}T\d{6})_(\d{8}T\d{6})_")
_ORBIT = re.compile(r"(S1[A-D])_OPER_AUX_(POEORB|RESORB)_OPOD_(\d{8}T\d{6})_V(\d{8}T\d{6})_"
                    r"(\d{8}T\d{6})\.EOF$")
_MARGIN = {"POEORB": dt.timedelta(seconds=60), "RESORB": dt.timedelta(seconds=60)}


def _t(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)


def parse_scene_name(name: str) -> tuple[str, dt.datetime, dt.datetime]:
    """Platform (``S1A``...), start and stop of a Sentinel-1 product or burst name.

    Raises
    ------
    InputError
        When the name is not a Sentinel-1 product name.

    """
    m = _SCENE.match(Path(name).name)
    if not m:
        raise InputError(f"{name!r} is not a Sentinel-1 product name "
                         "(S1A_IW_SLC__1SDV_YYYYMMDDTHHMMSS_YYYYMMDDTHHMMSS_...)")
    return m.group(1), _t(m.group(2)), _t(m.group(3))


@dataclass(frozen=True)
class OrbitFile:
    """An orbit file in the archive."""

    key: str
    platform: str
    kind: str  # POEORB or RESORB
    produced: dt.datetime
    valid_from: dt.datetime
    valid_to: dt.datetime

    @classmethod
    def from_key(cls, key: str) -> OrbitFile | None:
        """Parse a bucket key; ``None`` when it is not an orbit file name."""
        m = _ORBIT.search(key)
        if not m:
            return None
        return cls(key, m.group(1), m.group(2), _t(m.group(3)), _t(m.group(4)),
                   _t(m.group(5)))

    @property
    def name(self) -> str:
        """File name."""
        return self.key.rsplit("/", 1)[-1]


class OrbitClient:
    """Find and fetch the best orbit file for a Sentinel-1 scene.

    Parameters
    ----------
    base_url
        Bucket URL; default ``$GDM_ORBIT_URL`` or ASF's ``s1-orbits`` bucket.
    policy, sleep
        Retries (listing and download).

    """

    def __init__(self, base_url: str | None = None, *, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = _base(base_url)
        self.policy = policy or RetryPolicy()
        self.sleep = sleep

    def _list(self, prefix: str, start_after: str, label: str,
              max_pages: int = 20) -> list[str]:
        keys: list[str] = []
        token = None
        session = guard(requests.Session(), archive_policy(self.base_url))
        for _ in range(max_pages):
            params = {"list-type": "2", "prefix": prefix, "start-after": start_after}
            if token:
                params["continuation-token"] = token
            resp = send_with_retries(
                lambda p=params: session.get(self.base_url + "/", params=p,  # type: ignore
                                             timeout=self.policy.timeout),
                label, self.policy, self.sleep)
            try:
                root = ET.fromstring(resp.content)
            except ET.ParseError as exc:
                raise RemoteError(f"{label}: orbit listing is not S3 XML ({exc})") from exc
            ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            keys += [k.text for k in root.iter(f"{ns}Key") if k.text]
            truncated = (root.findtext(f"{ns}IsTruncated") or "false").lower() == "true"
            token = root.findtext(f"{ns}NextContinuationToken")
            if not truncated or not token:
                break
        return keys

    def find(self, scene: str) -> OrbitFile:
        """The best orbit for ``scene``: newest precise one covering it, else restituted.

        Raises
        ------
        InputError
            Not a Sentinel-1 name.
        RemoteError
            No orbit covers the scene, or the archive failed.

        """
        platform, start, stop = parse_scene_name(scene)
        label = f"{Path(scene).name.split('.')[0]} orbit"
        for kind in ("POEORB", "RESORB"):
            prefix = f"AUX_{kind}/{platform}_OPER_AUX_{kind}_OPOD_"
            # Orbit files are produced after the acquisition: skip older productions.
            after = prefix + (start - dt.timedelta(days=1)).strftime("%Y%m%dT%H%M%S")
            margin = _MARGIN[kind]
            found = [o for o in map(OrbitFile.from_key, self._list(prefix, after, label))
                     if o and o.platform == platform and o.kind == kind
                     and o.valid_from <= start - margin and o.valid_to >= stop + margin]
            if found:
                return max(found, key=lambda o: o.produced)
        raise RemoteError(f"{label}: no precise or restituted orbit covers "
                          f"{start:%Y-%m-%dT%H:%M:%S}Z-{stop:%H:%M:%S}Z", 404)

    def fetch(self, scene: str, cache: SceneCache) -> Path:
        """Local path of the best orbit file for ``scene`` (downloaded once, cached)."""
        orbit = self.find(scene)
        url = f"{self.base_url}/{orbit.key}"

        def fill(dest: Path) -> None:
            download(url, dest, label=orbit.name, policy=self.policy, sleep=self.sleep,
                     outbound=archive_policy(self.base_url))

        return cache.get(f"orbit:{orbit.name}", orbit.name, fill)


def _base(given: str | None) -> str:
    return base_url(given, "GDM_ORBIT_URL", DEFAULT_ORBIT_URL)
