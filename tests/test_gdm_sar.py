"""GDM-SAR end to end on simulated stacks, against their truth (CLI: test_cli_sar)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from gdm_sar.config import SarConfig
from gdm_sar.pipeline import run
from gdmio.cog import validate_cog
from insar.stack import read_stack
from kernels.insar import multilook
from simulators.sar import SimulateSarConfig, simulate

LOOKS = (2, 2)


def _read(path, band=None):
    with rasterio.open(path) as ds:
        return ds.read() if band is None else ds.read(band)


@pytest.fixture(scope="module")
def sim24(tmp_path_factory):
    root = tmp_path_factory.mktemp("sar24")
    return simulate(SimulateSarConfig(out=root / "sim", dates=24, size=384, seed=1))


@pytest.fixture(scope="module")
def run24(sim24, tmp_path_factory):
    out = tmp_path_factory.mktemp("sar24out") / "products"
    return run(SarConfig(stack=sim24.stack_dir, out=out))


def _stable_ml(sim):
    return multilook(_read(sim.truth_dir / "stable.tif", 1).astype(np.float32), LOOKS) > 0.99


@pytest.mark.slow
def test_velocity_and_series_match_truth(sim24, run24):
    v = _read(run24.velocity, 1)
    vt = multilook(_read(sim24.truth_dir / "velocity.tif", 1), LOOKS)
    stable = _stable_ml(sim24)
    ok = np.isfinite(v)
    assert ok.mean() > 0.9, f"only {ok.mean():.1%} of pixels kept"
    err = v - vt
    err -= np.median(err[ok & stable])  # referenced to the stable area
    rmse_v = float(np.sqrt(np.mean(err[ok] ** 2)))
    assert rmse_v <= 0.002, f"velocity RMSE {rmse_v * 1000:.2f} mm/yr"

    ts = _read(run24.timeseries)
    tt = np.stack([multilook(b, LOOKS) for b in _read(sim24.truth_dir / "timeseries.tif")])
    assert ts.shape == tt.shape
    sq = []
    for k in range(ts.shape[0]):
        e = ts[k] - tt[k]
        e -= np.median(e[ok & stable])
        sq.append(np.mean(e[ok] ** 2))
    rmse_ts = float(np.sqrt(np.mean(sq)))
    assert rmse_ts <= 0.005, f"time-series RMSE {rmse_ts * 1000:.2f} mm"
    print(f"\nvelocity RMSE {rmse_v * 1000:.2f} mm/yr, time-series RMSE "
          f"{rmse_ts * 1000:.2f} mm, {ok.mean():.1%} of pixels kept")


@pytest.mark.slow
def test_products_have_the_fixed_names_and_are_cogs(sim24, run24):
    out = run24.out_dir
    for name in ("velocity.tif", "timeseries.tif", "velocity_std.tif",
                 "temporal_coherence.tif", "item.json", "velocity.png", "network.png"):
        assert (out / name).is_file(), name
    for name in ("velocity.tif", "timeseries.tif", "temporal_coherence.tif"):
        valid, errors, _ = validate_cog(out / name)
        assert valid, (name, errors)
    with rasterio.open(out / "timeseries.tif") as ds:
        assert list(ds.descriptions) == [d.isoformat() for d in sim24.dates]
        assert ds.read(1)[np.isfinite(ds.read(1))].max() == 0.0  # relative to the first date
    pairs = sorted(p.name for p in (out / "interferograms").iterdir())
    report = json.loads((out / "report.json").read_text())
    assert len(pairs) == len(report["network"]["pairs"]) == 24 * 3 - 6
    first = out / "interferograms" / pairs[0]
    assert pairs[0] == f"{sim24.dates[0]:%Y%m%d}_{sim24.dates[1]:%Y%m%d}"
    for name in ("wrapped", "unwrapped", "coherence", "conncomp"):
        assert (first / f"{name}.tif").is_file()
    unw, wrapped = _read(first / "unwrapped.tif", 1), _read(first / "wrapped.tif", 1)
    both = np.isfinite(unw) & np.isfinite(wrapped)
    cycles = (unw - wrapped)[both] / (2 * np.pi)
    # Congruent up to the reference value subtracted from the whole interferogram.
    frac = cycles - np.round(cycles)
    assert np.ptp(frac) < 1e-3
    assert report["inversion"]["unwrapping_error_fraction"] < 0.01
    assert not list(out.parent.glob(".*partial*"))


@pytest.mark.slow
def test_dem_error_and_velocity_uncertainty(sim24, run24):
    stable = _stable_ml(sim24)
    dz = _read(run24.dem_error, 1)
    dzt = multilook(_read(sim24.truth_dir / "dem_error.tif", 1), LOOKS)
    ok = np.isfinite(dz)
    err = dz - dzt
    err -= np.median(err[ok & stable])  # relative to the reference, like every product
    rmse_dz = float(np.sqrt(np.mean(err[ok] ** 2)))
    assert rmse_dz < 0.4 * dzt.std(), f"DEM error RMSE {rmse_dz:.1f} m"
    # velocity_std is an honest 1-sigma: about 68 % / 95 % of the errors within 1 / 2 sigma
    v, sd = _read(run24.velocity, 1), _read(run24.velocity_std, 1)
    e = v - multilook(_read(sim24.truth_dir / "velocity.tif", 1), LOOKS)
    ok = np.isfinite(v)
    e -= np.median(e[ok & stable])
    within1 = float(np.mean(np.abs(e[ok]) < sd[ok]))
    within2 = float(np.mean(np.abs(e[ok]) < 2 * sd[ok]))
    assert 0.5 < within1 < 0.85 and within2 > 0.85, (within1, within2)
    print(f"\nDEM error RMSE {rmse_dz:.1f} m (truth std {dzt.std():.1f} m); "
          f"{within1:.0%} of velocity errors within 1 sigma, {within2:.0%} within 2")


@pytest.mark.slow
def test_no_deformation_gives_no_velocity(tmp_path):
    """The processing adds no velocity of its own: a stable 24-date 384^2 stack with DEM
    error, decorrelation and speckle but no atmosphere (a turbulent delay new at each
    date is noise the velocity cannot average out over 9 months: 1.5 mm per date gives
    ~1.2 mm/yr mean |velocity| with any estimator)."""
    sim = simulate(SimulateSarConfig(out=tmp_path / "sim", dates=24, size=384,
                                     deformation="none", atmosphere_m=0.0, seed=5))
    out = run(SarConfig(stack=sim.stack_dir, out=tmp_path / "out"))
    v = _read(out.velocity, 1)
    assert np.isfinite(v).mean() > 0.9
    mean_abs = float(np.nanmean(np.abs(v)))  # as published: relative to the reference pixel
    assert mean_abs < 0.001, f"mean |velocity| {mean_abs * 1000:.2f} mm/yr"
    print(f"\nno deformation: mean |velocity| {mean_abs * 1000:.2f} mm/yr")


def test_stack_reader_checks_the_convention(tmp_path):
    sim = simulate(SimulateSarConfig(out=tmp_path / "sim", dates=3, size=64))
    stack = read_stack(sim.stack_dir)
    assert stack.dates == sim.dates
    assert stack.bperp[0] == 0.0 and stack.width == 64
    assert abs(stack.wavelength - 0.05546576) < 1e-9


def test_gdm_sar_process_runs_on_uploaded_slcs(tmp_path):
    from gdmio.process import JobContext
    from workflows.processes import get_process

    sim = simulate(SimulateSarConfig(out=tmp_path / "sim", dates=4, size=64))
    uploads = tmp_path / "uploads"
    sim.stack_dir.rename(uploads)
    names = sorted(p.name for p in uploads.iterdir())
    spec = get_process("gdm-sar")
    schema = spec.inputs_model.model_json_schema()
    assert {"slcs", "network", "neighbours", "unwrapper", "dem_error"} <= set(schema["properties"])
    assert not {"stack", "out", "block_mb"} & set(schema["properties"])  # server-side only
    inputs = spec.validate_inputs({"slcs": names, "network": "all", "filter_alpha": 0.0})
    seen = []
    ctx = JobContext(job_id="j", workdir=tmp_path / "work", uploads_dir=uploads,
                     progress=lambda f, m: seen.append(f))
    result = spec.execute(inputs, ctx)
    assert set(result) >= {"velocity", "timeseries", "velocity_std", "temporal_coherence",
                           "item", "report", "quicklooks"}
    for key in ("velocity", "timeseries", "item"):
        assert (ctx.workdir / result[key]).is_file()
    report = json.loads((ctx.workdir / result["report"]).read_text())
    assert len(report["network"]["pairs"]) == 6
    assert seen[-1] == 1.0 and seen == sorted(seen)
