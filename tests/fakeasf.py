"""A local CMR + ASF datapool for tests: granule search in the UMM-JSON shape asf-search
parses, and product files served by :mod:`tests.fakearchive` (ranges, faults, counters).

``POST /search/granules.umm_json`` honours the keywords asf-search sends: ``shortName``,
``attribute[]`` (``string|int,NAME,value``), ``temporal``, ``bounding_box``,
``polygon``, ``point``, ``page_size``. Files under ``/SLC/...`` and ``/BURST/...`` need an
``Authorization`` header equal to ``required_auth`` when that is set (else 401).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from shapely.geometry import Point, Polygon, box, shape

from tests.fakearchive import Archive, _handler, serving

SEARCH_PATH = "/search/granules.umm_json"


@dataclass
class FakeAsf:
    archive: Archive
    granules: list[dict] = field(default_factory=list)
    queries: list[list[tuple[str, str]]] = field(default_factory=list)
    search_faults: list[tuple] = field(default_factory=list)
    required_auth: str | None = None
    auth_seen: list[str | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.archive.url

    def add_slc(self, start: dt.datetime, footprint: tuple[float, float, float, float],
                direction: str = "ASCENDING", path: int = 88, size: int = 200_000,
                platform: str = "A", md5: str | None = None, name: str | None = None,
                data: bytes | None = None) -> tuple[str, bytes]:
        """Add an SLC granule and its zip; return (scene name, content).

        ``name`` and ``data`` serve a given product (e.g. a simulated SAFE zip) instead of
        random bytes under a made-up name.
        """
        stop = start + dt.timedelta(seconds=27)
        orbit = 46000 + len(self.granules)
        name = name or (f"S1{platform}_IW_SLC__1SDV_{start:%Y%m%dT%H%M%S}_"
                        f"{stop:%Y%m%dT%H%M%S}_{orbit:06d}_{orbit * 7 % 0xFFFFFF:06X}_"
                        f"{len(self.granules):04X}")
        data = os.urandom(size) if data is None else data
        size = len(data)
        href = f"{self.url}/SLC/S{platform}/{name}.zip"
        self.archive.files[f"/SLC/S{platform}/{name}.zip"] = data
        attrs = {
            "ASCENDING_DESCENDING": direction, "PATH_NUMBER": str(path),
            "PROCESSING_TYPE": "SLC", "BEAM_MODE": "IW", "BEAM_MODE_TYPE": "IW",
            "POLARIZATION": "VV+VH", "BYTES": str(size),
            "MD5SUM": md5 or hashlib.md5(data).hexdigest(), "FRAME_NUMBER": "140",
            "GROUP_ID": f"S1{platform}_IWDV_0140_0145_{orbit:06d}_{path:03d}",
            "ASF_PLATFORM": f"Sentinel-1{platform}",
        }
        self.granules.append(_granule(name, f"{name}-SLC", f"SENTINEL-1{platform}_SLC",
                                      f"SENTINEL-1{platform}", start, stop, footprint,
                                      attrs, [{"Type": "GET DATA", "URL": href}], orbit))
        return name, data

    def add_burst(self, start: dt.datetime, footprint: tuple[float, float, float, float],
                  burst_id: int = 187654, swath: str = "IW2", direction: str = "ASCENDING",
                  path: int = 88, size: int = 50_000) -> tuple[str, bytes]:
        """Add a burst (tiff + xml through the burst service); return (name, tiff)."""
        orbit = 46000 + len(self.granules)
        name = f"S1_{burst_id:06d}_{swath}_{start:%Y%m%dT%H%M%S}_VV_{orbit % 0xFFFF:04X}-BURST"
        data = os.urandom(size)
        tif, xml = f"/BURST/{name}.tiff", f"/BURST/{name}.xml"
        self.archive.files[tif] = data
        self.archive.files[xml] = b"<burst/>"
        attrs = {
            "ASCENDING_DESCENDING": direction, "PATH_NUMBER": str(path),
            "PROCESSING_TYPE": "BURST", "BEAM_MODE": "IW", "POLARIZATION": "VV",
            "BYTE_LENGTH": str(size), "BURST_ID_ABSOLUTE": str(burst_id * 10 + 2),
            "BURST_ID_RELATIVE": str(burst_id),
            "BURST_ID_FULL": f"{path:03d}_{burst_id:06d}_{swath}",
            "BURST_INDEX": "3", "SAMPLES_PER_BURST": "20000", "SUBSWATH_NAME": swath,
            "AZIMUTH_TIME": start.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "AZIMUTH_ANX_TIME": "1234.5", "ASF_PLATFORM": "Sentinel-1A",
        }
        urls = [{"Type": "USE SERVICE API", "URL": self.url + tif},
                {"Type": "USE SERVICE API", "URL": self.url + xml}]
        self.granules.append(_granule(name, name, "SENTINEL-1_BURSTS", "SENTINEL-1A", start,
                                      start + dt.timedelta(seconds=3), footprint, attrs, urls,
                                      orbit))
        return name, data

    # ------------------------------------------------------------------ search
    def search(self, form: list[tuple[str, str]]) -> dict:
        short = {v for k, v in form if k == "shortName"}
        attrs = [v.split(",", 2) for k, v in form if k == "attribute[]"]
        hits = []
        for g in self.granules:
            umm = g["umm"]
            if short and umm["CollectionReference"]["ShortName"] not in short:
                continue
            have = {a["Name"]: a["Values"][0] for a in umm["AdditionalAttributes"]}
            if not all(_attr_ok(have.get(name), kind, value) for kind, name, value in attrs):
                continue
            if not _time_ok(umm, [v for k, v in form if k == "temporal"]):
                continue
            if not _space_ok(umm, form):
                continue
            hits.append(g)
        hits.sort(key=lambda g: g["umm"]["TemporalExtent"]["RangeDateTime"]["EndingDateTime"],
                  reverse=True)
        size = int(dict(form).get("page_size", 250))
        return {"hits": len(hits), "took": 3, "items": hits[:size]}


def _attr_ok(have: str | None, kind: str, value: str) -> bool:
    if have is None:
        return False
    if kind == "int":
        lo, _, hi = value.partition(",")
        return int(lo) <= int(have) <= int(hi or lo)
    return have.upper() == value.upper()


def _time_ok(umm: dict, temporal: list[str]) -> bool:
    rng = umm["TemporalExtent"]["RangeDateTime"]
    g0 = dt.datetime.fromisoformat(rng["BeginningDateTime"].replace("Z", "+00:00"))
    g1 = dt.datetime.fromisoformat(rng["EndingDateTime"].replace("Z", "+00:00"))
    for t in temporal:
        a, b = (t.split(",") + ["", ""])[:2]
        if a and g1 < dt.datetime.fromisoformat(a.replace("Z", "+00:00")):
            return False
        if b and g0 > dt.datetime.fromisoformat(b.replace("Z", "+00:00")):
            return False
    return True


def _space_ok(umm: dict, form: list[tuple[str, str]]) -> bool:
    pts = umm["SpatialExtent"]["HorizontalSpatialDomain"]["Geometry"]["GPolygons"][0][
        "Boundary"]["Points"]
    footprint = Polygon([(p["Longitude"], p["Latitude"]) for p in pts])
    for key, value in form:
        nums = [float(x) for x in value.split(",")] if key in (
            "bounding_box", "polygon", "point") else None
        if key == "bounding_box" and not footprint.intersects(box(*nums)):
            return False
        if key == "polygon" and not footprint.intersects(
                Polygon(list(zip(nums[0::2], nums[1::2], strict=True)))):
            return False
        if key == "point" and not footprint.intersects(Point(nums)):
            return False
    return True


def _granule(name, ur, short_name, platform, start, stop, footprint, attrs, urls, orbit):
    w, s, e, n = footprint
    ring = shape(box(w, s, e, n).__geo_interface__).exterior.coords
    return {
        "meta": {"concept-id": f"G{abs(hash(ur)) % 10**10}-ASF", "native-id": ur,
                 "provider-id": "ASF"},
        "umm": {
            "GranuleUR": ur,
            "CollectionReference": {"ShortName": short_name, "Version": "1"},
            "DataGranule": {
                "Identifiers": [{"IdentifierType": "ProducerGranuleId", "Identifier": name}],
                "ProductionDateTime": stop.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "DayNightFlag": "Unspecified",
            },
            "TemporalExtent": {"RangeDateTime": {
                "BeginningDateTime": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "EndingDateTime": stop.strftime("%Y-%m-%dT%H:%M:%S.000Z")}},
            "SpatialExtent": {"HorizontalSpatialDomain": {"Geometry": {"GPolygons": [
                {"Boundary": {"Points": [{"Longitude": x, "Latitude": y} for x, y in ring]}}]}}},
            "OrbitCalculatedSpatialDomains": [{"OrbitNumber": orbit}],
            "AdditionalAttributes": [{"Name": k, "Values": [v]} for k, v in attrs.items()],
            "Platforms": [{"ShortName": platform, "Instruments": [{"ShortName": "C-SAR"}]}],
            "RelatedUrls": urls,
        },
    }


@contextmanager
def running_asf() -> Iterator[FakeAsf]:
    """Start the fake CMR + datapool on a free 127.0.0.1 port."""
    archive = Archive()
    fake = FakeAsf(archive)
    base = _handler(archive)

    class Handler(base):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            if path.startswith(("/SLC/", "/BURST/")):
                auth = self.headers.get("Authorization")
                with archive.lock:
                    fake.auth_seen.append(auth)
                if fake.required_auth is not None and auth != fake.required_auth:
                    with archive.lock:
                        archive.requests[path] += 1
                    self._send(401, b"unauthorised")
                    return
            super().do_GET()

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            path = self.path.split("?")[0]
            with archive.lock:
                archive.requests[path] += 1
                fault = fake.search_faults.pop(0) if fake.search_faults else None
            if path != SEARCH_PATH:
                self._send(404, b'{"errors": ["not found"]}')
                return
            if fault and fault[0] == "status":
                headers = {"Retry-After": str(fault[2])} if len(fault) > 2 else {}
                headers["Content-Type"] = "application/json"
                self._send(fault[1], b'{"errors": ["injected"]}', headers)
                return
            form = parse_qsl(body, keep_blank_values=True)
            with archive.lock:
                fake.queries.append(form)
            out = json.dumps(fake.search(form)).encode()
            self._send(200, out, {"Content-Type": "application/json",
                                  "CMR-Hits": str(len(fake.granules))})

    with serving(Handler) as url:
        archive.url = url
        yield fake
