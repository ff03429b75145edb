"""FLATSIM frames from the Sentinel-1 archive: a local archive (fake CMR + datapool, orbit
bucket, DEM bucket) serving simulated SAFE products of three subswaths, cut into two
slices per date, with a DEM in EGM2008 heights; the campaign searches, fetches, ingests
(slices joined, subswaths merged, bursts streamed), processes at FLATSIM-like looks and
delivers radar and map products; the truth is recovered."""

from __future__ import annotations

import datetime as dt
import io
import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject

from flatsim import register
from flatsim.spec import load_spec
from flatsim.state import CampaignState
from flatsim.steps import run_campaign_local
from gdmio.providers.dem import tile_name
from simulators.sar_safe import SimulateSafeConfig, map_velocity_error, simulate_safe
from tests.fakeasf import running_asf
from tests.fakes3 import running_bucket

N = 500  # DEM tile pixels per degree (the simulated DEM's 0.002 degree spacing)


def _dem_tiles(dem_path) -> dict[str, bytes]:
    """The simulated DEM cut into GLO-30-like 1-degree tiles (edges extended)."""
    with rasterio.open(dem_path) as src:
        data, tr, crs = src.read(1), src.transform, src.crs
        w, s, e, n = src.bounds
    tiles = {}
    for lat in range(int(np.floor(s)), int(np.floor(n)) + 1):
        for lon in range(int(np.floor(w)), int(np.floor(e)) + 1):
            dst = np.full((N, N), np.nan, np.float32)
            reproject(data, dst, src_transform=tr, src_crs=crs,
                      dst_transform=from_origin(lon, lat + 1, 1 / N, 1 / N), dst_crs=crs,
                      resampling=Resampling.nearest, dst_nodata=np.nan)
            if not np.isfinite(dst).any():
                continue
            dst[~np.isfinite(dst)] = float(np.nanmean(dst))
            buf = io.BytesIO()
            with rasterio.MemoryFile() as mem:
                with mem.open(driver="GTiff", width=N, height=N, count=1, dtype="float32",
                              crs=crs, transform=from_origin(lon, lat + 1, 1 / N, 1 / N),
                              tiled=True, blockxsize=128, blockysize=128) as ds:
                    ds.write(dst, 1)
                buf.write(mem.read())
            name = tile_name(lat, lon)
            tiles[f"{name}/{name}.tif"] = buf.getvalue()
    return tiles


@pytest.mark.slow
def test_archive_frame_three_subswaths_two_slices_truth(tmp_path, monkeypatch):
    sim = simulate_safe(SimulateSafeConfig(
        out=tmp_path / "sim", dates=6, bursts=4, samples=128, swaths=3, swath_overlap=40,
        slices=2, dem_datum="EGM2008", zip=True, seed=4))
    assert len(sim.products) == 12  # 6 dates x 2 slices
    with rasterio.open(sim.dem) as ds:
        w, s, e, n = ds.bounds
    lon, lat = sim.truth["velocity_model"]["lon"], sim.truth["velocity_model"]["lat"]
    with running_asf() as asf, running_bucket() as orbits, running_bucket() as dems:
        for eof in sim.orbit_dir.glob("*.EOF"):
            orbits.put(f"AUX_POEORB/{eof.name}", eof.read_bytes())
        for key, data in _dem_tiles(sim.dem).items():
            dems.put(key, data)
        for path in sim.products:
            start = dt.datetime.strptime(path.stem.split("_")[5], "%Y%m%dT%H%M%S")
            asf.add_slc(start.replace(tzinfo=dt.UTC), (w, s, e, n), direction="DESCENDING",
                        path=37, name=path.stem, data=path.read_bytes())
        monkeypatch.setenv("GDM_ASF_URL", asf.url)
        monkeypatch.setenv("GDM_ORBIT_URL", orbits.url)
        monkeypatch.setenv("GDM_DEM_URL", dems.url)
        monkeypatch.setenv("GDM_SCENE_CACHE", str(tmp_path / "cache"))
        spec = load_spec({
            "name": "arch", "start": "2023-03-01", "end": "2023-05-31",
            "frames": [{"id": "D037_N45", "track": 37, "pass_direction": "descending",
                        "source": "archive",
                        "bbox": [lon - 0.3, lat - 0.25, lon + 0.3, lat + 0.25]}],
            "network": {"mode": "nearest", "neighbours": 3},
            "processing": {"azimuth_looks": 1, "range_looks": 1, "series_looks": 2},
            "archive": {"block_lines": 96}, "min_dates": 5, "out": str(tmp_path / "out")})
        state = CampaignState(f"sqlite:///{tmp_path / 'state.sqlite'}")
        cid, root, _ = register(state, spec)
        res = run_campaign_local(state, spec, cid, root)
    assert res["status"] == "done", res
    frame = root / "D037_N45"
    rep = json.loads((frame / "slc" / "ingest_report.json").read_text())
    assert rep["slices_per_date"] == [2] * 6 and rep["swath"] == "IW1,IW2,IW3"
    assert all(o.startswith("EOF") or "POEORB" in o for o in rep["orbits"]), rep["orbits"]
    assert "EGM2008 heights converted" in rep["dem"]
    steps = [c["phase_step_rad"] for c in rep["swath_continuity"]]
    assert len(steps) == 2 * 5 and max(abs(x) for x in steps) < 0.1, steps
    # truth: the geocoded velocity on both map grids
    for grid in ("utm", "wgs84"):
        rmse, n_px = map_velocity_error(frame / "geocoded" / grid / "velocity.tif", sim.truth)
        print(f"\narchive frame, {grid}: velocity RMSE {rmse * 1000:.2f} mm/yr over {n_px} "
              "pixels; subswath phase steps "
              f"{max(abs(x) for x in steps):.3f} rad at most")
        assert n_px > 500 and rmse <= 0.002
    # products listed in the STAC item: radar and map grids, LUTs, LOS, DEM, interferograms
    item = json.loads((frame / "item.json").read_text())
    keys = set(item["assets"])
    for name in ("velocity", "timeseries", "temporal_coherence"):
        assert name in keys and f"{name}_utm" in keys and f"{name}_wgs84" in keys
    for name in ("radar_row", "radar_col", "los_east", "los_north", "los_up", "height"):
        assert f"{name}_utm" in keys and f"{name}_wgs84" in keys
    for name in ("latitude", "longitude", "los_east", "los_north", "los_up", "height"):
        assert f"{name}_radar" in keys
    pair = json.loads((frame / "metadata.json").read_text())
    first = next(k for k in keys if k.startswith("interferograms_") and k.endswith(
        "_wrapped_fine_utm"))
    assert (frame / item["assets"][first]["href"]).is_file()
    assert pair["interferogram_looks"] == [1, 1] and pair["looks"] == [2, 2]
    # the LOS vector (ground to satellite) is a unit vector; a right-looking descending
    # track looks west, so the satellite is up and to the east
    with rasterio.open(frame / "geometry" / "los_up.tif") as ds:
        up = ds.read(1)
    with rasterio.open(frame / "geometry" / "los_east.tif") as ds:
        east = ds.read(1)
    with rasterio.open(frame / "geometry" / "los_north.tif") as ds:
        north = ds.read(1)
    norm = np.sqrt(up ** 2 + east ** 2 + north ** 2)
    assert np.allclose(norm[np.isfinite(norm)], 1.0, atol=1e-5)
    assert np.nanmin(up) > 0.5 and np.nanmin(east) > 0  # looking west: satellite east


REDIS_DB = 13


@pytest.fixture
def archive(tmp_path_factory):
    """A small archive frame (3 subswaths, 2 slices a date) served by local fakes."""
    root = tmp_path_factory.mktemp("arch")
    sim = simulate_safe(SimulateSafeConfig(
        out=root / "sim", dates=6, bursts=2, samples=96, swaths=3, swath_overlap=32,
        slices=2, dem_datum="EGM2008", zip=True, seed=6))
    with rasterio.open(sim.dem) as ds:
        w, s, e, n = ds.bounds
    with running_asf() as asf, running_bucket() as orbits, running_bucket() as dems:
        for eof in sim.orbit_dir.glob("*.EOF"):
            orbits.put(f"AUX_POEORB/{eof.name}", eof.read_bytes())
        for key, data in _dem_tiles(sim.dem).items():
            dems.put(key, data)
        for path in sim.products:
            start = dt.datetime.strptime(path.stem.split("_")[5], "%Y%m%dT%H%M%S")
            asf.add_slc(start.replace(tzinfo=dt.UTC), (w, s, e, n), direction="DESCENDING",
                        path=37, name=path.stem, data=path.read_bytes())
        yield sim, {"GDM_ASF_URL": asf.url, "GDM_ORBIT_URL": orbits.url,
                    "GDM_DEM_URL": dems.url}


@pytest.mark.slow
@pytest.mark.integration
def test_archive_campaign_kill9_of_a_worker_resumes_with_identical_products(
        archive, tmp_path, monkeypatch):
    """Two Celery workers on Redis; one is killed with -9 while the frame's ingestion (the
    longest step) runs; the watchdog resumes the campaign; every product (radar and
    geocoded) equals an uninterrupted run's, byte for byte of data."""
    import os
    import signal
    import time
    import uuid

    import redis

    from flatsim.monitor import campaign_status
    from flatsim.state import get_state
    from flatsim.steps import raster_sha256
    from workflows.campaign_tasks import start
    from workflows.settings import get_settings
    from workflows.worker import start_worker, stop_worker, wait_ready

    sim, urls = archive
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    env = {"GDM_HOME": str(tmp_path / "home"), "GDM_BROKER_URL": url,
           "GDM_RESULT_BACKEND": url, "GDM_QUEUE_PREFIX": f"fa{uuid.uuid4().hex[:8]}-",
           "GDM_VISIBILITY_TIMEOUT": "6", "GDM_LEASE_SECONDS": "5",
           "GDM_CAMPAIGN_STALL_SECONDS": "15", "GDM_SCENE_CACHE": str(tmp_path / "cache"),
           **urls}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = get_settings()
    settings.ensure_dirs()
    state = get_state(settings.database_url)
    lon, lat = sim.truth["velocity_model"]["lon"], sim.truth["velocity_model"]["lat"]

    def spec(name: str) -> dict:
        return load_spec({
            "name": name, "start": "2023-03-01", "end": "2023-05-31",
            "frames": [{"id": "D037", "track": 37, "pass_direction": "descending",
                        "source": "archive",
                        "bbox": [lon - 0.3, lat - 0.25, lon + 0.3, lat + 0.25]}],
            "network": {"mode": "nearest", "neighbours": 2},
            "processing": {"azimuth_looks": 1, "range_looks": 1, "series_looks": 2},
            "products": ["timeseries", "velocity", "quality", "stac"],
            "archive": {"block_lines": 64}, "min_dates": 5, "out": str(tmp_path / name)})

    def workers(n: int) -> list:
        procs = []
        for k in range(n):
            ready = settings.home / f"w{k}-{uuid.uuid4().hex[:4]}.ready"
            procs.append((start_worker("batch", env=env, ready_file=ready,
                                       log_file=settings.home / f"w{k}.log",
                                       loglevel="WARNING"), ready))
        for p, ready in procs:
            wait_ready(ready, p, timeout=120)
        return [p for p, _ in procs]

    def finished(cid: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if state.campaign(cid)["status"].startswith("finished"):
                return campaign_status(state, cid)
            time.sleep(0.5)
        raise AssertionError(f"campaign {cid} not finished: "
                             f"{campaign_status(state, cid)['totals']}")

    procs = workers(2)
    try:
        cid_a, _, _ = start(spec("ref"))
        doc_a = finished(cid_a, 900)
        cid_b, _, _ = start(spec("killed"))
        deadline = time.monotonic() + 300
        victim = None
        while victim is None:
            assert time.monotonic() < deadline, "the ingestion never started"
            rows = [r for r in state.steps(cid_b) if r["kind"] == "ingest"
                    and r["status"] == "running" and r["worker"]]
            if rows:
                pid = int(rows[0]["worker"].rsplit(":", 1)[1])
                victim = next((p for p in procs if p.pid == pid), None) or pid
            time.sleep(0.2)
        time.sleep(0.5)  # into the ingestion, well before its end
        running = [r for r in state.steps(cid_b) if r["kind"] == "ingest"]
        assert running[0]["status"] == "running", running  # the kill lands mid-step
        pid = victim.pid if hasattr(victim, "pid") else victim
        os.kill(pid, signal.SIGKILL)
        if hasattr(victim, "wait"):
            victim.wait(10)
            procs = [p for p in procs if p is not victim] + workers(1)
        doc_b = finished(cid_b, 900)
    finally:
        for p in procs:
            stop_worker(p, timeout=5)
        client.flushdb()
        client.close()
    assert doc_a["status"] == doc_b["status"] == "finished"
    ingest_b = next(r for r in state.steps(cid_b) if r["kind"] == "ingest")
    assert ingest_b["attempts"] >= 2  # the killed ingestion was run again
    a, b = tmp_path / "ref" / "D037", tmp_path / "killed" / "D037"
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*.tif")
                   if "slc" not in p.parts and "stack" not in p.parts)
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*.tif")
                           if "slc" not in p.parts and "stack" not in p.parts)
    assert any(n.startswith("geocoded/utm/") for n in names)
    differ = [n for n in names if raster_sha256(a / n) != raster_sha256(b / n)]
    assert not differ, differ
    print(f"\narchive frame killed in its ingestion ({ingest_b['attempts']} attempts): "
          f"{len(names)} rasters identical to the uninterrupted run")
