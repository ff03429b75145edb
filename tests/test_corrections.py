"""InSAR corrections and quality (insar.corrections, kernels.corrections, troposphere).

Kernels against obvious references; the weather-model delay against Saastamoinen and an
independent fine integration; ERA5 (both CDS layouts) and GACOS readers; the weather
provider against a local archive; end to end on simulated stacks: the troposphere
corrections (velocity error before/after), the masks of the decorrelated patch,
screening, loop closure, ramps, and FLATSIM-like packaging.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from gdmcore import InputError
from kernels.corrections import (
    NormalEquations,
    date_rms,
    design_columns,
    evaluate_model,
    loop_counts,
    model_terms,
    network_consistent,
    phase_gradient_variance,
    pixel_network_gaps,
)
from kernels.troposphere import (
    TABLE_HEIGHTS,
    delay_profiles,
    geometric_height,
    geopotential_height,
    interpolate_delay,
    saastamoinen_zhd,
    vapour_pressure_q,
)


# ------------------------------------------------------------------------ kernels
def test_model_fit_blockwise_equals_lstsq_and_recovers_the_model():
    rng = np.random.default_rng(1)
    ny, nx = 60, 80
    h = 1000 + 800 * rng.random((ny, nx))
    terms = model_terms("quadratic", True)
    full = design_columns(terms, 0, ny, (ny, nx), h)
    truth = np.array([0.3, 0.01, -0.02, 0.005, 0.003, -0.004, 0.012])
    obs = evaluate_model(truth, full) + rng.normal(0, 0.002, (ny, nx))
    obs[5:9, 10:30] = np.nan
    w = 0.5 + rng.random((ny, nx))
    ne = NormalEquations(1, len(terms))
    for r0 in range(0, ny, 7):  # blocks of 7 rows
        r1 = min(ny, r0 + 7)
        ne.add(0, design_columns(terms, r0, r1, (ny, nx), h[r0:r1]), obs[r0:r1], w[r0:r1])
    coef, rms = ne.solve()
    ok = np.isfinite(obs)
    g = full[:, ok].T * np.sqrt(w[ok])[:, None]
    ref = np.linalg.lstsq(g, obs[ok] * np.sqrt(w[ok]), rcond=None)[0]
    np.testing.assert_allclose(coef[0], ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(coef[0], truth, atol=2e-3)
    assert 0.0015 < rms[0] < 0.0025
    with pytest.raises(ValueError):
        design_columns(("c", "h"), 0, 5, (ny, nx), None)
    with pytest.raises(ValueError):
        model_terms("cubic", False)


def test_network_consistent_recovers_per_date_terms_and_closes():
    rng = np.random.default_rng(2)
    n_dates = 8
    pairs = [(i, j) for i in range(n_dates) for j in range(i + 1, min(n_dates, i + 4))]
    per_date = rng.normal(0, 1, (n_dates, 3))
    per_date[0] = 0
    coef = np.array([per_date[j] - per_date[i] for i, j in pairs])
    noisy = coef + rng.normal(0, 0.01, coef.shape)
    noisy[4] = np.nan  # a pair without a fit
    cons, dates = network_consistent(noisy, pairs, n_dates)
    np.testing.assert_allclose(dates, per_date, atol=0.04)  # noise 0.01 per pair
    index = {p: k for k, p in enumerate(pairs)}
    for i, j, k in [(0, 1, 2), (2, 3, 5), (4, 5, 6)]:
        clo = cons[index[(i, j)]] + cons[index[(j, k)]] - cons[index[(i, k)]]
        np.testing.assert_allclose(clo, 0, atol=1e-12)
    # two parts: each part's first date is tied to 0
    cons2, d2 = network_consistent(np.array([[1.0], [2.0]]), [(0, 1), (2, 3)], 4)
    np.testing.assert_allclose(d2[:, 0], [0, 1, 0, 2])
    with pytest.raises(ValueError):
        network_consistent(np.ones((2, 1)), [(0, 5), (1, 2)], 3)


def test_pixel_network_gaps_and_loop_counts_against_naive():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from kernels.sbas import closure_triplets

    rng = np.random.default_rng(3)
    n_dates = 7
    pairs = [(i, j) for i in range(n_dates) for j in range(i + 1, min(n_dates, i + 3))]
    valid = rng.random((len(pairs), 6, 5)) > 0.45
    gaps = pixel_network_gaps(valid, pairs, n_dates)
    for r in range(6):
        for c in range(5):
            ps = np.array([p for k, p in enumerate(pairs) if valid[k, r, c]]).reshape(-1, 2)
            m = coo_matrix((np.ones(len(ps)), (ps[:, 0], ps[:, 1])), shape=(n_dates,) * 2)
            assert gaps[r, c] == connected_components(m, directed=False)[0] - 1
    tri = closure_triplets(pairs)
    phase = rng.normal(0, 1, (len(pairs), 6, 5))
    phase[~valid] = np.nan
    checked, bad = loop_counts(phase, tri, 1.5)
    for r in range(6):
        for c in range(5):
            clo = [phase[a, r, c] + phase[b, r, c] - phase[k, r, c] for a, b, k in tri]
            fin = [x for x in clo if np.isfinite(x)]
            assert checked[r, c] == len(fin)
            assert bad[r, c] == sum(abs(x) > 1.5 for x in fin)


def test_date_rms_and_phase_noise():
    pairs = [(0, 1), (1, 2), (0, 2), (2, 3), (1, 3)]
    s = np.array([1.0, 2.0, 0.5, 3.0])
    r = np.sqrt([s[i] ** 2 + s[j] ** 2 for i, j in pairs])
    np.testing.assert_allclose(date_rms(r, pairs, 4), s, rtol=1e-6)
    assert np.isnan(date_rms(r[:2], pairs[:2], 5)[4])
    rng = np.random.default_rng(4)
    total, n = phase_gradient_variance(rng.uniform(-np.pi, np.pi, (200, 200)))
    assert abs(total / n - np.pi**2 / 3) < 0.1  # pure noise: uniform wrapped differences
    y, x = np.mgrid[:200, :200]
    total, n = phase_gradient_variance(0.05 * x + 3.0 * np.sin(y / 50))
    assert total / n < 0.01  # smooth signals hardly count


# ------------------------------------------------------------------ troposphere
def _era5_column(atm, lat: float):
    from simulators.sar import ERA5_LEVELS_HPA

    p = np.array(ERA5_LEVELS_HPA, float) * 100
    z = atm.height_of(p)
    hgp = geopotential_height(z, lat)
    t = atm.temperature(z)
    e = vapour_pressure_q(atm.humidity(z), p)
    return p, hgp * 9.80665, t, e


@pytest.mark.parametrize("t0,q0", [(300.0, 0.016), (275.0, 0.003), (288.0, 0.008)])
def test_delay_against_saastamoinen_and_fine_integration(t0, q0):
    from simulators.sar import Layered

    atm = Layered(p0=100500.0, t0=t0, q0=q0)
    p, z, t, e = _era5_column(atm, 44.0)
    shape = (p.size, 1, 1)
    hyd, wet = delay_profiles(p, z.reshape(shape), t.reshape(shape), e.reshape(shape),
                              np.array([44.0]))
    heights = np.array([0.0, 500.0, 1500.0, 3000.0])
    ours = np.interp(heights, TABLE_HEIGHTS, hyd[0, 0] + wet[0, 0])
    truth = atm.zenith_delay(heights)  # independent: refractivity integrated on 1 m steps
    # The simulated world is hydrostatic for dry air with constant gravity; the model
    # integrates the moist hydrostatic delay with the centroid gravity (as PyAPS and
    # RAiDER): about 1 cm apart in absolute at 300 K and 16 g/kg.
    assert np.max(np.abs(ours - truth)) < 0.02
    # differences between heights (what InSAR sees) agree within 1 %
    assert np.all(np.abs(np.diff(ours) - np.diff(truth)) < 0.01 * np.abs(np.diff(truth)))
    zhd = np.interp(heights, TABLE_HEIGHTS, hyd[0, 0])
    ref = saastamoinen_zhd(atm.pressure(heights), 44.0, heights)
    assert np.max(np.abs(zhd - ref)) < 0.002
    assert 2.0 < ours[0] < 2.8  # a plausible ZTD at sea level


def test_geopotential_round_trip_and_interpolation_is_exact_for_linear_fields():
    h = np.array([0.0, 1000.0, 20000.0])
    np.testing.assert_allclose(geometric_height(geopotential_height(h, 30.0), 30.0), h,
                               atol=1e-6)
    nlat, nlon = np.array([46.0, 45.75, 45.5]), np.array([4.0, 4.25, 4.5, 4.75])
    la, lo, hh = np.meshgrid(nlat, nlon, TABLE_HEIGHTS, indexing="ij")
    table = 2.0 + 0.1 * la - 0.05 * lo - 1e-4 * hh
    rng = np.random.default_rng(5)
    lat = rng.uniform(45.5, 46.0, 50)
    lon = rng.uniform(4.0, 4.75, 50)
    z = rng.uniform(0, 4000, 50)
    got = interpolate_delay(table, nlat, nlon, lat, lon, z)
    np.testing.assert_allclose(got, 2.0 + 0.1 * lat - 0.05 * lon - 1e-4 * z, atol=1e-9)


def _write_old_era5(path: Path, atm, date: dt.date, hours: list[int]) -> None:
    """ERA5 as the CDS delivered it before 2024: packed shorts, 'time', 'level', 'r'."""
    import netCDF4

    from kernels.troposphere import vapour_pressure_rh
    from simulators.sar import ERA5_LEVELS_HPA

    lat = np.array([44.5, 44.25, 44.0])
    lon = np.array([4.0, 4.25, 4.5])
    levels = np.array(ERA5_LEVELS_HPA, "i4")
    p = levels * 100.0
    z = atm.height_of(p)
    t = atm.temperature(z)
    e = vapour_pressure_q(atm.humidity(z), p)
    es = vapour_pressure_rh(np.full_like(t, 100.0), t)
    rh = 100 * e / es
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.createDimension("longitude", lon.size)
        ds.createDimension("latitude", lat.size)
        ds.createDimension("level", levels.size)
        ds.createDimension("time", len(hours))
        v = ds.createVariable("longitude", "f4", ("longitude",))
        v.units = "degrees_east"
        v[:] = lon
        v = ds.createVariable("latitude", "f4", ("latitude",))
        v.units = "degrees_north"
        v[:] = lat
        v = ds.createVariable("level", "i4", ("level",))
        v.units = "millibars"
        v[:] = levels
        v = ds.createVariable("time", "i4", ("time",))
        v.units = "hours since 1900-01-01 00:00:00.0"
        v.calendar = "gregorian"
        base = dt.datetime(1900, 1, 1)
        v[:] = [int((dt.datetime.combine(date, dt.time(hh)) - base).total_seconds() // 3600)
                for hh in hours]
        for name, data in (("z", geopotential_height(z, 44.25) * 9.80665), ("t", t),
                           ("r", rh)):
            lo_, hi_ = float(data.min()), float(data.max())
            scale = (hi_ - lo_) / 60000 or 1.0
            v = ds.createVariable(name, "i2", ("time", "level", "latitude", "longitude"))
            v.scale_factor, v.add_offset = scale, (hi_ + lo_) / 2
            v.missing_value = np.int16(-32767)
            full = np.broadcast_to(data[None, :, None, None],
                                   (len(hours), levels.size, lat.size, lon.size))
            # 1 K warmer per hour after 6 h (the humidity follows: same RH)
            if name == "t":
                full = full + (np.array(hours) - 6)[:, None, None, None]
            v[:] = full


def test_era5_old_and_new_layouts_agree(tmp_path):
    from insar.troposphere import Era5, read_era5
    from simulators.sar import Layered, _write_era5

    atm = Layered(p0=101000.0, t0=290.0, q0=0.009)
    day = dt.date(2023, 5, 1)
    new = tmp_path / "new" / "20230501.nc"
    new.parent.mkdir()
    _write_era5(new, day, atm, np.array([44.5, 44.25, 44.0]), np.array([4.0, 4.25, 4.5]),
                6)
    old = tmp_path / "old" / "era5.nc"
    old.parent.mkdir()
    _write_old_era5(old, atm, day, [5, 6, 7])
    d_new = read_era5(new)
    d_old = read_era5(old)
    assert d_new["times"] == [dt.datetime(2023, 5, 1, 6)]
    assert d_old["times"][1] == dt.datetime(2023, 5, 1, 6)
    lat, lon = np.full(4, 44.2), np.full(4, 4.3)
    h = np.array([0.0, 800.0, 1600.0, 2400.0])
    a = Era5([new]).zenith_delay(day, lat, lon, h)
    b = Era5([old], acquisition_time=dt.time(6, 0)).zenith_delay(day, lat, lon, h)
    np.testing.assert_allclose(a, b, atol=1e-3)  # packing and RH round-off only
    np.testing.assert_allclose(a, atm.zenith_delay(h), atol=0.02)  # see the test above
    np.testing.assert_allclose(np.diff(a), np.diff(atm.zenith_delay(h)), rtol=0.01)
    # time interpolation: half-way between 6 h and 7 h (1 K warmer)
    c = Era5([old], acquisition_time=dt.time(6, 30)).zenith_delay(day, lat, lon, h)
    d7 = Era5([old], acquisition_time=dt.time(7, 0)).zenith_delay(day, lat, lon, h)
    np.testing.assert_allclose(c, 0.5 * (b + d7), atol=1e-9)
    assert np.all(np.abs(d7 - b) > 0)
    with pytest.raises(InputError, match="give the acquisition time"):
        Era5([old]).zenith_delay(day, lat, lon, h)
    with pytest.raises(InputError, match="no model time"):
        Era5([new]).zenith_delay(dt.date(2023, 5, 2), lat, lon, h)
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf")
    with pytest.raises(InputError, match="bad.nc"):
        read_era5(bad)


def test_gacos_reader_and_bad_files(tmp_path):
    from insar.troposphere import Gacos, read_gacos
    from simulators.sar import _write_gacos

    ztd = 2.3 + 0.001 * np.arange(20)[:, None] + 0.002 * np.arange(30)[None, :]
    _write_gacos(tmp_path / "20230101.ztd", ztd, 44.5, 4.0, 0.01)
    z, lat, lon = read_gacos(tmp_path / "20230101.ztd")
    np.testing.assert_array_equal(z, ztd.astype(np.float32))
    assert lat[0] == 44.5 and lat[1] < lat[0] and lon[1] > lon[0]
    g = Gacos([tmp_path / "20230101.ztd"])
    got = g.zenith_delay(dt.date(2023, 1, 1), np.array([44.5 - 0.055]), np.array([4.125]),
                         np.zeros(1))
    np.testing.assert_allclose(got, 2.3 + 0.001 * 5.5 + 0.002 * 12.5, atol=1e-6)
    with pytest.raises(InputError, match="no ZTD file for 2023-01-02"):
        g.zenith_delay(dt.date(2023, 1, 2), np.zeros(1), np.zeros(1), np.zeros(1))
    with pytest.raises(InputError, match="does not cover"):
        g.zenith_delay(dt.date(2023, 1, 1), np.array([10.0]), np.array([4.1]), np.zeros(1))
    (tmp_path / "20230102.ztd").write_bytes(b"\0" * 10)
    shutil.copy(tmp_path / "20230101.ztd.rsc", tmp_path / "20230102.ztd.rsc")
    with pytest.raises(InputError, match="expected 2400"):
        read_gacos(tmp_path / "20230102.ztd")
    (tmp_path / "20230103.ztd").write_bytes(b"\0" * 2400)
    with pytest.raises(InputError, match="header"):
        read_gacos(tmp_path / "20230103.ztd")


def test_weather_provider_fetches_from_a_local_archive(tmp_path, monkeypatch):
    from insar.troposphere import WeatherClient, open_weather
    from simulators.sar import _write_gacos
    from tests.fakearchive import running_archive

    src = tmp_path / "src"
    src.mkdir()
    for d in ("20230101", "20230113"):
        _write_gacos(src / f"{d}.ztd", np.full((10, 10), 2.4), 44.5, 4.0, 0.01)
    with running_archive() as archive:
        assert archive.url.startswith("http://127.0.0.1")
        for f in src.iterdir():
            archive.files[f"/gacos/{f.name}"] = f.read_bytes()
        monkeypatch.setenv("GDM_GACOS_URL", f"{archive.url}/gacos")
        client = WeatherClient("gacos")
        got = client.fetch([dt.date(2023, 1, 1), dt.date(2023, 1, 13)], tmp_path / "w")
        assert [p.name for p in got] == ["20230101.ztd", "20230113.ztd"]
        model = open_weather("gacos", tmp_path / "w")
        assert float(model.zenith_delay(dt.date(2023, 1, 13), np.array([44.45]),
                                        np.array([4.05]), np.zeros(1))[0]) == \
            pytest.approx(2.4, abs=1e-6)
        with pytest.raises(InputError, match="gacos archive"):
            client.fetch([dt.date(2023, 2, 1)], tmp_path / "w")
    monkeypatch.delenv("GDM_GACOS_URL")
    with pytest.raises(InputError, match="GDM_GACOS_URL"):
        WeatherClient("gacos")


# -------------------------------------------------------------- end to end (gdm-sar)
def _velocity_rmse(run_dir: Path, truth_dir: Path) -> tuple[float, float]:
    with rasterio.open(run_dir / "velocity.tif") as ds:
        v = ds.read(1)
    with rasterio.open(truth_dir / "velocity.tif") as ds:
        tv = ds.read(1)
    ny = v.shape[0]
    la = tv.shape[0] // ny
    tvm = tv.reshape(ny, la, v.shape[1], la).mean(axis=(1, 3))
    e = (v - tvm) * 1000
    return float(np.sqrt(np.nanmean(e**2))), float(np.isfinite(v).mean())


@pytest.fixture(scope="module")
def tropo_stack(tmp_path_factory):
    from simulators.sar import SimulateSarConfig, simulate

    out = tmp_path_factory.mktemp("tropo")
    simulate(SimulateSarConfig(out=out, dates=20, size=96, topography_m=2500,
                               stratified=True, weather_files=True, seed=3))
    return out


@pytest.mark.slow
def test_troposphere_corrections_cut_the_velocity_error(tropo_stack, capsys):
    from gdm_sar.config import SarConfig
    from gdm_sar.pipeline import run

    out = tropo_stack
    cases = {"none": {}, "stratified": {"stratified": True, "ramp": "linear"},
             "era5": {"troposphere": "era5", "weather_dir": out / "era5"},
             "gacos": {"troposphere": "gacos", "weather_dir": out / "gacos"}}
    rmse = {}
    for name, kw in cases.items():
        res = run(SarConfig(stack=out / "stack", out=out / f"run_{name}", **kw))
        rmse[name], valid = _velocity_rmse(res.out_dir, out / "truth")
        assert valid > 0.9
    with capsys.disabled():
        print("\nvelocity RMSE (mm/yr), stratified + turbulent atmosphere: "
              + ", ".join(f"{k} {v:.2f}" for k, v in rmse.items()))
    for name in ("stratified", "era5", "gacos"):
        assert rmse["none"] / rmse[name] >= 2.0, (name, rmse)
    doc = json.loads((out / "run_era5" / "report.json").read_text())
    assert doc["corrections"]["troposphere"] == "era5"
    with rasterio.open(out / "run_era5" / "troposphere.tif") as ds:
        assert ds.count == 20 and ds.descriptions[0] == "2023-01-03"
        d = ds.read(1)
    assert 2.5 < float(np.nanmean(d)) < 3.6  # slant delay (m) at 39 deg incidence
    strat = json.loads((out / "run_stratified" / "report.json").read_text())
    assert strat["corrections"]["model_terms"] == ["c", "x", "y", "h"]
    assert strat["corrections"]["network_consistent"] is True


@pytest.mark.slow
def test_timeseries_gets_the_weather_correction(tropo_stack, capsys):
    """gdm sar timeseries on gdm-sar's uncorrected interferograms, with ERA5 (point 7)."""
    from gdm_sar.timeseries import TimeseriesConfig, run_timeseries
    from gdmio.cog import write_cog

    out = tropo_stack
    if not (out / "run_none").is_dir():
        pytest.skip("needs the gdm-sar run of the troposphere test")
    with np.load(out / "stack" / "geometry.npz") as npz:
        height = npz["height"].astype(np.float32)
    with rasterio.open(out / "truth" / "velocity.tif") as ds:
        dem = write_cog(out / "dem.tif", height, ds.crs, ds.transform)
    with pytest.raises(InputError, match="needs terrain heights"):
        run_timeseries(TimeseriesConfig(interferograms=[out / "run_none" / "interferograms"],
                                        out=out / "ts_x", troposphere="era5",
                                        weather_dir=out / "era5"))
    errs = {}
    for name, kw in {"none": {}, "era5": {"troposphere": "era5", "heights": dem,
                                          "weather_dir": out / "era5"}}.items():
        res = run_timeseries(TimeseriesConfig(
            interferograms=[out / "run_none" / "interferograms"], out=out / f"ts_{name}",
            **kw))
        errs[name], _ = _velocity_rmse(res.out_dir, out / "truth")
    with capsys.disabled():
        print(f"\ngdm sar timeseries velocity RMSE (mm/yr): none {errs['none']:.2f}, "
              f"era5 {errs['era5']:.2f}")
    assert errs["none"] / errs["era5"] >= 2.0, errs


def _patch_stats(run_dir: Path, sim_dir: Path) -> tuple[int, int, float]:
    with rasterio.open(run_dir / "velocity.tif") as ds:
        v = ds.read(1)
    n = 256
    ny = v.shape[0]
    la = n // ny
    yy, xx = np.mgrid[:n, :n] / n
    patch = (((yy - 0.75) ** 2 + (xx - 0.3) ** 2) < 0.01).reshape(ny, la, ny, la) \
        .mean(axis=(1, 3))
    full, coherent = patch == 1, patch == 0
    kept = np.isfinite(v)
    return int((kept & full).sum()), int(full.sum()), float((kept & coherent).sum()
                                                             / coherent.sum())


@pytest.fixture(scope="module")
def issue_stack(tmp_path_factory):
    from simulators.sar import SimulateSarConfig, simulate

    out = tmp_path_factory.mktemp("issue")
    simulate(SimulateSarConfig(out=out, dates=12, size=256))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("network", [{"network": "nearest"},
                                     {"network": "span", "max_days": 60}])
def test_decorrelated_patch_is_masked_with_any_network(issue_stack, network, capsys):
    """The issue's case (gdm sar simulate --dates 12 --size 256), point 5."""
    from gdm_sar.config import SarConfig
    from gdm_sar.pipeline import run

    out = issue_stack
    res = run(SarConfig(stack=out / "stack", out=out / f"run_{network['network']}",
                        **network))
    kept, total, coherent = _patch_stats(res.out_dir, out)
    old = run(SarConfig(stack=out / "stack", out=out / f"old_{network['network']}",
                        coherence_window=1, **network))
    kept_old, _, _ = _patch_stats(old.out_dir, out)
    with capsys.disabled():
        print(f"\n{network}: patch pixels kept {kept}/{total} (per-pixel coherence mask: "
              f"{kept_old}), coherent pixels kept {100 * coherent:.2f} %")
    assert kept <= 0.03 * total
    assert kept < kept_old
    assert coherent >= 0.95
    with rasterio.open(res.out_dir / "mask.tif") as ds:
        bits = ds.read(1)
        assert "2=mean_coherence" in ds.tags()["BITS"]
    assert ((bits & 2) != 0).sum() >= total - kept


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A small gdm-sar run whose pairs the next tests alter and re-invert."""
    from gdm_sar.config import SarConfig
    from gdm_sar.pipeline import run
    from simulators.sar import SimulateSarConfig, simulate

    out = tmp_path_factory.mktemp("small")
    simulate(SimulateSarConfig(out=out, dates=10, size=96, seed=5, rho_patch=0.985))
    res = run(SarConfig(stack=out / "stack", out=out / "run"))
    return out, res


def _reinvert(out: Path, src: Path, name: str, edit, **opts):
    from gdm_sar.config import SarConfig
    from insar.inversion import StackFacts, invert_stack
    from insar.stack import read_stack

    work = out / name
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src / "interferograms", work / "interferograms")
    doc = json.loads((src / "report.json").read_text())
    edit(work / "interferograms")
    stack = read_stack(out / "stack")
    names = doc["network"]["pairs"]
    idx = {d.strftime("%Y%m%d"): k for k, d in enumerate(stack.dates)}
    pairs = [(idx[n[:8]], idx[n[9:]]) for n in names]
    with rasterio.open(src / "velocity.tif") as ds:
        crs, transform, shape = ds.crs, ds.transform, ds.shape
    cfg = SarConfig(stack=out / "stack", out=work / "x", **opts)
    facts = StackFacts(list(stack.dates), stack.bperp, stack.wavelength,
                       stack.incidence_deg, stack.slant_range)
    inv = invert_stack([work / "interferograms" / n for n in names], pairs, facts, cfg,
                       work / "ts", crs, transform, shape, 64 << 20)
    return inv, work / "ts"


def _alter(folder: Path, pair: str, fn) -> None:
    p = folder / pair / "unwrapped.tif"
    with rasterio.open(p) as ds:
        a, prof = ds.read(1), ds.profile
    a = fn(a)
    p.unlink()
    with rasterio.open(p, "w", **{**prof, "driver": "GTiff"}) as ds:
        ds.write(a.astype(np.float32), 1)


@pytest.mark.slow
def test_loop_closure_corrects_a_cycle_jump_and_counts_loop_errors(small_run, capsys):
    out, res = small_run
    names = json.loads((res.out_dir / "report.json").read_text())["network"]["pairs"]
    target = names[4]

    def jump(folder):
        _alter(folder, target, lambda a: np.where(
            (np.arange(a.shape[0])[:, None] >= 18) & (np.arange(a.shape[0])[:, None] < 34)
            & (np.arange(a.shape[1])[None] >= 24) & (np.arange(a.shape[1])[None] < 36),
            a + 2 * np.pi, a))

    inv_on, ts_on = _reinvert(out, res.out_dir, "jump_on", jump)
    inv_off, ts_off = _reinvert(out, res.out_dir, "jump_off", jump,
                                closure_correction=False)
    def region(run_dir):  # inside the jump: valid fraction and velocity RMSE (mm/yr)
        with rasterio.open(run_dir / "velocity.tif") as ds:
            v = ds.read(1)[18:34, 24:36]
        with rasterio.open(out / "truth" / "velocity.tif") as ds:
            tv = ds.read(1)
        la = tv.shape[0] // 48
        tv = tv.reshape(48, la, 48, la).mean(axis=(1, 3))[18:34, 24:36]
        ok = np.isfinite(v)
        return ok.mean(), float(np.sqrt(np.mean(((v - tv)[ok] * 1000) ** 2))) \
            if ok.any() else np.inf

    base, on, off = region(res.out_dir), region(ts_on), region(ts_off)
    with capsys.disabled():
        print(f"\none-cycle jump in one pair, inside the jump: valid fraction / velocity "
              f"RMSE (mm/yr) clean {base[0]:.2f} / {base[1]:.2f}, corrected {on[0]:.2f} / "
              f"{on[1]:.2f}, not corrected {off[0]:.2f} / {off[1]:.2f}; loop errors "
              f"{inv_on['corrections']['loop_errors']} -> "
              f"{inv_on['corrections']['loop_errors_left']}")
    assert inv_on["screening"]["dropped"] == []  # a patch: screening keeps the pair
    assert on[0] >= 0.95 * base[0] and on[1] < 1.2 * base[1] + 0.5  # the jump is undone
    # without the correction the jump is masked (temporal coherence) or biases the rate
    assert off[0] < 0.8 * base[0] or off[1] > 2 * base[1]
    with rasterio.open(ts_on / "loop_errors.tif") as ds:
        loops = ds.read(1)
    with rasterio.open(ts_on / "unwrapping_corrections.tif") as ds:
        fixed = ds.read(1)
    assert loops[19:33, 25:35].min() >= 1 and loops[:8, :15].max() == 0
    assert (fixed[19:33, 25:35] >= 1).mean() > 0.9
    assert inv_on["corrections"]["loop_errors_left"] < 0.2 * inv_on["corrections"][
        "loop_errors"]
    assert inv_off["corrections"]["corrected_pair_pixels"] == 0


@pytest.mark.slow
def test_screening_lists_dropped_pairs_and_ramps_are_removed(small_run, capsys):
    out, res = small_run
    names = json.loads((res.out_dir / "report.json").read_text())["network"]["pairs"]
    noisy, holed = names[2], names[7]
    rng = np.random.default_rng(9)

    def damage(folder):
        _alter(folder, noisy, lambda a: a + rng.uniform(-np.pi, np.pi, a.shape))
        _alter(folder, holed, lambda a: np.where(np.arange(a.shape[0])[:, None] < 45,
                                                 np.nan, a))

    inv, ts = _reinvert(out, res.out_dir, "screen", damage, min_unwrapped_fraction=0.6)
    reasons = {d["pair"]: d["reason"] for d in inv["screening"]["dropped"]}
    assert reasons.keys() == {noisy, holed}
    assert "phase variance" in reasons[noisy] and "unwrapped fraction" in reasons[holed]
    lists = {p.name: p.read_text() for p in (ts / "quality").iterdir()}
    assert noisy in lists["dropped_pairs.txt"] and holed in lists["dropped_pairs.txt"]
    assert noisy not in lists["RMSinterfero.txt"]
    assert len(lists["RMSdate.txt"].splitlines()) == 1 + 10
    # a planar ramp per date (orbit-like), removed network-consistently
    ramps = {d: rng.normal(0, 3.0, 2) for d in range(10)}
    stack_dates = sorted({n[:8] for n in names} | {n[9:] for n in names})
    k = {d: i for i, d in enumerate(stack_dates)}

    def add_ramps(folder):
        for n in names:
            i, j = k[n[:8]], k[n[9:]]
            c = ramps[j] - ramps[i]
            _alter(folder, n, lambda a, c=c: a + c[0] * np.linspace(-1, 1, a.shape[1])[None]
                   + c[1] * np.linspace(-1, 1, a.shape[0])[:, None])

    _, ts_raw = _reinvert(out, res.out_dir, "ramp_raw", add_ramps)
    _, ts_fix = _reinvert(out, res.out_dir, "ramp_fix", add_ramps, ramp="linear")
    _, ts_pair = _reinvert(out, res.out_dir, "ramp_pair", add_ramps, ramp="linear",
                           correction_network=False)
    raw = _velocity_rmse(ts_raw, out / "truth")[0]
    fixed = _velocity_rmse(ts_fix, out / "truth")[0]
    per_pair = _velocity_rmse(ts_pair, out / "truth")[0]
    with capsys.disabled():
        print(f"\nramps: velocity RMSE (mm/yr) with ramps {raw:.2f}, removed "
              f"network-consistent {fixed:.2f}, per pair {per_pair:.2f}")
    assert fixed < raw / 2 and per_pair < raw / 2


@pytest.mark.slow
def test_flatsim_packaging_option(tmp_path):
    from flatsim import register
    from flatsim.package import los_enu
    from flatsim.spec import load_spec
    from flatsim.state import CampaignState
    from flatsim.steps import run_campaign_local

    state = CampaignState(f"sqlite:///{tmp_path / 'state.sqlite'}")
    spec = load_spec({
        "name": "t", "start": "2023-01-01", "end": "2023-12-31",
        "frames": [{"id": "F1", "track": 5}], "out": str(tmp_path / "out"),
        "simulation": {"dates": 8, "size": 48, "seed": 1, "topography_m": 1500,
                       "stratified": True},
        "processing": {"stratified": True},
        "products": ["velocity", "quality", "flatsim"], "memory_limit": "1GB"})
    cid, root, _ = register(state, spec)
    res = run_campaign_local(state, spec, cid, root)
    meta = res["frames"]["F1"]["metadata"]
    files = [f for f in meta["files"] if f.startswith("FLATSIM/")]
    fs = root / "F1" / "FLATSIM"
    for stem in ("TS/CNES_DTs_geo_2rlks", "TS/CNES_MV-LOS_geo_2rlks",
                 "TS/CNES_Net_geo_2rlks", "TS/CNES_TempCoh_geo_2rlks", "TS/CNES_Mask_geo_2rlks",
                 "AUX/CNES_Lut_geo_2rlks", "AUX/CNES_CosENU_geo_2rlks",
                 "AUX/CNES_DEM_geo_2rlks"):
        assert f"FLATSIM/{stem}.tiff" in files and f"FLATSIM/{stem}.png" in files
        assert (fs / f"{stem}.png").stat().st_size > 1000
    for name in ("RMSdate_F1.txt", "RMSinterfero_F1.txt", "list_unw_frac_F1.txt",
                 "list_pair_F1.txt"):
        assert (fs / "TS" / name).is_file()
    with rasterio.open(fs / "TS" / "CNES_DTs_geo_2rlks.tiff") as ds:
        assert ds.count == 8
    with rasterio.open(fs / "TS" / "CNES_Net_geo_2rlks.tiff") as ds:
        assert ds.count == 5 and "misclosure" in ds.descriptions[0]
    with rasterio.open(fs / "AUX" / "CNES_CosENU_geo_2rlks.tiff") as ds:
        enu = ds.read()
    np.testing.assert_allclose(np.sum(enu**2, axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(enu[:, 0, 0], los_enu(39.0, -167.0), atol=1e-6)
    with rasterio.open(fs / "AUX" / "CNES_Lut_geo_2rlks.tiff") as ds:
        lat = ds.read(1)
    assert 44.0 < float(lat.mean()) < 44.5 and lat[0, 0] > lat[-1, 0]  # north up


def test_bad_correction_inputs_exit_2(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from gdm.cli import main
    from simulators.sar import SimulateSarConfig, simulate

    simulate(SimulateSarConfig(out=tmp_path / "sim", dates=3, size=32))
    monkeypatch.delenv("GDM_GACOS_URL", raising=False)
    runner = CliRunner()
    for args, msg in (
            (["--stratified"], "needs terrain heights"),
            (["--troposphere", "era5"], "needs terrain heights"),
            (["--troposphere", "gacos"], "weather_dir"),
            (["--troposphere", "gacos", "--weather-dir", str(tmp_path / "nope")],
             "weather_dir not found"),
            (["--acquisition-time", "25:00"], "time of day")):
        res = runner.invoke(main, ["sar", "run", str(tmp_path / "sim" / "stack"), "--out",
                                   str(tmp_path / "o"), "-q", *args])
        assert res.exit_code == 2, (args, res.output)
        assert msg in res.output, (args, res.output)
        assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_real_pyrate_loop_errors_are_flagged_not_forced(tmp_path, capsys):
    """Real GAMMA interferograms (Mexico City): misclosure is not whole cycles there.

    The loop-error layer flags the triplets above 1.5 rad; the whole-cycle correction
    changes almost nothing (the closures are not near multiples of 2 pi), so the
    subsidence signal stays.
    """
    from gdm_sar.timeseries import TimeseriesConfig, run_timeseries
    from tests.datafiles import DATA

    out = {}
    for name, kw in {"on": {}, "off": {"closure_correction": False}}.items():
        out[name] = run_timeseries(TimeseriesConfig(
            interferograms=[DATA / "pyrate_cropA"], out=tmp_path / name,
            reference=(-99.185, 19.445), **kw))
    doc = json.loads(out["on"].report.read_text())
    with rasterio.open(out["on"].layers["loop_errors"]) as ds:
        loops = ds.read(1)
    fixed = sum(doc["unwrapping_correction"]["corrected_pixels"].values())
    with rasterio.open(out["on"].velocity) as ds:
        v_on = ds.read(1)
    with rasterio.open(out["off"].velocity) as ds:
        v_off = ds.read(1)
    east_west = float(np.nanmedian(v_on[:, 70:]) - np.nanmedian(v_on[:, :20]))
    with capsys.disabled():
        print(f"\npyrate_cropA: {doc['network']['triplets']} triplets, loop errors "
              f"{doc['corrections']['loop_errors']} on {int((loops > 0).sum())} of "
              f"{loops.size} pixels, pixel-pairs corrected {fixed}, dropped "
              f"{len(doc['dropped'])}, east-west {1000 * east_west:.1f} mm/yr, masked "
              + ", ".join(f"{k} {100 * v:.1f} %" for k, v in doc["mask_reasons"].items()
                          if v))
    assert doc["network"]["triplets"] == 24 and doc["dropped"] == []
    assert (loops > 0).mean() > 0.2          # misclosure above 1.5 rad is common here
    assert fixed < 0.005 * loops.size * 30   # but hardly ever a whole cycle
    assert np.nanmax(np.abs(v_on - v_off)) < 0.005
    assert east_west < -0.15


def test_corrections_are_options_of_every_scheduler():
    """Point 7: gdm-sar jobs (process and CLI), gdm sar timeseries and campaigns."""
    from click.testing import CliRunner

    from flatsim.spec import CampaignSpec
    from gdm.cli import main
    from gdm_sar.timeseries import TimeseriesConfig
    from insar.options import SERVER_PATH_FIELDS, CorrectionOptions
    from workflows.processes import get_process

    fields = set(CorrectionOptions.model_fields)
    props = get_process("gdm-sar").inputs_model.model_json_schema()["properties"]
    assert fields - set(SERVER_PATH_FIELDS) <= set(props)
    assert not set(SERVER_PATH_FIELDS) & {k for k, v in props.items()
                                          if v.get("type") != "null"}
    assert fields <= set(TimeseriesConfig.model_fields)
    proc = CampaignSpec.model_fields["processing"].annotation
    assert fields <= set(proc.model_fields)
    runner = CliRunner()
    for cmd in (["sar", "run", "--help"], ["sar", "timeseries", "--help"]):
        text = runner.invoke(main, cmd).output
        for opt in ("--troposphere", "--weather-dir", "--stratified", "--ramp",
                    "--loop-threshold", "--max-phase-variance", "--coherence-window"):
            assert opt in text, (cmd, opt)
