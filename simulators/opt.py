"""Simulated Sentinel-2-like optical image series with exact ground truth (GDM-OPT).

The ground scene is one periodic fractal texture ``T`` (see :func:`fractal_texture`),
seen through a Gaussian sensor MTF. The continuous scene is the periodic quintic
B-spline through the texture samples, so every image samples it exactly and the truth
needs no approximation.

Geometry and conventions (DESIGN.md section 3):

* pixel ``(i, j)`` has its centre at continuous coordinates ``(row=i, col=j)``; rows grow
  southwards, so ``east = d_col * resolution`` and ``north = -d_row * resolution``;
* displacement is the ground position of a feature in the later image minus its
  position in the earlier one, and grows linearly in time:
  ``d_t(x) = (t - t0) / (tN - t0) * d(x)`` with ``d`` the field of
  :func:`displacement_field` (the last date);
* the truth rasters are indexed in the geometry of the **first** image: band ``k`` at
  the pixel centre ``x`` holds ``d_tk(x)``, the motion of the feature that sits at ``x``
  at the first date (Lagrangian). Image ``k`` is ``I_k(y) = T(x)`` with
  ``x + d_tk(x) = y``, solved for ``x`` at every pixel by Newton's method (residual
  below 1e-9 px), so ``I_k(x + d_tk(x)) = I_0(x)`` holds exactly. The simpler inverse
  mapping ``I_k(y) = T(y - d(y))`` (:func:`warp_periodic`) differs from it by about
  ``d . grad(d)`` (0.018 px for the landslide at 2 px on 1024 px, growing as the
  amplitude squared; nearly 0 for the fault and the glacier, whose motion is parallel to
  the direction along which it is uniform);
* between two later dates ``j < k`` the motion of the feature that is at ``x`` at the
  first date is ``d_tk(x) - d_tj(x)``.

Radiometry of date ``k`` (``s = radiometric_change``; ``u_*`` uniform in [-1, 1], drawn
per date from the seed)::

    y     = texture sampled as above (zero mean, unit std)
    R     = (DN_BASE + DN_CONTRAST * y) / 10000            reflectance-like, > 0
    clean = offset + 10000 * gain * L(X, Y) * R ** gamma    noise-free DN, float
    gain  = 1 + 0.1 s u_g,  offset = 100 s u_o (DN),  gamma = 1 + 0.2 s u_gamma
    L     = 1 + s (0.05 u_x X + 0.05 u_y Y + 0.03 sin(pi (X cos th + Y sin th) + ph))

with ``X, Y`` in [-1, 1] across the image (east, north). Date 0 is treated like the
others. White Gaussian noise of standard deviation ``sigma = 10**(-snr_db/20) *
std(clean)`` is added, less the DN rounding noise (variance 1/12 DN^2, subtracted from
``sigma**2``), so the effective SNR of the written uint16 image against ``clean`` is the
requested one up to about ``10 log10(12 var(clean)) = 66 dB``; above that, rounding
dominates. ``DN = clip(round(clean + noise), 1, 65535)``; 0 is nodata. The signal
variance includes the smooth illumination ``L``: with the default
``radiometric_change=0.05`` it changes it by at most about 0.05 dB (so the SNR against
the texture alone is within 0.05 dB of the request); at ``radiometric_change=1``, by up
to about 1 dB.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import rasterio
import scipy.fft
from affine import Affine
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rasterio.crs import CRS
from rasterio.errors import CRSError
from scipy import ndimage

from gdmcore import InputError, Progress
from gdmio.atomic import atomic_path

__all__ = [
    "DN_BASE",
    "DN_CONTRAST",
    "Case",
    "RenderedDate",
    "SimulateConfig",
    "SimulateOutputs",
    "displacement_field",
    "fractal_texture",
    "grid_transform",
    "image_name",
    "measured_snr_db",
    "render",
    "simulate",
    "warp_periodic",
    "date_artefacts",
    "PushbroomArtefacts",
    "pushbroom_artefacts",
]

Case = Literal["fault", "landslide", "glacier", "zero"]

DN_BASE = 4000.0
"""Mean digital number of a simulated image (reflectance 0.3 with the 1000 DN offset)."""
DN_CONTRAST = 600.0
"""Digital numbers per unit of texture standard deviation (quantisation step = 1/600)."""

_SPLINE_ORDER = 5
_QUANT_VAR = 1.0 / 12.0  # variance of rounding to integers, DN^2
_BLOCK_PIXELS = 1 << 18  # pixels per processing block
_NEWTON_TOL_PX = 1e-9
_NEWTON_MAX_ITER = 60
_FD_STEP_PX = 1e-4
_DAYS_PER_YEAR = 365.25
_BIG = 4096  # above this size, work arrays are float32


# --------------------------------------------------------------------------- config


class SimulateConfig(BaseModel):
    """Parameters of a simulated optical image series (one model for CLI, tests, demo)."""

    model_config = ConfigDict(extra="forbid")

    case: Case = Field(
        default="fault",
        description="Displacement field: 'fault' (right-lateral strike-slip, strike N30E), "
        "'landslide' (smooth bump moving south-east), 'glacier' (sinuous valley glacier "
        "flowing south) or 'zero' (no motion, negative control).",
    )
    size: int = Field(default=1024, ge=64, le=16384,
                      description="Image side, pixels (square images).")
    dates: int = Field(default=2, ge=2, le=60, description="Number of acquisitions.")
    interval_days: int = Field(default=60, ge=1, le=3650,
                               description="Days between successive acquisitions.")
    start_date: dt.date = Field(default=dt.date(2023, 1, 15), ge=dt.date(1950, 1, 1),
                                le=dt.date(2200, 1, 1),
                                description="Date of the first image (UTC).")
    amplitude_px: float = Field(
        default=2.0, ge=0.0, le=50.0,
        description="Largest displacement magnitude over the image, pixels, at the last date "
        "relative to the first.",
    )
    snr_db: float = Field(
        default=30.0, ge=0.0, le=200.0,
        description="Per-image signal-to-noise ratio 10 log10(var(noise-free image) / "
        "var(noise)), dB, DN rounding included (exact up to about 66 dB; 200 means no "
        "added noise).",
    )
    radiometric_change: float = Field(
        default=0.05, ge=0.0, le=1.0,
        description="Strength of the date-to-date radiometric change (gain, offset, gamma, "
        "smooth illumination); 0 for none.",
    )
    resolution: float = Field(default=10.0, gt=0.0, le=10000.0,
                              description="Pixel size, metres.")
    epsg: int = Field(default=32631, ge=1024, le=999999,
                      description="EPSG code of the projected CRS of the images (e.g. UTM).")
    origin: tuple[Annotated[float, Field(ge=-1e8, le=1e8)],
                  Annotated[float, Field(ge=-1e8, le=1e8)]] = Field(
        default=(600000.0, 4900000.0),
        description="Upper-left corner (x, y) of the images in CRS units.",
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1,
                      description="Seed of every random draw (texture, geometry, radiometry, "
                      "noise); equal seeds give bit-identical outputs.")
    texture_beta: float = Field(
        default=2.0, ge=0.0, le=4.0,
        description="Exponent of the texture's power spectral density, P(f) ~ f^-beta "
        "(amplitude ~ f^(-beta/2)); 2 is typical of natural scenes.",
    )
    mtf_nyquist: float = Field(
        default=0.3, ge=0.05, le=1.0,
        description="Sensor modulation transfer function at Nyquist (Gaussian blur); "
        "1 means no blur.",
    )
    jitter_px: float = Field(
        default=0.0, ge=0.0, le=5.0,
        description="Push-broom artefacts (not in the truth): amplitude of each date's "
        "along-track jitter, row component (the column component is half), pixels.",
    )
    jitter_period_px: float = Field(
        default=200.0, gt=2.0, le=1e6, description="Period of the jitter along the track, "
        "pixels.")
    detectors: int = Field(default=1, ge=1, le=64,
                           description="Detector strips across the image (1: no step).")
    detector_step_px: float = Field(
        default=0.0, ge=0.0, le=5.0, description="Each date's detector offsets are drawn "
        "uniformly in +-step per component, pixels (same strips at every date).")
    track_angle_deg: float = Field(
        default=0.0, ge=-45.0, le=45.0, description="Track angle from the columns, degrees "
        "clockwise (jitter lines and detector strips).")

    @field_validator("epsg")
    @classmethod
    def _projected_crs(cls, value: int) -> int:
        try:
            crs = CRS.from_epsg(value)
        except CRSError as exc:
            raise ValueError(f"unknown EPSG code {value}: {exc}") from None
        if not crs.is_projected:
            raise ValueError(f"EPSG:{value} is not a projected CRS")
        return value

    def acquisition_dates(self) -> list[dt.date]:
        """Dates of the acquisitions, in order."""
        step = dt.timedelta(days=self.interval_days)
        return [self.start_date + k * step for k in range(self.dates)]

    def fractions(self) -> list[float]:
        """Fraction of the last-date displacement reached at each date (0 to 1)."""
        days = [(d - self.start_date).days for d in self.acquisition_dates()]
        return [x / days[-1] for x in days]

    def years(self) -> float:
        """Time from the first to the last date, years of 365.25 days."""
        return (self.dates - 1) * self.interval_days / _DAYS_PER_YEAR


@dataclass
class SimulateOutputs:
    """Paths written by :func:`simulate`."""

    images: list[Path]
    dates: list[dt.date]
    truth_east: Path
    truth_north: Path
    velocity_east: Path
    velocity_north: Path
    truth_json: Path

    def all_paths(self) -> list[Path]:
        """Every file written, images first."""
        return [*self.images, self.truth_east, self.truth_north, self.velocity_east,
                self.velocity_north, self.truth_json]


@dataclass
class RenderedDate:
    """One simulated acquisition, as returned by :func:`render`."""

    index: int
    date: dt.date
    fraction: float
    dn: np.ndarray
    """Digital numbers, uint16, 0 never used."""
    clean: np.ndarray | None
    """Noise-free, unrounded digital numbers (only with ``keep_clean=True``)."""
    noise_std: float
    """Standard deviation of the added Gaussian noise, DN (rounding not included)."""
    target_noise_std: float
    """Total noise standard deviation aimed at, DN (added noise and rounding)."""
    signal_std: float
    """Standard deviation of the noise-free image, DN."""
    radiometry: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- texture


def fractal_texture(shape: tuple[int, int], beta: float, mtf_nyquist: float,
                    rng: np.random.Generator, dtype: type = np.float64) -> np.ndarray:
    """Periodic fractal texture, zero mean and unit standard deviation.

    The spectrum has unit-modulus random phases (those of the FFT of white noise, hence
    Hermitian) and amplitude ``|f|**(-beta/2) * mtf_nyquist**((|f|/0.5)**2)``, i.e. a
    power spectral density ``~ |f|**-beta`` times a Gaussian MTF equal to
    ``mtf_nyquist`` at Nyquist (``|f|`` radial, cycles per pixel). The mean (DC) is 0.

    Parameters
    ----------
    shape
        ``(rows, cols)``.
    beta
        Power-spectrum exponent (2 for typical natural scenes).
    mtf_nyquist
        MTF at 0.5 cycle/pixel, in (0, 1].
    rng
        Source of the random phases.
    dtype
        ``np.float64`` (default) or ``np.float32`` for very large images.

    Returns
    -------
    numpy.ndarray
        Texture of ``shape`` and ``dtype``.

    """
    ny, nx = (int(n) for n in shape)
    if ny < 2 or nx < 2:
        raise ValueError(f"texture shape must be at least 2 x 2, got {shape}")
    if not 0.0 < mtf_nyquist <= 1.0:
        raise ValueError(f"mtf_nyquist must be in (0, 1], got {mtf_nyquist}")
    real = np.dtype(dtype)
    if real not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {real}")
    noise = rng.standard_normal((ny, nx), dtype=real)
    spec = scipy.fft.rfft2(noise, workers=-1, overwrite_x=True)
    del noise
    fy = np.fft.fftfreq(ny).astype(real)[:, None]
    fx2 = (np.fft.rfftfreq(nx).astype(real) ** 2)[None, :]
    log_mtf = math.log(mtf_nyquist) / 0.25
    step = max(1, _BLOCK_PIXELS // spec.shape[1])
    for r0 in range(0, ny, step):
        blk = spec[r0:r0 + step]
        f2 = fy[r0:r0 + step] ** 2 + fx2
        f2[f2 == 0] = 1.0  # the DC term is zeroed below
        gain = np.exp(log_mtf * f2) * f2 ** (-beta / 4.0)
        mag = np.abs(blk)
        mag[mag == 0] = 1.0
        blk *= gain / mag
    spec[0, 0] = 0.0
    tex = scipy.fft.irfft2(spec, s=(ny, nx), workers=-1, overwrite_x=True)
    del spec
    tex = tex.astype(real, copy=False)
    tex -= tex.mean(dtype=np.float64)
    tex /= tex.std(dtype=np.float64)
    return tex


_OVERSAMPLE_MAX = 4096
"""Largest texture side that is oversampled 2x before spline interpolation."""


@dataclass(frozen=True)
class _Spline:
    """Periodic quintic B-spline of a texture, possibly on a 2x band-limited upsampling.

    A quintic spline on the native grid misplaces content close to Nyquist (a 0.3-px
    shift of a 0.375 cycle/px wave comes out 0.02 px short), which would leak into the
    simulated truth. The texture is periodic and band-limited, so it is first upsampled
    2x exactly (Fourier zero-padding); its content then lies below 0.25 cycle/px of the
    fine grid, where the spline's error is below 1e-3 px.
    """

    coeffs: np.ndarray
    scale: int

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Texture values at native-pixel coordinates ``(rows, cols)``."""
        return _sample(self.coeffs, rows * self.scale, cols * self.scale)


def _upsample2(texture: np.ndarray) -> np.ndarray:
    """Exact 2x band-limited upsampling of a periodic image (Nyquist terms split)."""
    from scipy.signal import resample

    up = resample(texture.astype(np.float64), 2 * texture.shape[0], axis=0)
    up = resample(up, 2 * texture.shape[1], axis=1)
    return up.astype(texture.dtype, copy=False)


def _spline_coefficients(texture: np.ndarray) -> _Spline:
    """Periodic quintic B-spline of ``texture`` (2x oversampled when not too large)."""
    scale = 2 if max(texture.shape) <= _OVERSAMPLE_MAX else 1
    base = _upsample2(texture) if scale == 2 else texture
    coeffs = ndimage.spline_filter(base, order=_SPLINE_ORDER, mode="grid-wrap",
                                   output=texture.dtype)
    return _Spline(coeffs, scale)


def _sample(coeffs: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Periodic quintic spline with coefficients ``coeffs`` at ``(rows, cols)``."""
    out = np.empty(rows.shape, coeffs.dtype)
    ndimage.map_coordinates(coeffs, [rows, cols], output=out, order=_SPLINE_ORDER,
                            mode="grid-wrap", prefilter=False)
    return out


def warp_periodic(texture: np.ndarray, d_row: np.ndarray | float, d_col: np.ndarray | float,
                  coeffs: np.ndarray | _Spline | None = None) -> np.ndarray:
    """Sample a periodic texture at ``(row - d_row, col - d_col)`` (inverse mapping).

    Features of ``texture`` move by ``(+d_row, +d_col)`` pixels (exactly so for a
    constant shift; for a varying field ``d`` is read in the output geometry). Quintic
    spline interpolation with periodic ('grid-wrap') boundaries.

    Parameters
    ----------
    texture
        2-D periodic image.
    d_row, d_col
        Shift in pixels, scalars or arrays broadcastable to ``texture.shape``.
    coeffs
        Spline coefficients of ``texture`` from an earlier call of
        ``scipy.ndimage.spline_filter(texture, 5, mode="grid-wrap")``, to save the
        prefilter when warping the same texture many times.

    Returns
    -------
    numpy.ndarray
        Warped texture, float64, same shape.

    """
    tex = np.asarray(texture, dtype=np.float64)
    if tex.ndim != 2:
        raise ValueError(f"texture must be 2-D, got shape {tex.shape}")
    if coeffs is None:
        spline = _spline_coefficients(tex)
    elif isinstance(coeffs, _Spline):
        spline = coeffs
    elif coeffs.shape != tex.shape:
        raise ValueError(f"coeffs shape {coeffs.shape} != texture shape {tex.shape}")
    else:
        spline = _Spline(np.asarray(coeffs, dtype=np.float64), 1)
    grid = np.indices(tex.shape, dtype=np.float64)
    rows = grid[0] - np.asarray(d_row, dtype=np.float64)
    cols = grid[1] - np.asarray(d_col, dtype=np.float64)
    return spline.sample(rows, cols).astype(np.float64, copy=False)


# --------------------------------------------------------------------------- fields


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """C2 ramp: 0 for t <= 0, 1 for t >= 1, ``6t^5 - 15t^4 + 10t^3`` between."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


@dataclass(frozen=True)
class _Field:
    """Analytic displacement field of one case; call it at any (row, col), in pixels."""

    case: str
    size: int
    params: dict[str, Any]
    scale: float = 0.0
    """Pixels per unit of the pattern (0 for no motion)."""
    peak_unit: float = 0.0
    """Largest magnitude of the unscaled pattern over the pixel centres."""

    @property
    def is_zero(self) -> bool:
        return self.scale == 0.0

    def unit(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled pattern ``(d_row, d_col)`` at ``(rows, cols)``."""
        p = self.params
        c = (self.size - 1) / 2.0
        if self.case == "fault":
            phi = math.radians(p["strike_deg"])
            se, sn = math.sin(phi), math.cos(phi)  # strike unit vector (east, north)
            e = cols - c
            n = c - rows
            along = e * se + n * sn
            across = e * sn - n * se  # positive on the right of the strike (ESE side)
            taper = _smoothstep((p["half_length_px"] - np.abs(along)) / p["taper_px"])
            u = -np.arctan(across / p["width_px"]) * taper  # right-lateral
            return -u * sn, u * se
        if self.case == "landslide":
            az = math.radians(p["azimuth_deg"])
            ue, un = math.sin(az), math.cos(az)  # direction of motion (east, north)
            e = cols - p["centre_col"]
            n = p["centre_row"] - rows
            along = (e * ue + n * un) / p["radius_along_px"]
            across = (e * un - n * ue) / p["radius_across_px"]
            r = np.sqrt(along * along + across * across)
            b = np.exp(-(r**4)) * _smoothstep((p["cutoff"] - r) / p["cutoff_width"])
            return -b * un, b * ue
        if self.case == "glacier":
            k = 2.0 * math.pi / p["wavelength_px"]
            phase = k * rows + p["phase_rad"]
            axis = p["axis_col"] + p["meander_px"] * np.sin(phase)
            slope = p["meander_px"] * k * np.cos(phase)  # d(axis col)/d(row)
            norm = 1.0 / np.sqrt(1.0 + slope * slope)
            xi = (cols - axis) * norm / p["half_width_px"]
            v = np.maximum(1.0 - xi * xi, 0.0)
            return v * norm, v * slope * norm  # along the axis, southwards
        zero = np.zeros(np.broadcast_shapes(np.shape(rows), np.shape(cols)))
        return zero, zero.copy()

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Displacement ``(d_row, d_col)`` in pixels at the last date."""
        if self.is_zero:
            z = np.zeros(np.broadcast_shapes(np.shape(rows), np.shape(cols)))
            return z, z.copy()
        dr, dc = self.unit(rows, cols)
        return dr * self.scale, dc * self.scale

    def rows(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Field on the pixel centres of rows ``r0:r1`` (all columns), float64."""
        rows = np.arange(r0, r1, dtype=np.float64)[:, None]
        cols = np.arange(self.size, dtype=np.float64)[None, :]
        dr, dc = self(rows, cols)
        return np.broadcast_to(dr, (r1 - r0, self.size)), np.broadcast_to(dc, (r1 - r0,
                                                                              self.size))

    def coarse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grid coordinates (1-D, both axes) and the unscaled pattern on <= 1024^2 nodes.

        The nodes are the pixel centres when ``size <= 1024``.
        """
        g = np.linspace(0.0, self.size - 1.0, min(self.size, 1024))
        dr, dc = self.unit(g[:, None], g[None, :])
        return g, dr, dc

    def check_invertible(self, fractions: Sequence[float]) -> float:
        """Smallest Jacobian determinant of ``x -> x + f d(x)``; raise if it folds."""
        if self.is_zero:
            return 1.0
        g, dr, dc = self.coarse()
        dr = dr * self.scale
        dc = dc * self.scale
        drr, drc = np.gradient(dr, g, g)
        dcr, dcc = np.gradient(dc, g, g)
        worst = 1.0
        for f in fractions:
            det = (1.0 + f * drr) * (1.0 + f * dcc) - f * f * drc * dcr
            worst = min(worst, float(np.min(det)))
        if worst <= 0.1:
            raise InputError(
                f"amplitude {self.scale * self.peak_unit:.3g} px is too large for the "
                f"{self.case} case on a {self.size} px image: the displacement field folds "
                f"(smallest Jacobian determinant {worst:.3g}); use a smaller amplitude or a "
                "larger image"
            )
        return worst


def _case_parameters(case: str, size: int, seed: int) -> dict[str, Any]:
    """Geometry of a case (numbers only; the formulas are in :func:`displacement_field`)."""
    rng = np.random.default_rng([seed, 3])
    c = (size - 1) / 2.0
    if case == "fault":
        return {"strike_deg": 30.0, "width_px": size / 16.0, "half_length_px": 0.4 * size,
                "taper_px": size / 8.0}
    if case == "landslide":
        jitter = rng.uniform(-0.08, 0.08, 2) * size
        return {"centre_row": c + float(jitter[0]), "centre_col": c + float(jitter[1]),
                "azimuth_deg": 135.0 + float(rng.uniform(-20.0, 20.0)),
                "radius_along_px": 1.2 * size / 6.0, "radius_across_px": 0.8 * size / 6.0,
                "cutoff": 2.0, "cutoff_width": 0.5}
    if case == "glacier":
        return {"axis_col": c, "meander_px": size / 10.0, "wavelength_px": float(size),
                "phase_rad": float(rng.uniform(0.0, 2.0 * math.pi)),
                "half_width_px": size / 16.0}
    if case == "zero":
        return {}
    raise ValueError(f"unknown case {case!r}")


_FORMULAS = {
    "fault": (
        "Right-lateral strike-slip fault through the image centre c=(size-1)/2. "
        "e=col-c, n=c-row (px); strike unit vector s=(sin 30deg, cos 30deg) (east, north); "
        "along=(e,n).s, across=e cos30 - n sin30 (>0 east of the fault); "
        "u = -A atan(across/width) * S((half_length-|along|)/taper), S the C2 smoothstep "
        "(0 below 0, 1 above 1); (east, north) = u s, i.e. d_col=u sin30, d_row=-u cos30. "
        "A is set so that max |d| over the pixel centres = amplitude_px."
    ),
    "landslide": (
        "Elliptic super-Gaussian bump moving towards azimuth az (clockwise from north): "
        "e=col-centre_col, n=centre_row-row; a=(e sin az + n cos az)/radius_along, "
        "b=(e cos az - n sin az)/radius_across, r=sqrt(a^2+b^2); "
        "m = A exp(-r^4) S((cutoff-r)/cutoff_width); (east, north) = m (sin az, cos az). "
        "A is set so that max |d| = amplitude_px."
    ),
    "glacier": (
        "Sinuous valley glacier flowing south: axis col a(row)=axis_col + meander "
        "sin(2 pi row/wavelength + phase), slope m=da/drow; xi=(col-a)/sqrt(1+m^2) "
        "(distance to the axis); v = A max(0, 1-(xi/half_width)^2) (parabolic); "
        "(d_row, d_col) = v (1, m)/sqrt(1+m^2), along the axis. A is set so that "
        "max |d| = amplitude_px."
    ),
    "zero": "No displacement anywhere (negative control).",
}

_STABLE_RULE = {
    "fault": "|along| >= half_length (beyond the fault tips)",
    "landslide": "r >= cutoff (outside the ellipse of radii cutoff*radius_along, "
                 "cutoff*radius_across)",
    "glacier": "|xi| >= half_width (off the glacier)",
    "zero": "everywhere",
}


@functools.lru_cache(maxsize=8)
def _make_field(case: str, size: int, amplitude_px: float, seed: int = 0) -> _Field:
    """Analytic field of ``case`` scaled so that its largest magnitude is ``amplitude_px``."""
    params = _case_parameters(case, size, seed)
    fld = _Field(case, size, params)
    if case == "zero" or amplitude_px == 0.0:
        return fld
    _, dr, dc = fld.coarse()
    peak = float(np.sqrt(dr * dr + dc * dc).max())
    return _Field(case, size, params, scale=float(amplitude_px) / peak, peak_unit=peak)


def displacement_field(case: Case, size: int, amplitude_px: float,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Displacement ``(d_row, d_col)`` in pixels at every pixel centre, last date.

    The pattern of ``case`` (formulas in the module's ``_FORMULAS`` and in truth.json)
    scaled so that the largest magnitude over the pixel centres is ``amplitude_px``
    (exactly for ``size <= 1024``; measured on a 1024 x 1024 subgrid above). The field is
    given in the geometry of the first image (see the module docstring). ``seed`` moves
    the landslide and the glacier's meander; the fault does not depend on it.

    Returns
    -------
    tuple of numpy.ndarray
        ``d_row`` (southwards) and ``d_col`` (eastwards), float64, ``(size, size)``.

    """
    fld = _make_field(case, size, amplitude_px, seed)
    dr, dc = fld.rows(0, size)
    return np.ascontiguousarray(dr), np.ascontiguousarray(dc)


def _invert(fld: _Field, frac: float, rows: np.ndarray,
            cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``x + frac * d(x) = y`` for ``x`` at the points ``y = (rows, cols)`` (1-D).

    Newton's method with a forward-difference Jacobian, iterated on the points whose
    residual is above 1e-9 px.
    """
    dr, dc = fld(rows, cols)
    xr = rows - frac * dr
    xc = cols - frac * dc
    active = np.arange(rows.size)
    for _ in range(_NEWTON_MAX_ITER):
        ar, ac = xr[active], xc[active]
        dr, dc = fld(ar, ac)
        res_r = ar + frac * dr - rows[active]
        res_c = ac + frac * dc - cols[active]
        todo = np.maximum(np.abs(res_r), np.abs(res_c)) > _NEWTON_TOL_PX
        if not todo.any():
            return xr, xc
        active, ar, ac = active[todo], ar[todo], ac[todo]
        dr, dc, res_r, res_c = dr[todo], dc[todo], res_r[todo], res_c[todo]
        h = _FD_STEP_PX
        r1, c1 = fld(ar + h, ac)
        r2, c2 = fld(ar, ac + h)
        j11 = 1.0 + frac * (r1 - dr) / h
        j21 = frac * (c1 - dc) / h
        j12 = frac * (r2 - dr) / h
        j22 = 1.0 + frac * (c2 - dc) / h
        det = j11 * j22 - j12 * j21
        if (det <= 0.0).any():
            raise InputError(f"the {fld.case} displacement field folds at fraction {frac:.3g}; "
                             "use a smaller amplitude or a larger image")
        xr[active] = ar - (j22 * res_r - j12 * res_c) / det
        xc[active] = ac - (j11 * res_c - j21 * res_r) / det
    raise RuntimeError(f"inverse mapping did not converge for {active.size} points")


# --------------------------------------------------------------------------- rendering


def _radiometry(seed: int, index: int, strength: float) -> dict[str, float]:
    """Random radiometric parameters of date ``index`` (see the module docstring)."""
    u = np.random.default_rng([seed, 1, index]).uniform(-1.0, 1.0, 7)
    s = float(strength)
    return {
        "gain": 1.0 + 0.1 * s * float(u[0]),
        "offset_dn": 100.0 * s * float(u[1]),
        "gamma": 1.0 + 0.2 * s * float(u[2]),
        "ramp_x": 0.05 * s * float(u[3]),
        "ramp_y": 0.05 * s * float(u[4]),
        "wave": 0.03 * s,
        "wave_theta_rad": math.pi * float(u[5]),
        "wave_phase_rad": math.pi * float(u[6]),
    }


def _apply_radiometry(y: np.ndarray, r0: int, size: int, rad: dict[str, float]) -> np.ndarray:
    """Noise-free digital numbers of rows ``r0:`` from texture values ``y`` (in place)."""
    y *= DN_CONTRAST
    y += DN_BASE
    if rad["gain"] == 1.0 and rad["offset_dn"] == 0.0 and rad["gamma"] == 1.0 \
            and rad["ramp_x"] == 0.0 and rad["ramp_y"] == 0.0 and rad["wave"] == 0.0:
        return y
    y *= 1.0 / 10000.0
    np.maximum(y, 1e-4, out=y)
    if rad["gamma"] != 1.0:
        np.power(y, rad["gamma"], out=y)
    half = (size - 1) / 2.0
    x = ((np.arange(size) - half) / max(half, 1.0))[None, :]
    yy = ((half - np.arange(r0, r0 + y.shape[0])) / max(half, 1.0))[:, None]
    th = rad["wave_theta_rad"]
    light = 1.0 + rad["ramp_x"] * x + rad["ramp_y"] * yy + rad["wave"] * np.sin(
        math.pi * (x * math.cos(th) + yy * math.sin(th)) + rad["wave_phase_rad"])
    y *= (10000.0 * rad["gain"]) * light
    y += rad["offset_dn"]
    return y


def _blocks(size: int) -> list[tuple[int, int]]:
    step = max(8, _BLOCK_PIXELS // size)
    return [(r0, min(size, r0 + step)) for r0 in range(0, size, step)]


def _work_dtype(size: int) -> type:
    return np.float32 if size > _BIG else np.float64


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def date_artefacts(cfg: SimulateConfig, index: int) -> np.ndarray | None:
    """Push-broom artefact ``(2, size, size)`` of date ``index`` (pixels), None without.

    Pixel ``y`` of that image sees the ground at ``y - a(y)``: a feature appears moved by
    ``a``, and a pair ``(i, j)`` measures about ``d_j - d_i + a_j - a_i``.
    """
    if cfg.jitter_px == 0.0 and (cfg.detectors == 1 or cfg.detector_step_px == 0.0):
        return None
    art = PushbroomArtefacts((cfg.jitter_px, cfg.jitter_px / 2), (cfg.jitter_period_px,),
                             cfg.detectors, cfg.detector_step_px, cfg.track_angle_deg)
    field, _, _ = pushbroom_artefacts((cfg.size, cfg.size), art, seed=cfg.seed * 7919 + index,
                                      layout_seed=cfg.seed)
    return field


def _render_clean_block(texture: np.ndarray, coeffs: _Spline, fld: _Field, frac: float,
                        r0: int, r1: int, rad: dict[str, float],
                        art: np.ndarray | None = None) -> np.ndarray:
    """Noise-free digital numbers of rows ``r0:r1`` at fraction ``frac``."""
    size = texture.shape[1]
    y = texture[r0:r1].astype(np.float64)
    if art is not None:
        rows = np.arange(r0, r1, dtype=np.float64)[:, None] - art[0, r0:r1]
        cols = np.arange(size, dtype=np.float64)[None, :] - art[1, r0:r1]
        gr, gc = rows.ravel(), cols.ravel()
        if frac != 0.0 and not fld.is_zero:
            gr, gc = _invert(fld, frac, gr, gc)
        y = coeffs.sample(gr, gc).reshape(r1 - r0, size)
    elif frac != 0.0 and not fld.is_zero:
        dr, dc = fld.rows(r0, r1)
        moving = (dr != 0.0) | (dc != 0.0)  # elsewhere x = y (the solution is unique)
        if moving.any():
            rr, cc = np.nonzero(moving)
            xr, xc = _invert(fld, frac, (rr + r0).astype(np.float64),
                             cc.astype(np.float64))
            y[rr, cc] = coeffs.sample(xr, xc)
    return _apply_radiometry(y, r0, size, rad).astype(texture.dtype, copy=False)


def _welford(parts: list[tuple[int, float, float]]) -> tuple[float, float]:
    """Combine (count, mean, M2) of blocks into the mean and population variance."""
    n, mean, m2 = 0, 0.0, 0.0
    for nb, mb, m2b in parts:
        if nb == 0:
            continue
        delta = mb - mean
        tot = n + nb
        mean += delta * nb / tot
        m2 += m2b + delta * delta * n * nb / tot
        n = tot
    return mean, m2 / max(n, 1)


def render(cfg: SimulateConfig, keep_clean: bool = False,
           progress: Progress | None = None) -> Iterator[RenderedDate]:
    """Simulate the acquisitions of ``cfg`` one date at a time (no files).

    Parameters
    ----------
    cfg
        Simulation parameters.
    keep_clean
        Also return the noise-free, unrounded image of each date (to measure the SNR).
    progress
        Optional callback ``progress(fraction, message)``.

    Yields
    ------
    RenderedDate
        In date order.

    """
    size = cfg.size
    dtype = _work_dtype(size)
    fld = _make_field(cfg.case, size, cfg.amplitude_px, cfg.seed)
    fractions = cfg.fractions()
    fld.check_invertible(fractions)
    texture = fractal_texture((size, size), cfg.texture_beta, cfg.mtf_nyquist,
                              np.random.default_rng(cfg.seed), dtype=dtype)
    coeffs = _spline_coefficients(texture)
    blocks = _blocks(size)
    ratio = 10.0 ** (-cfg.snr_db / 20.0)
    with ThreadPoolExecutor(_workers()) as pool:
        for k, (date, frac) in enumerate(zip(cfg.acquisition_dates(), fractions, strict=True)):
            rad = _radiometry(cfg.seed, k, cfg.radiometric_change)
            clean: np.ndarray = np.empty((size, size), dtype)
            art = date_artefacts(cfg, k)

            def clean_block(b: tuple[int, int], frac: float = frac,
                            rad: dict[str, float] = rad, clean: np.ndarray = clean,
                            art: np.ndarray | None = art) -> tuple[int, float, float]:
                r0, r1 = b
                blk = _render_clean_block(texture, coeffs, fld, frac, r0, r1, rad, art)
                clean[r0:r1] = blk
                mean = float(blk.mean(dtype=np.float64))
                m2 = float(np.square(blk - mean, dtype=np.float64).sum())
                return blk.size, mean, m2

            _, var = _welford(list(pool.map(clean_block, blocks)))
            signal_std = math.sqrt(var)
            target = ratio * signal_std
            noise_std = math.sqrt(max(target * target - _QUANT_VAR, 0.0))
            dn = np.empty((size, size), np.uint16)

            def noisy_block(ib: tuple[int, tuple[int, int]], k: int = k,
                            noise_std: float = noise_std, clean: np.ndarray = clean,
                            dn: np.ndarray = dn) -> None:
                i, (r0, r1) = ib
                val = clean[r0:r1].astype(np.float64)
                if noise_std > 0.0:
                    rng = np.random.default_rng([cfg.seed, 2, k, i])
                    val += noise_std * rng.standard_normal(val.shape)
                np.rint(val, out=val)
                np.clip(val, 1.0, 65535.0, out=val)
                dn[r0:r1] = val

            list(pool.map(noisy_block, enumerate(blocks)))
            if progress is not None:
                progress((k + 1) / cfg.dates, f"simulated {date.isoformat()}")
            yield RenderedDate(k, date, frac, dn, clean if keep_clean else None, noise_std,
                               target, signal_std, rad)
            del clean, dn


def measured_snr_db(clean: np.ndarray, dn: np.ndarray) -> float:
    """SNR of ``dn`` against its noise-free version: ``10 log10(var(clean)/var(dn-clean))``."""
    c = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(dn, dtype=np.float64) - c
    return 10.0 * math.log10(float(c.var()) / float(noise.var()))


# --------------------------------------------------------------------------- files


def image_name(date: dt.date) -> str:
    """File name of the image of ``date``: ``S2SIM_<YYYYMMDD>_B04.tif``."""
    return f"S2SIM_{date:%Y%m%d}_B04.tif"


def grid_transform(cfg: SimulateConfig) -> Affine:
    """Geotransform of the simulated grid: north-up, upper-left corner ``cfg.origin``."""
    x0, y0 = cfg.origin
    return Affine(cfg.resolution, 0.0, x0, 0.0, -cfg.resolution, y0)


def _tile(size: int) -> int:
    return min(512, 16 * math.ceil(size / 16))


def _profile(cfg: SimulateConfig, dtype: str, count: int) -> dict[str, Any]:
    tile = _tile(cfg.size)
    prof: dict[str, Any] = {
        "driver": "GTiff", "width": cfg.size, "height": cfg.size, "count": count,
        "dtype": dtype, "crs": CRS.from_epsg(cfg.epsg),
        "transform": grid_transform(cfg),
        "tiled": True, "blockxsize": tile, "blockysize": tile, "compress": "deflate",
        "zlevel": 1,
    }
    if dtype == "uint16":
        prof.update(nodata=0, predictor=2)
    else:
        prof.update(nodata=float("nan"), predictor=3)
    return prof


def _write_image(path: Path, cfg: SimulateConfig, date: dt.date, dn: np.ndarray) -> None:
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **_profile(cfg, "uint16", 1)) as dst:
        dst.write(dn, 1)
        dst.set_band_description(1, "B04")
        dst.update_tags(TIFFTAG_DATETIME=f"{date:%Y:%m:%d} 10:30:00",
                        ACQUISITION_DATE=date.isoformat())
        dst.update_tags(1, DATE=date.isoformat())


def _write_truth(out_dir: Path, cfg: SimulateConfig, fld: _Field, dates: list[dt.date],
                 fractions: list[float]) -> tuple[dict[str, Path], dict[str, float]]:
    """Write the displacement and velocity truth rasters.

    Returns
    -------
    tuple
        Paths by name, and statistics (``stable_fraction``, ``max_px``).

    """
    size, res = cfg.size, cfg.resolution
    dtype = _work_dtype(size)
    d_row: np.ndarray = np.empty((size, size), dtype)
    d_col: np.ndarray = np.empty((size, size), dtype)
    for r0, r1 in _blocks(size):
        d_row[r0:r1], d_col[r0:r1] = fld.rows(r0, r1)
    years = cfg.years()
    tile = _tile(size)
    strips = [(r0, min(size, r0 + tile)) for r0 in range(0, size, tile)]

    def put(dst: Any, band: int, d: np.ndarray, factor: float) -> None:
        for r0, r1 in strips:
            val = (d[r0:r1].astype(np.float64) * factor).astype(np.float32)
            dst.write(val, band, window=((r0, r1), (0, size)))

    # East = d_col * res, North = -d_row * res (rows grow southwards)
    comps = {"east": (d_col, res), "north": (d_row, -res)}
    paths: dict[str, Path] = {}
    for name, (d, metres) in comps.items():
        path = out_dir / f"truth_{name}.tif"
        with atomic_path(path) as tmp, rasterio.open(
                tmp, "w", **_profile(cfg, "float32", len(dates))) as dst:
            for b, (date, frac) in enumerate(zip(dates, fractions, strict=True), start=1):
                put(dst, b, d, frac * metres)
                dst.set_band_description(b, date.isoformat())
            dst.update_tags(UNITS="m", QUANTITY=f"displacement {name} since "
                            f"{dates[0].isoformat()}, {name} positive")
        paths[name] = path
        vpath = out_dir / f"truth_velocity_{name}.tif"
        with atomic_path(vpath) as tmp, rasterio.open(tmp, "w",
                                                  **_profile(cfg, "float32", 1)) as dst:
            put(dst, 1, d, metres / years)
            dst.set_band_description(1, f"velocity {name}")
            dst.update_tags(UNITS="m/yr", QUANTITY=f"velocity {name}, {name} positive")
        paths[f"velocity_{name}"] = vpath
    stable = 0
    peak = 0.0
    for r0, r1 in strips:
        dr, dc = d_row[r0:r1].astype(np.float64), d_col[r0:r1].astype(np.float64)
        stable += int(np.count_nonzero((dr == 0.0) & (dc == 0.0)))
        peak = max(peak, float(np.hypot(dr, dc).max()))
    stable_fraction = stable / (size * size)
    return paths, {"stable_fraction": stable_fraction, "max_px": peak}


def simulate(cfg: SimulateConfig, out_dir: Path,
             progress: Progress | None = None) -> SimulateOutputs:
    """Write the images of ``cfg`` and their ground truth into ``out_dir``.

    Files (all on one grid: EPSG ``cfg.epsg``, upper-left corner ``cfg.origin``, square
    pixels of ``cfg.resolution`` m; tiled, DEFLATE-compressed GeoTIFF, each written under
    a temporary name and renamed):

    * ``S2SIM_<YYYYMMDD>_B04.tif``: one per date, uint16 digital numbers, nodata 0, tag
      ``TIFFTAG_DATETIME = "YYYY:MM:DD 10:30:00"``;
    * ``truth_east.tif``, ``truth_north.tif``: float32 metres, one band per date (band 1
      zero), band descriptions the ISO dates, East and North positive, in the geometry
      of the first image;
    * ``truth_velocity_east.tif``, ``truth_velocity_north.tif``: float32 m/yr;
    * ``truth.json``: configuration, dates, formulas and parameters of the case, largest
      displacement, stable area, radiometry and noise of every date.

    Raises
    ------
    gdmcore.InputError
        When the amplitude is so large for the image size that the field folds.

    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dates = cfg.acquisition_dates()
    fractions = cfg.fractions()
    fld = _make_field(cfg.case, cfg.size, cfg.amplitude_px, cfg.seed)
    images: list[Path] = []
    per_date: list[dict[str, Any]] = []
    keep = cfg.size <= _BIG  # measure the SNR against the noise-free image when cheap
    for rd in render(cfg, keep_clean=keep,
                     progress=None if progress is None
                     else (lambda f, m: progress(0.9 * f, m))):
        path = out_dir / image_name(rd.date)
        _write_image(path, cfg, rd.date, rd.dn)
        images.append(path)
        entry: dict[str, Any] = {
            "date": rd.date.isoformat(), "file": path.name, "fraction": rd.fraction,
            "signal_std_dn": rd.signal_std, "added_noise_std_dn": rd.noise_std,
            "target_noise_std_dn": rd.target_noise_std, "radiometry": rd.radiometry,
        }
        if rd.clean is not None:
            entry["measured_snr_db"] = measured_snr_db(rd.clean, rd.dn)
        per_date.append(entry)
    truth, info = _write_truth(out_dir, cfg, fld, dates, fractions)
    doc = {
        "simulator": "simulators.opt",
        "config": cfg.model_dump(mode="json"),
        "dates": [d.isoformat() for d in dates],
        "fractions": fractions,
        "years": cfg.years(),
        "conventions": {
            "displacement": "ground position of a feature in the later image minus its "
                            "position in the first image; metres, East positive, North "
                            "positive (north = -d_row * resolution)",
            "geometry": "truth band k at a pixel centre = motion between the first date and "
                        "date k of the feature at that pixel centre in the FIRST image",
            "time": "d(t) = (t - t0) / (tN - t0) * d_last; velocity = d_last / years "
                    "(365.25 days)",
            "images": "I_k(x + d_k(x)) = I_0(x) exactly; scene = periodic quintic spline "
                      "through a fractal texture",
            "dn": f"clean = offset + 10000 gain L(X,Y) ((DN_BASE + DN_CONTRAST y)/10000)^gamma,"
                  f" DN_BASE={DN_BASE}, DN_CONTRAST={DN_CONTRAST}; DN = clip(round(clean + "
                  "noise), 1, 65535); nodata 0",
            "snr": "10 log10(var(clean) / var(DN - clean)), DN rounding included",
        },
        "case": {
            "name": cfg.case,
            "formula": _FORMULAS[cfg.case],
            "parameters": fld.params,
            "scale_px": fld.scale,
        },
        "max_displacement_px": info["max_px"],
        "max_displacement_m": info["max_px"] * cfg.resolution,
        "max_velocity_m_per_yr": info["max_px"] * cfg.resolution / cfg.years(),
        "stable_mask": {
            "definition": "pixels whose truth displacement is exactly 0 at every date",
            "rule": _STABLE_RULE[cfg.case],
            "fraction": info["stable_fraction"],
        },
        "images": per_date,
        "files": {
            "truth_east": truth["east"].name, "truth_north": truth["north"].name,
            "velocity_east": truth["velocity_east"].name,
            "velocity_north": truth["velocity_north"].name,
        },
    }
    json_path = out_dir / "truth.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
    if progress is not None:
        progress(1.0, "simulation written")
    return SimulateOutputs(images, dates, truth["east"], truth["north"],
                           truth["velocity_east"], truth["velocity_north"], json_path)


# --------------------------------------------------------------------------- push-broom artefacts


@dataclass(frozen=True)
class PushbroomArtefacts:
    """Sentinel-2-like artefacts of a pair's displacement field (see :func:`pushbroom_artefacts`).

    Units: cells of the grid the field is simulated on (pixels, or windows of a
    correlation grid) for periods and widths; displacement units (pixels) for amplitudes.
    """

    jitter_amplitude: tuple[float, float] = (0.2, 0.1)
    """Amplitude of the along-track oscillation of the (row, col) components."""
    jitter_periods: tuple[float, ...] = (60.0,)
    """Periods of the sinusoids summed into the oscillation (each with the full amplitude
    divided by the square root of their number), along-track cells."""
    detectors: int = 4
    """Number of detector strips across the grid (1: no step)."""
    detector_step: float = 0.15
    """Detector offsets are drawn uniformly in [-step, step] per component (zero mean)."""
    angle_deg: float = 0.0
    """Track angle from the row axis, clockwise towards the columns (degrees)."""


def pushbroom_artefacts(shape: tuple[int, int], art: PushbroomArtefacts, seed: int = 0,
                        layout_seed: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate along-track jitter and detector offsets on a grid.

    The jitter of component ``c`` at along-track coordinate ``a = i cos t + j sin t`` is
    ``A_c / sqrt(K) * sum_k sin(2 pi a / P_k + phi_ck)`` (random phases); the grid is cut
    across the track into ``detectors`` strips of nearly equal width (boundaries moved by up
    to 10 % of a width at random), each with its own constant offset per component.

    Returns
    -------
    tuple
        ``(field, labels, boundaries)``: float64 ``(2, ny, nx)`` artefact (row, col)
        components to add to the true field; int64 ``(ny, nx)`` strip labels; float64
        across-track boundary coordinates. ``layout_seed`` (default: ``seed``) draws the
        strip boundaries: equal layout seeds give the same strips (one orbit, several
        dates) with different offsets and jitter.

    """
    if art.detectors < 1:
        raise ValueError(f"detectors must be >= 1, got {art.detectors}")
    if not art.jitter_periods or min(art.jitter_periods) <= 0:
        raise ValueError("jitter_periods must be positive")
    rng = np.random.default_rng(seed)
    ny, nx = shape
    t = np.deg2rad(art.angle_deg)
    i, j = np.mgrid[0:ny, 0:nx].astype(np.float64)
    along = i * np.cos(t) + j * np.sin(t)
    across = j * np.cos(t) - i * np.sin(t)
    field = np.zeros((2, ny, nx))
    n_p = len(art.jitter_periods)
    for c in range(2):
        for period in art.jitter_periods:
            phase = rng.uniform(0, 2 * np.pi)
            field[c] += art.jitter_amplitude[c] / np.sqrt(n_p) * np.sin(
                2 * np.pi * along / period + phase)
    lo, hi = float(across.min()), float(across.max())
    width = (hi - lo) / art.detectors
    lrng = rng if layout_seed is None else np.random.default_rng([layout_seed, 5])
    bounds = lo + width * (np.arange(1, art.detectors)
                           + lrng.uniform(-0.1, 0.1, art.detectors - 1))
    labels = np.searchsorted(bounds, across, side="right").astype(np.int64)
    for c in range(2):
        off = rng.uniform(-art.detector_step, art.detector_step, art.detectors)
        off -= off.mean()
        field[c] += off[labels]
    return field, labels, bounds
