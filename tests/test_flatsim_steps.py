"""FLATSIM steps in-process: skip when done, failed pairs, corrupt dates, Dask chunks."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

import flatsim.steps as steps_mod
import insar.pairs as pairs_mod
from flatsim import register
from flatsim.monitor import campaign_status, format_status
from flatsim.spec import load_spec
from flatsim.state import CampaignState
from flatsim.steps import (
    frame_job,
    ingest,
    invert,
    raster_sha256,
    run_campaign_local,
    run_frame_local,
    verify_ingest,
)
from gdmcore import InputError

DATES = 12


def _spec(out: Path, frames: list[dict], neighbours: int = 2, **extra) -> object:
    return load_spec({"name": "t", "start": "2023-01-01", "end": "2023-12-31",
                      "frames": frames, "out": str(out),
                      "simulation": {"dates": DATES, "size": 48, "seed": 1},
                      "network": {"mode": "nearest", "neighbours": neighbours},
                      "memory_limit": "1GB", **extra})


@pytest.fixture
def state(tmp_path):
    return CampaignState(f"sqlite:///{tmp_path / 'state.sqlite'}")


def _files(root: Path) -> dict[str, tuple[float, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file() and "report" not in p.parts}


def test_frame_runs_then_every_step_is_skipped(state, tmp_path):
    spec = _spec(tmp_path / "out", [{"id": "F1", "track": 5}])
    cid, root, created = register(state, spec)
    assert created
    t0 = time.perf_counter()
    res = run_campaign_local(state, spec, cid, root)
    first = time.perf_counter() - t0
    assert res["status"] == "done"
    rows = state.steps(cid)
    n_pairs = sum(r["kind"] == "pair" for r in rows)
    assert n_pairs == 2 * DATES - 3  # nearest-2 network
    assert all(r["status"] == "done" and not r["skipped"] for r in rows)
    before = _files(root)
    vel = raster_sha256(root / "F1" / "ts" / "velocity.tif")
    meta = json.loads((root / "F1" / "metadata.json").read_text())
    assert meta["velocity_sha256"] == vel and meta["pairs_used"] == n_pairs
    # leftovers of a killed attempt are ignored; a finished frame is not redone
    (root / "F1" / "interferograms" / ".tmp-junk-1234").mkdir()
    state.reset_running(cid)
    t0 = time.perf_counter()
    again = run_frame_local(state, frame_job(spec, cid, root, "F1"))
    second = time.perf_counter() - t0
    assert again["status"] == "done"
    after = {k: v for k, v in _files(root).items()}
    assert after == before  # not one file rewritten
    assert steps_mod.sweep_leftovers(frame_job(spec, cid, root, "F1"), min_age_s=0) == [
        ".tmp-junk-1234"]
    print(f"\nframe of {DATES} dates, {n_pairs} pairs: {first:.2f} s, rerun (all skipped) "
          f"{second:.2f} s")
    assert second < first / 3
    # oracle: the frame's products equal a GDM-SAR job on the same stack and options
    from gdm_sar.config import SarConfig
    from gdm_sar.pipeline import run as sar_run

    sar = sar_run(SarConfig(stack=root / "F1" / "stack", out=tmp_path / "sar",
                            network="nearest", neighbours=2))
    for ours, theirs in (("velocity", sar.velocity), ("timeseries", sar.timeseries),
                         ("temporal_coherence", sar.temporal_coherence)):
        a = rasterio.open(root / "F1" / "ts" / f"{ours}.tif").read()
        b = rasterio.open(theirs).read()
        assert np.array_equal(a, b, equal_nan=True), ours
    # a deleted pair is redone alone, with the same bytes of data
    pair = meta["network"]["missing_pairs"] or json.loads(
        (root / "F1" / "ingest.json").read_text())["pair_names"][4]
    unw = root / "F1" / "interferograms" / pair / "unwrapped.tif"
    sha = raster_sha256(unw)
    shutil.rmtree(unw.parent)
    job = frame_job(spec, cid, root, "F1")
    steps_mod.run_pair(job, verify_ingest(job), pair)
    assert raster_sha256(unw) == sha


def test_pair_failing_twice_is_left_out_and_the_gap_reported(state, tmp_path, monkeypatch):
    spec = _spec(tmp_path / "out", [{"id": "F1", "track": 5}])
    cid, root, _ = register(state, spec)
    job = frame_job(spec, cid, root, "F1")
    info = ingest(job)
    dates = info["dates"]
    # every pair across the boundary between dates 5 and 6 fails
    doomed = {n for n, (i, j) in zip(info["pair_names"], info["pairs"], strict=True)
              if i <= 5 < j}
    assert len(doomed) == 3
    calls: dict[str, int] = {}
    real = pairs_mod.unwrap

    def flaky(phase, *args, **kwargs):
        name = flaky.current
        calls[name] = calls.get(name, 0) + 1
        if name in doomed:
            raise RuntimeError(f"simulated unwrapper crash on {name}")
        return real(phase, *args, **kwargs)

    real_pair = steps_mod.run_pair

    def tracking_pair(job, info, name):
        flaky.current = name
        return real_pair(job, info, name)

    monkeypatch.setattr(pairs_mod, "unwrap", flaky)
    monkeypatch.setattr(steps_mod, "run_pair", tracking_pair)
    res = run_frame_local(state, job)
    assert res["status"] == "done"
    assert {n: calls[n] for n in doomed} == dict.fromkeys(doomed, 2)  # tried twice each
    rows = {r["pair"]: r for r in state.steps(cid, kind="pair")}
    for n in doomed:
        assert rows[n]["status"] == "failed" and rows[n]["failures"] == 2
        assert "simulated unwrapper crash" in rows[n]["error"]
    meta = res["metadata"]
    assert sorted(meta["failed_pairs"]) == sorted(doomed)
    assert meta["network"]["gaps"] == [{"after": dates[5], "before": dates[6]}]
    assert meta["network"]["components"] == 2
    assert meta["pairs_used"] == len(info["pairs"]) - 3
    doc = campaign_status(state, cid)
    assert doc["totals"]["pairs_failed"] == 3 and len(doc["failures"]) == 3
    assert all(f["final"] for f in doc["failures"])
    assert "given up" in format_status(doc)
    # the series still spans every date (NSBAS bridges the gap)
    with rasterio.open(root / "F1" / "ts" / "timeseries.tif") as ds:
        assert ds.count == DATES
        last = ds.read(DATES)
    assert np.isfinite(last).mean() > 0.5
    # resume: the given-up pairs are not tried again
    n_calls = sum(calls.values())
    run_frame_local(state, job)
    assert sum(calls.values()) == n_calls


def test_corrupt_slc_date_is_dropped_and_reported(state, tmp_path):
    from simulators.sar import SimulateSarConfig, simulate

    sim = simulate(SimulateSarConfig(out=tmp_path / "sim", dates=DATES, size=48,
                                     start=dt.date(2023, 1, 1), seed=5))
    files = sorted(sim.stack_dir.glob("*.tif"))
    data = files[4].read_bytes()
    files[4].write_bytes(data[: len(data) // 2])  # truncated
    with rasterio.open(files[7], "r+") as ds:  # a date full of NaN
        ds.write(np.full((48, 48), np.nan + 0j, np.complex64), 1)
    spec = _spec(tmp_path / "out", [{"id": "F9", "track": 9, "source": "folder",
                                     "path": str(sim.stack_dir)}])
    cid, root, _ = register(state, spec)
    res = run_frame_local(state, frame_job(spec, cid, root, "F9"))
    assert res["status"] == "done"
    meta = res["metadata"]
    dropped = {d["date"]: d["reason"] for d in meta["dropped_dates"]}
    bad4, bad7 = (sim.dates[k].isoformat() for k in (4, 7))
    assert set(dropped) == {bad4, bad7}
    assert dropped[bad4].startswith("unreadable") and "non-finite" in dropped[bad7]
    assert len(meta["dates"]) == DATES - 2 and bad4 not in meta["dates"]
    with rasterio.open(root / "F9" / "ts" / "timeseries.tif") as ds:
        assert ds.count == DATES - 2
    doc = campaign_status(state, cid)
    assert doc["totals"]["dropped_dates"] == 2
    assert bad4 in format_status(doc)


def test_chunked_inversion_equals_one_chunk(state, tmp_path):
    spec = _spec(tmp_path / "out", [{"id": "F1", "track": 5}], neighbours=3)
    cid, root, _ = register(state, spec)
    job = frame_job(spec, cid, root, "F1")
    info = ingest(job)
    for name in info["pair_names"]:
        steps_mod.run_pair(job, info, name)
    one = invert(job, info, rows=10_000)
    assert one["chunks"] == 1
    ref = {n: rasterio.open(root / "F1" / "ts" / f"{n}.tif").read()
           for n in ("velocity", "timeseries", "temporal_coherence", "misclosure")}
    shutil.rmtree(root / "F1" / "ts")
    many = invert(job, info, rows=5)
    assert many["chunks"] == 5  # 24 rows in chunks of 5
    worst = 0.0
    for n, a in ref.items():
        b = rasterio.open(root / "F1" / "ts" / f"{n}.tif").read()
        assert np.array_equal(np.isnan(a), np.isnan(b)), n
        worst = max(worst, float(np.nanmax(np.abs(a - b))))
    print(f"\nchunked (5 chunks) vs one chunk: max |difference| {worst:.3g}")
    assert worst <= 1e-7


@pytest.mark.slow
def test_frame_larger_than_memory_limit_stays_under_it(tmp_path):
    """Scaled-down memory check: a 2.1 GiB stack under a 550 MiB limit (peak RSS).

    The full-size case (2.9 GiB under 1 GiB) is ``benchmarks/bench_campaign_memory.py``.
    """
    script = Path(__file__).parents[1] / "benchmarks" / "bench_campaign_memory.py"
    out = subprocess.run([sys.executable, str(script), "--size", "512", "--tile", "6",
                          "--dates", "30", "--memory-limit", "550MB", "--looks", "8",
                          "--neighbours", "1",
                          "--work", str(tmp_path / "mem"), "--json"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nstack {doc['stack_mb']:.0f} MB, limit {doc['limit_mb']:.0f} MB: peak RSS "
          f"{doc['peak_rss_mb']:.0f} MB, {doc['chunks']} chunk(s), {doc['seconds']:.1f} s")
    assert doc["stack_mb"] > 3 * doc["limit_mb"]
    assert doc["chunks"] > 1
    assert doc["peak_rss_mb"] < doc["limit_mb"]


TINY = {"simulation": {"dates": 8, "size": 32, "seed": 3},
        "network": {"mode": "nearest", "neighbours": 2}}


@pytest.fixture
def gdm_home(tmp_path, monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GDM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_cli_start_stop_resume_status_report(gdm_home, tmp_path):
    import yaml
    from click.testing import CliRunner

    from gdm.cli import main

    spec = {"name": "cli", "start": "2023-01-01", "end": "2023-12-31",
            "frames": [{"id": "F1", "track": 3}, {"id": "F2", "track": 4}], **TINY}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**spec, "colour": "red"}))
    res = runner.invoke(main, ["campaign", "start", str(bad), "--local"])
    assert res.exit_code == 2 and "colour: Extra inputs are not permitted" in res.output
    res = runner.invoke(main, ["campaign", "status", "nope"])
    assert res.exit_code == 2 and "no campaign 'nope'" in res.output
    # register, stop before anything runs: no step runs; resume finishes it
    from flatsim import register
    from flatsim.state import get_state
    from workflows.settings import get_settings

    state = get_state(get_settings().database_url)
    cid, root, _ = register(state, load_spec(spec), get_settings().products_dir)
    res = runner.invoke(main, ["campaign", "stop", cid])
    assert res.exit_code == 0 and "stopped" in res.output
    out = run_frame_local(state, frame_job(load_spec(spec), cid, root, "F1"))
    assert out["status"] == "stopped" and not (root / "F1" / "ingest.json").exists()
    res = runner.invoke(main, ["campaign", "resume", cid, "--local"])
    assert res.exit_code == 0 and f"campaign {cid}: done" in res.output
    res = runner.invoke(main, ["campaign", "status", cid])
    assert res.exit_code == 0, res.output
    assert "(finished)" in res.output and "100%" in res.output
    assert "F1" in res.output and "F2" in res.output and "13/13" in res.output
    # once finished, no ETA: the time it finished, the same at every call
    assert "; finished 20" in res.output and "ETA" not in res.output
    again = runner.invoke(main, ["campaign", "status", cid])
    assert again.output.splitlines()[1] == res.output.splitlines()[1]
    res = runner.invoke(main, ["campaign", "status"])
    assert cid in res.output and "frames 2/2" in res.output
    res = runner.invoke(main, ["campaign", "report", cid])
    assert res.exit_code == 0
    index = Path(res.output.strip())
    assert index.is_file() and (index.parent / "velocity_overview.png").stat().st_size > 5000
    # styled like the site, frames on a map, one unit system, no ETA once finished
    html = index.read_text()
    assert "<header class='top'>" in html and "frames_map.png" in html
    assert (index.parent / "frames_map.png").stat().st_size > 5000
    assert "mm/yr" in html and "metres (per year)" not in html
    assert "Estimated completion" not in html
    assert (index.parent / "F1_interferograms.png").is_file()
    # the same spec started again is the same campaign: nothing is recomputed
    res = runner.invoke(main, ["campaign", "start", str(path), "--local"])
    assert res.exit_code == 0 and cid in res.output
    rows = state.steps(cid)
    assert len(rows) == 2 * (1 + 13 + 2) and all(r["status"] == "done" for r in rows)
    # the web pages
    from wps.app import create_app

    client = create_app(get_settings()).test_client()
    assert cid.encode() in client.get("/campaigns").data
    page = client.get(f"/campaigns/{cid}")
    assert page.status_code == 200 and b"F2" in page.data and b"report" in page.data
    assert b"ETA" not in page.data and b'id="campaign-map"' in page.data
    frames = client.get(f"/campaigns/{cid}/frames.geojson").get_json()
    assert sorted(f["properties"]["id"] for f in frames["features"]) == ["F1", "F2"]
    assert all(f["properties"]["status"] == "done" for f in frames["features"])
    js = client.get(f"/campaigns/{cid}/status").get_json()
    assert js["totals"]["frames_done"] == 2 and js["progress"] == pytest.approx(1.0)
    assert client.get("/campaigns/nope/status").status_code == 404
    report = client.get(f"/campaigns/{cid}/report/index.html")
    assert report.status_code == 200 and b"velocity_overview.png" in report.data
    report.close()


def test_process_inline_returns_product_references(gdm_home, tmp_path):
    from flatsim.process import PROCESS as FLATSIM_PROCESS
    from gdmio.process import JobContext

    seen: list[float] = []
    ctx = JobContext("job-1", tmp_path / "job", tmp_path / "uploads",
                     progress=lambda f, m: seen.append(f))
    inputs = FLATSIM_PROCESS.validate_inputs({
        "name": "proc", "start": "2023-01-01", "end": "2023-12-31",
        "frames": [{"id": "F1", "track": 3}], **TINY})
    out = FLATSIM_PROCESS.execute(inputs, ctx)
    assert seen[-1] == 1.0 and out["summary"]["frames_done"] == 1
    for rel in (out["catalog"], out["report"], out["frames"]["F1"]["velocity"],
                out["frames"]["F1"]["metadata"]):
        assert (ctx.workdir / rel).is_file(), rel
    assert set(out) == set(FLATSIM_PROCESS.outputs)


def test_process_refuses_server_paths(gdm_home, tmp_path):
    from flatsim.process import PROCESS as FLATSIM_PROCESS
    from gdmio.process import JobContext

    ctx = JobContext("job-2", tmp_path / "job", tmp_path / "uploads", progress=print)
    (tmp_path / "uploads" / "mystack").mkdir(parents=True)
    for path, message in (("/etc", "refused stack folder '/etc'"),
                          ("../x", "refused stack folder '../x'"),
                          ("other", "no uploaded folder named 'other'")):
        inputs = FLATSIM_PROCESS.validate_inputs({
            "name": "p", "start": "2023-01-01", "end": "2023-12-31",
            "frames": [{"id": "F1", "track": 3, "source": "folder", "path": path}]})
        with pytest.raises(InputError, match=message):
            FLATSIM_PROCESS.execute(inputs, ctx)
    assert not (ctx.workdir / "products").exists()


def test_celery_pair_task_retries_once_then_records_the_failure(gdm_home, monkeypatch):
    import workflows.campaign_tasks as ct
    from flatsim.state import get_state
    from workflows.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    monkeypatch.setitem(ct.app.conf, "gdm_settings", settings)
    state = get_state(settings.database_url)
    spec = load_spec({"name": "eager", "start": "2023-01-01", "end": "2023-12-31",
                      "frames": [{"id": "F1", "track": 3}], **TINY})
    cid, root, _ = register(state, spec, settings.products_dir)
    job = frame_job(spec, cid, root, "F1")
    info = ingest(job)
    state.ensure_steps(steps_mod.frame_plan(job, info))
    bad, good = info["pair_names"][:2]
    calls: list[str] = []
    real = pairs_mod.unwrap

    def broken(phase, *args, **kwargs):
        calls.append("x")
        if len(calls) <= 2:
            raise RuntimeError("unwrapper crashed")
        return real(phase, *args, **kwargs)

    monkeypatch.setattr(pairs_mod, "unwrap", broken)
    out = ct.pair_task.apply(args=(cid, "F1", bad)).get()
    assert out == {"pair": bad, "status": "failed"} and len(calls) == 2  # one Celery retry
    row = state.step(f"{cid}/F1/pair/{bad}")
    assert row["status"] == "failed" and row["failures"] == 2 and row["attempts"] == 2
    # a redelivered message for it does not try again; other pairs are unaffected
    assert ct.pair_task.apply(args=(cid, "F1", bad)).get()["status"] == "failed"
    assert ct.pair_task.apply(args=(cid, "F1", good)).get() == {"pair": good,
                                                               "status": "done"}
    assert len(calls) == 3
    assert ct._unfinished_pairs(state, job, info) == info["pair_names"][2:]


def test_a_long_ingestion_beats_so_the_watchdog_does_not_resume_it(state, tmp_path,
                                                                   monkeypatch):
    spec = _spec(tmp_path / "out", [{"id": "F1", "track": 5}])
    cid, _, _ = register(state, spec)
    beats = []
    monkeypatch.setattr(steps_mod, "HEARTBEAT_S", 0.05)
    progress = steps_mod._throttled(lambda: beats.append(time.monotonic()))
    for k in range(40):
        progress(k / 40, "block")
        time.sleep(0.01)
    assert 3 <= len(beats) <= 10  # throttled: about one beat per HEARTBEAT_S
    assert steps_mod._throttled(None) is None
    old = state.last_activity(cid)
    cutoff = old + dt.timedelta(seconds=1)
    time.sleep(1.1)
    state.touch_campaign(cid)  # the heartbeat
    assert state.last_activity(cid) > cutoff
    assert not state.claim_stalled(cid, cutoff)  # alive: the watchdog leaves it alone
