"""Families of optical textures for validating sub-pixel correlation (GDM-OPT).

No single simulator should be the one an estimator is tuned to, so the tests and the
correlation benchmark draw pairs from several families that differ in the ways real
images differ:

- spectral slope: amplitude spectrum ``|k|**-slope`` from nearly white (0.5) to red (2);
- aliasing: the scene is rendered ``oversample`` times finer than the sensor and box-
  averaged over each sensor pixel, so that, like a real detector, content above Nyquist
  folds back (field patches with sharp borders and sub-pixel roads make plenty of it);
- radiometric change between dates: gain, offset and a gamma;
- clouds: opaque bright blobs with soft borders over part of one date.

The scene is a periodic high-resolution image; a date is rendered by sampling it at
``p - d(p)`` (inverse mapping of a displacement field ``d`` given as a function of
sensor coordinates, so that the truth is known everywhere) with a cubic spline at the
fine resolution, then box-averaging. A feature at ``p`` of the first date is at
``q = p + d(q)`` in the second one: :meth:`Field.truth` solves for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage

__all__ = ["Field", "Scene", "fault_field", "shift_field", "power_law", "make_scene",
           "render", "clouds", "radiometry", "pair"]

FieldFunc = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Field:
    """A displacement field ``d(row, col) -> (d_row, d_col)`` in sensor pixels."""

    func: FieldFunc

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The field at sensor coordinates ``(rows, cols)``."""
        return self.func(np.asarray(rows, np.float64), np.asarray(cols, np.float64))

    def truth(self, rows: np.ndarray, cols: np.ndarray, iterations: int = 50
              ) -> tuple[np.ndarray, np.ndarray]:
        """Displacement of the features at ``(rows, cols)`` of the first date.

        The feature is at ``q = p + d(q)`` in the second date (fixed point, which
        converges where the field's gradient is below 1).
        """
        r = np.asarray(rows, np.float64)
        c = np.asarray(cols, np.float64)
        qr, qc = r.copy(), c.copy()
        for _ in range(iterations):
            dr, dc = self(qr, qc)
            qr, qc = r + dr, c + dc
        return qr - r, qc - c


def shift_field(d_row: float, d_col: float) -> Field:
    """A constant shift."""
    return Field(lambda r, c: (np.full(np.shape(r), d_row), np.full(np.shape(c), d_col)))


def fault_field(n: int, amplitude: float = 2.0, depth: float = 40.0, angle_deg: float = 30.0
                ) -> Field:
    """Smooth strike-slip fault through the centre of an ``n``-px image.

    The fault-parallel displacement is ``amplitude / pi * arctan(distance / depth)``
    (a screw dislocation locked at ``depth`` pixels), so every fraction of a pixel is
    present and the strain peaks at ``amplitude / (pi depth)`` on the fault.
    """
    th = np.radians(angle_deg)

    def func(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dist = (c - n / 2) * np.cos(th) - (r - n / 2) * np.sin(th)
        u = amplitude / np.pi * np.arctan(dist / depth)
        return u * np.cos(th), u * np.sin(th)

    return Field(func)


def power_law(n: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Periodic texture with amplitude spectrum ``|k|**-slope``, zero mean, unit std."""
    f2 = np.fft.fftfreq(n)[:, None] ** 2 + np.fft.rfftfreq(n)[None, :] ** 2
    f2[0, 0] = 1.0
    spec = scipy.fft.rfft2(rng.standard_normal((n, n)))
    spec *= f2 ** (-slope / 2.0) / np.maximum(np.abs(spec), 1e-12)
    spec[0, 0] = 0.0
    tex = scipy.fft.irfft2(spec, s=(n, n))
    return (tex - tex.mean()) / tex.std()


def _torus_voronoi(n: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Label image of a periodic Voronoi tessellation (field patches)."""
    pts = rng.uniform(0, n, (cells, 2))
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    best = np.full((n, n), np.inf, np.float32)
    label = np.zeros((n, n), np.int32)
    for k, (py, px) in enumerate(pts):
        dy = np.abs(yy - py)
        dy = np.minimum(dy, n - dy)
        dx = np.abs(xx - px)
        dx = np.minimum(dx, n - dx)
        d = dy * dy + dx * dx
        closer = d < best
        best[closer] = d[closer]
        label[closer] = k
    return label


@dataclass(frozen=True)
class Scene:
    """A periodic scene ``oversample`` times finer than the sensor."""

    hi: np.ndarray
    oversample: int

    @property
    def size(self) -> int:
        """Side of the rendered images, sensor pixels."""
        return self.hi.shape[0] // self.oversample


def make_scene(n: int, seed: int, *, slope: float = 1.3, oversample: int = 4,
               patches: float = 0.8, roads: float = 0.6) -> Scene:
    """Fractal texture (amplitude ``|k|**-slope``) plus field patches and roads.

    Parameters
    ----------
    n
        Side of the rendered images, sensor pixels.
    seed
        Random seed.
    slope
        Amplitude-spectrum exponent of the fractal part.
    oversample
        Fine pixels per sensor pixel (1: no aliasing by the detector).
    patches, roads
        Contrast (in units of the fractal's std) of the Voronoi field patches (about one
        per 40 x 40 sensor pixels) and of the roads (straight lines 1 to 3 fine pixels
        wide, one per 64 sensor pixels of image side); 0 leaves them out.

    """
    rng = np.random.default_rng(seed)
    big = n * oversample
    hi = power_law(big, slope, rng)
    if patches:
        cells = max(4, (n // 40) ** 2)
        hi = hi + patches * rng.normal(0.0, 1.0, cells)[_torus_voronoi(big, cells, rng)]
    if roads:
        yy, xx = np.mgrid[0:big, 0:big]
        for _ in range(max(2, n // 64)):
            th = rng.uniform(0, np.pi)
            d = yy * np.cos(th) + xx * np.sin(th) - rng.uniform(0, big)
            d = (d + big / 2) % big - big / 2
            hi = hi + 3.0 * roads * (np.abs(d) < rng.uniform(1.0, 3.0) / 2)
    return Scene(((hi - hi.mean()) / hi.std()).astype(np.float64), oversample)


def render(scene: Scene, field: Field | None = None) -> np.ndarray:
    """Image of the scene seen by the sensor, displaced by ``field`` (None: not moved).

    Each fine sample of the output is taken at ``p - d(p)`` of the scene (cubic spline,
    periodic), then the fine samples of each sensor pixel are averaged.
    """
    m = scene.oversample
    big = scene.hi.shape[0]
    n = big // m
    if field is None:
        fine = scene.hi
    else:
        yy, xx = np.mgrid[0:big, 0:big].astype(np.float64)
        # Sensor coordinates of the fine samples (pixel p spans [p - 0.5, p + 0.5)).
        dr, dc = field((yy + 0.5) / m - 0.5, (xx + 0.5) / m - 0.5)
        fine = ndimage.map_coordinates(scene.hi, [yy - m * dr, xx - m * dc], order=3,
                                       mode="grid-wrap")
    return fine.reshape(n, m, n, m).mean(axis=(1, 3))


def clouds(n: int, seed: int, cover: float = 0.2, size: float = 24.0) -> np.ndarray:
    """Opacity in [0, 1] of soft-bordered clouds covering about ``cover`` of the image."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal((n, n)), size, mode="wrap")
    level = np.quantile(noise, 1.0 - cover)
    return np.clip((noise - level) / (0.25 * noise.std()) + 0.5, 0.0, 1.0)


def radiometry(img: np.ndarray, gain: float = 1.0, offset: float = 0.0, gamma: float = 1.0
               ) -> np.ndarray:
    """A radiometric change: ``gain * x**gamma + offset`` on a positive rescaling of x."""
    lo, hi = float(img.min()), float(img.max())
    x = (img - lo) / (hi - lo) + 0.1
    return (gain * x**gamma + offset) * (hi - lo)


def pair(n: int = 256, seed: int = 0, *, snr_db: float = 30.0, field: Field | None = None,
         slope: float = 1.3, oversample: int = 4, patches: float = 0.8, roads: float = 0.6,
         gain: float = 1.07, offset: float = 0.05, gamma: float = 1.0,
         cloud_cover: float = 0.0) -> tuple[np.ndarray, np.ndarray, Field]:
    """Two dates of one scene: ``(ref, sec, field)``, float32.

    The second date is displaced by ``field`` (default: :func:`fault_field` of 2 px),
    changed radiometrically, optionally clouded (opaque where the opacity is 1), and both
    get independent Gaussian noise ``snr_db`` below the signal's standard deviation.
    """
    rng = np.random.default_rng(seed + 7919)
    scene = make_scene(n, seed, slope=slope, oversample=oversample, patches=patches,
                       roads=roads)
    fld = field if field is not None else fault_field(n)
    ref = render(scene)
    sec = radiometry(render(scene, fld), gain, offset * (ref.max() - ref.min()), gamma)
    if cloud_cover > 0:
        alpha = clouds(n, seed + 1, cloud_cover)
        sec = (1 - alpha) * sec + alpha * (sec.max() + 2.0 * sec.std())
    sigma = 10 ** (-snr_db / 20.0)
    ref = ref + rng.normal(0.0, sigma * ref.std(), ref.shape)
    sec = sec + rng.normal(0.0, sigma * sec.std(), sec.shape)
    return ref.astype(np.float32), sec.astype(np.float32), fld
