"""The HTTP server of ``gdm serve``: waitress, with two refusals before the body is read.

waitress reads a whole request body (into memory or a temporary file) before it hands
the request to the application. Two answers do not need the body, and are given as
soon as the headers are in, as JSON problems like the application's own:

- **413** when ``Content-Length`` (or a chunked body, as it arrives) exceeds the largest
  request the service takes (``GDM_MAX_REQUEST_MB``; the application enforces the same);
- **401** when accounts exist and the request brings a body without a valid token (so
  an unauthenticated upload is not read whole first). A token is looked up once and
  remembered for :data:`TOKEN_CACHE_S` seconds.

These checks run in waitress's I/O thread, so they only read, on a connection of their
own that never takes SQLite's write lock (WAL readers do not wait for writers).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import waitress
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.utilities import Error, RequestEntityTooLarge

from workflows.jobstore import JobStore
from workflows.settings import Settings

__all__ = ["create_server", "TOKEN_CACHE_S", "EarlyGate"]

TOKEN_CACHE_S = 30.0


class _Problem(Error):
    """A waitress error answered as ``application/problem+json`` (connection closed)."""

    def __init__(self, code: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.reason = reason

    def to_response(self, ident: str | None = None) -> tuple[str, list, bytes]:
        body = json.dumps({"type": "about:blank", "title": self.reason, "status": self.code,
                           "detail": self.body}).encode()
        headers = [("Content-Type", "application/problem+json"),
                   ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]
        if self.code == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="gdm"'))
        return f"{self.code} {self.reason}", headers, body


class EarlyGate:
    """Decides, from the headers alone, whether a request with a body is refused."""

    def __init__(self, store: JobStore, max_bytes: int) -> None:
        from sqlalchemy import create_engine

        self.store = store
        self.max_bytes = max_bytes
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if store.url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 5, "check_same_thread": False}
        self._reader = create_engine(store.url, **kwargs)  # reads only, no write lock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, bool]] = {}
        self._accounts: tuple[float, bool] = (0.0, False)

    def too_large(self) -> _Problem:
        """The 413 answer."""
        return _Problem(413, "Content Too Large", f"the request body exceeds the "
                        f"{self.max_bytes // 2**20} MiB this service takes")

    def _has_accounts(self) -> bool:
        now = time.monotonic()
        with self._lock:
            when, value = self._accounts
        if now - when > 2.0:
            from sqlalchemy import text

            with self._reader.connect() as conn:
                value = bool(conn.execute(text("SELECT count(*) FROM users")).scalar())
            with self._lock:
                self._accounts = (now, value)
        return value

    def _token_ok(self, token: str) -> bool:
        now = time.monotonic()
        with self._lock:
            hit = self._tokens.get(token)
        if hit is not None and now - hit[0] < TOKEN_CACHE_S:
            return hit[1]
        import datetime as dt
        import hashlib

        from sqlalchemy import text

        with self._reader.connect() as conn:
            row = conn.execute(text("SELECT revoked, expires FROM tokens WHERE digest = :d"),
                               {"d": hashlib.sha256(token.encode()).hexdigest()}).first()
        ok = False
        if row is not None and row[0] is None:
            expires = row[1]
            if isinstance(expires, str):
                expires = dt.datetime.fromisoformat(expires)
            if expires is not None and expires.tzinfo is None:
                expires = expires.replace(tzinfo=dt.UTC)
            ok = expires is None or expires > dt.datetime.now(dt.UTC)
        with self._lock:
            if len(self._tokens) > 10000:
                self._tokens.clear()
            self._tokens[token] = (now, ok)
        return ok

    def unauthenticated(self, headers: dict[str, str], query: str) -> _Problem | None:
        """401 for a body without a valid token while accounts exist, else None."""
        if "key=" in query:  # a one-time download key: the application decides
            return None
        try:
            if not self._has_accounts():
                return None
            auth = headers.get("AUTHORIZATION", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if not token:
                cookie = headers.get("COOKIE", "")
                for part in cookie.split(";"):
                    key, _, value = part.strip().partition("=")
                    if key == "gdm_token" and value:
                        token = value
            if token and self._token_ok(token):
                return None
        except Exception:  # noqa: BLE001 - a job store hiccup: let the application answer
            return None
        return _Problem(401, "Unauthorized", "a valid API token is required "
                        "(Authorization: Bearer TOKEN)")


def _parser_class(gate: EarlyGate) -> type[HTTPRequestParser]:
    class Parser(HTTPRequestParser):
        _gated = False

        def received(self, data: bytes) -> int:
            consumed = super().received(data)
            if isinstance(self.error, RequestEntityTooLarge):
                self.error = gate.too_large()
            elif self.headers_finished and not self._gated and not self.completed:
                self._gated = True  # headers in, body to come: decide now
                refused = gate.unauthenticated(self.headers, self.query or "")
                if refused is not None:
                    self.error = refused
                    self.completed = True
            return consumed

    return Parser


def create_server(app: Callable, settings: Settings, store: JobStore, *, host: str,
                  port: int, threads: int) -> BaseWSGIServer:
    """The waitress server of ``app`` with the early refusals of this module."""
    max_bytes = settings.max_request_mb * 2**20
    gate = EarlyGate(store, max_bytes)

    class Channel(HTTPChannel):
        parser_class = _parser_class(gate)

    server: Any = waitress.create_server(
        app, host=host, port=port, threads=threads, ident="gdm", channel_timeout=120,
        connection_limit=1000, max_request_body_size=max_bytes + 1)
    server.channel_class = Channel
    return server
