"""A basemap tile server on 127.0.0.1 for browser tests: every /z/x/y.png is a PNG.

Tiles are pale grey with a darker border (so a screenshot shows the tile grid) and are
counted per path, so a test can assert which tiles the page asked for::

    with running_tiles() as tiles:
        env = {"GDM_BASEMAP_URL": tiles.template}
        ...
        assert tiles.requests  # ["/3/4/2.png", ...]
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from PIL import Image, ImageDraw

from tests.fakearchive import serving

__all__ = ["TileServer", "running_tiles", "tile_png"]

_PATH = re.compile(r"^/(\d+)/(\d+)/(\d+)\.png$")


def tile_png(z: int, x: int, y: int) -> bytes:
    """A 256-px tile: light grey-green with a border; shade varies with x and y."""
    img = Image.new("RGB", (256, 256), (226 - (x % 2) * 6, 232 - (y % 2) * 6, 222))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 255, 255), outline=(170, 176, 166))
    draw.text((8, 8), f"{z}/{x}/{y}", fill=(120, 126, 116))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class TileServer:
    """The running server: its URL template and the paths it was asked for."""

    url: str = ""
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def template(self) -> str:
        """The XYZ URL template (``{z}/{x}/{y}``) for GDM_BASEMAP_URL."""
        return f"{self.url}/{{z}}/{{x}}/{{y}}.png"


@contextmanager
def running_tiles() -> Iterator[TileServer]:
    """Serve tiles on a free 127.0.0.1 port; yields the :class:`TileServer`."""
    state = TileServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            m = _PATH.match(self.path.split("?")[0])
            with state.lock:
                state.requests.append(self.path)
            if not m:
                self.send_error(404)
                return
            body = tile_png(*(int(g) for g in m.groups()))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    with serving(Handler) as url:
        state.url = url
        yield state
