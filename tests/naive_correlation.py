"""Slow, obviously-correct reference of the frequency-domain correlator (test oracle)."""

from __future__ import annotations

import numpy as np

from kernels.correlation import apodization


def naive_freq_window(a: np.ndarray, b: np.ndarray, taper: float, power: float,
                      search: int, step: float = 0.01) -> tuple[float, float]:
    """Displacement of window ``b`` relative to ``a`` by brute-force peak search.

    The continuous correlation surface is evaluated directly from the full (not half)
    spectrum on a ``step``-pixel lattice around the integer peak: the limit of an
    upsampled DFT, with no Newton iterations and no Hermitian tricks.
    """
    w = a.shape[0]
    apod = apodization(w, taper).astype(np.float64)
    fa = np.fft.fft2((a - a.mean()) * apod)
    fb = np.fft.fft2((b - b.mean()) * apod)
    z = fb * np.conj(fa)
    mag = np.abs(z)
    q = np.where(mag > 0, z / np.where(mag > 0, mag, 1) ** power, 0)
    k = np.fft.fftfreq(w) * w
    q[w // 2, :] = 0
    q[:, w // 2] = 0
    q[0, 0] = 0
    surf = np.fft.ifft2(q).real
    best = -np.inf
    br = bc = 0
    for dr in range(-search, search + 1):
        for dc in range(-search, search + 1):
            if surf[dr % w, dc % w] > best:
                best, br, bc = surf[dr % w, dc % w], dr, dc
    offs = np.arange(-1.0, 1.0 + step / 2, step)
    ys = br + offs
    xs = bc + offs
    ey = np.exp(2j * np.pi * np.outer(ys, k) / w)  # (ny, w)
    ex = np.exp(2j * np.pi * np.outer(k, xs) / w)  # (w, nx)
    vals = (ey @ q @ ex).real
    i, j = np.unravel_index(np.argmax(vals), vals.shape)
    return float(ys[i]), float(xs[j])
