"""Simulated Sentinel-1 SAFE products -> ingest (TOPS coregistration, ESD, stitching) ->
GDM-SAR, against the simulator's truth; bad inputs exit 2."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from gdm.cli import main
from gdmcore import InputError
from gdmio.cog import validate_cog
from insar.ingest import IngestConfig, ingest, read_geometry
from kernels.geometry import geo2rdr, llh_to_ecef
from kernels.insar import multilook
from simulators.sar_safe import (
    SimulateSafeConfig,
    map_velocity_error,
    simulate_safe,
    velocity_at,
)
from tests.datafiles import DATA

REAL = DATA / "s1_safe_xarray_sentinel"


def _cli(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate_safe(SimulateSafeConfig(out=tmp_path_factory.mktemp("s1sim") / "sim",
                                            dates=6, seed=3))


@pytest.fixture(scope="module")
def stack_esd(sim, tmp_path_factory):
    return ingest(IngestConfig(safe=sim.safe_dir, out=tmp_path_factory.mktemp("esd") / "stack",
                               orbits=sim.orbit_dir, dem=sim.dem))


@pytest.fixture(scope="module")
def stack_noesd(sim, tmp_path_factory):
    return ingest(IngestConfig(safe=sim.safe_dir, out=tmp_path_factory.mktemp("noesd") / "s",
                               orbits=sim.orbit_dir, dem=sim.dem, esd=False))


def _slcs(stack):
    out = []
    for p in stack.paths:
        with rasterio.open(p) as ds:
            out.append(ds.read(1))
    return out


def test_stack_follows_the_fixed_convention(stack_esd, sim):
    from insar.stack import read_stack

    st = read_stack(stack_esd.stack_dir)
    assert st.dates == sim.dates
    assert abs(st.wavelength - sim.truth["wavelength"]) < 1e-9
    assert 25 < st.incidence_deg < 45 and 780e3 < st.slant_range < 900e3
    assert -175 < st.heading_deg < -160  # descending
    # perpendicular baselines: cross-track offsets of the simulated orbits are tens of metres
    assert st.bperp[0] == 0 and 1 < np.abs(st.bperp[1:]).max() < 200


def test_esd_residual_below_five_thousandths_of_a_pixel(stack_esd, sim):
    injected = sim.truth["timing_error_px"]
    residuals = []
    for k, info in enumerate(stack_esd.esd[1:], start=1):
        # the annotation times are early by `injected` lines: the correction must cancel it
        residuals.append(info["azimuth_shift_lines"] + injected[k])
        assert info["esd_coherence"][-1] > 0.7
    worst = float(np.abs(residuals).max())
    print(f"\nESD: injected {injected[1:]} px, residual vs truth "
          f"{[round(r, 5) for r in residuals]} px (max {worst:.5f} px)")
    assert worst < 0.005


def _jumps(stack):
    """Phase step at each stitch row: least-squares fit of offset + slope + step to the
    phase of the range-summed interferogram over 10 rows either side."""
    geom = json.loads((stack.stack_dir / "geometry.json").read_text())
    slcs = _slcs(stack)
    out = []
    for k in range(1, len(slcs)):
        ifg = slcs[0] * np.conj(slcs[k])
        for c in geom["stitch_rows"]:
            rows = np.arange(c - 10, c + 10)
            phase = np.unwrap(np.angle(ifg[rows].sum(axis=1)))
            design = np.column_stack([np.ones(rows.size), rows - c, (rows >= c).astype(float)])
            coef = np.linalg.lstsq(design, phase, rcond=None)[0]
            out.append(float(coef[2]))
    return np.array(out)


def test_no_phase_jump_at_burst_boundaries(stack_esd, stack_noesd):
    with_esd = np.abs(_jumps(stack_esd)).max()
    without = np.abs(_jumps(stack_noesd)).max()
    print(f"\nburst-boundary phase jump: {with_esd:.4f} rad with ESD, {without:.4f} rad "
          "without (negative control)")
    assert with_esd < 0.05
    assert without > 0.15


def test_known_points_geolocate_within_one_pixel(stack_esd, sim):
    geom = read_geometry(stack_esd.stack_dir)
    amp = np.abs(_slcs(stack_esd)[0])
    errors = []
    for cr in sim.truth["corner_reflectors"]:
        xyz = llh_to_ecef(cr["lat"], cr["lon"], cr["height"])[None]
        t, r = geo2rdr(xyz, geom.poly.coef, geom.poly.t_mid, geom.poly.t_scale,
                       t_guess=float(geom.line_times.mean()))
        row, col = float(geom.row_of(t)[0]), float(geom.col_of(r)[0])
        i0, j0 = int(round(row)), int(round(col))
        win = amp[i0 - 5:i0 + 6, j0 - 5:j0 + 6]
        a, b = np.unravel_index(np.argmax(win), win.shape)
        i, j = i0 - 5 + a, j0 - 5 + b

        def vertex(m, c, p):
            den = m - 2 * c + p
            return 0.0 if den == 0 else 0.5 * (m - p) / den

        pi = i + vertex(amp[i - 1, j], amp[i, j], amp[i + 1, j])
        pj = j + vertex(amp[i, j - 1], amp[i, j], amp[i, j + 1])
        errors.append((pi - row, pj - col))
        # the radar-to-map table at the peak names the reflector's place
        dn = (geom.lat[i, j] - cr["lat"]) * 111_320
        de = (geom.lon[i, j] - cr["lon"]) * 111_320 * np.cos(np.radians(cr["lat"]))
        assert np.hypot(dn, de) < 300, f"lookup table {np.hypot(dn, de):.0f} m off"
    err = np.abs(np.array(errors))
    print(f"\ncorner reflectors: max geolocation error {err[:, 0].max():.3f} rows, "
          f"{err[:, 1].max():.3f} columns")
    assert err.max() < 1.0


def test_zip_products_ingest_like_folders(sim, tmp_path):
    folders, zips = tmp_path / "f", tmp_path / "z"
    folders.mkdir()
    zips.mkdir()
    for p in sim.products[:2]:
        shutil.copytree(p, folders / p.name)
        with zipfile.ZipFile(zips / f"{p.stem}.zip", "w") as z:
            for f in p.rglob("*"):
                z.write(f, f"{p.name}/{f.relative_to(p).as_posix()}")
    a = ingest(IngestConfig(safe=folders, out=tmp_path / "a", orbits=sim.orbit_dir,
                            dem=sim.dem))
    b = ingest(IngestConfig(safe=zips, out=tmp_path / "b", orbits=sim.orbit_dir, dem=sim.dem))
    diff = max(float(np.abs(x - y).max()) for x, y in zip(_slcs(a), _slcs(b), strict=True))
    assert diff == 0.0


@pytest.mark.slow
def test_cli_safe_to_velocity_within_2_mm_per_year(sim, tmp_path):
    out = tmp_path / "products"
    res = _cli(["sar", "run", str(sim.safe_dir), "--out", str(out), "--orbits",
                str(sim.orbit_dir), "--dem", str(sim.dem), "--orbit-source", "precise", "-q"])
    assert res.exit_code == 0, res.output
    with rasterio.open(out / "velocity.tif") as ds:
        v = ds.read(1)
    looks = tuple(json.loads((out / "report.json").read_text())["grid"]["looks"])
    with np.load(out / "stack" / "geometry.npz") as g:
        vt = multilook(velocity_at(g["lat"], g["lon"], sim.truth).astype(np.float32), looks)
    vt = vt[:v.shape[0], :v.shape[1]]
    ok = np.isfinite(v)
    err = v - vt
    err -= np.median(err[ok & (np.abs(vt) < 0.001)])  # referenced to the far field
    rmse = float(np.sqrt(np.mean(err[ok] ** 2)))
    assert ok.mean() > 0.9, f"{ok.mean():.1%} of pixels kept"
    assert np.nanmax(v) - np.nanmedian(v) > 0.02  # the 30 mm/yr bump is there
    # geocoded (UTM) velocity
    gv_path = out / "geocoded" / "velocity.tif"
    valid, errors, _ = validate_cog(gv_path)
    assert valid, errors
    with rasterio.open(gv_path) as ds:
        assert ds.crs.to_epsg() in range(32601, 32661)
    grmse, g_valid = map_velocity_error(gv_path, sim.truth)
    print(f"\nvelocity RMSE {rmse * 1000:.2f} mm/yr (radar grid, {ok.mean():.1%} kept), "
          f"{grmse * 1000:.2f} mm/yr geocoded ({g_valid} map pixels)")
    assert rmse < 0.002 and grmse < 0.002
    for name in ("timeseries.tif", "mean_coherence.tif"):
        assert (out / "geocoded" / name).is_file()


def _mode_ew(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    out = shutil.copytree(src, dest / src.name)
    man = out / "manifest.safe"
    man.write_text(man.read_text().replace("s1sarl1:mode>IW<", "s1sarl1:mode>EW<"))
    return dest


def test_bad_inputs_exit_2_and_write_nothing(sim, tmp_path):
    cases = {}
    empty = tmp_path / "no_eof"
    empty.mkdir()
    cases["orbit"] = [str(sim.safe_dir), "--orbits", str(empty), "--orbit-source", "precise"]
    cases["covers the AOI"] = [str(sim.safe_dir), "--aoi", "0", "0", "0.1", "0.1"]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in REAL.glob("*.SAFE"):
        (mixed / p.name).symlink_to(p)
    cases["mixed tracks"] = [str(mixed)]
    ew = _mode_ew(sim.products[0], tmp_path / "ew")
    shutil.copytree(sim.products[1], ew / sim.products[1].name)
    cases["mode EW"] = [str(ew)]
    for k, (message, args) in enumerate(cases.items()):
        out = tmp_path / f"out{k}"
        res = CliRunner().invoke(main, ["sar", "run", *args, "--out", str(out), "-q"])
        assert res.exit_code == 2, (message, res.output)
        assert message in res.output, (message, res.output)
        assert not out.exists(), f"{message}: {list(out.rglob('*'))}"
    with pytest.raises(InputError, match="orbit"):
        ingest(IngestConfig(safe=sim.safe_dir, out=tmp_path / "x", orbit_source="precise"))


def test_aoi_keeps_only_the_bursts_and_samples_it_needs(sim, stack_esd, tmp_path):
    m = sim.truth["velocity_model"]
    aoi = (m["lon"] - 0.01, m["lat"] - 0.01, m["lon"] + 0.01, m["lat"] + 0.01)
    small = ingest(IngestConfig(safe=sim.safe_dir, out=tmp_path / "aoi", orbits=sim.orbit_dir,
                                dem=sim.dem, aoi=aoi))
    assert set(small.burst_keys) < set(stack_esd.burst_keys), small.burst_keys
    g_full, g = read_geometry(stack_esd.stack_dir), read_geometry(small.stack_dir)
    assert g.lat.shape[1] < g_full.lat.shape[1]
    inside = ((g.lon >= aoi[0]) & (g.lon <= aoi[2]) & (g.lat >= aoi[1]) & (g.lat <= aoi[3]))
    assert inside.sum() > 50, "the AOI is not in the stack"
    # the same pixels as in the full stack (same reference geometry, same values)
    full = _slcs(stack_esd)[0]
    part = _slcs(small)[0]
    i, j = np.unravel_index(np.argmin(np.hypot(g_full.lat - g.lat[5, 5],
                                               g_full.lon - g.lon[5, 5])), g_full.lat.shape)
    assert np.abs(full[i, j] - part[5, 5]) < 1e-3 * np.abs(full[i, j]) + 1e-6


def test_cli_simulate_safe_writes_faithful_zips(tmp_path):
    from gdmio.s1.safe import open_safe, select_bursts

    res = _cli(["sar", "simulate-safe", str(tmp_path / "s"), "--dates", "2", "--bursts", "2",
                "--samples", "96", "--zip"])
    assert res.exit_code == 0, res.output
    zips = sorted((tmp_path / "s" / "safe").glob("S1A_IW_SLC__1SDV_*.zip"))
    assert len(zips) == 2 and len(list((tmp_path / "s" / "orbits").glob("*.EOF"))) == 2
    products = [open_safe(z) for z in zips]
    sel = select_bursts(products)
    assert len(sel.keys) == 2 and sel.bursts[0][0].burst_id == sel.bursts[1][0].burst_id
    ann = products[0].swath("IW1", "VV")
    assert (ann.lines_per_burst, ann.samples_per_burst) == (176, 96)
    data = ann.read_burst(ann.bursts[0])
    valid = data[10:-10, 10:-10]
    assert np.all(valid != 0) and np.all(data[:2] == 0)
    truth = json.loads((tmp_path / "s" / "truth.json").read_text())
    assert len(truth["corner_reflectors"]) == 3 and truth["dates"][0] == "2023-03-02"


def test_a_rerun_recognises_the_stack_of_the_same_products(sim, stack_esd, tmp_path):
    from insar.ingest import ingested

    assert ingested(sim.safe_dir, stack_esd.stack_dir)
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for p in sorted(sim.safe_dir.iterdir())[:-1]:  # one date less: another stack
        (fewer / p.name).symlink_to(p)
    assert not ingested(fewer, stack_esd.stack_dir)
    assert not ingested(sim.safe_dir, tmp_path / "nothing")
