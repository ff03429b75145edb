"""Interferograms of the project's own SLC path, fed back through gdm sar timeseries."""

import json

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform as warp_transform

from gdm_sar.config import SarConfig
from gdm_sar.pipeline import run
from gdm_sar.timeseries import TimeseriesConfig, run_timeseries
from kernels.insar import multilook
from simulators.sar import SimulateSarConfig, simulate


@pytest.mark.slow
def test_same_velocity_as_gdm_sar_run(tmp_path):
    sim = simulate(SimulateSarConfig(out=tmp_path / "sim", dates=12, size=192, seed=3))
    ref = run(SarConfig(stack=sim.stack_dir, out=tmp_path / "run"))
    doc = json.loads(ref.report.read_text())
    r, c = doc["reference_pixel"]["row"], doc["reference_pixel"]["col"]
    with rasterio.open(ref.velocity) as ds:
        v_run = ds.read(1)
        x, y = ds.transform * (c + 0.5, r + 0.5)
        lon, lat = (v[0] for v in warp_transform(ds.crs, "EPSG:4326", [x], [y]))
    with rasterio.open(sim.truth_dir / "velocity.tif") as ds:
        truth = multilook(ds.read(1).astype(np.float32), (2, 2))

    def truth_rms(v):
        d = v - truth
        d = d[np.isfinite(d)]
        return float(np.sqrt(np.mean((d - np.median(d)) ** 2))) * 1000

    # gdm sar run writes its series as CF NetCDF too (the SAR steps' writer seam)
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    with xr.open_dataset(tmp_path / "run" / "timeseries.nc", decode_coords="all") as nc:
        assert nc["displacement"].dims == ("time", "y", "x")
        assert nc["displacement"].shape[0] == 12
        np.testing.assert_array_equal(nc["velocity"].values, v_run)
        assert nc["velocity"].rio.crs is not None

    results = {}
    for closure in (False, True):
        out = run_timeseries(TimeseriesConfig(
            interferograms=[tmp_path / "run" / "interferograms"],
            out=tmp_path / f"ts{int(closure)}", reference=(lon, lat),
            closure_correction=closure, min_unwrapped_fraction=0.0,
            max_misclosure_fraction=1.0))
        rep = json.loads(out.report.read_text())
        assert (rep["reference"]["row"], rep["reference"]["col"]) == (r, c)
        assert rep["dem_error_estimated"] == doc["inversion"]["dem_error_estimated"]
        with rasterio.open(out.velocity) as ds:
            v_ts = ds.read(1)
        both = np.isfinite(v_run) & np.isfinite(v_ts)
        rms = float(np.sqrt(np.mean((v_ts - v_run)[both] ** 2))) * 1000
        results[closure] = rms
        print(f"  RMSE against the simulator's truth: run {truth_rms(v_run):.3f} mm/yr, "
              f"timeseries {truth_rms(v_ts):.3f} mm/yr")
        results[f"truth{closure}"] = truth_rms(v_ts)
        print(f"closure correction {closure}: RMS difference {rms:.5f} mm/yr on "
              f"{both.sum()} pixels; valid run {np.isfinite(v_run).sum()}, "
              f"timeseries {np.isfinite(v_ts).sum()}")
        assert both.sum() > 0.9 * np.isfinite(v_run).sum()
    assert results[False] < 0.01  # mm/yr: the same inversion (issue target 0.1)
    # closure correction only changes pixels where the run's unwrapping left whole
    # cycles; it must not move the velocity away from the truth
    assert results["truthTrue"] <= truth_rms(v_run) + 0.05
