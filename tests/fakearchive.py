"""A local HTTP archive for tests: Range requests, byte counting and injected faults.

Serves in-memory files on 127.0.0.1 only. Each path can be given a queue of faults,
consumed one per request: ``("drop", n)`` sends the headers of the full answer but only
``n`` body bytes, then closes; ``("corrupt",)`` flips bytes; ``("status", code,
retry_after)`` answers an error; ``("delay", seconds)`` waits before answering.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Archive:
    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    bytes_sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ranges: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def reset_counts(self) -> None:
        with self.lock:
            self.bytes_sent.clear()
            self.requests.clear()
            self.ranges.clear()


def _handler(archive: Archive) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None,
                  cut: int | None = None) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            if cut is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            out = body if cut is None else body[:cut]
            if self.command != "HEAD":
                self.wfile.write(out)
                with archive.lock:
                    archive.bytes_sent[self.path.split("?")[0]] += len(out)
            if cut is not None:
                self.wfile.flush()
                self.close_connection = True

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            with archive.lock:
                archive.requests[path] += 1
                fault = archive.faults[path].pop(0) if archive.faults.get(path) else None
            if fault and fault[0] == "delay":
                import time

                time.sleep(fault[1])
                fault = None
            if fault and fault[0] == "status":
                headers = {"Retry-After": str(fault[2])} if len(fault) > 2 else {}
                self._send(fault[1], b"error", headers)
                return
            data = archive.files.get(path)
            if data is None:
                self._send(404, b"not found")
                return
            start, end, code = 0, len(data) - 1, 200
            rng = self.headers.get("Range")
            headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            if rng and rng.startswith("bytes="):
                with archive.lock:
                    archive.ranges.append(rng)
                a, _, b = rng[6:].partition("-")
                if a == "":
                    start = max(0, len(data) - int(b))
                else:
                    start = int(a)
                    end = min(int(b), len(data) - 1) if b else len(data) - 1
                if start >= len(data):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                code = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            body = data[start:end + 1]
            if fault and fault[0] == "corrupt":
                body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
            cut = fault[1] if fault and fault[0] == "drop" else None
            self._send(code, body, headers, cut)

    return Handler


class QuietHTTPServer(ThreadingHTTPServer):
    """Threaded test server that does not print clients hanging up (GDAL, time-outs)."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free 127.0.0.1 port in a thread; yields the base URL."""
    server = QuietHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def running_archive() -> Iterator[Archive]:
    """Start the archive on a free 127.0.0.1 port; stop it afterwards."""
    archive = Archive()
    with serving(_handler(archive)) as url:
        archive.url = url
        yield archive
