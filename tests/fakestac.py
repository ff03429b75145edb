"""A local STAC API for tests: landing page, conformance, collections, ``/search`` (GET and
POST, paged with ``next`` links, ``query`` extension for ``eo:cloud_cover``), and COG
assets served by :mod:`tests.fakearchive` (HTTP ranges, byte counter, faults).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from rasterio.transform import from_origin
from shapely.geometry import box, mapping, shape

from tests.fakearchive import Archive, _handler, serving

CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]


@dataclass
class FakeStac:
    archive: Archive
    items: list[dict] = field(default_factory=list)
    page_size: int = 2
    searches: list[dict] = field(default_factory=list)
    search_faults: list[tuple] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.archive.url

    def add_item(self, item_id: str, collection: str, when: dt.datetime,
                 geometry: dict, cloud: float, assets: dict[str, dict],
                 epsg: int = 32631) -> dict:
        item = {
            "type": "Feature", "stac_version": "1.0.0",
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
            "id": item_id, "collection": collection, "geometry": geometry,
            "bbox": list(shape(geometry).bounds),
            "properties": {"datetime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                           "eo:cloud_cover": cloud, "platform": "sentinel-2b",
                           "proj:epsg": epsg, "s2:mgrs_tile": "31TGL"},
            "assets": assets,
            "links": [{"rel": "self",
                       "href": f"{self.url}/collections/{collection}/items/{item_id}"},
                      {"rel": "collection", "href": f"{self.url}/collections/{collection}"},
                      {"rel": "root", "href": f"{self.url}/"}],
        }
        self.items.append(item)
        return item

    def serve_file(self, path: str, data: bytes) -> str:
        self.archive.files[path] = data
        return self.url + path

    # ------------------------------------------------------------------ API
    def landing(self) -> dict:
        u = self.url
        return {
            "type": "Catalog", "id": "fake-stac", "stac_version": "1.0.0",
            "description": "test STAC API", "conformsTo": CONFORMS,
            "links": [
                {"rel": "self", "href": f"{u}/", "type": "application/json"},
                {"rel": "root", "href": f"{u}/", "type": "application/json"},
                {"rel": "conformance", "href": f"{u}/conformance"},
                {"rel": "data", "href": f"{u}/collections"},
                {"rel": "search", "href": f"{u}/search", "method": "GET",
                 "type": "application/geo+json"},
                {"rel": "search", "href": f"{u}/search", "method": "POST",
                 "type": "application/geo+json"},
            ],
        }

    def collections(self) -> dict:
        names = sorted({i["collection"] for i in self.items})
        return {"collections": [self.collection(n) for n in names], "links": []}

    def collection(self, name: str) -> dict:
        return {"type": "Collection", "id": name, "stac_version": "1.0.0",
                "description": name, "license": "proprietary",
                "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                           "temporal": {"interval": [["2015-06-27T00:00:00Z", None]]}},
                "links": [{"rel": "root", "href": f"{self.url}/"}]}

    def search(self, params: dict, method: str) -> dict:
        self.searches.append(params)
        hits = []
        cols = params.get("collections")
        if isinstance(cols, str):
            cols = cols.split(",")
        geom = None
        if params.get("intersects"):
            g = params["intersects"]
            geom = shape(json.loads(g) if isinstance(g, str) else g)
        elif params.get("bbox"):
            b = params["bbox"]
            geom = box(*([float(x) for x in b.split(",")] if isinstance(b, str) else b))
        t0 = t1 = None
        if params.get("datetime"):
            a, _, b = params["datetime"].partition("/")
            t0 = None if a in ("", "..") else _iso(a)
            t1 = None if b in ("", "..") else _iso(b or a)
        query = params.get("query") or {}
        if isinstance(query, str):
            query = json.loads(query)
        for item in self.items:
            if cols and item["collection"] not in cols:
                continue
            if geom is not None and not shape(item["geometry"]).intersects(geom):
                continue
            when = _iso(item["properties"]["datetime"])
            if (t0 and when < t0) or (t1 and when > t1):
                continue
            if not all(_cmp(item["properties"].get(k), ops) for k, ops in query.items()):
                continue
            hits.append(item)
        hits.sort(key=lambda i: i["properties"]["datetime"], reverse=True)
        start = int(params.get("token") or 0)
        limit = min(int(params.get("limit") or self.page_size), self.page_size)
        page = hits[start:start + limit]
        links = []
        if start + limit < len(hits):
            if method == "POST":
                links.append({"rel": "next", "href": f"{self.url}/search", "method": "POST",
                              "body": {**params, "token": str(start + limit)}, "merge": False})
            else:
                q = "&".join(f"{k}={v}" for k, v in params.items() if k != "token")
                links.append({"rel": "next", "method": "GET",
                              "href": f"{self.url}/search?{q}&token={start + limit}"})
        return {"type": "FeatureCollection", "features": page, "links": links,
                "numberMatched": len(hits), "numberReturned": len(page)}


def _iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _cmp(value, ops: dict) -> bool:
    if value is None:
        return False
    checks = {"lt": value < ops.get("lt", 0), "lte": value <= ops.get("lte", 0),
              "gt": value > ops.get("gt", 0), "gte": value >= ops.get("gte", 0),
              "eq": value == ops.get("eq")}
    return all(checks[k] for k in ops)


@contextmanager
def running_stac() -> Iterator[FakeStac]:
    """Start the fake STAC API on a free 127.0.0.1 port."""
    archive = Archive()
    fake = FakeStac(archive)
    base = _handler(archive)

    class Handler(base):  # type: ignore[misc, valid-type]
        def _json(self, obj: dict, code: int = 200) -> None:
            body = json.dumps(obj).encode()
            ctype = "application/geo+json" if obj.get("type") == "FeatureCollection" \
                else "application/json"
            self._send(code, body, {"Content-Type": ctype})

        def _fault(self, path: str) -> bool:
            with archive.lock:
                archive.requests[path] += 1
                fault = fake.search_faults.pop(0) if (
                    path == "/search" and fake.search_faults) else None
            if fault and fault[0] == "status":
                headers = {"Retry-After": str(fault[2])} if len(fault) > 2 else {}
                self._send(fault[1], b'{"code": "injected"}', headers)
                return True
            return False

        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            path = parts.path
            if path in ("/", "/conformance", "/collections", "/search") or \
                    path.startswith("/collections/"):
                if self._fault(path):
                    return
                if path == "/":
                    return self._json(fake.landing())
                if path == "/conformance":
                    return self._json({"conformsTo": CONFORMS})
                if path == "/collections":
                    return self._json(fake.collections())
                if path == "/search":
                    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                    return self._json(fake.search(params, "GET"))
                return self._json(fake.collection(path.split("/")[2]))
            super().do_GET()

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            path = urlsplit(self.path).path
            if path != "/search":
                return self._send(404, b"{}")
            if self._fault(path):
                return
            self._json(fake.search(json.loads(body or b"{}"), "POST"))

    with serving(Handler) as url:
        archive.url = url
        yield fake


# ------------------------------------------------------------------ test tiles
TILE_ORIGIN = (699960.0, 5000040.0)  # MGRS 31TGL upper-left corner, UTM 31N


def write_cog_tile(path: Path, size: int, pixel: float = 10.0, seed: int = 0,
                   shift_east_px: int = 0) -> Path:
    """A Sentinel-2-like uint16 COG tile (512 blocks, DEFLATE, overviews), weakly
    compressible like real reflectances (texture plus sensor noise); with
    ``shift_east_px`` the ground content is moved that many pixels east."""
    import rasterio
    from scipy.ndimage import zoom

    rng = np.random.default_rng(seed)
    block = min(size, 1830)
    low = zoom(rng.normal(size=(24, 24)), block / 24, order=1)[:block, :block]
    tile = (1500 + 600 * low + rng.normal(0, 120, size=(block, block))).clip(1, 4095)
    reps = -(-size // block)
    arr = np.tile(tile.astype(np.uint16), (reps, reps))[:size, :size]
    if shift_east_px:
        arr = np.roll(arr, shift_east_px, axis=1)
    profile = dict(driver="COG", width=size, height=size, count=1, dtype="uint16",
                   crs="EPSG:32631", transform=from_origin(*TILE_ORIGIN, pixel, pixel),
                   nodata=0, BLOCKSIZE=512, COMPRESS="DEFLATE", PREDICTOR=2,
                   OVERVIEWS="AUTO", LEVEL=1, NUM_THREADS="2")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(arr, 1)
    return path


def tile_footprint(size: int, pixel: float = 10.0) -> dict:
    """WGS84 footprint of a tile written by :func:`write_cog_tile`."""
    from rasterio.warp import transform_geom

    x0, y0 = TILE_ORIGIN
    geom = mapping(box(x0, y0 - size * pixel, x0 + size * pixel, y0))
    return transform_geom("EPSG:32631", "EPSG:4326", geom)
