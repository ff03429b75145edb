"""Weather-model tropospheric delays from files: ERA5 pressure levels and GACOS grids.

Two sources of the zenith total delay (ZTD) of each acquisition, both read from a folder
(``weather_dir``) that the user gives or a provider fills (:class:`WeatherClient`):

- **ERA5** on pressure levels, as the Copernicus Climate Data Store delivers it in
  NetCDF (the files PyAPS and RAiDER start from): geopotential ``z`` (m^2 s^-2),
  temperature ``t`` (K) and specific humidity ``q`` (kg/kg) or relative humidity ``r``
  (%), on ``latitude``, ``longitude``, pressure levels (``pressure_level`` in the CDS
  NetCDF of 2024 on, ``level`` before, hPa) and times (``valid_time`` or ``time``, CF
  units). Any number of files, any number of times each; the delay at an acquisition is
  interpolated linearly in time between the two model times around it (the acquisition
  time of day is ``acquisition_time``; with one model time on the date, that one). The
  delay is computed per model column (:func:`kernels.troposphere.delay_profiles`:
  hydrostatic + wet, integrated from the pixel's height) and interpolated in height and
  space at each pixel.
- **GACOS** ZTD grids: ``YYYYMMDD.ztd`` (float32, little-endian, rows from the north)
  with ``YYYYMMDD.ztd.rsc`` (``WIDTH``, ``FILE_LENGTH``, ``X_FIRST``, ``Y_FIRST``,
  ``X_STEP``, ``Y_STEP``), or ``YYYYMMDD.ztd.tif``; the ZTD (m, at GACOS's own terrain
  heights) is interpolated bilinearly at each pixel.

Delays are projected on the line of sight by ``1 / cos(incidence)`` (as MintPy does).
A larger delay lengthens the range, which reads as motion away from the satellite, so
the correction of a pair ``(i, j)`` in LOS metres (positive towards the satellite) is
``+ (delay_j - delay_i)`` (:func:`insar.corrections` references it to the reference
pixel, like the pairs).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from gdmcore import InputError
from kernels.troposphere import (
    TABLE_HEIGHTS,
    delay_profiles,
    interpolate_delay,
    vapour_pressure_q,
    vapour_pressure_rh,
)

__all__ = ["WeatherModel", "Era5", "Gacos", "open_weather", "read_era5", "read_gacos",
           "los_delay", "WeatherClient", "WEATHER_MODELS"]

WEATHER_MODELS = ("era5", "gacos")
_DATE = re.compile(r"(?<!\d)(\d{8})(?!\d)")


class WeatherModel(Protocol):
    """Zenith total delay (m) of an acquisition at pixels (latitude, longitude, height)."""

    name: str

    def zenith_delay(self, date: dt.date, lat: np.ndarray, lon: np.ndarray,
                     h: np.ndarray) -> np.ndarray:
        """ZTD (m) of the acquisition of ``date`` at the pixels."""


def los_delay(ztd: np.ndarray, incidence_deg: float | np.ndarray) -> np.ndarray:
    """Slant (LOS) delay from the zenith delay: ``ztd / cos(incidence)``."""
    return ztd / np.cos(np.radians(incidence_deg))


# ------------------------------------------------------------------------------- ERA5
def _variable(ds, *names: str):  # noqa: ANN001, ANN202 - netCDF4 objects
    for n in names:
        if n in ds.variables:
            return ds.variables[n]
    return None


def read_era5(path: str | os.PathLike[str]) -> dict:
    """One ERA5 pressure-level NetCDF as arrays (levels in Pa, ascending latitude order kept).

    Returns ``{"times": [datetime], "levels_pa", "lat", "lon", "z", "t", "e"}`` with
    ``z``, ``t``, ``e`` of shape (n_times, n_levels, n_lat, n_lon); ``e`` is the water
    vapour pressure (Pa) from ``q`` (preferred) or ``r``.

    Raises
    ------
    InputError
        Naming the file and what is missing or wrong.

    """
    import netCDF4

    path = Path(path)
    try:
        ds = netCDF4.Dataset(path)
    except OSError as exc:
        raise InputError(f"{path.name}: not a readable NetCDF file ({exc})") from None
    with ds:
        ds.set_auto_maskandscale(True)
        lat_v = _variable(ds, "latitude", "lat")
        lon_v = _variable(ds, "longitude", "lon")
        lev_v = _variable(ds, "pressure_level", "level", "isobaricInhPa", "plev")
        time_v = _variable(ds, "valid_time", "time")
        z_v, t_v = _variable(ds, "z"), _variable(ds, "t")
        q_v, r_v = _variable(ds, "q"), _variable(ds, "r")
        missing = [n for n, v in (("latitude", lat_v), ("longitude", lon_v),
                                  ("pressure level", lev_v), ("time", time_v),
                                  ("z (geopotential)", z_v), ("t (temperature)", t_v))
                   if v is None]
        if q_v is None and r_v is None:
            missing.append("q or r (humidity)")
        if missing:
            raise InputError(f"{path.name}: not an ERA5 pressure-level file: no "
                             f"{', '.join(missing)}")
        units = getattr(lev_v, "units", "hPa").lower()
        levels = np.asarray(lev_v[:], np.float64)
        scale = 1.0 if units in ("pa", "pascal") else 100.0  # hPa, millibars
        levels = levels * scale
        try:
            cal = getattr(time_v, "calendar", "standard")
            stamps = netCDF4.num2date(np.atleast_1d(time_v[:]), time_v.units, cal,
                                      only_use_cftime_datetimes=False,
                                      only_use_python_datetimes=True)
        except (AttributeError, ValueError) as exc:
            raise InputError(f"{path.name}: cannot read the times ({exc})") from None
        assert isinstance(stamps, np.ndarray)  # an array input gives an array (not a datetime)
        times = [dt.datetime(t.year, t.month, t.day, t.hour, t.minute, t.second)
                 for t in stamps]

        def cube(v) -> np.ndarray:  # noqa: ANN001
            dims = list(v.dimensions)
            a = np.ma.filled(v[:].astype(np.float64), np.nan)
            order = []
            for want in (time_v.name, lev_v.name, lat_v.name, lon_v.name):
                if want not in dims:
                    if want == time_v.name:  # a single time without its dimension
                        a = a[None]
                        dims = [want, *dims]
                    else:
                        raise InputError(f"{path.name}: variable {v.name} lacks the "
                                         f"{want} dimension")
                order.append(dims.index(want))
            extra = [k for k in range(a.ndim) if k not in order]
            if extra:  # e.g. expver of the preliminary ERA5T: keep the first
                for k in sorted(extra, reverse=True):
                    a = np.take(a, 0, axis=k)
                    order = [o - (o > k) for o in order]
            return np.transpose(a, order)

        z, t = cube(z_v), cube(t_v)
        pfull = levels[None, :, None, None] * np.ones_like(t)
        e = vapour_pressure_q(cube(q_v), pfull) if q_v is not None else \
            vapour_pressure_rh(cube(r_v), t)
        lat = np.asarray(lat_v[:], np.float64)
        lon = np.asarray(lon_v[:], np.float64)
    for name, a in (("z", z), ("t", t), ("humidity", e)):
        if not np.all(np.isfinite(a)):
            raise InputError(f"{path.name}: {name} has missing values")
    if levels.size < 3:
        raise InputError(f"{path.name}: {levels.size} pressure level(s); at least 3 needed")
    return {"times": times, "levels_pa": levels, "lat": lat, "lon": lon, "z": z, "t": t,
            "e": e}


class Era5:
    """ERA5 delays from the pressure-level NetCDF files of a folder.

    Parameters
    ----------
    files
        ERA5 NetCDF files (``*.nc``).
    acquisition_time
        Time of day (UTC) of the acquisitions, to interpolate between model times; None
        uses the one model time of each date (an error when a date has several).
    bbox
        (west, south, east, north) degrees: only the model columns over it (plus one
        node around) are integrated.

    """

    name = "era5"

    def __init__(self, files: Sequence[Path], acquisition_time: dt.time | None = None,
                 bbox: tuple[float, float, float, float] | None = None) -> None:
        if not files:
            raise InputError("troposphere era5: no ERA5 NetCDF file (*.nc) given")
        self.files = [Path(f) for f in files]
        self.acquisition_time = acquisition_time
        self.bbox = bbox
        self._index: list[tuple[dt.datetime, Path, int]] | None = None
        self._tables: dict[tuple[Path, int], tuple] = {}
        self._cache: dict[Path, dict] = {}

    def _data(self, path: Path) -> dict:
        if path not in self._cache:
            self._cache.clear()  # one file in memory at a time
            self._cache[path] = read_era5(path)
        return self._cache[path]

    def index(self) -> list[tuple[dt.datetime, Path, int]]:
        """(time, file, index in the file) of every model time, in time order."""
        if self._index is None:
            idx = []
            for f in self.files:
                for k, t in enumerate(self._data(f)["times"]):
                    idx.append((t, f, k))
            self._index = sorted(idx)
        return self._index

    def _times_for(self, date: dt.date) -> list[tuple[float, Path, int]]:
        idx = self.index()
        if self.acquisition_time is None:
            same = [(1.0, f, k) for t, f, k in idx if t.date() == date]
            if len(same) == 1:
                return same
            if not same:
                raise InputError(f"troposphere era5: no model time on {date} in "
                                 f"{len(self.files)} file(s)")
            raise InputError(f"troposphere era5: {len(same)} model times on {date}: give "
                             "the acquisition time (acquisition_time, UTC)")
        when = dt.datetime.combine(date, self.acquisition_time)
        before = [x for x in idx if x[0] <= when]
        after = [x for x in idx if x[0] >= when]
        if not before or not after:
            raise InputError(f"troposphere era5: no model times around {when:%Y-%m-%d %H:%M}"
                             " UTC in the files")
        t0, f0, k0 = before[-1]
        t1, f1, k1 = after[0]
        if (t1 - t0) > dt.timedelta(hours=6):
            raise InputError(f"troposphere era5: the model times around {when} are "
                             f"{t0} and {t1}, more than 6 h apart")
        if t1 == t0:
            return [(1.0, f0, k0)]
        w = (when - t0) / (t1 - t0)
        return [(1.0 - w, f0, k0), (w, f1, k1)]

    def _table(self, path: Path, k: int) -> tuple:
        key = (path, k)
        if key not in self._tables:
            d = self._data(path)
            lat, lon = d["lat"], d["lon"]
            rows, cols = np.arange(lat.size), np.arange(lon.size)
            if self.bbox is not None:
                w, s, e, n = self.bbox
                rows = _around(lat, s, n)
                cols = _around(_lon_near(lon, 0.5 * (w + e)), w, e)
            sub = np.ix_(np.arange(d["levels_pa"].size), rows, cols)
            hyd, wet = delay_profiles(d["levels_pa"], d["z"][k][sub], d["t"][k][sub],
                                      d["e"][k][sub], lat[rows])
            lon_sel = _lon_near(lon, 0.5 * (self.bbox[0] + self.bbox[2]))[cols] \
                if self.bbox is not None else lon[cols]
            self._tables[key] = (lat[rows], lon_sel, hyd + wet)
        return self._tables[key]

    def zenith_delay(self, date: dt.date, lat: np.ndarray, lon: np.ndarray,
                     h: np.ndarray) -> np.ndarray:
        """ZTD (m) at the pixels, interpolated between the model times around ``date``."""
        out = np.zeros(np.shape(lat))
        for w, f, k in self._times_for(date):
            nlat, nlon, table = self._table(f, k)
            out += w * interpolate_delay(table, nlat, nlon, lat, lon, h, TABLE_HEIGHTS)
        return out


def _lon_near(lon: np.ndarray, centre: float) -> np.ndarray:
    """Longitudes wrapped to within 180 degrees of ``centre`` (0..360 grids)."""
    return (lon - centre + 180.0) % 360.0 - 180.0 + centre


def _around(nodes: np.ndarray, lo: float, hi: float) -> np.ndarray:
    inside = np.nonzero((nodes >= lo) & (nodes <= hi))[0]
    if inside.size == 0:
        k = int(np.argmin(np.abs(nodes - 0.5 * (lo + hi))))
        inside = np.array([k])
    a, b = max(int(inside.min()) - 1, 0), min(int(inside.max()) + 1, nodes.size - 1)
    return np.arange(a, b + 1)


# ------------------------------------------------------------------------------ GACOS
def read_gacos(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A GACOS ZTD grid: ``(ztd (ny, nx) m, lat (ny,), lon (nx,))`` of the pixel centres.

    ``YYYYMMDD.ztd`` with its ``.rsc`` (X_FIRST/Y_FIRST: the first pixel's centre, as
    ROI_PAC), or a GeoTIFF ``YYYYMMDD.ztd.tif``.
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        try:
            with rasterio.open(path) as ds:
                ztd = ds.read(1).astype(np.float64)
                tr = ds.transform
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"{path.name}: not a readable GeoTIFF ({exc})") from None
        lon = tr.c + tr.a * (np.arange(ztd.shape[1]) + 0.5)
        lat = tr.f + tr.e * (np.arange(ztd.shape[0]) + 0.5)
        return ztd, lat, lon
    rsc = path.with_name(path.name + ".rsc")
    try:
        text = rsc.read_text()
    except OSError:
        raise InputError(f"{path.name}: its header {rsc.name} is missing") from None
    meta = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            meta[parts[0].upper()] = parts[1]
    try:
        w, n = int(meta["WIDTH"]), int(meta["FILE_LENGTH"])
        x0, y0 = float(meta["X_FIRST"]), float(meta["Y_FIRST"])
        dx, dy = float(meta["X_STEP"]), float(meta["Y_STEP"])
    except (KeyError, ValueError) as exc:
        raise InputError(f"{rsc.name}: missing or bad key {exc}") from None
    if w <= 0 or n <= 0 or w * n > 50_000_000 or dx == 0 or dy == 0:
        raise InputError(f"{rsc.name}: implausible grid {w}x{n} step {dx},{dy}")
    size = path.stat().st_size if path.exists() else -1
    if size != 4 * w * n:
        raise InputError(f"{path.name}: {size} bytes, expected {4 * w * n} "
                         f"({w}x{n} float32)")
    ztd = np.fromfile(path, "<f4").reshape(n, w).astype(np.float64)
    ztd[ztd == 0] = np.nan
    return ztd, y0 + dy * np.arange(n), x0 + dx * np.arange(w)


class Gacos:
    """GACOS ZTD grids of a folder, one per acquisition date."""

    name = "gacos"

    def __init__(self, files: Sequence[Path]) -> None:
        self.by_date: dict[dt.date, Path] = {}
        for f in files:
            m = _DATE.search(Path(f).name)
            if m:
                try:
                    self.by_date[dt.datetime.strptime(m.group(1), "%Y%m%d").date()] = Path(f)
                except ValueError:
                    continue
        if not self.by_date:
            raise InputError("troposphere gacos: no YYYYMMDD.ztd file given")

    def zenith_delay(self, date: dt.date, lat: np.ndarray, lon: np.ndarray,
                     h: np.ndarray) -> np.ndarray:
        """GACOS ZTD (m) at the pixels (bilinear; ``h`` unused: GACOS is at the terrain)."""
        if date not in self.by_date:
            raise InputError(f"troposphere gacos: no ZTD file for {date} "
                             f"({date:%Y%m%d}.ztd)")
        ztd, glat, glon = read_gacos(self.by_date[date])
        la = np.asarray(lat, np.float64)
        lo = np.asarray(lon, np.float64)
        if la.min() < min(glat[0], glat[-1]) - abs(glat[1] - glat[0]) or \
                la.max() > max(glat[0], glat[-1]) + abs(glat[1] - glat[0]) or \
                lo.min() < min(glon[0], glon[-1]) - abs(glon[1] - glon[0]) or \
                lo.max() > max(glon[0], glon[-1]) + abs(glon[1] - glon[0]):
            raise InputError(f"{self.by_date[date].name}: the GACOS grid does not cover "
                             "the scene")
        table = ztd[:, :, None] * np.ones((1, 1, 2))
        heights = np.array([0.0, 1.0])
        flat = np.zeros(la.shape)
        out = interpolate_delay(table, glat, glon, la, lo, flat, heights)
        if not np.all(np.isfinite(out)):
            raise InputError(f"{self.by_date[date].name}: no ZTD value at some pixels")
        return out


# ------------------------------------------------------------------------------ opening
def open_weather(kind: str, folder: str | os.PathLike[str] | None,
                 acquisition_time: dt.time | None = None,
                 bbox: tuple[float, float, float, float] | None = None) -> WeatherModel:
    """The weather model ``kind`` (``era5`` or ``gacos``) from the files of ``folder``."""
    if kind not in WEATHER_MODELS:
        raise InputError(f"unknown weather model {kind!r}; known: {', '.join(WEATHER_MODELS)}")
    if folder is None:
        raise InputError(f"troposphere {kind} needs weather_dir: a folder of "
                         + ("ERA5 NetCDF files" if kind == "era5" else "GACOS .ztd files"))
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"weather_dir not found: {folder}")
    if kind == "era5":
        return Era5(sorted(p for p in folder.iterdir() if p.suffix in (".nc", ".nc4")),
                    acquisition_time, bbox)
    files = sorted(p for p in folder.iterdir()
                   if p.name.endswith(".ztd") or p.name.endswith(".ztd.tif"))
    return Gacos(files)


# ----------------------------------------------------------------------------- provider
class WeatherClient:
    """Fetches the weather files of dates from an archive into a folder (the provider seam).

    The archive serves one file per date: ``{base}/{YYYYMMDD}.nc`` for ERA5 (a
    pressure-level NetCDF over the area, as a CDS request returns it) or
    ``{base}/{YYYYMMDD}.ztd`` and ``.ztd.rsc`` for GACOS. The base URL is the argument,
    else ``$GDM_ERA5_URL`` / ``$GDM_GACOS_URL``. Files already in the folder are kept.
    """

    def __init__(self, kind: str, base_url: str | None = None) -> None:
        from gdmio.providers._http import base_url as _base

        if kind not in WEATHER_MODELS:
            raise InputError(f"unknown weather model {kind!r}")
        env = "GDM_ERA5_URL" if kind == "era5" else "GDM_GACOS_URL"
        if not (base_url or os.environ.get(env)):
            raise InputError(f"no {kind} archive: set {env} or give weather_dir")
        self.kind = kind
        self.base_url = _base(base_url, env, "")

    def fetch(self, dates: Sequence[dt.date], folder: str | os.PathLike[str]) -> list[Path]:
        """Download the files of ``dates`` into ``folder``; returns the data files."""
        from gdmio.download import RemoteError, download
        from gdmio.outbound import archive_policy

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for d in dates:
            names = [f"{d:%Y%m%d}.nc"] if self.kind == "era5" else \
                [f"{d:%Y%m%d}.ztd.rsc", f"{d:%Y%m%d}.ztd"]
            for name in names:
                dest = folder / name
                if not dest.exists():
                    try:
                        # the operator's archive: its host allowed, like the others
                        download(f"{self.base_url}/{name}", dest, label=name,
                                 outbound=archive_policy(self.base_url))
                    except RemoteError as exc:
                        raise InputError(f"{self.kind} archive: {exc}") from None
            out.append(folder / names[-1])
        return out

