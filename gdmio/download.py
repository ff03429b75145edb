"""Robust HTTP downloads: resume, verification, retries with backoff, clear errors.

``download(url, dest)`` writes ``dest`` only when the whole file has arrived and passed
its checks. Bytes arrive in ``dest.part``; an interrupted transfer is resumed from
there with an HTTP ``Range`` request (when the server honours it; otherwise it starts
again). A file whose size or checksum is wrong is deleted and fetched again. Transient
failures (429 with ``Retry-After``, 5xx, time-outs, dropped connections) are retried
with exponential backoff; permanent ones (401, 403, 404, 410) fail at once. Every final
failure is a :class:`RemoteError` naming the scene and the cause, never a traceback.
Credentials are sent as headers and never appear in messages.

Every request goes through the guarded client of :mod:`gdmio.outbound` (allowed
schemes and hosts checked at each connection, redirects included); an archive the
operator configured is allowed by its caller (``outbound=archive_policy(base_url)``).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from gdmio.atomic import replace
from gdmio.outbound import (
    OutboundError,
    OutboundPolicy,
    RemoteError,
    _unwrap,
    describe,
    guard,
    policy_from_env,
)

__all__ = ["RemoteError", "DownloadResult", "download", "RetryPolicy"]

_PERMANENT = {400: "bad request", 401: "not authorised (check the credentials)",
              403: "forbidden (check the credentials and the data licence)",
              404: "not found", 410: "gone from the archive"}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried."""

    attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 300.0
    timeout: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``Retry-After`` wins)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return min(self.backoff * 2**attempt, self.max_backoff)


@dataclass(frozen=True)
class DownloadResult:
    """What a download did."""

    path: Path
    size: int
    attempts: int
    resumed: bool
    bytes_transferred: int


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, size: int | None, checksum: tuple[str, str] | None) -> str | None:
    """None when the file is right, else what is wrong with it."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size {actual} B instead of {size} B"
    if checksum is not None:
        algorithm, expected = checksum
        got = _digest(path, algorithm)
        if got.lower() != expected.lower():
            return f"{algorithm} checksum mismatch"
    return None


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    label: str | None = None,
    size: int | None = None,
    checksum: tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    session: requests.Session | None = None,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    outbound: OutboundPolicy | None = None,
) -> DownloadResult:
    """Download ``url`` to ``dest`` (atomically), resuming and verifying.

    Parameters
    ----------
    url
        http(s) URL.
    dest
        Final path; written only once complete and verified.
    label
        Name of the scene for messages (default: the file name).
    size
        Expected size in bytes, if known.
    checksum
        ``(algorithm, hexdigest)``, e.g. ``("md5", "...")``, if known.
    headers
        Extra request headers (e.g. ``Authorization``); never logged.
    session
        A ``requests.Session`` to reuse connections (made guarded here).
    policy
        Retry policy.
    sleep
        Waiting function (tests pass a fake one).
    outbound
        What may be reached (default: the hosts ``GDM_ALLOWED_HOSTS`` allows and public
        ones; no size cap and no overall deadline, the size and checksum being known).

    Raises
    ------
    RemoteError
        When the file cannot be had: permanent HTTP error, or transient errors that
        outlasted the retries, or a file that keeps failing its checks; an
        :class:`~gdmio.outbound.OutboundError` (at once) for a host that is refused.

    """
    dest = Path(dest)
    label = label or dest.name
    policy = policy or RetryPolicy()
    rules = outbound or policy_from_env().with_limits(max_bytes=None, deadline_s=None)
    sess = guard(session or requests.Session(), rules)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    transferred = 0
    resumed = False
    last_cause = "no attempt made"
    for attempt in range(policy.attempts):
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        req_headers = dict(headers or {})
        if have:
            req_headers["Range"] = f"bytes={have}-"
        wait: float | None = None
        try:
            with sess.get(url, headers=req_headers, stream=True,
                          timeout=(min(policy.timeout, 30.0), policy.timeout)) as resp:
                if resp.status_code in _PERMANENT:
                    raise RemoteError(f"{label}: {_PERMANENT[resp.status_code]} "
                                      f"(HTTP {resp.status_code})", resp.status_code)
                if resp.status_code == 416 and have:
                    part.unlink()  # our partial file does not match the remote one
                    last_cause = "range not satisfiable"
                    continue
                if resp.status_code == 429 or resp.status_code >= 500:
                    last_cause = f"HTTP {resp.status_code}"
                    wait = policy.delay(attempt, _retry_after(resp))
                elif resp.status_code not in (200, 206):
                    raise RemoteError(f"{label}: unexpected HTTP {resp.status_code}",
                                      resp.status_code)
                else:
                    mode = "ab" if (have and resp.status_code == 206) else "wb"
                    resumed = resumed or mode == "ab"
                    with open(part, mode) as fh:
                        for chunk in resp.iter_content(chunk_size=1 << 16):
                            fh.write(chunk)
                            transferred += len(chunk)
                    total = resp.headers.get("Content-Range", "").rpartition("/")[2]
                    expected = size
                    if expected is None and total.isdigit():
                        expected = int(total)
                    elif expected is None and mode == "wb" and \
                            resp.headers.get("Content-Length", "").isdigit():
                        expected = int(resp.headers["Content-Length"])
                    problem = _verify(part, expected, checksum)
                    if problem is None:
                        replace(part, dest)
                        return DownloadResult(dest, dest.stat().st_size, attempt + 1,
                                              resumed, transferred)
                    last_cause = f"corrupt download: {problem}"
                    if expected is not None and part.stat().st_size < expected:
                        last_cause = f"connection dropped after {part.stat().st_size} B"
                    else:
                        part.unlink()  # wrong content: start again from zero
                    wait = policy.delay(attempt)
        except OutboundError as exc:  # a refused host: no retry
            raise OutboundError(f"{label}: {exc}") from None
        except RemoteError:
            raise
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            refused = _unwrap(exc)
            if refused is not None:  # a redirect to a refused host
                raise OutboundError(f"{label}: {refused}") from None
            last_cause = describe(exc)
            wait = policy.delay(attempt)
        if attempt + 1 < policy.attempts and wait is not None:
            sleep(wait)
    raise RemoteError(f"{label}: giving up after {policy.attempts} attempts ({last_cause})",
                      retryable=True)
