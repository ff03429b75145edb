"""The supervisor of `gdm serve`'s workers, and the worker heartbeats behind /ogcapi/health.

Fast tests with stand-in processes (no Celery): a worker that dies is restarted at once,
one that keeps dying is restarted after doubling delays, the dead worker's running job
is re-queued without waiting for its lease, and the health document follows the
heartbeats. The end-to-end kill -9 of real embedded workers is in test_security.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from workflows.jobstore import JobStore
from workflows.settings import get_settings
from workflows.worker import HEARTBEAT_S, LIVE_AFTER_S, WorkerSupervisor, queue_consumers


@pytest.fixture
def env(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GDM_HOME", str(tmp_path / "home"))
    settings = get_settings()
    settings.ensure_dirs()
    return settings, JobStore(settings.database_url)


class _Starter:
    """Starts a stand-in worker: a process that sleeps, or exits at once."""

    def __init__(self, exit_at_once: bool = False) -> None:
        self.exit_at_once = exit_at_once
        self.calls: list[tuple[float, str, str]] = []

    def __call__(self, queues: str, *, name: str, ready_file) -> subprocess.Popen:
        self.calls.append((time.monotonic(), queues, name))
        code = "raise SystemExit(3)" if self.exit_at_once else "import time; time.sleep(600)"
        return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def test_killed_worker_is_restarted_at_once_and_its_job_requeued(env, monkeypatch):
    settings, store = env
    sent = []
    monkeypatch.setattr("workflows.celery_app.enqueue", lambda job, s=None: sent.append(job.id))
    starter = _Starter()
    sup = WorkerSupervisor([("rapid", "rapid"), ("ondemand-batch", "ondemand,batch")],
                           settings, store, settings.home, starter=starter, poll_s=0.05,
                           say=lambda _line: None)
    sup.start_all()
    sup.start()
    try:
        slot = sup.slots[1]
        node = slot.node.replace("%h", "host")
        job = store.create_job("local", "echo", {"message": "x"}, "ondemand")
        store.claim(job.id, f"{node}:4242", lease_seconds=3600)  # a lease far from expiry
        victim = slot.proc
        os.kill(victim.pid, signal.SIGKILL)
        t0 = time.monotonic()
        _wait(lambda: len(starter.calls) == 3, 5, "the restart")
        restart_s = time.monotonic() - t0
        assert victim.wait(1) == -signal.SIGKILL
        assert starter.calls[2][1] == "ondemand,batch"
        assert starter.calls[2][2] != starter.calls[1][2]  # a new node name per generation
        again = store.get(job.id)
        assert again.status == "accepted" and again.worker is None
        assert sent == [job.id]
        assert sup.slots[0].restarts == 0  # the other worker was left alone
        print(f"\nkilled worker restarted after {restart_s:.2f} s; its job re-queued")
        assert restart_s < 2.0
    finally:
        sup.stop()


def test_a_worker_that_keeps_dying_is_restarted_with_growing_delays(env):
    settings, store = env
    starter = _Starter(exit_at_once=True)
    lines: list[str] = []
    sup = WorkerSupervisor([("rapid", "rapid")], settings, store, settings.home,
                           starter=starter, poll_s=0.02, min_backoff=0.25, max_backoff=1.0,
                           say=lines.append)
    sup.start_all()
    sup.start()
    try:
        _wait(lambda: len(starter.calls) >= 6, 10, "six starts")
    finally:
        sup.stop()
    times = [t for t, _q, _n in starter.calls[:6]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    print("\ngaps between starts of a crash-looping worker:", [f"{g:.2f}" for g in gaps])
    # first restart at once, then 0.25, 0.5, 1.0 (capped), 1.0 s after each death
    assert gaps[0] < 0.5
    for got, want in zip(gaps[1:], (0.25, 0.5, 1.0, 1.0), strict=True):
        assert want <= got < want + 0.5
    assert any("keeps dying" in line for line in lines)


def test_health_follows_worker_heartbeats(env):
    from wps.app import create_app

    settings, store = env
    client = create_app(settings, store).test_client()
    doc = client.get("/ogcapi/health").get_json()
    assert doc["status"] == "degraded"
    assert {q: v["workers"] for q, v in doc["queues"].items()} == \
        {"rapid": 0, "ondemand": 0, "batch": 0}
    assert len(doc["problems"]) == 3

    store.worker_beat("w1@h", ["rapid"], "h", 1)
    store.worker_beat("w2@h", ["ondemand", "batch"], "h", 2)
    assert queue_consumers(store) == {"rapid": 1, "ondemand": 1, "batch": 1}
    time.sleep(1.1)  # the endpoint caches for a second
    doc = client.get("/ogcapi/health").get_json()
    assert doc["status"] == "ok" and doc["problems"] == []

    store.forget_worker("w2@h")
    time.sleep(1.1)
    doc = client.get("/ogcapi/health").get_json()
    assert doc["status"] == "degraded"
    assert doc["problems"] == ["no worker consumes the ondemand queue: jobs sent to it wait",
                               "no worker consumes the batch queue: jobs sent to it wait"]
    page = client.get("/").get_data(as_text=True)
    assert "no worker consumes the ondemand queue" in page
    job = store.create_job("local", "echo", {"message": "x"}, "ondemand")
    status = client.get(f"/ogcapi/jobs/{job.id}").get_json()
    assert "no worker consumes the ondemand queue" in status["message"]
    # a heartbeat older than LIVE_AFTER_S no longer counts
    assert queue_consumers(store, max_age=0.0)["rapid"] == 0
    assert HEARTBEAT_S * 3 < LIVE_AFTER_S
