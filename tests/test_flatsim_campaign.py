"""FLATSIM end to end: 3 frames x 30 dates on 2 real Celery workers (Redis), kill -9.

One campaign runs uninterrupted; a second (same frames, another name) loses a worker
to ``kill -9`` mid-campaign, the worker is restarted, and the campaign finishes with
velocity maps whose checksums equal the first run's. The third frame comes from a
folder holding a truncated (corrupt) SLC: it finishes without that date and says so.
The web page and ``gdm campaign status`` show the progress.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from flatsim.monitor import campaign_status
from flatsim.state import get_state
from flatsim.steps import raster_sha256
from workflows.settings import get_settings
from workflows.worker import start_worker, stop_worker, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REDIS_DB = 14
DATES = 30
SIZE = 48
BAD_DATE = "2023-05-13"  # the 12th date, every 12 days from 2023-01-01


@pytest.fixture(scope="module")
def corrupt_stack(tmp_path_factory) -> Path:
    from simulators.sar import SimulateSarConfig, simulate

    root = tmp_path_factory.mktemp("f3")
    sim = simulate(SimulateSarConfig(out=root, dates=DATES, size=SIZE, start="2023-01-01",
                                     seed=33))
    bad = sorted(sim.stack_dir.glob("*.tif"))[11]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated: tiles missing
    return sim.stack_dir


@pytest.fixture
def redis_env(tmp_path, monkeypatch):
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    env = {"GDM_HOME": str(tmp_path / "home"), "GDM_BROKER_URL": url,
           "GDM_RESULT_BACKEND": url, "GDM_QUEUE_PREFIX": f"fs{uuid.uuid4().hex[:8]}-",
           "GDM_VISIBILITY_TIMEOUT": "6",
           # the workers' watchdog sweeps every 5 s and resumes a campaign on which no
           # step moved for 20 s (messages a killed worker held come back at once)
           "GDM_LEASE_SECONDS": "5", "GDM_CAMPAIGN_STALL_SECONDS": "20"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings().ensure_dirs()
    yield env
    client.flushdb()
    client.close()


def _spec(name: str, corrupt: Path, out: Path) -> dict:
    return {"name": name, "start": "2023-01-01", "end": "2024-12-31",
            "frames": [{"id": "A010_F1", "track": 10},
                       {"id": "D099_F2", "track": 99, "pass_direction": "descending"},
                       {"id": "A010_F3", "track": 10, "source": "folder",
                        "path": str(corrupt)}],
            "simulation": {"dates": DATES, "size": SIZE, "seed": 4},
            "network": {"mode": "nearest", "neighbours": 3},
            "memory_limit": "1GB", "priority": 7, "out": str(out)}


def _workers(env: dict, home: Path, n: int) -> list:
    procs = []
    for k in range(n):
        ready = home / f"w{k}-{uuid.uuid4().hex[:4]}.ready"
        p = start_worker("batch", env=env, ready_file=ready, log_file=home / f"w{k}.log",
                         loglevel="WARNING")
        procs.append((p, ready))
    for p, ready in procs:
        wait_ready(ready, p, timeout=120)
    return [p for p, _ in procs]


def _wait_finished(state, cid: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = state.campaign(cid)
        if row["status"].startswith("finished"):
            return campaign_status(state, cid)
        time.sleep(0.5)
    raise AssertionError(f"campaign {cid} not finished after {timeout} s: "
                         f"{json.dumps(campaign_status(state, cid)['totals'])}")


def _velocity_sums(root: Path, frames: list[str]) -> dict[str, str]:
    return {f: raster_sha256(root / f / "ts" / "velocity.tif") for f in frames}


def test_campaign_kill9_resumes_with_identical_products(redis_env, corrupt_stack, tmp_path):
    from flatsim.spec import load_spec
    from workflows.campaign_tasks import start

    settings = get_settings()
    state = get_state(settings.database_url)
    frames = ["A010_F1", "D099_F2", "A010_F3"]
    home = settings.home
    workers = _workers(redis_env, home, 2)
    try:
        # 1. uninterrupted run
        t0 = time.monotonic()
        cid_a, created, sent = start(load_spec(_spec("ref", corrupt_stack, tmp_path / "a")))
        assert created and sent == frames
        doc_a = _wait_finished(state, cid_a, 240)
        t_a = time.monotonic() - t0
        # 2. the same frames; kill -9 a worker once a third of the pairs are done
        t0 = time.monotonic()
        cid_b, _, _ = start(load_spec(_spec("killed", corrupt_stack, tmp_path / "b")))
        deadline = time.monotonic() + 180
        while campaign_status(state, cid_b)["totals"]["pairs_done"] < 80:
            assert time.monotonic() < deadline, "campaign b makes no progress"
            time.sleep(0.2)
        running = [s for s in state.steps(cid_b) if s["status"] == "running"]
        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait(10)
        t_kill = time.monotonic()
        # status and web page mid-campaign
        mid = campaign_status(state, cid_b)
        from gdm.cli import main

        cli = CliRunner().invoke(main, ["campaign", "status", cid_b])
        assert cli.exit_code == 0, cli.output
        assert "A010_F1" in cli.output and "pairs/h" in cli.output
        from wps.app import create_app

        client = create_app(settings).test_client()
        page = client.get(f"/campaigns/{cid_b}")
        assert page.status_code == 200 and b"A010_F3" in page.data
        js = client.get(f"/campaigns/{cid_b}/status").get_json()
        assert js["status"] == "running" and js["totals"]["pairs_done"] >= 80
        assert js["throughput_pairs_per_hour"] > 0 and js["eta_seconds"] is not None
        # restart the killed worker
        workers[0] = _workers(redis_env, home, 1)[0]
        doc_b = _wait_finished(state, cid_b, 240)
        t_b = time.monotonic() - t0
        recovery = time.monotonic() - t_kill
    finally:
        for w in workers:
            stop_worker(w, timeout=5)
    rows_b = state.steps(cid_b)
    twice = sum(r["attempts"] > 1 for r in rows_b)
    ends = sorted(r["finished"] for r in rows_b if r["finished"])
    idle = max((b - a).total_seconds() for a, b in zip(ends, ends[1:], strict=False))
    print(f"\nkilled run: {twice} step(s) started more than once; longest pause between "
          f"two step ends {idle:.1f} s")
    if os.environ.get("FLATSIM_TIMELINE"):
        for r in sorted(rows_b, key=lambda r: r["finished"] or r["started"]):
            print(r["id"], r["status"], r["attempts"], r["started"], r["finished"],
                  r["worker"])
    sums_a = _velocity_sums(tmp_path / "a", frames)
    sums_b = _velocity_sums(tmp_path / "b", frames)
    print(f"\nuninterrupted: {t_a:.1f} s, {doc_a['throughput_pairs_per_hour']:.0f} pairs/h; "
          f"killed run: {t_b:.1f} s (kill -9 with {len(running)} step(s) running, "
          f"{mid['totals']['pairs_done']} pairs done; finished {recovery:.1f} s after "
          f"the kill); velocity sha256 equal: {sums_a == sums_b}")
    assert sums_a == sums_b
    # redelivery of the killed step's message: visibility timeout (6 s here) plus the
    # Redis transport's sweep of unacknowledged messages (every ~100 s by default)
    assert recovery < 180
    for f in frames:
        meta_a = json.loads((tmp_path / "a" / f / "metadata.json").read_text())
        meta_b = json.loads((tmp_path / "b" / f / "metadata.json").read_text())
        assert meta_a["velocity_sha256"] == meta_b["velocity_sha256"] == sums_a[f]
    assert doc_a["status"] == doc_b["status"] == "finished"
    assert doc_b["totals"]["frames_done"] == 3 and doc_b["totals"]["pairs_failed"] == 0
    # the corrupt date: dropped, reported, and the frame finished without it
    f3 = next(f for f in doc_b["frames"] if f["id"] == "A010_F3")
    assert f3["status"] == "done" and f3["dates"] == DATES - 1
    assert [d["date"] for d in f3["dropped_dates"]] == [BAD_DATE]
    assert "unreadable" in f3["dropped_dates"][0]["reason"]
    meta3 = json.loads((tmp_path / "b" / "A010_F3" / "metadata.json").read_text())
    assert meta3["dropped_dates"][0]["date"] == BAD_DATE
    # products: STAC catalogue with the three items, report with its PNGs
    cat = json.loads((tmp_path / "b" / "catalog.json").read_text())
    assert sorted(lk["href"] for lk in cat["links"] if lk["rel"] == "item") == sorted(
        f"./{f}/item.json" for f in frames)
    report = (tmp_path / "b" / "report" / "index.html").read_text()
    assert BAD_DATE in report and "velocity_overview.png" in report
    assert (tmp_path / "b" / "report" / "A010_F3_network.png").stat().st_size > 5000
