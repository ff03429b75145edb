"""TOPS (Sentinel-1 IW) burst kernels: azimuth ramps, resampling, spectral diversity.

A focused TOPS burst carries an azimuth phase ramp (the beam sweeps, so the Doppler
centroid of the data grows linearly along the burst). With ``eta`` the azimuth time from
the burst centre and ``tau`` the two-way slant-range time (definitions of the ESA note
"Definition of the TOPS SLC deramping function"):

- ``ks = 2 |V| fc k_psi / c`` (steering Doppler rate; ``k_psi`` the steering rate, rad/s);
- ``ka(tau)`` the azimuth FM rate (annotation polynomial), ``kt = ka ks / (ka - ks)``;
- ``f_dc(tau)`` the data Doppler centroid (annotation polynomial);
- ``eta_c = -f_dc / ka``, ``eta_ref(tau) = eta_c(tau) - eta_c(tau_mid)``;
- ramp ``phi(eta, tau) = pi kt (eta - eta_ref)^2 + 2 pi f_dc (eta - eta_ref)``: the data is
  ``deramped * exp(i phi)``; its local Doppler centroid is
  ``f_dc + kt (eta - eta_ref)``. (ESA writes the deramping phase with the opposite sign,
  ``-pi kt (eta - eta_ref)^2 - 2 pi f_dc (eta - eta_ref)``, and multiplies by its
  exponential: the same operation.) ``eta`` is counted from line ``lines / 2``.

Resampling a burst (after deramping, so the signal is baseband) uses a separable
windowed-sinc kernel (Hann window, ``taps`` points per axis) in a numba loop.

The local azimuth Doppler centroid of a block of lines is measured by the lag-one
correlation estimator (:func:`azimuth_centroid`: ``f = prf arg(sum x[n+1] x*[n]) / 2 pi``,
the centroid of the azimuth power spectrum on the circle of width ``prf``). Measured in
blocks along a real Sentinel-1 burst (IW3, 2022-09-18, over land) it follows
:func:`doppler_centroid` within a few hertz and is centred after :func:`deramp`
(``tests/test_tops_real.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

__all__ = ["RampModel", "ramp_phase", "doppler_centroid", "deramp", "resample_sinc",
           "esd_shift", "azimuth_centroid", "block_centroids", "wrap_frequency"]

SPEED_OF_LIGHT = 299792458.0


@dataclass(frozen=True)
class RampModel:
    """Parameters of one burst's TOPS azimuth ramp (all SI units).

    ``fm`` and ``dc`` are ``(t0, coefficients...)`` of the azimuth FM rate and data
    Doppler centroid polynomials in ``tau - t0``; ``line_mid`` is the (fractional) line of
    the burst centre; ``tau0``/``fs`` map samples to range time; ``dt`` is the azimuth time
    interval.
    """

    ks: float
    fm: tuple[float, ...]
    dc: tuple[float, ...]
    tau0: float
    fs: float
    dt: float
    line_mid: float
    tau_mid: float

    @classmethod
    def from_annotation(cls, speed: float, radar_frequency: float, steering_rate: float,
                        fm: tuple[float, np.ndarray], dc: tuple[float, np.ndarray],
                        tau0: float, fs: float, dt: float, lines: int, samples: int
                        ) -> RampModel:
        """Build from annotation values (steering rate in rad/s)."""
        ks = 2.0 * speed * radar_frequency * steering_rate / SPEED_OF_LIGHT
        return cls(ks=ks, fm=(float(fm[0]), *map(float, fm[1])),
                   dc=(float(dc[0]), *map(float, dc[1])), tau0=tau0, fs=fs, dt=dt,
                   line_mid=0.5 * lines, tau_mid=tau0 + 0.5 * samples / fs)

    def _poly(self, p: tuple[float, ...], tau: np.ndarray) -> np.ndarray:
        x = tau - p[0]
        out = np.zeros_like(tau)
        for c in p[:0:-1]:
            out = out * x + c
        return out

    def terms(self, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(kt, f_dc, eta_ref)`` at (fractional) samples."""
        tau = self.tau0 + np.asarray(sample, np.float64) / self.fs
        ka = self._poly(self.fm, tau)
        fdc = self._poly(self.dc, tau)
        kt = ka * self.ks / (ka - self.ks)
        tm = np.array([self.tau_mid])
        eta_c_mid = -self._poly(self.dc, tm)[0] / self._poly(self.fm, tm)[0]
        eta_ref = -fdc / ka - eta_c_mid
        return kt, fdc, eta_ref


def _check_ramp_inputs(line, sample):
    line = np.asarray(line, np.float64)
    sample = np.asarray(sample, np.float64)
    line, sample = np.broadcast_arrays(line, sample)
    return line, sample


def ramp_phase(model: RampModel, line: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """TOPS ramp phase (rad) at (fractional) burst lines and samples (broadcast)."""
    line, sample = _check_ramp_inputs(line, sample)
    kt, fdc, eta_ref = model.terms(sample)
    eta = (line - model.line_mid) * model.dt - eta_ref
    return np.pi * kt * eta * eta + 2.0 * np.pi * fdc * eta


def doppler_centroid(model: RampModel, line: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """Local Doppler centroid (Hz) of the burst data at (fractional) lines and samples."""
    line, sample = _check_ramp_inputs(line, sample)
    kt, fdc, eta_ref = model.terms(sample)
    return fdc + kt * ((line - model.line_mid) * model.dt - eta_ref)


def deramp(data: np.ndarray, model: RampModel, first_line: int = 0, first_sample: int = 0
           ) -> np.ndarray:
    """``data * exp(-i phi)`` of a block of a burst.

    The block's first row and column are burst line ``first_line`` and sample
    ``first_sample``.
    """
    data = np.asarray(data)
    if data.ndim != 2 or not np.iscomplexobj(data):
        raise TypeError(f"data must be a 2-D complex array, got {data.dtype} {data.shape}")
    lines = np.arange(data.shape[0], dtype=np.float64)[:, None] + first_line
    samples = np.arange(data.shape[1], dtype=np.float64)[None, :] + first_sample
    return (data * np.exp(-1j * ramp_phase(model, lines, samples))).astype(np.complex64)


def resample_sinc(data: np.ndarray, lines: np.ndarray, samples: np.ndarray, taps: int = 8
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate a baseband complex image at fractional (line, sample) positions.

    Parameters
    ----------
    data : numpy.ndarray
        (ny, nx) complex array (a deramped burst).
    lines : numpy.ndarray
        Fractional row positions in ``data``.
    samples : numpy.ndarray
        Fractional column positions (same shape as ``lines``).
    taps : int
        Even kernel length per axis (Hann-windowed sinc).

    Returns
    -------
    (values complex64, valid bool): ``valid`` is False where the kernel leaves the array
    or the position is not finite; those values are 0.

    """
    data = np.asarray(data)
    if data.ndim != 2 or not np.iscomplexobj(data):
        raise TypeError(f"data must be a 2-D complex array, got {data.dtype} {data.shape}")
    if taps < 2 or taps % 2:
        raise ValueError(f"taps must be an even number >= 2, got {taps}")
    lines = np.asarray(lines, np.float64)
    samples = np.asarray(samples, np.float64)
    if lines.shape != samples.shape:
        raise ValueError(f"lines {lines.shape} and samples {samples.shape} differ in shape")
    out = np.zeros(lines.size, np.complex64)
    ok = np.zeros(lines.size, np.bool_)
    _sinc_loop(np.ascontiguousarray(data, np.complex64), np.ascontiguousarray(lines.ravel()),
               np.ascontiguousarray(samples.ravel()), taps, out, ok)
    return out.reshape(lines.shape), ok.reshape(lines.shape)


def esd_shift(ifg_first: np.ndarray, ifg_second: np.ndarray, delta_f: np.ndarray,
              dt: float) -> tuple[float, float]:
    """Azimuth misregistration (lines) from burst-overlap interferograms.

    ``ifg_first`` and ``ifg_second`` are the interferograms (reference times conjugate of
    the resampled secondary) of the same overlap pixels formed from the earlier and the
    later burst; ``delta_f`` the difference of the data Doppler centroids (earlier minus
    later burst, Hz) there. A secondary sampled ``e`` lines too late has phase
    ``-2 pi f e dt`` in each, so the double difference is ``-2 pi delta_f e dt``.

    Returns
    -------
    (e, coherence): the misregistration in lines (to subtract from the sampling
    positions) and the magnitude of the normalised double-difference sum.

    """
    a = np.asarray(ifg_first)
    b = np.asarray(ifg_second)
    df = np.asarray(delta_f, np.float64)
    if a.shape != b.shape or a.shape != df.shape:
        raise ValueError(f"shapes differ: {a.shape}, {b.shape}, {df.shape}")
    dd = a * np.conj(b)
    good = np.isfinite(dd) & (np.abs(dd) > 0) & np.isfinite(df)
    if not good.any():
        raise ValueError("no valid overlap pixel for spectral diversity")
    s = np.sum(dd[good])
    coh = float(np.abs(s) / np.sum(np.abs(dd[good])))
    mean_df = float(np.sum(np.abs(dd[good]) * df[good]) / np.sum(np.abs(dd[good])))
    if mean_df == 0:
        raise ValueError("zero Doppler difference in the overlap")
    return float(-np.angle(s) / (2 * np.pi * mean_df * dt)), coh


def wrap_frequency(f: np.ndarray | float, prf: float) -> np.ndarray:
    """Frequencies (Hz) folded into ``[-prf/2, prf/2)`` (what a sampled spectrum shows)."""
    if not prf > 0:
        raise ValueError(f"prf must be positive, got {prf}")
    return (np.asarray(f, np.float64) + 0.5 * prf) % prf - 0.5 * prf


def azimuth_centroid(data: np.ndarray, prf: float, mask: np.ndarray | None = None
                     ) -> tuple[float, float]:
    """Azimuth Doppler centroid (Hz, folded into ``[-prf/2, prf/2)``) of a block of lines.

    ``data`` is (lines, samples), lines along azimuth sampled at ``prf`` (the inverse of
    the azimuth time interval). The estimate is the phase of the lag-one azimuth
    autocorrelation summed over the block (pairs of lines where ``mask`` holds on both).

    Returns
    -------
    (centroid Hz, coherence): the coherence ``|sum x[n+1] x*[n]| / sum |x[n+1] x[n]|`` in
    [0, 1] says how concentrated the spectrum is (0 for white noise).

    """
    data = np.asarray(data)
    if data.ndim != 2 or not np.iscomplexobj(data):
        raise ValueError(f"data must be a 2-D complex array, got {data.dtype} {data.shape}")
    if data.shape[0] < 2:
        raise ValueError("a block needs at least 2 lines")
    if not prf > 0:
        raise ValueError(f"prf must be positive, got {prf}")
    prod = data[1:] * np.conj(data[:-1])
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != data.shape:
            raise ValueError(f"mask {mask.shape} and data {data.shape} differ in shape")
        prod = np.where(mask[1:] & mask[:-1], prod, 0)
    prod = prod[np.isfinite(prod)]
    total = float(np.sum(np.abs(prod)))
    if total == 0:
        raise ValueError("no valid pair of lines in the block")
    acc = np.sum(prod)
    return float(np.angle(acc) * prf / (2 * np.pi)), float(abs(acc) / total)


def block_centroids(data: np.ndarray, prf: float, block: int, mask: np.ndarray | None = None,
                    min_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Azimuth Doppler centroids of consecutive blocks of ``block`` lines.

    Blocks whose fraction of ``mask`` pixels is below ``min_fraction`` are skipped.

    Returns
    -------
    (centre line of each block (fractional, in ``data`` rows), centroid Hz folded into
    ``[-prf/2, prf/2)``, fraction of the block's pixels in ``mask``).

    """
    data = np.asarray(data)
    if block < 2:
        raise ValueError(f"block must be at least 2 lines, got {block}")
    centres, values, fractions = [], [], []
    for r in range(0, data.shape[0] - block + 1, block):
        m = None if mask is None else np.asarray(mask, bool)[r:r + block]
        frac = 1.0 if m is None else float(m.mean())
        if frac < min_fraction:
            continue
        f, _ = azimuth_centroid(data[r:r + block], prf, m)
        centres.append(r + 0.5 * (block - 1))
        values.append(f)
        fractions.append(frac)
    return np.array(centres), np.array(values), np.array(fractions)


@numba.njit(cache=True)
def _weights(frac, taps, w):  # pragma: no cover - compiled
    half = taps // 2
    total = 0.0
    for k in range(taps):
        x = k - half + 1 - frac
        if abs(x) < 1e-12:
            s = 1.0
        else:
            s = math.sin(math.pi * x) / (math.pi * x)
        win = 0.5 * (1.0 + math.cos(math.pi * x / (half + 0.5)))
        w[k] = s * win
        total += w[k]
    for k in range(taps):
        w[k] /= total


@numba.njit(parallel=True, cache=True)
def _sinc_loop(data, lines, samples, taps, out, ok):  # pragma: no cover - compiled
    ny, nx = data.shape
    half = taps // 2
    for i in prange(lines.shape[0]):
        y = lines[i]
        x = samples[i]
        if not (math.isfinite(y) and math.isfinite(x)):
            continue
        iy = int(math.floor(y))
        ix = int(math.floor(x))
        y0 = iy - half + 1
        x0 = ix - half + 1
        if y0 < 0 or x0 < 0 or y0 + taps > ny or x0 + taps > nx:
            continue
        wy = np.empty(taps)
        wx = np.empty(taps)
        _weights(y - iy, taps, wy)
        _weights(x - ix, taps, wx)
        acc = 0j
        for a in range(taps):
            row = 0j
            for b in range(taps):
                row += wx[b] * data[y0 + a, x0 + b]
            acc += wy[a] * row
        out[i] = acc
        ok[i] = True
