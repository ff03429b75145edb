"""gdm sar timeseries: interferograms made elsewhere -> series, velocity, NetCDF."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from gdm_sar.timeseries import TimeseriesConfig, run_timeseries
from tests import insarfmt
from tests.datafiles import DATA


def _scene(dates=6, seed=0):
    """A bump rising 20 mm/yr... per 12 days (fast), k = 3 network, coherent."""
    return insarfmt.scene(ny=40, nx=48, dates=dates, seed=seed)


def _truth_velocity(dates, disp):
    t = np.array([(d - dates[0]).days / 365.25 for d in dates])
    tc = t - t.mean()
    return np.tensordot(tc, disp - disp.mean(axis=0), axes=(0, 0)) / (tc @ tc)


@pytest.mark.parametrize("fmt", ["HyP3", "ROI_PAC", "GAMMA", "LiCSAR", "FLATSIM", "ISCE2"])
def test_velocity_of_every_format(tmp_path, fmt):
    dates, disp, pairs, coh = _scene()
    insarfmt.WRITERS[fmt](tmp_path / "in", dates, disp, pairs, coh)
    out = run_timeseries(TimeseriesConfig(interferograms=[tmp_path / "in"],
                                          out=tmp_path / "out", dem_error=False))
    with rasterio.open(out.velocity) as ds:
        vel = ds.read(1)
    want = _truth_velocity(dates, disp)
    doc = json.loads(out.report.read_text())
    r, c = doc["reference"]["row"], doc["reference"]["col"]
    ok = np.isfinite(vel)
    assert ok.mean() > 0.9
    # same field up to the reference: positive towards the satellite
    err = (vel - vel[r, c]) - (want - want[r, c])
    assert np.sqrt(np.nanmean(err[ok] ** 2)) < 1e-5  # m/yr
    assert np.nanmax(vel) - vel[r, c] > 0.05  # the uplift comes out positive
    assert doc["dropped"] == []


def test_unwrapping_errors_screening_gnss_and_netcdf(tmp_path):
    xr = pytest.importorskip("xarray")
    dates, disp, pairs, coh = _scene(dates=8, seed=1)
    insarfmt.write_geotiff(tmp_path / "in", dates, disp, pairs, coh)
    files = sorted((tmp_path / "in").glob("ifg_*.tif"))
    # one pair with a patch of one-cycle unwrapping errors (corrected by closure)
    with rasterio.open(files[3], "r+") as ds:
        a = ds.read(1)
        a[5:15, 5:15] += 2 * np.pi
        ds.write(a, 1)
    # one pair broken everywhere (dropped by the misclosure screening)
    with rasterio.open(files[7], "r+") as ds:
        a = ds.read(1)
        rng = np.random.default_rng(5)
        a += 2 * np.pi * rng.integers(-2, 3, size=a.shape)
        ds.write(a, 1)
    gnss = tmp_path / "gnss.csv"
    lon, lat = insarfmt.LON0 + 0.0405, insarfmt.LAT0 - 0.0305  # pixel (30, 40)
    want = _truth_velocity(dates, disp)
    gnss.write_text(f"lon,lat,velocity\n{lon},{lat},{want[30, 40] + 0.01}\n")
    out = run_timeseries(TimeseriesConfig(interferograms=[tmp_path / "in"],
                                          out=tmp_path / "out", gnss=gnss, dem_error=False))
    doc = json.loads(out.report.read_text())
    assert [d["pair"] for d in doc["dropped"]] == [files[7].stem[4:].replace("-", "_")]
    assert "misclosure" in doc["dropped"][0]["reason"]
    assert doc["unwrapping_correction"]["corrected_pixels"][
        files[3].stem[4:].replace("-", "_")] == 100
    with rasterio.open(out.velocity) as ds:
        vel = ds.read(1)
    # GNSS tie: absolute velocity = truth + 10 mm/yr everywhere
    err = vel - (want + 0.01)
    assert np.sqrt(np.nanmean(err ** 2)) < 1e-5
    ds = xr.open_dataset(out.netcdf, decode_coords="all")
    try:
        assert ds["displacement"].dims == ("time", "y", "x")
        assert ds["displacement"].shape == (8, 40, 48)
        np.testing.assert_allclose(ds["velocity"].values, vel)
        assert ds["velocity"].rio.crs.to_epsg() == 4326
    finally:
        ds.close()
    # the pixel tool reads the same series
    from gdmio.pointseries import read_point_series

    ps = read_point_series(out.out_dir, lon, lat)
    assert ps.velocity["displacement"] == pytest.approx(vel[30, 40], abs=1e-6)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gdm.cli", *args], capture_output=True,
                          text=True, check=False)


@pytest.mark.slow
def test_cli_bad_inputs_exit_2_and_leave_nothing(tmp_path):
    dates, disp, pairs, coh = _scene(dates=4)
    # missing wavelength
    insarfmt.write_geotiff(tmp_path / "nowl", dates, disp, pairs, coh, tags=False)
    # one date only
    one = tmp_path / "one" / "ifg_20200101.tif"
    insarfmt._tif(one, np.zeros((8, 8), np.float32))
    # unknown format
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "a_20200101_20200113.dat").write_text("x")
    # grids that do not overlap
    insarfmt.write_geotiff(tmp_path / "far", dates, disp, pairs[:2], coh)
    with rasterio.open(next((tmp_path / "far").glob("ifg_*.tif")), "r+") as ds:
        ds.transform = ds.transform * ds.transform.translation(5000, 0)
    # disconnected network without the temporal constraint
    insarfmt.write_geotiff(tmp_path / "gap", dates, disp, [(0, 1), (2, 3)], coh)
    cases = [
        (["nowl"], "wavelength"),
        (["one/ifg_20200101.tif"], "two dates"),
        (["odd/a_20200101_20200113.dat"], "unknown interferogram format"),
        (["far"], "overlap"),
        (["gap", "--no-bridge-gaps"], "disconnected"),
    ]
    for args, needle in cases:
        out = tmp_path / f"out_{args[0].split('/')[0]}"
        res = _cli("sar", "timeseries", str(tmp_path / args[0]), *args[1:], "--out",
                   str(out), "-q")
        assert res.returncode == 2, (args, res.stderr)
        assert needle in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
        assert not out.exists()
    assert "LiCSAR" in _cli("sar", "timeseries", "--help").stdout


@pytest.mark.slow
def test_pyrate_real_gamma(tmp_path):
    src = tmp_path / "cropA"
    shutil.copytree(DATA / "pyrate_cropA", src)
    out = run_timeseries(TimeseriesConfig(interferograms=[src], out=tmp_path / "out",
                                          reference=(-99.185, 19.445)))
    doc = json.loads(out.report.read_text())
    assert len(doc["dates"]) == 13
    assert doc["dem_error_estimated"]
    with rasterio.open(out.velocity) as ds:
        vel = ds.read(1)
    assert np.isfinite(vel).mean() > 0.7
    # Mexico City: the lake-bed (east of the crop) subsides fast relative to the
    # western hills: LOS velocity strongly negative (away from the satellite).
    east, west = np.nanmedian(vel[:, 70:]), np.nanmedian(vel[:, :20])
    print(f"median LOS velocity east {east * 1000:.1f} mm/yr, west {west * 1000:.1f}")
    assert east - west < -0.15
    with rasterio.open(out.timeseries) as ds:
        assert ds.count == 13


def test_gdm_sar_process_takes_interferograms(tmp_path):
    """The 'interferograms' input of the gdm-sar process (OGC API, WPS, web form)."""
    from pydantic import ValidationError

    from gdmio.process import JobContext
    from workflows.processes import get_process

    dates, disp, pairs, coh = _scene()
    insarfmt.write_hyp3(tmp_path / "uploads", dates, disp, pairs, coh)  # zips
    # plus a zip of a LiCSAR-like folder is unpacked... here: HyP3 zips only
    names = sorted(p.name for p in (tmp_path / "uploads").iterdir())
    spec = get_process("gdm-sar")
    assert "interferograms" in spec.inputs_model.model_json_schema()["properties"]
    from wps.wps1 import input_kinds

    assert input_kinds(spec)["interferograms"].kind == "reference"  # WPS complex input
    with pytest.raises(ValidationError, match="not 'slcs' and 'interferograms'"):
        spec.validate_inputs({"slcs": names, "interferograms": names})
    inputs = spec.validate_inputs({"interferograms": names, "dem_error": False})
    ctx = JobContext(job_id="j", workdir=tmp_path / "work",
                     uploads_dir=tmp_path / "uploads", progress=lambda f, m: None)
    result = spec.execute(inputs, ctx)
    assert {"velocity", "timeseries", "timeseries_nc", "report"} <= set(result)
    doc = json.loads((ctx.workdir / result["report"]).read_text())
    assert {i["format"] for i in doc["inputs"]} == {"HyP3"}
    assert (ctx.workdir / result["timeseries_nc"]).is_file()


def test_blocks_give_the_same_products_and_mask_reference_errors(tmp_path, monkeypatch):
    """Memory is bounded by blocks of rows: any block height gives the same products."""
    import gdm_sar.timeseries as ts_mod

    dates, disp, pairs, coh = _scene(dates=5, seed=2)
    insarfmt.write_licsar(tmp_path / "in", dates, disp, pairs, coh)
    whole = run_timeseries(TimeseriesConfig(interferograms=[tmp_path / "in"],
                                            out=tmp_path / "whole"))
    monkeypatch.setattr(ts_mod, "_rows_per_block", lambda cfg, layers, w, h: 7)
    mask = np.ones(disp.shape[1:], np.uint8)
    mask[:, :10] = 0
    from affine import Affine

    from gdmio.cog import write_cog
    write_cog(tmp_path / "mask.tif", mask, "EPSG:4326",
              Affine(insarfmt.STEP, 0, insarfmt.LON0, 0, -insarfmt.STEP, insarfmt.LAT0),
              nodata=None, dtype="uint8")
    blocks = run_timeseries(TimeseriesConfig(interferograms=[tmp_path / "in"],
                                             out=tmp_path / "blocks", mask=tmp_path / "mask.tif"))
    with rasterio.open(whole.timeseries) as a, rasterio.open(blocks.timeseries) as b:
        sa, sb = a.read(), b.read()
    assert np.isnan(sb[:, :, :10]).all()
    np.testing.assert_array_equal(sa[:, :, 10:], sb[:, :, 10:])
    from gdmcore import InputError
    with pytest.raises(InputError, match="outside the common grid"):
        run_timeseries(TimeseriesConfig(interferograms=[tmp_path / "in"],
                                        out=tmp_path / "bad", reference=(0.0, 0.0)))
    assert not (tmp_path / "bad").exists()


def test_ts_point_cli(tmp_path):
    from click.testing import CliRunner

    from gdm.cli import main

    dates, disp, pairs, coh = _scene(dates=5, seed=4)
    insarfmt.write_geotiff(tmp_path / "in", dates, disp, pairs, coh)
    out = run_timeseries(TimeseriesConfig(interferograms=[tmp_path / "in"],
                                          out=tmp_path / "out", dem_error=False))
    lon, lat = insarfmt.LON0 + 0.0165, insarfmt.LAT0 - 0.0125  # pixel (12, 16)
    res = CliRunner().invoke(main, ["ts", "point", str(out.out_dir), "--lonlat", str(lon),
                                    str(lat), "--csv", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "date,displacement_m" and len(rows) == 6
    with rasterio.open(out.timeseries) as ds:
        want = ds.read()[:, 12, 16]
    got = np.array([float(r.split(",")[1]) for r in rows[1:]])
    np.testing.assert_allclose(got, want, atol=1e-6)
    res = CliRunner().invoke(main, ["ts", "point", str(out.out_dir), "--lonlat", "0", "0"])
    assert res.exit_code == 2
