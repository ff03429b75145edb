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

from simulators.opt import SimulateConfig, simulate

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
        # with no account, serve says it is the local admin's and listens on loopback only
        assert "no accounts" in log and "listening on 127.0.0.1 only" in log


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
    from gdmio.process import JobContext

    return JobContext("job-x", tmp_path / "job", tmp_path / "uploads",
                      progress=lambda f, m: None)


def _fetch_error(ref: str, tmp_path, index: int = 0) -> str:
    from gdmcore import InputError
    from gdmio.process import resolve_reference

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
    from gdmio.process import resolve_reference

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
    from gdmio.process import resolve_reference

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


# ------------------------------------------------ probe 4: cross-site changes
@pytest.fixture
def local(tmp_path, monkeypatch):
    """The app with no account (the single local user), jobs recorded, not run."""
    from types import SimpleNamespace

    from wps.app import create_app

    from .handlerutil import service

    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GDM_HOME", str(tmp_path / "home"))
    svc = service(tmp_path, monkeypatch, create_app, sync_timeout=5.0)
    return SimpleNamespace(**vars(svc))


ECHO = {"inputs": {"message": "hello"}}
EVIL = "http://evil.example"


def test_probe4_cross_site_posts_create_no_job_without_accounts(local):
    url = "/ogcapi/processes/echo/execution"
    import json as _json

    body = _json.dumps(ECHO)
    # a page of another site: text/plain needs no preflight; refused all the same
    r = local.client.post(url, data=body, content_type="text/plain",
                          headers={"Origin": EVIL, "Prefer": "respond-async"})
    assert r.status_code == 403 and "cross-site" in r.get_json()["detail"]
    r = local.client.post(url, data=body, content_type="text/plain",
                          headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    # without browser headers, a text/plain body is still not an execute request
    r = local.client.post(url, data=body, content_type="text/plain")
    assert r.status_code == 415
    # the DNS-rebinding form: a page whose own name resolves to 127.0.0.1
    r = local.client.post(url, json=ECHO, headers={"Host": "evil.example:5000"})
    assert r.status_code == 400 and "127.0.0.1 and localhost only" in r.get_json()["detail"]
    assert local.client.get("/ogcapi/jobs", headers={"Host": "evil.example"}).status_code == 400
    assert local.store.counts() == {} and local.sent == []
    # the web form: same origin, with the CSRF token of its page
    page = local.client.get("/").get_data(as_text=True)
    token = page.split('name="gdm-csrf" content="')[1].split('"')[0]
    same = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin",
            "Prefer": "respond-async"}
    r = local.client.post(url, json=ECHO, headers=same)
    assert r.status_code == 403 and "CSRF" in r.get_json()["detail"]
    r = local.client.post(url, json=ECHO, headers={**same, "X-GDM-CSRF": token})
    assert r.status_code == 201, r.get_data(as_text=True)
    # scripts and command-line clients send no browser header: no CSRF token needed
    r = local.client.post(url, json=ECHO, headers={"Prefer": "respond-async"})
    assert r.status_code == 201
    assert local.store.counts() == {"accepted": 2}


def test_probe4_a_cookie_alone_changes_nothing(sec):
    alice = sec.tokens["alice"]
    big = os.urandom(1_500_000)
    r = sec.call("POST", "/ogcapi/uploads?name=scene.tif", "alice", data=big,
                 content_type="application/octet-stream")
    assert r.status_code == 201
    stored = sec.settings.uploads_dir / "alice" / "scene.tif"
    client = sec.app.test_client()
    client.set_cookie("gdm_token", alice)
    # the probe: a cookie-carrying text/plain POST that replaced the upload with 14 bytes
    r = client.post("/ogcapi/uploads?name=scene.tif", data=b"14 bytes, evil",
                    content_type="text/plain")
    assert r.status_code == 403 and "Authorization header" in r.get_json()["detail"]
    r = client.post("/ogcapi/uploads?name=scene.tif", data=b"14 bytes, evil",
                    content_type="application/octet-stream")
    assert r.status_code == 403
    # even with the token in the header, an upload never replaces another: 409
    r = sec.call("POST", "/ogcapi/uploads?name=scene.tif", "alice", data=b"14 bytes, evil",
                 content_type="application/octet-stream")
    assert r.status_code == 409 and "exists already" in r.get_json()["detail"]
    r = sec.call("POST", "/ogcapi/uploads", "alice", content_type="multipart/form-data",
                 data={"file": (__import__("io").BytesIO(b"evil"), "scene.tif")})
    assert r.status_code == 409
    assert stored.read_bytes() == big
    # cookie-carrying execute and dismiss, through the OGC API and through WPS GET
    job = sec.store.create_job("alice", "echo", {"message": "x"}, "ondemand")
    assert client.post("/ogcapi/processes/echo/execution", json=ECHO).status_code == 403
    assert client.delete(f"/ogcapi/jobs/{job.id}").status_code == 403
    r = client.get(f"/wps?service=WPS&version=2.0.0&request=Dismiss&jobId={job.id}")
    assert r.status_code == 403 and b"ExceptionReport" in r.data
    r = client.get("/wps?service=WPS&version=1.0.0&request=Execute&identifier=echo"
                   "&DataInputs=message=hi")
    assert r.status_code == 403
    assert sec.store.get(job.id).status == "accepted"
    assert sec.store.counts() == {"accepted": 1}
    # the cookie still lets the pages read (safe methods)
    assert client.get(f"/ogcapi/jobs/{job.id}").status_code == 200
    # and the token in the header does what the cookie may not
    r = sec.call("GET", f"/wps?service=WPS&version=2.0.0&request=Dismiss&jobId={job.id}",
                 "alice")
    assert r.status_code == 200 and sec.store.get(job.id).status == "dismissed"


def test_probe4_documented_content_types_only(sec):
    cases = [("/ogcapi/processes/echo/execution", "application/x-www-form-urlencoded"),
             ("/ogcapi/processes/echo/execution", "multipart/form-data; boundary=x"),
             ("/ogcapi/scenes/search", "text/plain"),
             ("/ogcapi/activations", "text/plain")]
    for url, ctype in cases:
        r = sec.call("POST", url, "olga", data=b'{"inputs": {}}', content_type=ctype)
        assert r.status_code in (400, 415), (url, ctype, r.status_code)
    r = sec.call("POST", "/wps", "alice", data=b"<x/>", content_type="text/plain")
    assert r.status_code == 415 and b"text/xml" in r.data
    assert sec.store.counts() == {}


def test_probe4_serve_refuses_the_network_without_accounts(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from gdm.cli import main

    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GDM_HOME", str(tmp_path / "home"))
    res = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "127.0.0.1" in res.stderr
    assert "--no-accounts-on-network" in res.stderr
    res = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--no-accounts-on-network"])
    assert res.exit_code == 2 and "GDM_PUBLIC_URL" in res.stderr


# ------------------------------------------------------------- probe 5: tokens
def _cli(*args: str):
    from click.testing import CliRunner

    from gdm.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_probe5_tokens_expire_rotate_revoke_and_record_their_use(sec, monkeypatch):
    monkeypatch.setenv("GDM_HOME", str(sec.settings.home))
    old = sec.tokens["alice"]
    ok = {"Authorization": f"Bearer {old}"}
    assert sec.client.get("/ogcapi/jobs", headers=ok).status_code == 200
    info = [t for t in sec.store.tokens("alice")]
    assert len(info) == 1 and info[0].last_used is not None and info[0].state == "active"
    days = (info[0].expires - info[0].created).total_seconds() / 86400
    assert days == pytest.approx(90, abs=1e-6)  # the default lifetime
    # re-adding an account no longer mints a second valid token silently
    res = _cli("users", "add", "alice")
    assert res.exit_code == 2 and "gdm users rotate alice" in res.stderr
    # rotate: a new token, the old one refused at once
    res = _cli("users", "rotate", "alice", "--days", "7")
    assert res.exit_code == 0
    new = res.stdout.strip()
    assert sec.client.get("/ogcapi/jobs", headers=ok).status_code == 401
    assert sec.client.get("/ogcapi/jobs", headers={
        "Authorization": f"Bearer {new}"}).status_code == 200
    listed = _cli("users", "tokens", "alice").stdout
    assert "revoked" in listed and "active" in listed
    # revoke: every token of the account
    res = _cli("users", "revoke", "alice")
    assert res.exit_code == 0 and "1 token(s) revoked" in res.stdout
    assert sec.client.get("/ogcapi/jobs", headers={
        "Authorization": f"Bearer {new}"}).status_code == 401
    # expiry
    short = sec.store.issue_token("bob", days=1 / 86400 / 10)  # a tenth of a second
    time.sleep(0.3)
    assert sec.client.get("/ogcapi/jobs", headers={
        "Authorization": f"Bearer {short}"}).status_code == 401
    assert "expired" in _cli("users", "tokens", "bob").stdout
    # no ?token= in URLs
    assert sec.client.get("/ogcapi/jobs?token=" + sec.tokens["bob"]).status_code == 401
    assert sec.client.get("/api/jobs/x?token=" + sec.tokens["bob"]).status_code == 401


def test_probe5_one_time_download_links(sec):
    sec.mode["inline"] = True
    r = sec.call("POST", "/ogcapi/processes/echo/execution", "alice", json=ECHO)
    job_id = r.headers["Link"].split("/jobs/")[1].split(">")[0]
    product = sec.settings.products_dir / job_id / "products" / "east.tif"
    product.parent.mkdir(parents=True, exist_ok=True)
    product.write_bytes(b"east" * 100)
    link = sec.call("POST", f"/ogcapi/jobs/{job_id}/download-links", "alice",
                    json={"path": "products/east.tif"})
    assert link.status_code == 201
    href = link.get_json()["href"]
    assert "?key=" in href and "token" not in href
    path = href.split("://", 1)[1].split("/", 1)[1]
    first = sec.client.get("/" + path)  # no token: the key is the credential
    assert first.status_code == 200 and first.data == b"east" * 100
    first.close()
    again = sec.client.get("/" + path)
    assert again.status_code == 403 and "used already" in again.get_json()["detail"]
    # scoped: a key for one file opens no other file, nor another job
    other = sec.call("POST", f"/ogcapi/jobs/{job_id}/download-links", "alice",
                     json={"path": "products/east.tif"}).get_json()["href"]
    key = other.split("?key=")[1]
    assert sec.client.get(f"/ogcapi/jobs/{job_id}/download/.job-outputs.json?key={key}"
                          ).status_code == 403
    # bob cannot make a link to alice's job
    assert sec.call("POST", f"/ogcapi/jobs/{job_id}/download-links", "bob",
                    json={"path": "products/east.tif"}).status_code == 404
    # short-lived
    import datetime as dt

    stale = sec.store.create_download_key(job_id, "alice", "products/east.tif",
                                          ttl=dt.timedelta(seconds=-1))
    assert sec.client.get(f"/ogcapi/jobs/{job_id}/download/products/east.tif?key={stale}"
                          ).status_code == 403


def _old_schema_store(url: str) -> str:
    """A job store as the first release made it (tokens without expiry); returns a token."""
    import datetime as dt
    import hashlib as _h

    from sqlalchemy import (
        Column,
        DateTime,
        ForeignKey,
        Integer,
        MetaData,
        String,
        Table,
        create_engine,
    )

    meta = MetaData()
    users = Table("users", meta, Column("name", String(128), primary_key=True),
                  Column("role", String(16)), Column("max_active_jobs", Integer),
                  Column("created", DateTime(timezone=True)))
    tokens = Table("tokens", meta, Column("digest", String(64), primary_key=True),
                   Column("user", String(128), ForeignKey("users.name")),
                   Column("created", DateTime(timezone=True)))
    engine = create_engine(url)
    meta.create_all(engine)
    token = "an-old-token-from-before-expiry-existed"
    born = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    with engine.begin() as conn:
        conn.execute(users.insert().values(name="olduser", role="user", max_active_jobs=5,
                                           created=born))
        conn.execute(tokens.insert().values(digest=_h.sha256(token.encode()).hexdigest(),
                                            user="olduser", created=born))
    engine.dispose()
    return token


def check_token_migration(url: str) -> None:
    """Open an old-schema store: columns added, old tokens expire 90 days after birth."""
    from workflows.jobstore import JobStore

    token = _old_schema_store(url)
    store = JobStore(url)
    user = store.user_for_token(token)
    assert user is not None and user.name == "olduser" and user.disk_quota_mb is None
    (info,) = store.tokens("olduser")
    assert (info.expires - info.created).days == 90 and info.last_used is not None
    assert store.rotate_token("olduser") and store.user_for_token(token) is None
    JobStore(url)  # opening it again changes nothing
    store.engine.dispose()


def test_probe5_token_expiry_on_an_existing_sqlite_store(tmp_path):
    check_token_migration(f"sqlite:///{tmp_path / 'old.sqlite'}")


# ---------------------------------------------------- probe 6: nested JSON
def test_probe6_deeply_nested_json_answers_400(sec):
    deep = "[" * 5000 + "]" * 5000
    medium = "[" * 200 + "]" * 200  # parses, but deeper than any request needs
    for body in (deep, medium):
        for url, user in (("/ogcapi/processes/echo/execution", "alice"),
                          ("/ogcapi/activations", "olga"), ("/ogcapi/scenes/search", "alice")):
            doc = '{"inputs": {"message": ' + body + "}}" if "execution" in url else body
            r = sec.call("POST", url, user, data=doc, content_type="application/json")
            assert r.status_code == 400, (url, r.status_code)
    xml = ('<wps:Execute xmlns:wps="http://www.opengis.net/wps/1.0.0" '
           'xmlns:ows="http://www.opengis.net/ows/1.1" service="WPS" version="1.0.0">'
           '<ows:Identifier>gdm-opt</ows:Identifier><wps:DataInputs><wps:Input>'
           '<ows:Identifier>scenes</ows:Identifier><wps:Data><wps:ComplexData>'
           + deep + '</wps:ComplexData></wps:Data></wps:Input></wps:DataInputs></wps:Execute>')
    r = sec.call("POST", "/wps", "alice", data=xml, content_type="text/xml")
    assert r.status_code == 400 and b"ExceptionReport" in r.data
    assert sec.store.counts() == {}


# ------------------------------------------------------ probe 7: the rest
def test_probe7_empty_literal_and_repeated_kvp_are_refused(sec):
    xml = ('<wps:Execute xmlns:wps="http://www.opengis.net/wps/1.0.0" '
           'xmlns:ows="http://www.opengis.net/ows/1.1" service="WPS" version="1.0.0">'
           '<ows:Identifier>echo</ows:Identifier><wps:DataInputs><wps:Input>'
           '<ows:Identifier>message</ows:Identifier><wps:Data><wps:LiteralData/></wps:Data>'
           '</wps:Input></wps:DataInputs></wps:Execute>')
    r = sec.call("POST", "/wps", "alice", data=xml, content_type="text/xml")
    assert r.status_code == 400 and b"MissingParameterValue" in r.data
    r = sec.call("GET", "/wps?service=WPS&version=1.0.0&request=Execute&identifier=echo"
                 "&DataInputs=message=", "alice")
    assert r.status_code == 400 and b"MissingParameterValue" in r.data
    r = sec.call("GET", "/wps?service=WPS&version=1.0.0&request=Execute&identifier=echo"
                 "&identifier=gdm-opt&DataInputs=message=a", "alice")
    assert r.status_code == 400 and b"more than once" in r.data
    r = sec.call("GET", "/wps?service=WPS&request=GetCapabilities&REQUEST=DescribeProcess",
                 "alice")
    assert r.status_code == 400
    assert sec.store.counts() == {}


def test_probe7_disk_quota_of_uploads(sec, monkeypatch):
    sec.store.set_user("bob", disk_quota_mb=1)
    r = sec.call("POST", "/ogcapi/uploads?name=a.bin", "bob", data=b"a" * 700_000,
                 content_type="application/octet-stream")
    assert r.status_code == 201
    r = sec.call("POST", "/ogcapi/uploads?name=b.bin", "bob", data=b"b" * 700_000,
                 content_type="application/octet-stream")
    assert r.status_code == 413 and "your quota of 1 MiB" in r.get_json()["detail"]
    assert not (sec.settings.uploads_dir / "bob" / "b.bin").exists()
    assert not [p for p in (sec.settings.uploads_dir / "bob").iterdir()
                if p.name.startswith(".")]
    # the default quota of everyone else comes from the settings (50 GiB)
    assert sec.settings.user_quota_mb == 51200


def test_probe7_security_headers_and_no_store(sec):
    job = sec.store.create_job("alice", "echo", {"message": "x"}, "ondemand")
    for url, user in (("/", None), (f"/ogcapi/jobs/{job.id}", "alice"),
                      ("/ogcapi/jobs/nope", "alice"), ("/ogcapi/", None),
                      ("/wps?service=WPS&request=GetCapabilities", "alice")):
        r = sec.call("GET", url, user)
        h = r.headers
        assert h["X-Content-Type-Options"] == "nosniff", url
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"], url
        assert h["Referrer-Policy"] == "no-referrer" and h["X-Frame-Options"] == "DENY"
        assert h["Cache-Control"] == "no-store", url
    asset = sec.client.get("/assets/gdm.js")
    assert asset.headers["X-Content-Type-Options"] == "nosniff"
    assert asset.headers.get("Cache-Control") != "no-store"
    asset.close()


def test_probe7_public_jobs_need_a_token_on_every_face(sec):
    job = sec.store.create_job("alice", "echo", {"message": "x"}, "ondemand", public=True)
    for url in (f"/ogcapi/jobs/{job.id}", f"/api/jobs/{job.id}", f"/jobs/{job.id}"):
        assert _status(sec.call("GET", url, None)) == 401, url
        assert _status(sec.call("GET", url, "bob")) == 200, url


def test_probe7_job_messages_show_no_server_path(sec, monkeypatch):
    from workflows.runner import run_job

    monkeypatch.setenv("GDM_HOME", str(sec.settings.home))
    folder = sec.settings.uploads_dir / "alice"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("20230101_a.tif", "20230201_b.tif"):
        (folder / name).write_bytes(b"not a raster at all")
    job = sec.store.create_job("alice", "gdm-opt", {"images": ["20230101_a.tif",
                                                              "20230201_b.tif"]}, "ondemand")
    assert run_job(job.id, store=sec.store, settings=sec.settings, worker_name="w") == "failed"
    message = sec.store.get(job.id).message
    print("\nmessage of a job whose inputs are not rasters:", message)
    for root in (sec.settings.home, sec.settings.uploads_dir, sec.settings.products_dir):
        assert str(root) not in message
    assert "20230101_a.tif" in message or "20230201_b.tif" in message


def _raw_exchange(port: int, head: str, body: bytes = b"", timeout: float = 5.0
                  ) -> tuple[int, dict, bytes, float]:
    """Send request headers and the start of a body; read the answer: status, headers,
    body, seconds it took (the rest of the body is never sent)."""
    import socket

    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        lines = header.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        need = int(headers.get("Content-Length", "0"))
        while len(rest) < need:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(lines[0].split()[1]), headers, rest, time.monotonic() - t0


def test_probe7_server_refuses_big_and_unauthenticated_bodies_before_reading_them(
        tmp_path, monkeypatch):
    import json as _json
    import threading

    from workflows.jobstore import JobStore
    from workflows.settings import get_settings
    from wps.app import create_app
    from wps.server import create_server

    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    settings = get_settings({"GDM_HOME": str(tmp_path / "home"), "GDM_MAX_REQUEST_MB": "1"})
    settings.ensure_dirs()
    store = JobStore(settings.database_url)
    token = store.create_user("alice", "user")[1]
    server = create_server(create_app(settings, store), settings, store, host="127.0.0.1",
                           port=0, threads=4)
    stopping = threading.Event()

    def serve() -> None:
        try:
            server.run()
        except (OSError, ValueError):  # its sockets closed under it at the end
            if not stopping.is_set():
                raise

    threading.Thread(target=serve, daemon=True).start()
    port = server.effective_port
    try:
        upload = ("POST /ogcapi/uploads?name=a.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Content-Type: application/octet-stream\r\n")
        # 1000 kB announced, 10 bytes sent, no token: 401 at once, the body never read
        code, headers, body, took = _raw_exchange(
            port, upload + "Content-Length: 1024000\r\n", b"0123456789")
        print(f"\nunauthenticated 1000 kB upload, 10 bytes sent: {code} after "
              f"{took * 1000:.0f} ms")
        assert code == 401 and took < 2.0
        assert headers["Content-Type"] == "application/problem+json"
        assert "token" in _json.loads(body)["detail"]
        # with a token, more than the 1 MiB limit: the application's 413, as JSON
        auth = f"Authorization: Bearer {token}\r\n"
        code, headers, body, took = _raw_exchange(
            port, upload + auth + "Content-Length: 2097152\r\n", b"x" * 10)
        assert code == 413 and took < 2.0
        assert headers["Content-Type"] == "application/problem+json"
        assert "1 MiB" in _json.loads(body)["detail"]
        # the same limit for a chunked body, as it arrives
        chunk = b"%x\r\n" % 65536 + b"c" * 65536 + b"\r\n"
        code, headers, body, _ = _raw_exchange(
            port, upload + auth + "Transfer-Encoding: chunked\r\n", chunk * 20)
        assert code == 413 and headers["Content-Type"] == "application/problem+json"
        # within the limit, with a token: stored
        code, _h, body, _ = _raw_exchange(port, upload + auth + "Content-Length: 5\r\n",
                                          b"hello")
        assert code == 201, body
        assert (settings.uploads_dir / "alice" / "a.bin").read_bytes() == b"hello"
    finally:
        stopping.set()
        server.close()
