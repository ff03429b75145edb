"""Security probes of issue 18, replayed as regression tests.

Each test replays one probe that once succeeded against ``gdm serve`` (as an attacker
or a careless client would send it) and asserts that the service now refuses it, or
copes with it. Handler probes use the Flask test client; the worker probes (kill -9 of
the embedded workers) run a real ``gdm serve`` on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests

from gdm_opt.simulate import SimulateConfig, simulate

from .serverutil import running_server


# ------------------------------------------------------------------ helpers
def _wait(pred, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
    return value


def _raster_digests(folder: Path, outputs: dict) -> dict[str, str]:
    """SHA-256 of the pixel arrays of every GeoTIFF output (the products' content)."""
    digests = {}
    for name, rel in sorted(outputs.items()):
        if isinstance(rel, str) and rel.endswith(".tif"):
            with rasterio.open(folder / rel) as ds:
                arr = ds.read()
            digests[name] = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
    return digests


# ------------------------------------------- probe 1: kill -9 of a worker
@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A simulated 3-date series: a job of about ten seconds with step 4."""
    root = tmp_path_factory.mktemp("series")
    return simulate(SimulateConfig(case="fault", size=512, dates=3, seed=4), root).images


@pytest.mark.slow
@pytest.mark.integration
def test_probe1_kill9_of_each_embedded_worker_mid_job_is_survived(series):
    """kill -9 of each embedded worker's main process mid-job: the worker is restarted,
    the job finishes with the products of a clean run, and /ogcapi/health says while no
    worker consumes the queue."""
    with running_server() as base:
        s = requests.Session()
        names = []
        for p in series:
            with open(p, "rb") as fh:
                r = s.post(f"{base}/ogcapi/uploads", files={"file": (p.name, fh)}, timeout=60)
            assert r.status_code == 201, r.text
            names.append(r.json()["name"])
        inputs = {"images": names, "preset": "etq", "step": 4}

        def submit(queue: str) -> str:
            r = s.post(f"{base}/ogcapi/processes/gdm-opt/execution", timeout=60,
                       json={"inputs": inputs, "queue": queue},
                       headers={"Prefer": "respond-async"})
            assert r.status_code == 201, r.text
            return r.json()["jobID"]

        def status(job_id: str) -> dict:
            return s.get(f"{base}/ogcapi/jobs/{job_id}", timeout=60).json()

        def final(job_id: str, timeout: float) -> dict:
            return _wait(lambda: (d := status(job_id))["status"] in
                         ("successful", "failed", "dismissed") and d, timeout, "the job")

        clean_id = submit("ondemand")
        clean = final(clean_id, 300)
        assert clean["status"] == "successful", clean["message"]
        from workflows.jobstore import JobStore
        from workflows.settings import get_settings

        settings = get_settings(base.env)
        store = JobStore(settings.database_url)
        clean_job = store.get(clean_id)
        want = _raster_digests(settings.products_dir / clean_id, clean_job.outputs)
        assert len(want) >= 4, want

        for label, queue in (("ondemand-batch", "ondemand"), ("rapid", "rapid")):
            ready = base.home / "run" / f"serve-{base.proc.pid}-{label}.ready"
            victim = int(ready.read_text())
            job_id = submit(queue)
            _wait(lambda j=job_id: status(j)["status"] == "running"
                  and status(j)["progress"] > 0, 180, "the job to run", poll=0.05)
            os.kill(victim, signal.SIGKILL)
            t_kill = time.monotonic()
            seen_degraded = False

            def back(q=queue) -> bool:
                nonlocal seen_degraded
                doc = s.get(f"{base}/ogcapi/health", timeout=60).json()
                if doc["queues"][q]["workers"] == 0:
                    seen_degraded = True
                    assert doc["status"] == "degraded"
                    assert any(q in p for p in doc["problems"])
                return doc["queues"][q]["workers"] > 0 and seen_degraded

            _wait(back, 120, f"a new {label} worker", poll=0.05)
            restarted = time.monotonic() - t_kill
            new_pid = int(ready.read_text())
            assert new_pid != victim
            done = final(job_id, 300)
            recovered = time.monotonic() - t_kill
            job = store.get(job_id)
            print(f"\nkill -9 of the {label} worker: consumer back after {restarted:.1f} s, "
                  f"job successful {recovered:.1f} s after the kill "
                  f"(attempts {job.attempts})")
            assert done["status"] == "successful", done["message"]
            assert job.attempts == 2
            got = _raster_digests(settings.products_dir / job_id, job.outputs)
            assert got == want, f"products after kill -9 of {label} differ from a clean run"
            assert restarted < 60
        assert s.get(f"{base}/ogcapi/health", timeout=60).json()["status"] == "ok"
        log = base.log.read_text(errors="replace")
        assert log.count("died after") == 2 and log.count("restarted") >= 2


# ------------------------------------------------------ handler probes: set-up
def _status(resp) -> int:
    """The status code of a test-client response, closing it (file responses)."""
    resp.close()
    return resp.status_code


@pytest.fixture
def sec(tmp_path, monkeypatch):
    """The app with accounts (alice, bob: users; olga: operator; root: admin), jobs run
    inline as they are enqueued; ``call(method, url, user, **kw)`` sends the user's token
    in the Authorization header."""
    from types import SimpleNamespace

    from wps.app import create_app

    from .handlerutil import service

    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GDM_HOME", str(tmp_path / "home"))
    svc = service(tmp_path, monkeypatch, create_app, sync_timeout=5.0)
    tokens = {}
    for name, role in (("alice", "user"), ("bob", "user"), ("olga", "operator"),
                       ("root", "admin")):
        tokens[name] = svc.store.create_user(name, role, 20)[1]

    def call(method: str, url: str, user: str | None = None, **kw):
        headers = dict(kw.pop("headers", {}))
        if user is not None:
            headers["Authorization"] = f"Bearer {tokens[user]}"
        return svc.client.open(url, method=method, headers=headers, **kw)

    return SimpleNamespace(**vars(svc), tokens=tokens, call=call)


# ------------------------------------ probe 2: campaigns have owners (as jobs)
TINY_CAMPAIGN = {"name": "alice-etna", "start": "2023-01-01", "end": "2023-12-31",
                 "frames": [{"id": "F1", "track": 3}],
                 "simulation": {"dates": 8, "size": 32, "seed": 3},
                 "network": {"mode": "nearest", "neighbours": 2}}


def test_probe2_campaigns_obey_the_ownership_and_public_rules_of_jobs(sec):
    sec.mode["inline"] = True
    r = sec.call("POST", "/ogcapi/processes/flatsim-campaign/execution", "alice",
                 json={"inputs": TINY_CAMPAIGN})
    assert r.status_code == 200, r.get_data(as_text=True)
    cid = r.get_json()["campaign_id"]
    job_id = r.headers["Link"].split("/jobs/")[1].split(">")[0]
    urls = [f"/campaigns/{cid}", f"/campaigns/{cid}/status",
            f"/campaigns/{cid}/report/index.html"]
    for url in urls:  # alice sees her campaign, bob does not (404, as a missing one)
        assert _status(sec.call("GET", url, "alice")) == 200, url
        theirs = sec.call("GET", url, "bob")
        assert theirs.status_code == 404, (url, theirs.status_code)
        assert job_id.encode() not in theirs.data and b"frames" not in theirs.data
        assert _status(sec.call("GET", url, None)) == 401
        assert _status(sec.call("GET", url, "root")) == 200
    assert cid.encode() in sec.call("GET", "/campaigns", "alice").data
    assert cid.encode() not in sec.call("GET", "/campaigns", "bob").data
    doc = sec.call("GET", f"/campaigns/{cid}/status", "alice").get_json()
    assert "out_dir" not in doc  # no server path for users
    assert sec.call("GET", f"/campaigns/{cid}/status", "root").get_json()["out_dir"]
    # a public job makes its campaign public, as its results
    sec.store.set_public(job_id, True)
    for url in urls:
        assert _status(sec.call("GET", url, "bob")) == 200, url
    # a campaign started from the command line (no job) is for admins only
    from flatsim import register
    from flatsim.spec import load_spec
    from flatsim.state import get_state

    st = get_state(sec.settings.database_url)
    cli_cid, _root, _ = register(st, load_spec({**TINY_CAMPAIGN, "name": "cli-campaign"}),
                                 sec.settings.products_dir)
    assert sec.call("GET", f"/campaigns/{cli_cid}/status", "olga").status_code == 404
    assert sec.call("GET", f"/campaigns/{cli_cid}/status", "root").status_code == 200


# ------------------------------------------------- probe 3: SSRF and fetch limits
class _Hostile:
    """A local HTTP server misbehaving on purpose, counting the requests it gets."""

    def __init__(self) -> None:
        import http.server
        import threading

        hits: list[str] = []
        self.hits = hits

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                hits.append(self.path)
                path = self.path.split("?")[0]
                if path.startswith("/ok"):
                    body = b"x" * 1000
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif path == "/big":  # declares and sends 3 MiB
                    self.send_response(200)
                    self.send_header("Content-Length", str(3 << 20))
                    self.end_headers()
                    try:
                        for _ in range(48):
                            self.wfile.write(b"y" * 65536)
                    except OSError:
                        pass
                elif path == "/chunked":  # 3 MiB without a Content-Length
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for _ in range(48):
                            self.wfile.write(b"10000\r\n" + b"z" * 65536 + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        pass
                elif path == "/short":  # says 1000 bytes, sends 500, closes
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b"s" * 500)
                    self.close_connection = True
                elif path == "/trickle":  # a byte every 0.2 s
                    self.send_response(200)
                    self.send_header("Content-Length", "200")
                    self.end_headers()
                    try:
                        for _ in range(200):
                            self.wfile.write(b"t")
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:
                        pass
                elif path.startswith("/to/"):  # redirect to the rest of the path
                    self.send_response(302)
                    self.send_header("Location", self.path[len("/to/"):])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def do_POST(self):  # noqa: N802
                hits.append("POST " + self.path)
                n = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(n)
                self.send_response(204)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # clients that hang up are expected
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile(monkeypatch):
    for key in ("GDM_ALLOWED_HOSTS", "GDM_MAX_INPUT_MB", "GDM_MAX_JOB_INPUT_MB",
                "GDM_FETCH_DEADLINE"):
        monkeypatch.delenv(key, raising=False)
    server = _Hostile()
    yield server
    server.close()


def _ctx(tmp_path):
    from workflows.process_base import JobContext

    return JobContext("job-x", tmp_path / "job", tmp_path / "uploads",
                      progress=lambda f, m: None)


def _fetch_error(ref: str, tmp_path, index: int = 0) -> str:
    from gdmcore import InputError
    from workflows.process_base import resolve_reference

    with pytest.raises(InputError) as err:
        resolve_reference(ref, _ctx(tmp_path), index)
    assert not [p for p in (tmp_path / "job" / "inputs").iterdir() if p.is_file()], \
        "a refused or failed fetch left a file behind"
    return str(err.value)


def test_probe3_inputs_on_internal_addresses_are_refused_before_any_connection(
        hostile, tmp_path, monkeypatch):
    port = hostile.port
    real = __import__("socket").getaddrinfo

    def fake_dns(host, *args, **kwargs):  # a public-looking name that points inside
        if host == "intranet.example.org":
            return real("10.1.2.3", *args, **kwargs)
        if host == "mixed.example.org":  # one good address and one bad: refused
            return real("93.184.216.34", *args, **kwargs) + real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr("socket.getaddrinfo", fake_dns)
    for url in (f"http://127.0.0.1:{port}/ok", f"http://localhost:{port}/ok",
                f"http://0.0.0.0:{port}/ok", f"http://[::1]:{port}/ok",
                f"http://127.1:{port}/ok", f"http://2130706433:{port}/ok",
                f"http://[::ffff:127.0.0.1]:{port}/ok", "http://169.254.169.254/latest/meta-data",
                "http://10.0.0.1/secret", "http://192.168.1.1/", "http://[fe80::1]/",
                "http://224.0.0.1/", "http://intranet.example.org/x.tif",
                "http://mixed.example.org/x.tif"):
        message = _fetch_error(url, tmp_path)
        assert "not allowed" in message and "GDM_ALLOWED_HOSTS" in message, (url, message)
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:6379/_INFO"):
        assert "unsupported input reference" in _fetch_error(url, tmp_path) \
            or "only http and https" in _fetch_error(url, tmp_path)
    assert hostile.hits == [], "the service connected to an internal address"
    # once the operator allows the host, the same input is fetched
    monkeypatch.setenv("GDM_ALLOWED_HOSTS", "127.0.0.1")
    from workflows.process_base import resolve_reference

    path = resolve_reference(f"http://127.0.0.1:{port}/ok.tif", _ctx(tmp_path))
    assert path.read_bytes() == b"x" * 1000 and hostile.hits == ["/ok.tif"]


def test_probe3_callbacks_to_internal_addresses_are_refused(hostile, sec):
    r = sec.call("POST", "/ogcapi/processes/echo/execution", "alice",
                 json={"inputs": {"message": "m"},
                       "subscriber": {"successUri": f"{hostile.url}/cb"}},
                 headers={"Prefer": "respond-async"})
    assert r.status_code == 400 and "not allowed" in r.get_json()["detail"]
    from workflows.runner import notify

    # a callback recorded before (or by a name that resolves inside) is refused when sent
    job = sec.store.create_job("alice", "echo", {"message": "m"}, "ondemand",
                               subscriber={"successUri": f"http://localhost:{hostile.port}/cb"})
    sec.store.claim(job.id, "w", 60)
    done = sec.store.finish(job.id, {"message": "m"}, "w")
    assert notify(done, sec.settings) is False
    assert hostile.hits == []


def test_probe3_messages_do_not_tell_open_ports_from_closed_ones(hostile, tmp_path,
                                                                 monkeypatch):
    import socket
    import threading

    monkeypatch.setenv("GDM_ALLOWED_HOSTS", "127.0.0.1")
    # a port that accepts and closes at once (what Redis or PostgreSQL do with HTTP)
    closer = socket.socket()
    closer.bind(("127.0.0.1", 0))
    closer.listen(8)

    def accept_and_close():
        while True:
            try:
                conn, _ = closer.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=accept_and_close, daemon=True).start()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    try:
        open_msg = _fetch_error(f"http://127.0.0.1:{closer.getsockname()[1]}/x", tmp_path)
        closed_msg = _fetch_error(f"http://127.0.0.1:{closed_port}/x", tmp_path)
    finally:
        closer.close()

    def strip(message: str) -> str:
        return message.split("/x:", 1)[1]

    print(f"\nopen port: {open_msg}\nclosed port: {closed_msg}")
    assert strip(open_msg) == strip(closed_msg) == " connection failed"
    for word in ("refused", "closed", "Remote end", "reset", "Errno"):
        assert word not in open_msg + closed_msg


def test_probe3_size_caps_deadline_and_short_bodies(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv("GDM_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("GDM_MAX_INPUT_MB", "1")
    msg = _fetch_error(f"{hostile.url}/big", tmp_path)
    assert "3.0 MiB, more than the 1.0 MiB allowed per input" in msg, msg
    msg = _fetch_error(f"{hostile.url}/chunked", tmp_path)
    assert "more than the 1.0 MiB allowed per input" in msg, msg
    msg = _fetch_error(f"{hostile.url}/short", tmp_path)
    assert "dropped before the end of the body" in msg or "Content-Length" in msg, msg
    monkeypatch.setenv("GDM_FETCH_DEADLINE", "1")
    t0 = time.monotonic()
    msg = _fetch_error(f"{hostile.url}/trickle", tmp_path)
    took = time.monotonic() - t0
    print(f"\ntrickling server (1 B / 0.2 s) cut after {took:.2f} s: {msg}")
    assert "took longer than the 1 s allowed" in msg and took < 3.0
    # the job's inputs together: two 1000-byte inputs under a 1500-byte job budget
    monkeypatch.delenv("GDM_FETCH_DEADLINE")
    monkeypatch.setattr("gdmio.outbound.job_input_cap", lambda env=None: 1500)
    from workflows.process_base import resolve_reference

    ctx = _ctx(tmp_path)
    resolve_reference(f"{hostile.url}/ok/a.tif", ctx, 0)
    with pytest.raises(Exception, match="for the inputs of one job"):
        resolve_reference(f"{hostile.url}/ok/b.tif", ctx, 1)


def test_probe3_redirects_are_checked_again(hostile, tmp_path, monkeypatch):
    # only the name "localhost" is allowed: a redirect to 127.0.0.1 is another host
    monkeypatch.setenv("GDM_ALLOWED_HOSTS", "localhost")
    target = f"http://127.0.0.1:{hostile.port}/ok"
    msg = _fetch_error(f"http://localhost:{hostile.port}/to/{target}", tmp_path)
    assert "host 127.0.0.1" in msg and "not allowed" in msg, msg
    assert hostile.hits == [f"/to/{target}"]  # the redirect target was never asked
    msg = _fetch_error(f"http://localhost:{hostile.port}/to/file:///etc/passwd", tmp_path)
    assert "not http(s)" in msg, msg


def test_probe3_the_address_checked_is_the_address_connected(monkeypatch, tmp_path):
    """DNS rebinding: the name is resolved once per connection and the socket goes to
    the address that was checked, whatever a later answer would say."""
    import socket

    from urllib3.util import connection as u3conn

    real = socket.getaddrinfo
    answers = {"n": 0}

    def rebinding(host, *args, **kwargs):
        if host == "rebind.example.org":
            answers["n"] += 1
            ip = "93.184.216.34" if answers["n"] == 1 else "127.0.0.1"
            return real(ip, *args, **kwargs)
        return real(host, *args, **kwargs)

    connected = []

    def fake_connect(address, *args, **kwargs):
        connected.append(address[0])
        raise OSError("no network in tests")

    monkeypatch.setattr("socket.getaddrinfo", rebinding)
    monkeypatch.setattr(u3conn, "create_connection", fake_connect)
    msg = _fetch_error("http://rebind.example.org/x.tif", tmp_path)
    assert msg.endswith("connection failed"), msg
    assert connected and set(connected) == {"93.184.216.34"}
    assert answers["n"] == len(connected)  # one resolution per connection, no second look
