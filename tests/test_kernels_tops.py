"""TOPS kernels (ramp, Doppler, deramping, sinc resampling, ESD) against naive references."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.tops import RampModel, deramp, doppler_centroid, esd_shift, ramp_phase, resample_sinc
from tests.naive_tops import naive_ramp, naive_sinc_interp

# Real-like IW1 values (S1B 2021-04-01 annotation) for the ramp.
MODEL = RampModel.from_annotation(
    speed=7590.0, radar_frequency=5.405000454334350e9, steering_rate=np.radians(1.590368784),
    fm=(5.343035814454385e-03, np.array([-2.320266569368127e3, 4.501352190618916e5,
                                         -7.918611377923657e7])),
    dc=(5.351265971712348e-03, np.array([-1.793574, 3.565045e3, -3.326166e6])),
    tau0=5.343035814454385e-03, fs=6.434523812571428e07, dt=2.055556299999998e-03,
    lines=1501, samples=21632)


def test_ramp_phase_matches_the_written_out_formula():
    rng = np.random.default_rng(0)
    lines = rng.uniform(0, 1501, 50)
    samples = rng.uniform(0, 21632, 50)
    got = ramp_phase(MODEL, lines, samples)
    want = np.array([naive_ramp(MODEL.ks, MODEL.fm, MODEL.dc, MODEL.tau0, MODEL.fs, MODEL.dt,
                                MODEL.line_mid, MODEL.tau_mid, a, b)
                     for a, b in zip(lines, samples, strict=True)])
    err = np.abs(got - want).max()
    assert err < 1e-6, f"ramp phase differs by {err} rad"


def test_doppler_centroid_is_the_ramp_derivative_and_spans_tops_range():
    lines = np.array([100.0, 750.0, 1400.0])
    s = np.full(3, 10000.0)
    h = 1e-3
    deriv = (ramp_phase(MODEL, lines + h, s) - ramp_phase(MODEL, lines - h, s)) / (2 * h)
    f = deriv / (2 * np.pi * MODEL.dt)
    fd = doppler_centroid(MODEL, lines, s)
    assert np.abs(f - fd).max() < 1e-3, (f, fd)
    # S1 IW: the data Doppler sweeps several kHz across a burst (kt ~ 1.7 kHz/s)
    span = float(fd[-1] - fd[0])
    assert 3500 < span < 6000, f"Doppler span {span:.0f} Hz"


def test_deramp_brings_a_tops_burst_to_baseband():
    rng = np.random.default_rng(1)
    ny, nx = 256, 32
    base = np.fft.ifft(np.fft.fft(rng.normal(size=(ny, nx)) + 1j * rng.normal(size=(ny, nx)),
                                  axis=0) * (np.abs(np.fft.fftfreq(ny))[:, None] < 0.25), axis=0)
    small = RampModel(ks=MODEL.ks, fm=MODEL.fm, dc=MODEL.dc, tau0=MODEL.tau0, fs=MODEL.fs,
                      dt=MODEL.dt * 6, line_mid=ny / 2, tau_mid=MODEL.tau_mid)
    lines = np.arange(ny)[:, None].astype(float)
    samples = np.arange(nx)[None, :].astype(float)
    data = base * np.exp(1j * ramp_phase(small, lines, samples))
    spec = np.abs(np.fft.fft(data, axis=0)) ** 2
    inband_before = spec[np.abs(np.fft.fftfreq(ny)) < 0.25].sum() / spec.sum()
    spec2 = np.abs(np.fft.fft(deramp(data, small), axis=0)) ** 2
    inband_after = spec2[np.abs(np.fft.fftfreq(ny)) < 0.25].sum() / spec2.sum()
    assert inband_after > 0.99, f"{inband_after:.3f} of the energy in band after deramping"
    assert inband_before < 0.8, f"the ramped burst was already baseband ({inband_before:.3f})"


def test_resample_sinc_matches_naive_loops():
    rng = np.random.default_rng(2)
    data = (rng.normal(size=(20, 24)) + 1j * rng.normal(size=(20, 24))).astype(np.complex64)
    ys = rng.uniform(-1, 21, 60)
    xs = rng.uniform(-1, 25, 60)
    got, ok = resample_sinc(data, ys, xs, taps=6)
    want = np.array([naive_sinc_interp(data, y, x, 6) for y, x in zip(ys, xs, strict=True)])
    assert ok.sum() > 10 and (~ok).sum() > 5
    assert np.all(got[~ok] == 0)
    err = np.abs(got - want).max()
    assert err < 1e-4, f"max difference {err}"


def test_resample_sinc_interpolates_bandlimited_signals():
    rng = np.random.default_rng(3)
    ny, nx = 64, 64
    freqs = rng.uniform(-0.3, 0.3, (12, 2))
    amps = rng.normal(size=12) + 1j * rng.normal(size=12)

    def signal(y, x):
        return sum(a * np.exp(2j * np.pi * (f[0] * y + f[1] * x))
                   for a, f in zip(amps, freqs, strict=True))

    yy, xx = np.mgrid[:ny, :nx].astype(float)
    data = signal(yy, xx).astype(np.complex64)
    ys = rng.uniform(20, 44, 200)
    xs = rng.uniform(20, 44, 200)
    got, ok = resample_sinc(data, ys, xs, taps=16)
    want = signal(ys, xs)
    rel = np.sqrt(np.mean(np.abs(got - want) ** 2) / np.mean(np.abs(want) ** 2))
    assert ok.all()
    assert rel < 0.01, f"relative interpolation error {rel:.4f}"


def test_esd_shift_recovers_a_known_misregistration():
    rng = np.random.default_rng(4)
    n, dt, e = 5000, 2.0556e-3, 0.0123
    f1 = rng.uniform(2300, 2500, n)
    f2 = f1 - 4900.0
    phase0 = rng.uniform(-np.pi, np.pi, n)
    a = np.exp(1j * (phase0 - 2 * np.pi * f1 * e * dt))
    b = np.exp(1j * (phase0 - 2 * np.pi * f2 * e * dt))
    got, coh = esd_shift(a, b, f1 - f2, dt)
    assert abs(got - e) < 1e-9, got
    assert coh > 0.999


def test_bad_inputs_are_rejected():
    data = np.zeros((8, 8), np.complex64)
    with pytest.raises(ValueError, match="even"):
        resample_sinc(data, np.zeros(2), np.zeros(2), taps=5)
    with pytest.raises(TypeError, match="complex"):
        resample_sinc(np.zeros((8, 8)), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        resample_sinc(data, np.zeros(2), np.zeros(3))
    vals, ok = resample_sinc(np.ones((16, 16), np.complex64), np.array([np.nan, 7.5]),
                             np.array([7.0, 7.5]))
    assert not ok[0] and ok[1] and abs(vals[1] - 1) < 1e-6
    with pytest.raises(ValueError, match="no valid"):
        esd_shift(np.zeros(3, complex), np.zeros(3, complex), np.ones(3), 1e-3)
    with pytest.raises(TypeError):
        deramp(np.zeros((4, 4)), MODEL)
