"""The SLC-stack simulator: file convention, sign conventions, decorrelation and truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio

from insar.stack import REQUIRED_KEYS, read_stack
from kernels.insar import interferogram, multilook
from simulators.sar import SimulateSarConfig, los_unit_vector, simulate

WAVELENGTH = 0.05546576


def _read(path, band=1):
    with rasterio.open(path) as ds:
        return ds.read(band)


def _ifg(sim, i, j, looks=(4, 4)):
    files = sorted(sim.stack_dir.glob("*.tif"))
    return interferogram(_read(files[i]), _read(files[j]), looks)


def _wrap(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


@pytest.fixture(scope="module")
def default_sim(tmp_path_factory):
    return simulate(SimulateSarConfig(out=tmp_path_factory.mktemp("simsar") / "s", dates=5,
                                      size=128, seed=3))


def test_files_follow_the_stack_convention(default_sim):
    files = sorted(default_sim.stack_dir.glob("*.tif"))
    assert [f.name for f in files] == [f"slc_{d:%Y%m%d}.tif" for d in default_sim.dates]
    assert all((b - a).days == 12 for a, b in zip(default_sim.dates, default_sim.dates[1:],
                                                   strict=False))
    with rasterio.open(files[2]) as ds:
        assert ds.dtypes == ("complex64",) and ds.count == 1
        assert (ds.width, ds.height) == (128, 128)
        assert ds.crs.to_epsg() == 32631
        tags = ds.tags()
    assert set(REQUIRED_KEYS) <= set(tags)
    assert tags["ACQUISITION_DATE"] == default_sim.dates[2].isoformat()
    assert float(tags["WAVELENGTH"]) == pytest.approx(WAVELENGTH)
    stack = read_stack(default_sim.stack_dir)  # the pipeline's reader accepts it
    assert stack.dates == default_sim.dates
    truth = json.loads((default_sim.truth_dir / "truth.json").read_text())
    np.testing.assert_allclose(stack.bperp, truth["bperp_m"], atol=1e-3)
    assert truth["bperp_m"][0] == 0.0


def test_truth_series_is_velocity_times_time(default_sim):
    t = np.array([(d - default_sim.dates[0]).days / 365.25 for d in default_sim.dates])
    with rasterio.open(default_sim.truth_dir / "timeseries.tif") as ds:
        series = ds.read()
        assert ds.descriptions == tuple(d.isoformat() for d in default_sim.dates)
    v = _read(default_sim.truth_dir / "velocity.tif")
    np.testing.assert_allclose(series, v[None] * t[:, None, None], atol=1e-7)
    assert np.abs(series[0]).max() == 0.0
    # The Mogi source inflates: its peak moves towards the satellite by mogi_rate per year.
    assert v.max() == pytest.approx(0.04, abs=0.001)  # plus a little of the fault
    stable = _read(default_sim.truth_dir / "stable.tif").astype(bool)
    assert 0.2 < stable.mean() < 0.95
    assert np.abs(v[stable]).max() < 0.001


def test_baselines_are_spread_like_the_orbit_tube(tmp_path):
    sim = simulate(SimulateSarConfig(out=tmp_path / "s", dates=60, size=32, seed=1))
    b = np.array(json.loads((sim.truth_dir / "truth.json").read_text())["bperp_m"])
    assert 40 < np.std(b) < 80  # drawn from N(0, 60 m), relative to the first date


def test_interferogram_phase_has_the_fixed_sign(tmp_path):
    """phi_ij of slc_i conj(slc_j) is -4 pi / lambda (d_j - d_i): motion towards the
    satellite shortens the range."""
    sim = simulate(SimulateSarConfig(out=tmp_path / "s", dates=4, size=128, seed=2,
                                     deformation="mogi", mogi_rate=0.2, atmosphere_m=0.0,
                                     dem_error_m=0.0))
    ifg, coh = _ifg(sim, 0, 3)
    with rasterio.open(sim.truth_dir / "timeseries.tif") as ds:
        d = multilook(ds.read(4) - ds.read(1), (4, 4))
    assert np.abs(d).max() > 0.015  # large enough to tell the signs apart (> 3 rad)
    expected = -4 * np.pi / WAVELENGTH * d
    good = coh > 0.8
    assert good.mean() > 0.5
    err = _wrap(np.angle(ifg) - expected)[good]
    assert np.median(np.abs(err)) < 0.15
    # where the signal is 0.5-2.5 rad, the opposite sign would be off by 1-5 rad
    clear = good & (np.abs(expected) > 0.5) & (np.abs(expected) < 2.5)
    assert clear.sum() > 50
    assert np.median(np.abs(_wrap(np.angle(ifg) + expected)[clear])) > 0.8


def test_dem_error_enters_through_the_perpendicular_baseline(tmp_path):
    """Range change -B_k dz / (R sin theta) at date k: in displacement units the pair
    (i, j) carries +(B_j - B_i) dz / (R sin theta), the column the pipeline fits."""
    cfg = SimulateSarConfig(out=tmp_path / "s", dates=6, size=128, seed=4,
                            deformation="none", atmosphere_m=0.0, dem_error_m=12.0,
                            bperp_std_m=150.0)
    sim = simulate(cfg)
    b = np.array(json.loads((sim.truth_dir / "truth.json").read_text())["bperp_m"])
    j = int(np.argmax(np.abs(b)))
    ifg, coh = _ifg(sim, 0, j)
    dz = multilook(_read(sim.truth_dir / "dem_error.tif"), (4, 4))
    disp = (b[j] - b[0]) * dz / (cfg.slant_range * math.sin(math.radians(cfg.incidence_deg)))
    assert np.abs(disp).max() > 0.004
    expected = -4 * np.pi / WAVELENGTH * disp
    good = coh > 0.8
    assert np.median(np.abs(_wrap(np.angle(ifg) - expected)[good])) < 0.15
    clear = good & (np.abs(expected) > 0.5) & (np.abs(expected) < 2.5)
    assert clear.sum() > 50
    assert np.median(np.abs(_wrap(np.angle(ifg) + expected)[clear])) > 0.8


def test_coherence_decays_with_time_span_and_in_the_patch(tmp_path):
    cfg = SimulateSarConfig(out=tmp_path / "s", dates=5, size=256, seed=5, rho=0.9,
                            rho_patch=0.5, deformation="none", atmosphere_m=0.0,
                            dem_error_m=0.0)
    sim = simulate(cfg)
    yy, xx = (np.mgrid[:32, :32] + 0.5) / 32  # centres of the 8 x 8 look windows
    patch = ((yy - 0.75) ** 2 + (xx - 0.3) ** 2) < 0.08 ** 2
    outside = ((yy - 0.75) ** 2 + (xx - 0.3) ** 2) > 0.12 ** 2
    for lag in (1, 2, 4):
        _, coh = _ifg(sim, 0, lag, looks=(8, 8))
        # 64-look sample coherence: unbiased to ~0.01 above 0.5
        assert np.median(coh[outside]) == pytest.approx(cfg.rho ** lag, abs=0.03)
        if cfg.rho_patch ** lag > 0.2:
            assert np.median(coh[patch]) == pytest.approx(cfg.rho_patch ** lag, abs=0.06)
        else:
            assert np.median(coh[patch]) < 0.25


def test_atmosphere_has_the_requested_strength(tmp_path):
    cfg = SimulateSarConfig(out=tmp_path / "s", dates=2, size=256, seed=6,
                            deformation="none", atmosphere_m=0.003, dem_error_m=0.0,
                            rho=1.0)
    sim = simulate(cfg)
    ifg, _ = _ifg(sim, 0, 1)
    disp = -WAVELENGTH / (4 * np.pi) * np.angle(ifg)  # 6 mm << lambda / 4: no wrapping
    # difference of two independent delays of 3 mm standard deviation each
    assert np.std(disp) == pytest.approx(math.sqrt(2) * 0.003, rel=0.25)


def test_no_deformation_truth_is_zero_and_all_stable(tmp_path):
    sim = simulate(SimulateSarConfig(out=tmp_path / "s", dates=2, size=32,
                                     deformation="none"))
    assert np.all(_read(sim.truth_dir / "velocity.tif") == 0)
    assert np.all(_read(sim.truth_dir / "stable.tif") == 1)


def test_fault_offsets_the_two_sides_by_the_projected_creep(tmp_path):
    cfg = SimulateSarConfig(out=tmp_path / "s", dates=2, size=128, deformation="fault",
                            fault_rate=0.02)
    sim = simulate(cfg)
    v = _read(sim.truth_dir / "velocity.tif")
    east, west = np.median(v[:, -4:]), np.median(v[:, :8])
    # left-lateral on a north-south fault: the east side moves north
    expected = cfg.fault_rate * los_unit_vector(cfg.incidence_deg, cfg.heading_deg)[1]
    assert east - west == pytest.approx(expected, rel=0.2)


def test_same_seed_same_stack(tmp_path):
    a = simulate(SimulateSarConfig(out=tmp_path / "a", dates=2, size=32, seed=9))
    b = simulate(SimulateSarConfig(out=tmp_path / "b", dates=2, size=32, seed=9))
    c = simulate(SimulateSarConfig(out=tmp_path / "c", dates=2, size=32, seed=10))
    name = f"slc_{a.dates[1]:%Y%m%d}.tif"
    sa, sb, sc = (_read(s.stack_dir / name) for s in (a, b, c))
    assert np.array_equal(sa, sb)
    assert not np.array_equal(sa, sc)


def test_los_vector_points_up_and_is_unit():
    e = los_unit_vector(39.0, -167.0)
    assert np.linalg.norm(e) == pytest.approx(1.0)
    assert e[2] == pytest.approx(math.cos(math.radians(39.0)))
    # descending (heading ~193 deg), right-looking towards the west-north-west: the
    # satellite lies east and a little south of the ground point
    assert e[0] == pytest.approx(math.sin(math.radians(39.0)) * 0.974, abs=0.01)
    assert -0.2 < e[1] < -0.1
