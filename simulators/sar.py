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

__all__ = ["SimulateSarConfig", "SimulatedStack", "simulate", "los_unit_vector", "Layered",
           "ERA5_LEVELS_HPA"]

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
    topography_m: float = Field(0.0, ge=0, le=8000, description="Relief (m) of the "
                                "terrain (a massif with rough slopes) above "
                                "`base_height_m`; 0: flat at that height. With relief or "
                                "a stratified atmosphere, stack/geometry.npz holds the "
                                "latitude, longitude and height of every pixel.")
    base_height_m: float = Field(100.0, ge=-400, le=6000, description="Lowest terrain "
                                 "height (m above the ellipsoid).")
    stratified: bool = Field(False, description="Add a stratified troposphere: each "
                             "date's slant delay from a layered atmosphere (surface "
                             "pressure, temperature and humidity changing with the season "
                             "and from date to date) integrated from every pixel's height.")
    weather_files: bool = Field(False, description="Also write the weather of each date as "
                                "a model would give it: ERA5 pressure-level NetCDF (OUT/era5, "
                                "0.25 deg, 37 levels, CDS layout) and GACOS ZTD grids "
                                "(OUT/gacos, YYYYMMDD.ztd + .rsc); needs `stratified`.")


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


_G = 9.80665
_RD, _RV = 287.05, 461.495
_K1, _K2, _K3 = 0.776, 0.716, 3750.0
_LAPSE, _TROPOPAUSE = 0.0065, 11000.0
ERA5_LEVELS_HPA = (1, 2, 3, 5, 7, 10, 20, 30, 50, 70, 100, 125, 150, 175, 200, 225, 250,
                   300, 350, 400, 450, 500, 550, 600, 650, 700, 750, 775, 800, 825, 850, 875,
                   900, 925, 950, 975, 1000)
"""The 37 pressure levels of ERA5 (hPa)."""


@dataclass(frozen=True)
class Layered:
    """A layered atmosphere: sea-level pressure (Pa), temperature (K), specific humidity."""

    p0: float
    t0: float
    q0: float
    q_scale: float = 2000.0

    def temperature(self, z: np.ndarray) -> np.ndarray:
        """Temperature (K) at geometric height ``z`` (m); isothermal above 11 km."""
        return self.t0 - _LAPSE * np.minimum(z, _TROPOPAUSE)

    def pressure(self, z: np.ndarray) -> np.ndarray:
        """Hydrostatic pressure (Pa) with constant gravity (dry air)."""
        z = np.asarray(z, np.float64)
        t11 = self.t0 - _LAPSE * _TROPOPAUSE
        below = self.p0 * (self.temperature(z) / self.t0) ** (_G / (_RD * _LAPSE))
        p11 = self.p0 * (t11 / self.t0) ** (_G / (_RD * _LAPSE))
        above = p11 * np.exp(-_G * (z - _TROPOPAUSE) / (_RD * t11))
        return np.where(z <= _TROPOPAUSE, below, above)

    def humidity(self, z: np.ndarray) -> np.ndarray:
        """Specific humidity (kg/kg)."""
        return self.q0 * np.exp(-np.maximum(np.asarray(z, np.float64), -500.0) / self.q_scale)

    def height_of(self, p: np.ndarray) -> np.ndarray:
        """Geometric height (m) of pressures (Pa), inverse of :meth:`pressure`."""
        p = np.asarray(p, np.float64)
        t11 = self.t0 - _LAPSE * _TROPOPAUSE
        p11 = self.p0 * (t11 / self.t0) ** (_G / (_RD * _LAPSE))
        below = self.t0 / _LAPSE * (1 - (p / self.p0) ** (_RD * _LAPSE / _G))
        above = _TROPOPAUSE - _RD * t11 / _G * np.log(p / p11)
        return np.where(p >= p11, below, above)

    def zenith_delay(self, heights: np.ndarray) -> np.ndarray:
        """Zenith total delay (m) at heights, by direct integration on a 1 m grid."""
        heights = np.asarray(heights, np.float64)
        z = np.arange(min(-500.0, heights.min()), 40_000.0, 1.0)
        t, p, q = self.temperature(z), self.pressure(z), self.humidity(z)
        e = q * p / (_RD / _RV + (1 - _RD / _RV) * q)
        n = _K1 * (p - e) / t + _K2 * e / t + _K3 * e / (t * t)
        seg = 0.5 * (n[1:] + n[:-1])
        cum = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]]) * 1e-6
        return np.interp(heights, z, cum)


def _terrain(cfg: SimulateSarConfig, rng: np.random.Generator) -> np.ndarray:
    n = cfg.size
    yy, xx = np.mgrid[:n, :n] / n
    massif = np.exp(-(((xx - 0.62) / 0.28) ** 2 + ((yy - 0.35) / 0.22) ** 2))
    rough = gaussian_filter(rng.normal(size=(n, n)), n / 48)
    rough = (rough - rough.min()) / max(np.ptp(rough), 1e-9)
    h = 0.8 * massif + 0.2 * rough * massif
    h = (h - h.min()) / max(np.ptp(h), 1e-9)
    return cfg.base_height_m + cfg.topography_m * h


def _atmospheres(cfg: SimulateSarConfig, t: np.ndarray, rng: np.random.Generator
                 ) -> list[Layered]:
    """One layered atmosphere per date: seasons plus weather from date to date."""
    season = np.sin(2 * np.pi * (t + 0.05))
    out = []
    for s in season:
        out.append(Layered(p0=101325.0 + rng.normal(0, 600.0),
                           t0=285.0 + 9.0 * s + rng.normal(0, 2.5),
                           q0=max(0.0015, 0.0075 + 0.0045 * s + rng.normal(0, 0.0012))))
    return out


def _write_era5(path: Path, date: dt.date, atm: Layered, lat: np.ndarray, lon: np.ndarray,
                hour: int) -> None:
    """An ERA5 pressure-level NetCDF as the CDS delivers it (2024 layout)."""
    import netCDF4

    from kernels.troposphere import geopotential_height

    levels = np.array(ERA5_LEVELS_HPA, np.float64)
    p = levels * 100.0
    z = atm.height_of(p)                                     # (L,) geometric heights
    shape = (1, levels.size, lat.size, lon.size)
    # a weak horizontal gradient (the model's columns differ a little)
    dlat = (lat - lat.mean())[None, None, :, None]
    dlon = (lon - lon.mean())[None, None, None, :]
    tmp = path.with_name(f".{path.name}.tmp")
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.GRIB_centre = "ecmf"
        ds.Conventions = "CF-1.7"
        ds.institution = "European Centre for Medium-Range Weather Forecasts"
        ds.history = "simulated by gdm-service simulators.sar (CDS ERA5 pressure-level layout)"
        ds.createDimension("valid_time", 1)
        ds.createDimension("pressure_level", levels.size)
        ds.createDimension("latitude", lat.size)
        ds.createDimension("longitude", lon.size)
        v = ds.createVariable("valid_time", "i8", ("valid_time",))
        v.long_name, v.standard_name = "time", "time"
        v.units, v.calendar = "seconds since 1970-01-01", "proleptic_gregorian"
        when = dt.datetime.combine(date, dt.time(hour))
        v[:] = [int((when - dt.datetime(1970, 1, 1)).total_seconds())]
        v = ds.createVariable("pressure_level", "f8", ("pressure_level",))
        v.units, v.long_name, v.positive = "hPa", "pressure", "down"
        v.standard_name = "air_pressure"
        v[:] = levels[::-1]  # CDS lists 1000 hPa first
        v = ds.createVariable("latitude", "f8", ("latitude",))
        v.units, v.standard_name = "degrees_north", "latitude"
        v[:] = lat
        v = ds.createVariable("longitude", "f8", ("longitude",))
        v.units, v.standard_name = "degrees_east", "longitude"
        v[:] = lon
        dims = ("valid_time", "pressure_level", "latitude", "longitude")
        zz = (z[None, :, None, None] + 0 * dlat + 0 * dlon)[:, ::-1]
        hgp = geopotential_height(zz, lat[None, None, :, None])
        tt = (atm.temperature(zz) + 0.6 * dlat - 0.3 * dlon)
        qq = atm.humidity(zz) * (1 + 0.05 * dlon)
        for name, data, units, long in (
                ("z", hgp * _G, "m**2 s**-2", "Geopotential"),
                ("t", tt, "K", "Temperature"),
                ("q", qq, "kg kg**-1", "Specific humidity")):
            v = ds.createVariable(name, "f4", dims, zlib=True, fill_value=np.float32(np.nan))
            v.units, v.long_name = units, long
            v.GRIB_paramId = {"z": 129, "t": 130, "q": 133}[name]
            v[:] = np.broadcast_to(data, shape).astype(np.float32)
    tmp.replace(path)


def _lonlat(transform: Affine, n: int) -> tuple[np.ndarray, np.ndarray]:
    from rasterio.warp import transform as warp

    cols, rows = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5)
    xs, ys = transform * (cols.ravel(), rows.ravel())
    lon, lat = warp(_CRS, "EPSG:4326", xs, ys)
    return np.asarray(lat).reshape(n, n), np.asarray(lon).reshape(n, n)


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

    # Terrain and stratified troposphere draw from their own generator, so that the
    # stacks of the other options stay the same as before these existed.
    rng2 = np.random.default_rng([cfg.seed, 17])
    height = _terrain(cfg, rng2)
    strat = np.zeros((cfg.dates, n, n)) if cfg.stratified else None
    lat = lon = None
    if cfg.topography_m > 0 or cfg.stratified:
        lat, lon = _lonlat(transform, n)
        np.savez_compressed(stack_dir / "geometry.npz", lat=lat, lon=lon,
                            height=height.astype(np.float64))
    if cfg.stratified:
        cos_i = np.cos(np.radians(cfg.incidence_deg))
        atms = _atmospheres(cfg, t, rng2)
        grid_h = np.linspace(height.min() - 1, height.max() + 1, 512)
        for k, atm in enumerate(atms):
            strat[k] = np.interp(height, grid_h, atm.zenith_delay(grid_h)) / cos_i
        if cfg.weather_files:
            _write_weather(cfg, out, dates, atms, lat, lon, height, transform)
    elif cfg.weather_files:
        raise ValueError("weather_files needs stratified")

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
            if strat is not None:
                atmo = atmo + strat[k]
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
        "stratified_los_delay_m": None if strat is None else
        [round(float(np.mean(s)), 6) for s in strat],
        "units": {"velocity": "m/yr LOS, positive towards the satellite",
                  "timeseries": "m LOS relative to the first date", "dem_error": "m"},
    }, indent=2))
    return SimulatedStack(stack_dir=stack_dir, truth_dir=truth_dir, dates=dates,
                          velocity=rate.astype(np.float32), dem_error=dz.astype(np.float32),
                          stable=stable.astype(bool))


def _write_weather(cfg: SimulateSarConfig, out: Path, dates: list[dt.date],
                   atms: list[Layered], lat: np.ndarray, lon: np.ndarray,
                   height: np.ndarray, transform: Affine) -> None:
    """ERA5 files (0.25 deg nodes around the scene) and GACOS grids of every date."""
    from rasterio.warp import transform as warp

    era5 = out / "era5"
    gacos = out / "gacos"
    era5.mkdir(parents=True, exist_ok=True)
    gacos.mkdir(parents=True, exist_ok=True)
    la0 = np.floor(lat.min() * 4) / 4 - 0.25
    la1 = np.ceil(lat.max() * 4) / 4 + 0.25
    lo0 = np.floor(lon.min() * 4) / 4 - 0.25
    lo1 = np.ceil(lon.max() * 4) / 4 + 0.25
    node_lat = np.arange(la1, la0 - 1e-9, -0.25)   # north first, as ERA5
    node_lon = np.arange(lo0, lo1 + 1e-9, 0.25)
    step = 1 / 1200  # 3 arc-seconds, GACOS's spacing
    glat = np.arange(lat.max() + 2 * step, lat.min() - 2 * step, -step)
    glon = np.arange(lon.min() - 2 * step, lon.max() + 2 * step, step)
    gx, gy = np.meshgrid(glon, glat)
    xs, ys = warp("EPSG:4326", _CRS, gx.ravel(), gy.ravel())
    cols, rows = ~transform * (np.asarray(xs), np.asarray(ys))
    from scipy.ndimage import map_coordinates

    gh = map_coordinates(height, [np.asarray(rows) - 0.5, np.asarray(cols) - 0.5], order=1,
                         mode="nearest").reshape(gx.shape)
    for d, atm in zip(dates, atms, strict=True):
        _write_era5(era5 / f"{d:%Y%m%d}.nc", d, atm, node_lat, node_lon, 6)
        grid_h = np.linspace(gh.min() - 1, gh.max() + 1, 512)
        ztd = np.interp(gh, grid_h, atm.zenith_delay(grid_h))
        _write_gacos(gacos / f"{d:%Y%m%d}.ztd", ztd, float(glat[0]), float(glon[0]), step)


def _write_gacos(path: Path, ztd: np.ndarray, lat0: float, lon0: float, step: float) -> None:
    """A GACOS ZTD grid: little-endian float32 rows from the north, and its .rsc header."""
    n, w = ztd.shape
    tmp = path.with_name(f".{path.name}.tmp")
    np.asarray(ztd, "<f4").tofile(tmp)
    tmp.replace(path)
    keys = [("WIDTH", w), ("FILE_LENGTH", n), ("XMIN", 0), ("XMAX", w - 1), ("YMIN", 0),
            ("YMAX", n - 1), ("X_FIRST", f"{lon0:.8f}"), ("Y_FIRST", f"{lat0:.8f}"),
            ("X_STEP", f"{step:.10f}"), ("Y_STEP", f"{-step:.10f}"), ("X_UNIT", "degres"),
            ("Y_UNIT", "degres"), ("Z_OFFSET", 0), ("Z_SCALE", 1),
            ("PROJECTION", "LATLON"), ("DATUM", "WGS84")]
    path.with_name(path.name + ".rsc").write_text(
        "".join(f"{k:<16}{v}\n" for k, v in keys))
