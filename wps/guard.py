"""Request guard of the web application: Host and Origin, CSRF, credentials, headers.

Registered on the application by :func:`install` (see :func:`wps.app.create_app`):

- **Host**: with ``GDM_PUBLIC_URL`` set, the ``Host`` header must name its host (or a
  loopback name); with no account (the single local user) only loopback names are
  served, so a page whose own name is made to resolve to 127.0.0.1 (DNS rebinding) gets
  400; with accounts and no public URL any host is served (tokens are required).
- **State-changing requests** (every method but GET/HEAD/OPTIONS, and the WPS
  ``Execute`` and ``Dismiss`` operations even through GET): refused (403) when the
  browser says they come from another site (``Origin`` of another host, or
  ``Sec-Fetch-Site: cross-site``), or when a cookie is the only credential (the token
  must come in the ``Authorization`` header: a page of another site cannot add it). In
  the no-accounts mode, a request that comes from a browser (it carries ``Origin``,
  ``Sec-Fetch-*``, ``Referer`` or a cookie) needs the CSRF token of the web form in an
  ``X-GDM-CSRF`` header; scripts and command-line clients send none of these headers.
- **JSON** bodies nested deeper than :data:`MAX_JSON_DEPTH` answer 400.
- **Headers** on every response: ``X-Content-Type-Options: nosniff``,
  ``Content-Security-Policy`` (no framing, no plugins, forms and base URL to this site),
  ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``, and ``Cache-Control:
  no-store`` on answers that depend on the caller (everything but the static assets).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask.json.provider import DefaultJSONProvider

from wps.jsonlimit import MAX_JSON_DEPTH, JSONTooDeep, loads_limited

__all__ = ["install", "csrf_token", "state_changing", "MAX_JSON_DEPTH", "loads_limited",
           "JSONTooDeep", "CSRF_HEADER", "LOOPBACK_NAMES"]

CSRF_HEADER = "X-GDM-CSRF"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_BROWSER_HEADERS = ("Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Referer", "Cookie")
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'self'; "
       "form-action 'self'; frame-ancestors 'none'")


class _LimitedJSON(DefaultJSONProvider):
    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_limited(s)


# --------------------------------------------------------------------- CSRF
def _secret(home: Path) -> bytes:
    """The installation's secret (``GDM_HOME/secret.key``, made once, owner-only)."""
    path = home / "secret.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".secret.key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    try:
        os.link(tmp, path)  # the first writer wins; everyone reads its secret
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def csrf_token() -> str:
    """The CSRF token of the web form (the same for every page of this installation)."""
    from wps.context import state

    home = state().settings.home
    key = _SECRETS.get(str(home))
    if key is None:
        key = _SECRETS[str(home)] = _secret(home)
    return hmac.new(key, b"gdm-web-form", hashlib.sha256).hexdigest()[:40]


_SECRETS: dict[str, bytes] = {}


# ------------------------------------------------------------------- checks
def state_changing() -> bool:
    """Whether this request changes something (WPS Execute and Dismiss through GET too)."""
    if request.method not in _SAFE_METHODS:
        return True
    if request.path.rstrip("/") == "/wps":
        ops = [v for k, v in request.args.items(multi=True) if k.lower() == "request"]
        return any(op.strip().lower() in ("execute", "dismiss") for op in ops)
    return False


def _host_name(netloc: str) -> str:
    try:
        return (urllib.parse.urlsplit("//" + netloc).hostname or "").lower()
    except ValueError:
        return ""


def _refuse(status: int, detail: str) -> Response:
    """A refusal in the language of the endpoint: OWS report under /wps, else JSON."""
    if request.path == "/wps" or request.path.startswith("/wps/"):
        from wps.wps1 import WPSError, _exception_report

        return _exception_report(WPSError("NoApplicableCode", detail, None, status))
    from http import HTTPStatus

    resp = jsonify({"type": "about:blank", "title": HTTPStatus(status).phrase,
                    "status": status, "detail": detail})
    resp.status_code = status
    resp.mimetype = "application/problem+json"
    return resp


def _check_host() -> Response | None:
    from wps.context import state

    host = _host_name(request.host)
    if host in LOOPBACK_NAMES:
        return None
    public = state().settings.public_url
    if public:
        if host == (urllib.parse.urlsplit(public).hostname or "").lower():
            return None
        return _refuse(400, f"unknown host {host!r}: this service answers as {public}")
    if state().store.count_users() == 0:
        return _refuse(400, f"unknown host {host!r}: with no accounts the service answers "
                       "on 127.0.0.1 and localhost only")
    return None


def _same_site(origin: str) -> bool:
    from wps.context import state

    if origin == "null":
        return False
    try:
        parts = urllib.parse.urlsplit(origin)
    except ValueError:
        return False
    public = state().settings.public_url
    if public:
        pub = urllib.parse.urlsplit(public)
        if (parts.scheme, parts.netloc.lower()) == (pub.scheme, pub.netloc.lower()):
            return True
    return parts.netloc.lower() == request.host.lower()


def _check_change() -> Response | None:
    """Refuse a state-changing request a page of another site could have sent."""
    from wps.context import current_user

    origin = request.headers.get("Origin")
    if origin is not None and not _same_site(origin):
        return _refuse(403, "cross-site request refused (its Origin is another site)")
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        return _refuse(403, "cross-site request refused (Sec-Fetch-Site)")
    current_user()  # sets g.gdm_auth
    source = g.get("gdm_auth")
    if source == "cookie":
        return _refuse(403, "a cookie alone does not authorise changes: send the token in "
                       "the Authorization header (Authorization: Bearer TOKEN)")
    if source == "local" and any(h in request.headers for h in _BROWSER_HEADERS):
        given = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given, csrf_token()):
            return _refuse(403, f"missing or wrong CSRF token ({CSRF_HEADER} header): "
                           "reload the web form")
    return None


def _before() -> Response | None:
    refused = _check_host()
    if refused is None and state_changing():
        refused = _check_change()
    return refused


def _csp() -> str:
    """:data:`CSP`, with the web maps' base-layer tile server (GDM_BASEMAP_URL) for images."""
    from wps.context import state

    url = urllib.parse.urlsplit(state().settings.basemap_url)
    if url.scheme not in ("http", "https") or not url.netloc or "{" in url.netloc:
        return CSP
    return CSP.replace("img-src 'self' data:", f"img-src 'self' data: {url.scheme}://{url.netloc}")


def _after(resp: Response) -> Response:
    h = resp.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Content-Security-Policy", _csp())
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")
    if request.endpoint != "webform.static" and "Cache-Control" not in h:
        h["Cache-Control"] = "no-store"
    return resp


def _too_deep(exc: JSONTooDeep) -> Response:
    resp = jsonify({"type": "about:blank", "title": "Bad Request", "status": 400,
                    "detail": str(exc)})
    resp.status_code = 400
    resp.mimetype = "application/problem+json"
    return resp


def install(app: Flask) -> None:
    """Register the guard, the limited JSON parser and the headers on ``app``."""
    app.json = _LimitedJSON(app)
    app.before_request(_before)
    app.after_request(_after)
    app.register_error_handler(JSONTooDeep, _too_deep)
