"""The one guarded HTTP client for every outbound request the service makes.

User-given URLs (job inputs, ``subscriber`` callbacks) and the archives configured by
the operator all go through :func:`guarded_session`, which refuses what a server-side
request forgery (SSRF) needs:

- only ``http`` and ``https``;
- the host name is resolved once per connection and *every* address it resolves to is
  checked: loopback, private, link-local, shared (CGNAT), multicast, unspecified and
  reserved addresses are refused, unless the host (name, address or network) is listed
  in ``GDM_ALLOWED_HOSTS`` (comma-separated, e.g. ``127.0.0.1,data.lan,10.2.0.0/16``) or
  by the caller (an operator's archive host); the socket is then connected to the
  address that was checked, so a second DNS answer cannot swap it (DNS rebinding);
- redirects open new connections, checked the same way (at most :data:`MAX_REDIRECTS`);
- proxies and ``.netrc`` from the environment are ignored (a proxy would fetch for us);
- an overall deadline: when it passes, the sockets of the fetch are shut down, so a
  server trickling a byte a second cannot hold a worker (read time-outs alone cannot);
- sizes: :func:`fetch_to_file` refuses a ``Content-Length`` above the cap before reading,
  stops a body that outgrows it, and fails a body shorter than its ``Content-Length``;
- error messages name the URL without its query and a cause that tells nothing of the
  network behind the service (no "connection refused" versus "closed": one "could not
  connect").

Settings (environment): ``GDM_ALLOWED_HOSTS``; ``GDM_MAX_INPUT_MB`` (largest input file
fetched for a job, default 16384), ``GDM_MAX_JOB_INPUT_MB`` (all of a job's fetched
inputs, default 65536), ``GDM_FETCH_DEADLINE`` (seconds for one input, retries
included, default 3600).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as u3conn

from gdmio.atomic import atomic_path

__all__ = ["OutboundPolicy", "OutboundError", "Deadline", "policy_from_env", "check_url",
           "check_host", "guarded_session", "guard", "fetch_to_file", "post_json",
           "safe_url", "archive_policy", "RemoteError", "job_input_cap", "describe",
           "MAX_REDIRECTS", "ALLOWED_SCHEMES"]

ALLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
_MB = 1024 * 1024

NOT_ALLOWED = ("the host is not allowed (loopback, private, link-local, multicast and "
               "reserved addresses are refused; an operator may allow a host with "
               "GDM_ALLOWED_HOSTS)")


class RemoteError(Exception):
    """A remote server refused or failed a request; the message names what and why.

    (Defined here, below :mod:`gdmio.download` which re-exports it, so that the guarded
    client and the downloads share it without an import cycle.)
    """

    def __init__(self, message: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class OutboundError(RemoteError):
    """A refused or failed outbound request; the message is safe to show to users."""


def safe_url(url: str) -> str:
    """The URL as messages show it: scheme, host, port and path (no query, no user)."""
    try:
        p = urllib.parse.urlsplit(url)
        host = p.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{p.port}" if p.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{p.scheme}://{host}{port}{p.path}"


# ------------------------------------------------------------------- policy
@dataclass(frozen=True)
class OutboundPolicy:
    """What outbound requests may reach, and how big and how long they may be."""

    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_bytes: int | None = None
    deadline_s: float | None = None
    connect_timeout: float = 15.0
    read_timeout: float = 60.0

    def allowing(self, hosts: Iterable[str]) -> OutboundPolicy:
        """A copy that also allows ``hosts`` (names, addresses or networks)."""
        names, nets = _parse_hosts(hosts)
        return OutboundPolicy(self.allowed_names | names, self.allowed_networks + nets,
                              self.max_bytes, self.deadline_s, self.connect_timeout,
                              self.read_timeout)

    def with_limits(self, *, max_bytes: int | None = None, deadline_s: float | None = None
                    ) -> OutboundPolicy:
        """A copy with another size cap and deadline."""
        return OutboundPolicy(self.allowed_names, self.allowed_networks, max_bytes,
                              deadline_s, self.connect_timeout, self.read_timeout)

    def address_allowed(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether ``addr`` may be connected to (public, or in an allowed network)."""
        if any(addr in net for net in self.allowed_networks):
            return True
        return _public(addr)


def _parse_hosts(hosts: Iterable[str]) -> tuple[frozenset[str], tuple]:
    names, nets = set(), []
    for raw in hosts:
        item = raw.strip().strip("[]").lower()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            names.add(item.rstrip("."))
    return frozenset(names), tuple(nets)


def _env_mb(env: Mapping[str, str], key: str, default: int) -> int:
    try:
        return max(1, int(float(env.get(key, default)))) * _MB
    except ValueError:
        return default * _MB


def policy_from_env(env: Mapping[str, str] | None = None, *,
                    allow: Iterable[str] = ()) -> OutboundPolicy:
    """The policy of user-given URLs, from the environment.

    Allowed hosts: ``GDM_ALLOWED_HOSTS`` plus ``allow``; size cap per input
    ``GDM_MAX_INPUT_MB``; deadline ``GDM_FETCH_DEADLINE``.
    """
    env = os.environ if env is None else env
    names, nets = _parse_hosts([*env.get("GDM_ALLOWED_HOSTS", "").split(","), *allow])
    try:
        deadline = float(env.get("GDM_FETCH_DEADLINE", "3600"))
    except ValueError:
        deadline = 3600.0
    return OutboundPolicy(names, nets, _env_mb(env, "GDM_MAX_INPUT_MB", 16384),
                          deadline if deadline > 0 else None)


def job_input_cap(env: Mapping[str, str] | None = None) -> int:
    """Bytes all the fetched inputs of one job may add up to (``GDM_MAX_JOB_INPUT_MB``)."""
    return _env_mb(os.environ if env is None else env, "GDM_MAX_JOB_INPUT_MB", 65536)


def _public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return _public(addr.ipv4_mapped)
        if addr in _NAT64:  # an IPv4 address behind a NAT64 prefix
            return _public(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        if addr.sixtofour is not None:
            return _public(addr.sixtofour)
    return bool(addr.is_global) and not addr.is_multicast


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# ------------------------------------------------------------------- checks
def check_url(url: str, policy: OutboundPolicy | None = None) -> None:
    """Refuse at once what can be refused without DNS (used when a request arrives).

    That is: another scheme than http(s), no host, a literal address or a ``localhost``
    name that is not allowed.

    Raises
    ------
    OutboundError
        With a message for the user.

    """
    policy = policy or policy_from_env()
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a bad port raises here
    except ValueError:
        raise OutboundError(f"{safe_url(url)}: not a valid URL") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise OutboundError(f"{safe_url(url)}: only http and https URLs are fetched")
    if not host:
        raise OutboundError(f"{safe_url(url)}: the URL has no host")
    host = host.lower().rstrip(".")
    if host in policy.allowed_names:
        return
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            raise OutboundError(f"{safe_url(url)}: {NOT_ALLOWED}") from None
        return
    if not policy.address_allowed(addr):
        raise OutboundError(f"{safe_url(url)}: {NOT_ALLOWED}")


def check_host(host: str, port: int, policy: OutboundPolicy) -> list[str]:
    """Resolve ``host`` and return its addresses, all checked against ``policy``.

    Raises
    ------
    OutboundError
        When the name does not resolve, or any address it resolves to is refused (one
        bad address is enough: a resolver could hand it out next).

    """
    name = host.strip("[]").lower().rstrip(".")
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise OutboundError(f"host {name} does not resolve") from None
    addrs: list[str] = []
    for *_rest, sockaddr in infos:
        ip = str(sockaddr[0]).split("%", 1)[0]
        if ip not in addrs:
            addrs.append(ip)
    if name in policy.allowed_names:
        return addrs
    for ip in addrs:
        if not policy.address_allowed(ipaddress.ip_address(ip)):
            raise OutboundError(f"host {name}: {NOT_ALLOWED}")
    if not addrs:
        raise OutboundError(f"host {name} does not resolve")
    return addrs


# ---------------------------------------------------------------- deadline
class Deadline:
    """An overall deadline for one fetch: at expiry its sockets are shut down."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(max(0.0, seconds), self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down at expiry (at once when already expired)."""
        if sock is None:
            return
        with self._lock:
            if not self.expired:
                self._socks.append(sock)
                return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def check(self, what: str) -> None:
        """Raise :class:`OutboundError` when the deadline has passed."""
        if self.expired:
            raise OutboundError(f"took longer than the {self.seconds:.0f} s allowed")

    def cancel(self) -> None:
        """Stop the timer (the fetch is over)."""
        if self._timer is not None:
            self._timer.cancel()


@dataclass
class _Guard:
    policy: OutboundPolicy
    deadline: Deadline = field(default_factory=lambda: Deadline(None))


# --------------------------------------------------------- guarded sockets
class _GuardedMixin:
    """``_new_conn`` that checks the resolved addresses and connects to a checked one."""

    _gdm_guard: _Guard

    def _new_conn(self) -> socket.socket:  # type: ignore[override]
        guard = self._gdm_guard
        host = self._dns_host  # type: ignore[attr-defined]
        port = self.port  # type: ignore[attr-defined]
        guard.deadline.check(str(host))
        addrs = check_host(host, port, guard.policy)
        last: Exception | None = None
        for ip in addrs:
            try:
                sock = u3conn.create_connection(
                    (ip, port), self.timeout,  # type: ignore[attr-defined]
                    source_address=self.source_address,  # type: ignore[attr-defined]
                    socket_options=self.socket_options)  # type: ignore[attr-defined]
            except TimeoutError as exc:
                last = ConnectTimeoutError(self, "could not connect (timed out)")
                last.__cause__ = exc
                continue
            except OSError as exc:
                last = NewConnectionError(self, "could not connect")  # type: ignore[arg-type]
                last.__cause__ = exc
                continue
            guard.deadline.watch(sock)
            return sock
        assert last is not None
        raise last

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._gdm_guard.deadline.watch(self.sock)  # type: ignore[attr-defined]


class _GuardedAdapter(HTTPAdapter):
    """A requests adapter whose connections go through the guard."""

    def __init__(self, guard: _Guard, **kwargs: Any) -> None:
        self._gdm_guard = guard
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        bound = {"_gdm_guard": self._gdm_guard}
        http_conn = type("GuardedHTTPConnection", (_GuardedMixin, HTTPConnection), bound)
        https_conn = type("GuardedHTTPSConnection", (_GuardedMixin, HTTPSConnection), bound)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,),
                         {"ConnectionCls": http_conn}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,),
                          {"ConnectionCls": https_conn})}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise OutboundError("outbound requests do not go through proxies")


def guard(session: requests.Session, policy: OutboundPolicy,
          deadline: Deadline | None = None) -> requests.Session:
    """Route every request of ``session`` through the guard of ``policy`` (in place).

    Works on any :class:`requests.Session` (the archives' client libraries hand theirs).
    """
    g = _Guard(policy, deadline or Deadline(None))
    for prefix in ("http://", "https://"):
        session.mount(prefix, _GuardedAdapter(g))
    session.trust_env = False  # no proxy, no .netrc from the environment
    session.max_redirects = MAX_REDIRECTS
    return session


def guarded_session(policy: OutboundPolicy | None = None,
                    deadline: Deadline | None = None) -> requests.Session:
    """A new :class:`requests.Session` whose requests all go through the guard."""
    return guard(requests.Session(), policy or policy_from_env(), deadline)


def describe(exc: BaseException) -> str:
    """A cause for users: what went wrong, nothing about the network behind us."""
    if isinstance(exc, OutboundError):
        return str(exc)
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return f"more than {MAX_REDIRECTS} redirects"
    if isinstance(exc, requests.exceptions.InvalidSchema):
        return "a redirect to a URL that is not http(s)"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed (certificate not valid for the host?)"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection dropped before the end of the body"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):  # refused, reset, closed: all one
        return "connection failed"
    return "the request failed"


def _unwrap(exc: BaseException) -> OutboundError | None:
    """The OutboundError a requests exception carries (a refused redirect), if any."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, OutboundError):
            return cur
        nxt = getattr(cur, "reason", None)
        if isinstance(nxt, BaseException):
            cur = nxt
        else:
            cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


# ------------------------------------------------------------------ fetches
def fetch_to_file(url: str, dest: str | os.PathLike[str], *,
                  policy: OutboundPolicy | None = None, label: str | None = None,
                  budget: int | None = None) -> int:
    """Download a user-given ``url`` to ``dest`` through the guard; returns its size.

    ``dest`` appears only once the whole body has arrived (written to a hidden
    temporary name first). ``policy.max_bytes`` caps the file, ``budget`` (bytes left
    to the job) too; ``policy.deadline_s`` bounds the whole fetch.

    Raises
    ------
    OutboundError
        Refused host, HTTP error, too big, too slow, cut short: a message naming the URL
        (without its query) and the cause.

    """
    policy = policy or policy_from_env()
    label = label or safe_url(url)
    check_url(url, policy)
    cap = policy.max_bytes
    if budget is not None:
        cap = budget if cap is None else min(cap, budget)
    deadline = Deadline(policy.deadline_s)
    sess = guarded_session(policy, deadline)
    try:
        with atomic_path(dest) as tmp:  # ``dest`` appears only when complete
            try:
                return _stream(sess, url, tmp, cap, _whose(cap, policy, budget), policy,
                               deadline)
            except OutboundError as exc:
                if deadline.expired:
                    raise OutboundError(f"{label}: took longer than the "
                                        f"{policy.deadline_s:.0f} s allowed") from None
                raise OutboundError(f"{label}: {exc}", exc.status) from None
            except requests.RequestException as exc:
                if deadline.expired:
                    raise OutboundError(f"{label}: took longer than the "
                                        f"{policy.deadline_s:.0f} s allowed") from None
                inner = _unwrap(exc)
                raise OutboundError(f"{label}: {inner if inner else describe(exc)}") from None
            except OSError as exc:  # the local file
                raise OutboundError(f"{label}: cannot write the input "
                                    f"({exc.strerror})") from None
    finally:
        deadline.cancel()
        sess.close()


def _stream(sess: requests.Session, url: str, tmp: Path, cap: int | None, whose: str,
            policy: OutboundPolicy, deadline: Deadline) -> int:
    size = 0
    with sess.get(url, stream=True, timeout=(policy.connect_timeout, policy.read_timeout),
                  headers={"Accept-Encoding": "identity"}) as resp:
        if resp.status_code >= 400:
            raise OutboundError(f"HTTP {resp.status_code}", resp.status_code)
        declared = resp.headers.get("Content-Length")
        expected = int(declared) if declared and declared.isdigit() else None
        encoded = resp.headers.get("Content-Encoding", "identity") != "identity"
        if cap is not None and expected is not None and expected > cap:
            raise OutboundError(f"{_size(expected)}, more than the {_size(cap)} allowed"
                                + whose)
        with open(tmp, "wb") as fh:
            for chunk in resp.iter_content(chunk_size=1 << 16):
                size += len(chunk)
                if cap is not None and size > cap:
                    raise OutboundError(f"more than the {_size(cap)} allowed{whose}")
                fh.write(chunk)
    deadline.check("")
    if expected is not None and not encoded and size != expected:
        raise OutboundError(f"the body has {size} bytes, its Content-Length says {expected}")
    return size


def _size(n: int) -> str:
    return f"{n / _MB:.1f} MiB" if n < 1024 * _MB else f"{n / (1024 * _MB):.1f} GiB"


def _whose(cap: int | None, policy: OutboundPolicy, budget: int | None) -> str:
    if budget is not None and cap == budget and (policy.max_bytes is None
                                                 or budget < policy.max_bytes):
        return " for the inputs of one job"
    return " per input"


def post_json(url: str, doc: Any, *, policy: OutboundPolicy | None = None,
              timeout: float = 10.0, max_answer: int = 64 * 1024) -> int:
    """POST ``doc`` as JSON to a user-given ``url`` (a callback); returns the HTTP status.

    The whole exchange, redirects included, must end within ``timeout`` seconds; at most
    ``max_answer`` bytes of the answer are read.

    Raises
    ------
    OutboundError
        Refused host, or the request failed (message safe to show or log).

    """
    policy = (policy or policy_from_env()).with_limits(max_bytes=max_answer,
                                                       deadline_s=timeout)
    check_url(url, policy)
    deadline = Deadline(timeout)
    sess = guarded_session(policy, deadline)
    label = safe_url(url)
    try:
        with sess.post(url, json=doc, timeout=(min(timeout, policy.connect_timeout), timeout),
                       stream=True, allow_redirects=False) as resp:
            got = 0
            for chunk in resp.iter_content(chunk_size=4096):
                got += len(chunk)
                if got >= max_answer:
                    break
            return resp.status_code
    except OutboundError as exc:
        if deadline.expired:
            raise OutboundError(f"{label}: no answer within {timeout:.0f} s") from None
        raise OutboundError(f"{label}: {exc}") from None
    except requests.RequestException as exc:
        if deadline.expired:
            raise OutboundError(f"{label}: no answer within {timeout:.0f} s") from None
        inner = _unwrap(exc)
        raise OutboundError(f"{label}: {inner if inner else describe(exc)}") from None
    finally:
        deadline.cancel()
        sess.close()


def archive_policy(*urls: str) -> OutboundPolicy:
    """The policy of an archive the operator configured: its host allowed, no caps.

    Settings are trusted configuration (a mirror on the local network is fine); the
    files the archive points to elsewhere are checked like any other host.
    """
    hosts = [urllib.parse.urlsplit(u).hostname or "" for u in urls]
    return policy_from_env(allow=[h for h in hosts if h]).with_limits(max_bytes=None,
                                                                     deadline_s=None)
