"""Simulated unwrapping cases: a deformation bump, a ramp, turbulence, noisy phase."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def fractal(shape: tuple[int, int], rng: np.random.Generator, beta: float = 8 / 3) -> np.ndarray:
    """Zero-mean, unit-std field with a power-law spectrum (turbulence-like)."""
    ny, nx = shape
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = np.inf
    amp = f ** (-beta / 2)
    spec = amp * (rng.normal(size=amp.shape) + 1j * rng.normal(size=amp.shape))
    field = np.fft.irfft2(spec, s=shape)
    field -= field.mean()
    return field / field.std()


def noisy_phase(truth: np.ndarray, coherence: np.ndarray, nlooks: int,
                rng: np.random.Generator) -> np.ndarray:
    """Wrapped phase of an ``nlooks``-look interferogram of coherence ``coherence``."""
    out = np.empty(truth.shape, np.float64)
    step = max(1, 2_000_000 // (truth.shape[1] * nlooks))
    for r0 in range(0, truth.shape[0], step):
        g = coherence[r0:r0 + step, :, None]
        shape = g.shape[:2] + (nlooks,)
        a = rng.normal(size=shape) + 1j * rng.normal(size=shape)
        b = rng.normal(size=shape) + 1j * rng.normal(size=shape)
        s2 = g * a + np.sqrt(1 - g * g) * b
        ifg = (a * np.conj(s2)).sum(axis=2) * np.exp(1j * truth[r0:r0 + step])
        out[r0:r0 + step] = np.angle(ifg)
    return out


def unwrap_case(size: int, seed: int, cycles: float = 16.0, nlooks: int = 5
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wrapped phase, coherence, true unwrapped phase) of one simulated case."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    cy, cx = rng.uniform(0.35, 0.65, 2)
    width = rng.uniform(0.12, 0.2)
    bump = cycles * 2 * np.pi * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width ** 2))
    ramp = 2 * np.pi * (rng.uniform(2, 5) * x + rng.uniform(-3, 3) * y)
    turb = 2.0 * fractal((size, size), rng)
    truth = bump + ramp + turb
    coh = 0.6 + 0.3 * np.tanh(1.5 * fractal((size, size), rng))
    coh = gaussian_filter(coh, 2)
    coh = np.clip(coh, 0.3, 0.9)
    wrapped = noisy_phase(truth, coh, nlooks, rng)
    return wrapped.astype(np.float32), coh.astype(np.float32), truth
