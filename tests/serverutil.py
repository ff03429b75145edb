"""Helpers for end-to-end tests: a real `gdm serve` subprocess and a static file server.

    with running_server() as url:          # embedded default: SQLite + 2 local workers
        requests.get(url + "/ogcapi/")

    with running_server({"GDM_BROKER_URL": "redis://127.0.0.1:6379/11"}) as url:
        ...                                 # no local worker: start one (start_worker)

The yielded URL is a ``str`` (no trailing slash) that also carries ``.home`` (the
server's GDM_HOME), ``.env`` (its full GDM_* environment, to start workers or open the
job store on the same settings) and ``.proc``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["running_server", "serve_files", "free_port", "ServerURL", "service_env"]


class ServerURL(str):
    """Base URL of a running server, with its settings attached."""

    home: Path
    env: dict[str, str]
    proc: subprocess.Popen
    log: Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(home: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without GDM_* variables, plus GDM_HOME=home and ``env``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("GDM_")}
    full["GDM_HOME"] = str(home)
    full.update(env or {})
    full.setdefault("PYTHONUNBUFFERED", "1")
    return full


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            resp.read(1)
        return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


@contextlib.contextmanager
def running_server(env: Mapping[str, str] | None = None, port: int | None = None, *,
                   wait_workers: bool = True, timeout: float = 120.0) -> Iterator[ServerURL]:
    """Run ``gdm serve`` on 127.0.0.1 in a subprocess; yield its base URL.

    Parameters
    ----------
    env
        GDM_* settings (others from os.environ are dropped); GDM_HOME defaults to a
        fresh temporary folder, removed afterwards.
    port
        TCP port (default: a free one).
    wait_workers
        With the embedded broker, also wait until the two local workers consume.
    timeout
        Seconds to wait for the server (and workers).

    """
    tmp = None
    env = dict(env or {})
    if "GDM_HOME" not in env:
        tmp = tempfile.TemporaryDirectory(prefix="gdm-serve-")
        env["GDM_HOME"] = tmp.name
    home = Path(env["GDM_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    full_env = service_env(home, env)
    port = port or free_port()
    log_path = home / f"serve-{port}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "gdm.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.home, url.env, url.proc, url.log = home, full_env, proc, log_path
    try:
        deadline = time.monotonic() + timeout
        while not _answers(url + "/ogcapi/"):
            if proc.poll() is not None:
                raise RuntimeError(f"gdm serve exited with {proc.returncode}:\n"
                                   + log_path.read_text(errors="replace")[-4000:])
            if time.monotonic() > deadline:
                raise RuntimeError("gdm serve did not answer in time:\n"
                                   + log_path.read_text(errors="replace")[-4000:])
            time.sleep(0.2)
        from workflows.settings import get_settings

        if wait_workers and get_settings(full_env).embedded:
            run_dir = home / "run"
            while len(list(run_dir.glob(f"serve-{proc.pid}-*.ready"))) < 2:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gdm serve's workers did not start:\n"
                                       + log_path.read_text(errors="replace")[-4000:])
                time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # the workers lead their own process groups: reap any that outlived serve
        for ready in (home / "run").glob(f"serve-{proc.pid}-*.ready"):
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError, OSError):
                os.killpg(int(ready.read_text()), signal.SIGKILL)
        log.close()
        if tmp is not None:
            tmp.cleanup()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


_FILE_SERVERS: dict[str, str] = {}


def serve_files(folder: str | os.PathLike[str]) -> str:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a daemon thread); return its base URL.

    One server per folder for the life of the test process. The URL has no trailing
    slash: ``serve_files(d) + "/a.tif"``.
    """
    folder = str(Path(folder).resolve())
    if folder in _FILE_SERVERS:
        return _FILE_SERVERS[folder]
    handler = functools.partial(_QuietHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"files:{folder}", daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    _FILE_SERVERS[folder] = url
    return url
