"""Tests of the GDM-OPT simulator: fields, texture, warping, SNR, files and truth."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pydantic import ValidationError

import simulators.opt as sim
from gdmcore import InputError
from simulators.opt import (
    Case,
    SimulateConfig,
    SimulateOutputs,
    displacement_field,
    fractal_texture,
    render,
    simulate,
    warp_periodic,
)

# --------------------------------------------------------------------------- helpers


def phase_shift(a: np.ndarray, b: np.ndarray, taper: bool = False,
                fmax: float = 0.12) -> tuple[float, float]:
    """Shift (rows, cols) of the features of ``a`` in ``b``, by the cross-spectrum phase.

    Independent of the simulator's spline: ``b(x) = a(x - s)`` gives a cross-spectrum
    ``B conj(A) = |A|^2 exp(-2 pi i f.s)``; the phase slope is fitted by weighted least
    squares over the low frequencies (no unwrapping needed for ``|s| * fmax < 0.5``).
    """
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    if taper:
        win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
        a, b = a * win, b * win
    cross = np.fft.fft2(b) * np.conj(np.fft.fft2(a))
    fy = np.fft.fftfreq(a.shape[0])[:, None] * np.ones(a.shape)
    fx = np.fft.fftfreq(a.shape[1])[None, :] * np.ones(a.shape)
    use = (np.hypot(fy, fx) < fmax) & (np.hypot(fy, fx) > 0)
    w = np.sqrt(np.abs(cross[use]))
    design = np.stack([fy[use], fx[use]], axis=1) * (-2.0 * np.pi)
    sol, *_ = np.linalg.lstsq(design * w[:, None], np.angle(cross[use]) * w, rcond=None)
    return float(sol[0]), float(sol[1])


def window_shift(a: np.ndarray, b: np.ndarray, row: int, col: int,
                 half: int) -> tuple[float, float]:
    """Shift of the window of ``a`` centred at (row, col) in ``b``, refined iteratively.

    The window of ``b`` follows the integer part of the estimate, so the final phase fit
    only sees a sub-pixel residual (the tapered-window estimate is biased towards 0 in
    proportion to the shift).
    """
    off = np.zeros(2)
    for _ in range(3):
        o = np.rint(off).astype(int)
        wa = a[row - half:row + half, col - half:col + half]
        wb = b[row + o[0] - half:row + o[0] + half, col + o[1] - half:col + o[1] + half]
        off = o + np.array(phase_shift(wa, wb, taper=True))
    return float(off[0]), float(off[1])


def radial_power(tex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum (frequency in cycles/pixel, power)."""
    n = tex.shape[0]
    power = np.abs(np.fft.fft2(tex)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    edges = np.linspace(0.0, 0.5, 65)
    idx = np.digitize(f.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < 64)
    sums = np.bincount(idx[ok], power.ravel()[ok], minlength=64)
    counts = np.bincount(idx[ok], minlength=64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    keep = counts > 0
    return centres[keep], sums[keep] / counts[keep]


def read(path: Path, band: int | None = None) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(band) if band else src.read()


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulateConfig,
                                                                 SimulateOutputs]:
    """Noise-free fault series, 512 px, 4 dates, 3 px at the last date."""
    cfg = SimulateConfig(case="fault", size=512, dates=4, interval_days=45, amplitude_px=3.0,
                         snr_db=200.0, radiometric_change=0.0, seed=3)
    return cfg, simulate(cfg, tmp_path_factory.mktemp("fault"))


# --------------------------------------------------------------------------- config


def test_config_rejects_bad_input() -> None:
    with pytest.raises(ValidationError):
        SimulateConfig(sizee=512)  # type: ignore[call-arg]
    for bad in ({"size": 32}, {"dates": 1}, {"snr_db": -1.0}, {"amplitude_px": 60.0},
                {"mtf_nyquist": 0.0}, {"epsg": 4326}, {"epsg": 1234}, {"case": "volcano"}):
        with pytest.raises(ValidationError):
            SimulateConfig(**bad)
    for name, info in SimulateConfig.model_fields.items():
        assert info.description, name


def test_dates_and_fractions() -> None:
    cfg = SimulateConfig(dates=4, interval_days=30, start_date=dt.date(2024, 2, 20))
    assert cfg.acquisition_dates() == [dt.date(2024, 2, 20), dt.date(2024, 3, 21),
                                       dt.date(2024, 4, 20), dt.date(2024, 5, 20)]
    assert cfg.fractions() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0], abs=1e-15)
    assert cfg.years() == pytest.approx(90 / 365.25, rel=1e-15)


# --------------------------------------------------------------------------- texture


@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_texture_spectrum_slope(beta: float) -> None:
    tex = fractal_texture((256, 256), beta, 1.0, np.random.default_rng(1))
    assert tex.dtype == np.float64
    assert abs(tex.mean()) < 1e-12
    assert tex.std() == pytest.approx(1.0, abs=1e-12)
    f, p = radial_power(tex)
    mid = (f > 0.03) & (f < 0.3)
    slope = np.polyfit(np.log(f[mid]), np.log(p[mid]), 1)[0]
    assert slope == pytest.approx(-beta, abs=0.2)


def test_texture_mtf_at_nyquist() -> None:
    n, beta = 256, 2.0
    rng_seed = 5
    sharp = fractal_texture((n, n), beta, 1.0, np.random.default_rng(rng_seed))
    blurred = fractal_texture((n, n), beta, 0.3, np.random.default_rng(rng_seed))
    # same phases and power law: the spectral ratio is the MTF (up to the std scaling)
    ratio = np.abs(np.fft.fft2(blurred)) / np.maximum(np.abs(np.fft.fft2(sharp)), 1e-300)
    low = ratio[1, 0]  # f = 1/256: MTF ~ 1
    assert ratio[n // 2, 0] / low == pytest.approx(0.3, rel=0.01)
    assert ratio[0, n // 2] / low == pytest.approx(0.3, rel=0.01)


def test_warp_integer_shift_equals_roll() -> None:
    tex = fractal_texture((128, 96), 2.0, 0.3, np.random.default_rng(2))
    out = warp_periodic(tex, 0.0, 2.0)
    assert np.abs(out - np.roll(tex, 2, axis=1)).max() < 1e-6
    out = warp_periodic(tex, -3.0, 0.0)
    assert np.abs(out - np.roll(tex, -3, axis=0)).max() < 1e-6


@pytest.mark.parametrize(("d_row", "d_col"), [(0.0, 1.5), (-0.7, 0.0), (0.4, -2.25)])
def test_warp_subpixel_moves_features_by_d(d_row: float, d_col: float) -> None:
    tex = fractal_texture((256, 256), 2.0, 0.3, np.random.default_rng(4))
    out = warp_periodic(tex, d_row, d_col)
    mr, mc = phase_shift(tex, out)
    assert mr == pytest.approx(d_row, abs=0.01)
    assert mc == pytest.approx(d_col, abs=0.01)


# --------------------------------------------------------------------------- fields


def test_fault_amplitude_strike_and_sense() -> None:
    size, amp = 512, 3.0
    d_row, d_col = displacement_field("fault", size, amp)
    east, north = d_col, -d_row
    mag = np.hypot(east, north)
    assert mag.max() == pytest.approx(amp, rel=0.05)
    moving = mag > 0.1 * amp
    assert moving.mean() > 0.5
    azimuth = np.degrees(np.arctan2(east[moving], north[moving])) % 180.0
    assert np.abs(azimuth - 30.0).max() < 1.0
    # right-lateral: east of the fault moves towards azimuth 210 (SSW), west towards 30
    c = (size - 1) // 2
    assert north[c, c + 150] < -0.5 and east[c, c + 150] < -0.3
    assert north[c, c - 150] > 0.5 and east[c, c - 150] > 0.3
    # smooth profile (elastic-like): at most ~amp/10 px per pixel across the fault
    assert np.abs(np.diff(mag, axis=1)).max() < 0.1 * amp


def test_landslide_and_glacier_are_local() -> None:
    cases: tuple[tuple[Case, float], ...] = (("landslide", 4.0), ("glacier", 8.0))
    for case, amp in cases:
        d_row, d_col = displacement_field(case, 512, amp, seed=1)
        mag = np.hypot(d_row, d_col)
        assert mag.max() == pytest.approx(amp, rel=0.05)
        assert (mag == 0).mean() > 0.5, case
        peak = np.unravel_index(np.argmax(mag), mag.shape)
        if case == "landslide":  # towards the south-east
            assert d_col[peak] > 0 and -d_row[peak] < 0
        else:  # flows south, parabolic across: half speed at 1/sqrt(2) of the half-width
            assert d_row[peak] > 0
            row = mag[peak[0]]
            on = np.flatnonzero(row > 0)
            assert on.size < 512 / 8 * 1.5
            assert row[on].max() == pytest.approx(amp, rel=0.01)


def test_zero_case_is_zero(tmp_path: Path) -> None:
    d_row, d_col = displacement_field("zero", 128, 5.0)
    assert not d_row.any() and not d_col.any()
    cfg = SimulateConfig(case="zero", size=128, dates=3, amplitude_px=5.0, snr_db=200.0,
                         radiometric_change=0.0)
    out = simulate(cfg, tmp_path)
    for p in (out.truth_east, out.truth_north, out.velocity_east, out.velocity_north):
        assert not read(p).any()
    first = read(out.images[0])
    for p in out.images[1:]:
        assert np.array_equal(read(p), first)


def test_inverse_mapping_is_exact() -> None:
    fld = sim._make_field("landslide", 256, 12.0, seed=2)
    rng = np.random.default_rng(0)
    y = rng.uniform(0.0, 255.0, (2, 5000))
    xr, xc = sim._invert(fld, 0.75, y[0].copy(), y[1].copy())
    dr, dc = fld(xr, xc)
    assert np.abs(xr + 0.75 * dr - y[0]).max() < 1e-8
    assert np.abs(xc + 0.75 * dc - y[1]).max() < 1e-8


def test_folding_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folds"):
        simulate(SimulateConfig(case="landslide", size=64, amplitude_px=40.0), tmp_path)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- radiometry


@pytest.mark.parametrize("snr_db", [20.0, 30.0, 60.0])
def test_measured_snr_matches_request(snr_db: float) -> None:
    cfg = SimulateConfig(case="fault", size=384, dates=2, snr_db=snr_db, seed=11)
    for rd in render(cfg, keep_clean=True):
        assert rd.clean is not None
        noise = rd.dn.astype(np.float64) - rd.clean
        measured = 10.0 * math.log10(rd.clean.var() / noise.var())
        assert measured == pytest.approx(snr_db, abs=0.5)
        assert abs(noise.mean()) < 0.05 * noise.std() + 0.05
        assert rd.dn.min() >= 1


def test_radiometric_change_changes_levels_not_texture() -> None:
    dn = {}
    for s in (0.0, 1.0):
        cfg = SimulateConfig(case="zero", size=256, dates=3, snr_db=200.0,
                             radiometric_change=s)
        dn[s] = [rd.dn.astype(np.float64) for rd in render(cfg)]
    assert np.abs(dn[0.0][1] - dn[0.0][0]).max() == 0.0
    means = [d.mean() for d in dn[1.0]]
    assert max(means) - min(means) > 20.0  # DN, gain/offset/gamma/illumination
    # the texture survives: the smooth illumination cancels in horizontal differences
    grad0 = np.diff(dn[1.0][0], axis=1).ravel()
    for d in dn[1.0][1:]:
        assert np.corrcoef(np.diff(d, axis=1).ravel(), grad0)[0, 1] > 0.99


def test_float32_path_for_large_images(monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    monkeypatch.setattr(sim, "_BIG", 128)
    cfg = SimulateConfig(case="glacier", size=256, dates=2, amplitude_px=4.0, snr_db=25.0)
    rds = list(render(cfg, keep_clean=True))
    assert rds[1].clean is not None and rds[1].clean.dtype == np.float32
    assert sim.measured_snr_db(rds[1].clean, rds[1].dn) == pytest.approx(25.0, abs=0.5)
    out = simulate(cfg, tmp_path)
    assert np.abs(read(out.truth_north, 2)).max() == pytest.approx(40.0, rel=0.05)


# --------------------------------------------------------------------------- files, truth


def test_truth_signs_match_measured_motion(fault_run: tuple[SimulateConfig,
                                                            SimulateOutputs]) -> None:
    cfg, out = fault_run
    i0 = read(out.images[0], 1).astype(np.float64)
    i1 = read(out.images[-1], 1).astype(np.float64)
    east = read(out.truth_east, cfg.dates)
    north = read(out.truth_north, cfg.dates)
    c, half = (cfg.size - 1) / 2.0, 48
    phi = math.radians(30.0)
    for side in (-1.0, 1.0):  # west, east of the fault
        across = side * 150.0
        r = int(round(c + across * math.sin(phi)))
        col = int(round(c + across * math.cos(phi)))
        win = np.s_[r - half:r + half, col - half:col + half]
        mr, mc = window_shift(i0, i1, r, col, half)
        w = np.outer(np.hanning(2 * half), np.hanning(2 * half))
        te = float((east[win] * w).sum() / w.sum())
        tn = float((north[win] * w).sum() / w.sum())
        assert mc * cfg.resolution == pytest.approx(te, abs=0.05 * cfg.resolution)
        assert -mr * cfg.resolution == pytest.approx(tn, abs=0.05 * cfg.resolution)
        if side < 0:  # west block: features move to smaller rows, North positive
            assert mr < -1.0 and tn > 10.0
        else:
            assert mr > 1.0 and tn < -10.0


def test_truth_bands_and_velocity(fault_run: tuple[SimulateConfig, SimulateOutputs]) -> None:
    cfg, out = fault_run
    years = cfg.years()
    for truth, vel in ((out.truth_east, out.velocity_east),
                       (out.truth_north, out.velocity_north)):
        with rasterio.open(truth) as src:
            assert src.count == cfg.dates and src.dtypes[0] == "float32"
            assert list(src.descriptions) == [d.isoformat() for d in out.dates]
            bands = src.read().astype(np.float64)
        assert not bands[0].any()
        last = bands[-1]
        for k, frac in enumerate(cfg.fractions()):
            assert np.allclose(bands[k], frac * last, rtol=1e-6, atol=1e-9)
        v = read(vel, 1).astype(np.float64)
        big = np.abs(last) > 1e-3
        assert np.abs(v[big] * years / last[big] - 1.0).max() < 1e-6
    mag = np.hypot(read(out.truth_east, cfg.dates), read(out.truth_north, cfg.dates))
    assert mag.max() == pytest.approx(cfg.amplitude_px * cfg.resolution, rel=1e-6)
    doc = json.loads(out.truth_json.read_text())
    assert doc["dates"] == [d.isoformat() for d in out.dates]
    assert doc["max_displacement_px"] == pytest.approx(cfg.amplitude_px, rel=1e-6)
    assert doc["case"]["name"] == "fault" and "atan" in doc["case"]["formula"]
    assert 0.0 < doc["stable_mask"]["fraction"] < 0.5


def test_files_names_and_georeferencing(tmp_path: Path) -> None:
    cfg = SimulateConfig(case="landslide", size=320, dates=3, interval_days=17,
                         start_date=dt.date(2021, 12, 25), epsg=32611,
                         origin=(350000.0, 3800000.0), resolution=20.0, seed=9)
    out = simulate(cfg, tmp_path)
    assert out.dates == cfg.acquisition_dates()
    assert [p.name for p in out.images] == [
        "S2SIM_20211225_B04.tif", "S2SIM_20220111_B04.tif", "S2SIM_20220128_B04.tif"]
    expected = Affine(20.0, 0.0, 350000.0, 0.0, -20.0, 3800000.0)
    for p, d in zip(out.images, out.dates, strict=True):
        with rasterio.open(p) as src:
            assert src.crs.to_epsg() == 32611
            assert src.transform == expected
            assert (src.width, src.height, src.count) == (320, 320, 1)
            assert src.dtypes[0] == "uint16" and src.nodata == 0
            assert src.compression is not None and src.compression.name == "deflate"
            assert src.block_shapes[0] == (320, 320)
            assert src.tags()["TIFFTAG_DATETIME"] == f"{d:%Y:%m:%d} 10:30:00"
            assert src.read(1).min() >= 1
    for p in (out.truth_east, out.truth_north, out.velocity_east, out.velocity_north):
        with rasterio.open(p) as src:
            assert src.crs.to_epsg() == 32611 and src.transform == expected
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(p.name for p in out.all_paths())  # no temporary leftovers


def test_seed_reproduces_bit_identical_outputs(tmp_path: Path) -> None:
    cfg = SimulateConfig(case="glacier", size=192, dates=3, amplitude_px=5.0, seed=21)
    a = simulate(cfg, tmp_path / "a")
    b = simulate(cfg, tmp_path / "b")
    for pa, pb in zip(a.all_paths(), b.all_paths(), strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    c = simulate(cfg.model_copy(update={"seed": 22}), tmp_path / "c")
    diff = read(c.images[0]).astype(np.float64) - read(a.images[0]).astype(np.float64)
    assert diff.std() > 100.0
