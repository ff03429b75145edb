"""Slow, obviously-correct references for the Sentinel-1 geometry and TOPS kernels.

Plain Python loops and SciPy root finding; small inputs only.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

C = 299792458.0


def naive_orbit(coef: np.ndarray, t_mid: float, t_scale: float, t: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Position and velocity of a polynomial orbit (numpy.polyval, derivative by polyder)."""
    u = (t - t_mid) / t_scale
    p = np.array([np.polyval(c, u) for c in coef])
    v = np.array([np.polyval(np.polyder(c), u) for c in coef]) / t_scale
    return p, v


def naive_geo2rdr(xyz: np.ndarray, coef: np.ndarray, t_mid: float, t_scale: float,
                  t_lo: float, t_hi: float) -> tuple[float, float]:
    """Zero-Doppler time by bracketing the Doppler ``(X - S(t)) . V(t)`` (Brent)."""
    def doppler(t: float) -> float:
        p, v = naive_orbit(coef, t_mid, t_scale, t)
        return float((xyz - p) @ v)

    t = brentq(doppler, t_lo, t_hi, xtol=1e-12)
    p, _ = naive_orbit(coef, t_mid, t_scale, t)
    return t, float(np.linalg.norm(xyz - p))


def naive_ramp(ks: float, fm: tuple, dc: tuple, tau0: float, fs: float, dt: float,
               line_mid: float, tau_mid: float, line: float, sample: float) -> float:
    """TOPS ramp phase at one (line, sample), written out term by term."""
    tau = tau0 + sample / fs
    ka = sum(c * (tau - fm[0]) ** k for k, c in enumerate(fm[1:]))
    fdc = sum(c * (tau - dc[0]) ** k for k, c in enumerate(dc[1:]))
    ka_mid = sum(c * (tau_mid - fm[0]) ** k for k, c in enumerate(fm[1:]))
    fdc_mid = sum(c * (tau_mid - dc[0]) ** k for k, c in enumerate(dc[1:]))
    kt = ka * ks / (ka - ks)
    eta_ref = (-fdc / ka) - (-fdc_mid / ka_mid)
    eta = (line - line_mid) * dt
    return math.pi * kt * (eta - eta_ref) ** 2 + 2 * math.pi * fdc * (eta - eta_ref)


def naive_sinc_interp(data: np.ndarray, y: float, x: float, taps: int) -> complex:
    """Hann-windowed sinc interpolation at one point (zero when the kernel leaves)."""
    half = taps // 2
    iy, ix = math.floor(y), math.floor(x)
    ny, nx = data.shape
    if iy - half + 1 < 0 or ix - half + 1 < 0 or iy + half > ny - 1 or ix + half > nx - 1:
        return 0j

    def weights(frac: float) -> list[float]:
        w = []
        for k in range(taps):
            d = k - half + 1 - frac
            s = 1.0 if abs(d) < 1e-12 else math.sin(math.pi * d) / (math.pi * d)
            w.append(s * 0.5 * (1 + math.cos(math.pi * d / (half + 0.5))))
        total = sum(w)
        return [v / total for v in w]

    wy, wx = weights(y - iy), weights(x - ix)
    acc = 0j
    for a in range(taps):
        for b in range(taps):
            acc += wy[a] * wx[b] * complex(data[iy - half + 1 + a, ix - half + 1 + b])
    return acc
