"""Band-limited random textures and exact Fourier shifts for kernel tests."""

from __future__ import annotations

import numpy as np


def texture_spectrum(n: int, seed: int = 0, beta: float = 1.0, mtf: float = 0.3) -> np.ndarray:
    """Random spectrum of a periodic, band-limited fractal texture (n x n)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    fr = np.hypot(fy, fx)
    fr[0, 0] = 1.0
    spec = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) * fr**-beta
    spec *= np.exp(-((fr / 0.5) ** 2) * np.log(1 / mtf))
    spec[0, 0] = 0
    return spec


def shifted(spec: np.ndarray, d_row: float, d_col: float) -> np.ndarray:
    """Image whose features sit at (r + d_row, c + d_col) of the unshifted one."""
    n = spec.shape[0]
    f = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    img = np.fft.ifft2(spec * np.exp(-2j * np.pi * (fy * d_row + fx * d_col))).real
    return (img / img.std()).astype(np.float32)
