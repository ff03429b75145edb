"""A local public S3 bucket for tests: ``ListObjectsV2`` listing (``prefix``,
``start-after``, ``continuation-token``, paged by ``page_size``) over the files of a
:mod:`tests.fakearchive` archive, which also serves the objects (ranges, faults)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from tests.fakearchive import Archive, _handler, serving

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


@dataclass
class FakeBucket:
    archive: Archive
    page_size: int = 1000
    listings: list[dict] = field(default_factory=list)
    list_faults: list[tuple] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.archive.url

    def put(self, key: str, data: bytes) -> None:
        self.archive.files["/" + key] = data

    def listing(self, params: dict[str, str]) -> bytes:
        self.listings.append(params)
        prefix = params.get("prefix", "")
        after = params.get("continuation-token") or params.get("start-after") or ""
        keys = sorted(k[1:] for k in self.archive.files if k[1:].startswith(prefix))
        keys = [k for k in keys if k > after]
        page, more = keys[: self.page_size], len(keys) > self.page_size
        body = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{NS}">',
                f"<Name>fake</Name><Prefix>{escape(prefix)}</Prefix>",
                f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{self.page_size}</MaxKeys>",
                f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"]
        if more:
            body.append(f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>")
        for k in page:
            size = len(self.archive.files["/" + k])
            body.append(f"<Contents><Key>{escape(k)}</Key><Size>{size}</Size>"
                        "<StorageClass>STANDARD</StorageClass></Contents>")
        body.append("</ListBucketResult>")
        return "".join(body).encode()


@contextmanager
def running_bucket() -> Iterator[FakeBucket]:
    """Start the fake bucket on a free 127.0.0.1 port."""
    archive = Archive()
    bucket = FakeBucket(archive)
    base = _handler(archive)

    class Handler(base):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            if parts.path == "/" and "list-type=2" in parts.query:
                with archive.lock:
                    archive.requests["/"] += 1
                    fault = bucket.list_faults.pop(0) if bucket.list_faults else None
                if fault and fault[0] == "status":
                    headers = {"Retry-After": str(fault[2])} if len(fault) > 2 else {}
                    return self._send(fault[1], b"<Error/>", headers)
                params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                return self._send(200, bucket.listing(params),
                                  {"Content-Type": "application/xml"})
            super().do_GET()

    with serving(Handler) as url:
        archive.url = url
        yield bucket
