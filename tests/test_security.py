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
