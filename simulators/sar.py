"""Simulated SLC stacks with exact ground truth, for tests, demos and benchmarks.

Each date's SLC is ``s_k * exp(-4 pi i R_k / wavelength)`` where the range change
``R_k = -d_k + a_k - B_k dz / (R sin(theta))`` holds

- ``d_k``: LOS deformation (metres, positive towards the satellite) from a Mogi source
  (volume change at depth, projected on the line of sight) and a creeping strike-slip
  fault (screw dislocation), both growing linearly in time;
- ``a_k``: a turbulent atmospheric delay, new at each date (power-law spectrum);
- the DEM-error term of a smooth height error ``dz`` seen through the perpendicular
  baseline ``B_k``;

and ``s_k`` is circular Gaussian speckle that decorrelates in time as an AR(1) process
(the coherence between dates ``k`` and ``l`` is ``rho ** |k - l|``, lower in a
low-coherence patch). Dates are written one at a time, so large stacks fit in memory.

Truth (``truth/``): ``velocity.tif`` (m/yr), ``timeseries.tif`` (m, one band per date,
relative to the first), ``dem_error.tif`` (m), ``stable.tif`` (1 where the deformation
is below 1 mm/yr) and ``truth.json``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from pydantic import BaseModel, ConfigDict, Field
from rasterio.crs import CRS
from scipy.ndimage import gaussian_filter

from gdmio.atomic import atomic_path
from gdmio.cog import CogWriter, write_cog

__all__ = ["SimulateSarConfig", "SimulatedStack", "simulate", "los_unit_vector"]

_CRS = CRS.from_epsg(32631)


class SimulateSarConfig(BaseModel):
    """Parameters of a simulated stack."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Folder to write (stack/ and truth/ inside).")
    dates: int = Field(24, ge=2, le=400, description="Number of acquisitions.")
    size: int = Field(384, ge=32, le=8192, description="Rows and columns of each SLC.")
    interval_days: int = Field(12, ge=1, le=365, description="Days between acquisitions.")
    start: dt.date = Field(dt.date(2023, 1, 3), description="First acquisition date.")
    pixel_m: float = Field(20.0, gt=0, description="Pixel size (m).")
    deformation: Literal["mogi+fault", "mogi", "fault", "none"] = Field(
        "mogi+fault", description="Deformation sources.")
    mogi_rate: float = Field(0.04, description="Peak LOS velocity of the Mogi source (m/yr).")
    fault_rate: float = Field(0.01, description="Fault creep rate (m/yr, left-lateral).")
    atmosphere_m: float = Field(0.0015, ge=0, description="Spatial standard deviation of "
                                "each date's turbulent delay (m).")
    dem_error_m: float = Field(10.0, ge=0, description="Standard deviation of the DEM error (m).")
    bperp_std_m: float = Field(60.0, ge=0, description="Spread of perpendicular baselines (m).")
    rho: float = Field(0.985, gt=0, le=1, description="Speckle correlation between "
                       "consecutive dates (temporal decorrelation).")
    rho_patch: float = Field(0.6, gt=0, le=1, description="The same inside the "
                             "low-coherence patch.")
    wavelength: float = Field(0.05546576, description="Radar wavelength (m), C band.")
    incidence_deg: float = Field(39.0, description="Incidence angle (deg).")
    slant_range: float = Field(850_000.0, description="Slant range (m).")
    heading_deg: float = Field(-167.0, description="Platform heading (deg from north).")
    seed: int = Field(0, description="Random seed.")


@dataclass(frozen=True)
class SimulatedStack:
    """Where a simulated stack and its truth were written."""

    stack_dir: Path
    truth_dir: Path
    dates: list[dt.date]
    velocity: np.ndarray
    dem_error: np.ndarray
    stable: np.ndarray


def los_unit_vector(incidence_deg: float, heading_deg: float) -> np.ndarray:
    """(east, north, up) unit vector from the ground towards a right-looking satellite."""
    th, h = np.radians(incidence_deg), np.radians(heading_deg)
    return np.array([-np.sin(th) * np.cos(h), np.sin(th) * np.sin(h), np.cos(th)])


def _fractal(shape: tuple[int, int], rng: np.random.Generator, beta: float = 8 / 3
             ) -> np.ndarray:
    ny, nx = shape
    f = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.rfftfreq(nx)[None, :])
    f[0, 0] = np.inf
    amp = f ** (-beta / 2)
    spec = amp * (rng.normal(size=amp.shape) + 1j * rng.normal(size=amp.shape))
    field = np.fft.irfft2(spec, s=shape)
    field -= field.mean()
    return field / field.std()


def _deformation_rate(cfg: SimulateSarConfig) -> np.ndarray:
    n = cfg.size
    y, x = (np.mgrid[:n, :n] + 0.5) * cfg.pixel_m
    span = n * cfg.pixel_m
    e = los_unit_vector(cfg.incidence_deg, cfg.heading_deg)
    rate = np.zeros((n, n))
    if "mogi" in cfg.deformation:
        depth = 0.1 * span
        dx, dy = x - 0.38 * span, y - 0.42 * span  # dy grows southwards
        r3 = (dx * dx + dy * dy + depth * depth) ** 1.5
        ue, un, uz = dx / r3, -dy / r3, depth / r3
        los = ue * e[0] + un * e[1] + uz * e[2]
        rate += cfg.mogi_rate * los / np.abs(los).max()
    if "fault" in cfg.deformation:
        locking = 0.03 * span
        xf = x - 0.75 * span
        # Left-lateral creep on a north-south fault: the east side moves north.
        un = cfg.fault_rate / np.pi * np.arctan(xf / locking)
        rate += un * e[1]
    return rate


def simulate(cfg: SimulateSarConfig) -> SimulatedStack:
    """Write a simulated stack and its truth; see the module documentation."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.size
    out = Path(cfg.out)
    stack_dir, truth_dir = out / "stack", out / "truth"
    stack_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    transform = Affine(cfg.pixel_m, 0, 600_000.0, 0, -cfg.pixel_m, 4_900_000.0)
    dates = [cfg.start + dt.timedelta(days=cfg.interval_days * k) for k in range(cfg.dates)]
    t = np.array([(d - dates[0]).days / 365.25 for d in dates])
    rate = _deformation_rate(cfg)
    dz = gaussian_filter(rng.normal(size=(n, n)), n / 40)
    dz = cfg.dem_error_m * dz / dz.std()
    bperp = rng.normal(0.0, cfg.bperp_std_m, cfg.dates)
    bperp -= bperp[0]
    sin_th = np.sin(np.radians(cfg.incidence_deg))
    rho = np.full((n, n), cfg.rho)
    yy, xx = np.mgrid[:n, :n] / n
    patch = ((yy - 0.75) ** 2 + (xx - 0.3) ** 2) < 0.1 ** 2
    rho[patch] = cfg.rho_patch
    amp = np.exp(0.3 * gaussian_filter(rng.normal(size=(n, n)), 2) * 3)
    k4 = -4.0 * np.pi / cfg.wavelength

    speckle = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / np.sqrt(2)
    with CogWriter(truth_dir / "timeseries.tif", n, n, cfg.dates, _CRS, transform,
                   descriptions=[d.isoformat() for d in dates]) as truth_series:
        for k, date in enumerate(dates):
            if k:
                fresh = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / np.sqrt(2)
                speckle = rho * speckle + np.sqrt(1 - rho * rho) * fresh
            d_k = rate * t[k]
            truth_series.write(d_k.astype(np.float32), band=k + 1)
            atmo = cfg.atmosphere_m * _fractal((n, n), rng)
            range_change = -d_k + atmo - bperp[k] * dz / (cfg.slant_range * sin_th)
            slc = (amp * speckle * np.exp(1j * k4 * range_change)).astype(np.complex64)
            tags = {"ACQUISITION_DATE": date.isoformat(), "WAVELENGTH": repr(cfg.wavelength),
                    "PERPENDICULAR_BASELINE": f"{bperp[k]:.3f}",
                    "INCIDENCE_ANGLE": repr(cfg.incidence_deg),
                    "SLANT_RANGE": repr(cfg.slant_range), "HEADING": repr(cfg.heading_deg)}
            path = stack_dir / f"slc_{date:%Y%m%d}.tif"
            with atomic_path(path) as tmp, rasterio.open(
                    tmp, "w", driver="GTiff", width=n, height=n, count=1, dtype="complex64",
                    crs=_CRS, transform=transform, tiled=True, blockxsize=256,
                    blockysize=256) as ds:
                ds.write(slc, 1)
                ds.update_tags(**tags)

    stable = (np.abs(rate) < 0.001).astype(np.uint8)
    write_cog(truth_dir / "velocity.tif", rate.astype(np.float32), _CRS, transform)
    write_cog(truth_dir / "dem_error.tif", dz.astype(np.float32), _CRS, transform)
    write_cog(truth_dir / "stable.tif", stable, _CRS, transform, nodata=None, dtype="uint8")
    (truth_dir / "truth.json").write_text(json.dumps({
        "dates": [d.isoformat() for d in dates], "bperp_m": bperp.round(3).tolist(),
        "config": json.loads(cfg.model_dump_json()),
        "units": {"velocity": "m/yr LOS, positive towards the satellite",
                  "timeseries": "m LOS relative to the first date", "dem_error": "m"},
    }, indent=2))
    return SimulatedStack(stack_dir=stack_dir, truth_dir=truth_dir, dates=dates,
                          velocity=rate.astype(np.float32), dem_error=dz.astype(np.float32),
                          stable=stable.astype(bool))
