"""HTTP plumbing shared by the providers: retries, base URLs, Earthdata credentials.

Retries follow :mod:`gdmio.download`: 429 (honouring ``Retry-After``), 5xx, time-outs and
dropped connections are retried with exponential backoff; 400/401/403/404/410 fail at
once. Every final failure is a :class:`~gdmio.download.RemoteError` naming what was asked
and the cause. Credentials travel in headers only and never appear in messages or logs.
"""

from __future__ import annotations

import base64
import netrc
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import requests

from gdmio.download import _PERMANENT, RemoteError, RetryPolicy, _retry_after

__all__ = [
    "EARTHDATA_HOST",
    "Credentials",
    "base_url",
    "earthdata_credentials",
    "send_with_retries",
]

EARTHDATA_HOST = "urs.earthdata.nasa.gov"


def base_url(given: str | None, env: str, default: str) -> str:
    """The base URL to use: the argument, else ``$env``, else ``default`` (no final /)."""
    url = given or os.environ.get(env) or default
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        from gdmcore import InputError

        raise InputError(f"{env}: {url!r} is not an http(s) URL")
    return url.rstrip("/")


class Credentials:
    """Authorisation headers for an archive, kept out of every repr and message.

    Parameters
    ----------
    headers
        Header name to value (e.g. ``Authorization: Bearer ...``).
    source
        Where they came from, for messages (``token``, ``netrc``); never the secret.

    """

    def __init__(self, headers: Mapping[str, str] | None = None, source: str = "none") -> None:
        self._headers = dict(headers or {})
        self.source = source

    def headers(self) -> dict[str, str]:
        """The headers to send."""
        return dict(self._headers)

    def __bool__(self) -> bool:
        return bool(self._headers)

    def __repr__(self) -> str:
        return f"Credentials(source={self.source!r})"


def earthdata_credentials(token: str | None = None, netrc_file: str | None = None,
                          host: str = EARTHDATA_HOST) -> Credentials:
    """Earthdata Login credentials: a token, else a ``netrc`` entry, else none.

    The token comes from ``token`` or ``$GDM_EARTHDATA_TOKEN`` (``$EARTHDATA_TOKEN``) and
    is sent as ``Authorization: Bearer``; a ``netrc`` entry for ``host`` (file from
    ``netrc_file``, ``$NETRC`` or ``~/.netrc``) as HTTP Basic.
    """
    token = token or os.environ.get("GDM_EARTHDATA_TOKEN") or os.environ.get("EARTHDATA_TOKEN")
    if token:
        return Credentials({"Authorization": f"Bearer {token.strip()}"}, "token")
    path = Path(netrc_file or os.environ.get("NETRC") or Path.home() / ".netrc")
    if path.is_file():
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (netrc.NetrcParseError, OSError):
            entry = None
        if entry and entry[0] and entry[2]:
            raw = f"{entry[0]}:{entry[2]}".encode()
            return Credentials({"Authorization": "Basic " + base64.b64encode(raw).decode()},
                               "netrc")
    return Credentials()


def _cause(resp: requests.Response) -> str:
    if resp.status_code in _PERMANENT:
        return f"{_PERMANENT[resp.status_code]} (HTTP {resp.status_code})"
    return f"HTTP {resp.status_code}"


def send_with_retries(send: Callable[[], requests.Response], label: str,
                      policy: RetryPolicy | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> requests.Response:
    """Call ``send()`` until it answers 2xx/3xx, retrying transient failures.

    Parameters
    ----------
    send
        Makes one request and returns the response (not streamed, or closed by us).
    label
        What is asked, for messages (scene name, "Sentinel-1 search").
    policy
        Retry policy (attempts, backoff, cap on ``Retry-After``).
    sleep
        Waiting function (tests pass a recorder).

    Raises
    ------
    RemoteError
        Permanent error at once; transient errors once the attempts are spent.

    """
    policy = policy or RetryPolicy()
    last = "no attempt made"
    for attempt in range(policy.attempts):
        try:
            resp = send()
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            last = "timed out" if isinstance(exc, requests.Timeout) else \
                f"connection failed ({type(exc).__name__})"
            wait = policy.delay(attempt)
        else:
            if resp.status_code < 400:
                return resp
            if resp.status_code in _PERMANENT:
                resp.close()
                raise RemoteError(f"{label}: {_cause(resp)}", resp.status_code)
            if resp.status_code != 429 and resp.status_code < 500:
                resp.close()
                raise RemoteError(f"{label}: unexpected HTTP {resp.status_code}",
                                  resp.status_code)
            last = _cause(resp)
            wait = policy.delay(attempt, _retry_after(resp))
            resp.close()
        if attempt + 1 < policy.attempts:
            sleep(wait)
    raise RemoteError(f"{label}: giving up after {policy.attempts} attempts ({last})",
                      retryable=True)
