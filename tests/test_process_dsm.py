"""The dsm-opt process (dsm_opt/process.py) executed in-process with a JobContext."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio

from dsm_opt.pipeline import NODATA
from dsm_opt.process import PROCESS as DSM_OPT_PROCESS
from gdmcore import InputError
from gdmio.process import JobContext
from simulators.dsm import SimulateDsmConfig, simulate


def _ctx(tmp_path, uploads):
    events = []
    ctx = JobContext(job_id="j1", workdir=tmp_path / "work", uploads_dir=uploads,
                     progress=lambda f, m: events.append((f, m)))
    return ctx, events


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsm_process")
    sim = simulate(SimulateDsmConfig(out=root / "sim", size=128, seed=21))
    up = root / "uploads"
    up.mkdir()
    for p in sim.images:
        shutil.copy(p, up / p.name)
    return up, [p.name for p in sim.images], sim


def test_process_runs_and_returns_products(tmp_path, uploads):
    up, names, sim = uploads
    spec = DSM_OPT_PROCESS
    assert spec.id == "dsm-opt"
    schemas = spec.input_schemas()
    assert {"images", "preset", "resolution", "height_min", "fill_holes"} <= set(schemas)
    assert "out" not in schemas and "catalogue" not in schemas  # server-side paths
    inputs = spec.validate_inputs({"images": names, "preset": "urban", "resolution": 0.5})
    ctx, events = _ctx(tmp_path, up)
    result = spec.execute(inputs, ctx)
    assert set(result) >= {"dsm", "ortho", "count", "quicklook", "item", "report"}
    assert set(result) <= set(spec.outputs) | {"quicklooks"}  # the thumbnails list
    dsm = ctx.workdir / result["dsm"]
    with rasterio.open(dsm) as ds:
        d = ds.read(1)
    with rasterio.open(sim.truth_dsm) as ds:
        hmin, hmax = float(ds.read(1).min()), float(ds.read(1).max())
    valid = d[d != NODATA]
    assert valid.size > 0.5 * d.size
    inside = np.mean((valid > hmin - 1.0) & (valid < hmax + 1.0))
    assert inside > 0.99, f"{inside:.1%} of heights within the truth's range"
    assert events[-1][0] == pytest.approx(1.0)
    report = json.loads((ctx.workdir / result["report"]).read_text())
    assert report["parameters"]["preset"] == "urban"


def test_process_refuses_bad_references_and_counts(tmp_path, uploads):
    up, names, _ = uploads
    spec = DSM_OPT_PROCESS
    with pytest.raises(Exception, match="at least 2"):
        spec.validate_inputs({"images": names[:1]})
    with pytest.raises(Exception, match="extra|not permitted|set by the service"):
        spec.validate_inputs({"images": names, "out": "/tmp/x"})
    inputs = spec.validate_inputs({"images": [names[0], "../etc/passwd"]})
    ctx, _ = _ctx(tmp_path, up)
    with pytest.raises(InputError, match="refused|no uploaded"):
        spec.execute(inputs, ctx)
    assert not (ctx.workdir / "products" / "dsm.tif").exists()


def test_dsm_opt_by_area_takes_the_registered_stereo_views(tmp_path, monkeypatch):
    """`scenes` picks the views of a registered delivery and hands them to run()."""
    import datetime as dt

    import dsm_opt.pipeline
    from gdmcore import InputError
    from gdmio.process import JobContext
    from gdmio.providers.pleiades import PleiadesIndex
    from tests.fakedimap import write_stereo_delivery
    from workflows.processes import get_process

    t = dt.datetime(2023, 4, 1, 10, 30, tzinfo=dt.UTC)
    cache = tmp_path / "cache"
    index = PleiadesIndex(cache / "pleiades.sqlite")
    index.register(write_stereo_delivery(tmp_path / "d1", t, (5.70, 45.10, 5.85, 45.22))[0]
                   .parents[2])
    seen = {}

    def fake_run(cfg, progress=None):
        seen["images"] = [p.name for p in cfg.images]
        raise InputError("stop here")

    monkeypatch.setattr(dsm_opt.pipeline, "run", fake_run)
    spec = get_process("dsm-opt")
    ctx = JobContext(job_id="j", workdir=tmp_path / "w", uploads_dir=tmp_path / "u",
                     progress=lambda f, m: None, scene_cache=cache)
    request = {"aoi": "5.75,45.15,5.76,45.16", "start": "2023-04-01", "end": "2023-04-02"}
    with pytest.raises(InputError, match="stop here"):
        spec.execute(spec.validate_inputs({"scenes": request}), ctx)
    assert seen["images"] == ["DIM_PHR1A_P_F.XML", "DIM_PHR1A_P_B.XML"]
    # a second acquisition in the same dates: 4 views is not one stereo acquisition
    from tests.fakedimap import write_view

    for k, name in enumerate(("PHR1B_P_F", "PHR1B_P_B")):
        write_view(tmp_path / "d2" / f"IMG_{k}", name, t + dt.timedelta(hours=5),
                   (5.70, 45.10, 5.85, 45.22), incidence=12.0, along=10.0 * (2 * k - 1))
    index.register(tmp_path / "d2")
    with pytest.raises(InputError, match="4 Pléiades views .* narrow the dates to one stereo"):
        spec.execute(spec.validate_inputs({"scenes": request}), ctx)
