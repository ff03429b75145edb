"""Simulated Sentinel-1 IW SLC products (SAFE) from a known geometry and deformation.

Small but structurally faithful: each date is a ``S1A_IW_SLC__1SDV_....SAFE`` folder (or
zip) with a ``manifest.safe``, one swath annotation (real element names: burst list with
valid samples, orbit state vectors, Doppler centroid and azimuth FM rate estimates,
geolocation grid) and a CInt16 measurement GeoTIFF holding the bursts; precise orbits
are written as EOF files in ``orbits/``; a DEM (ellipsoidal heights, EPSG:4326) as
``dem.tif``.

Physics (what makes TOPS coregistration testable):

- circular Earth-fixed orbits repeating every 12 days, each date displaced by a random
  baseline (radial and cross-track) and a random burst timing offset (burst
  synchronisation error) and range-start offset;
- a white complex reflectivity on a 2x oversampled lattice in the reference radar
  geometry. For every date and burst, each target carries its phase
  ``-4 pi (R_k - R_ref) / wavelength + 4 pi d_k / wavelength`` (d_k: LOS deformation,
  positive towards the satellite) times the conjugate of the burst's TOPS ramp at the
  target's own position; a low-pass (Hamming-weighted band) gives the burst's deramped
  baseband signal, which is sampled at the burst's pixels (traced through the orbits and
  the DEM) and re-ramped. So each target's phase at its own position is its geometric
  phase and the data carries the TOPS Doppler history of its burst;
- the annotated azimuth times of each secondary date are off by a known
  ``timing_error_px`` (what enhanced spectral diversity must find);
- thermal noise at ``snr``.

Truth (``truth.json``): dates, the LOS velocity model (Gaussian bump:
:func:`velocity_at`), baselines, injected timing errors.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field
from rasterio.crs import CRS
from scipy.ndimage import gaussian_filter

from gdmio.s1.orbit import Orbit, write_eof
from gdmio.s1.safe import T_BEAM, T_ORB, T_PRE
from kernels.geometry import (
    SPEED_OF_LIGHT,
    DemGrid,
    ecef_to_llh,
    geo2rdr,
    llh_to_ecef,
    rdr2geo,
)
from kernels.tops import RampModel, ramp_phase, resample_sinc

__all__ = ["SimulateSafeConfig", "SimulatedSafe", "simulate_safe", "velocity_at",
           "map_velocity_error"]

_GM = 3.986004418e14
_OMEGA_E = 7.2921151467e-5
_FS_FULL = 6.434523812571428e07
_FC = 5.405000454334350e09


class SimulateSafeConfig(BaseModel):
    """Parameters of a simulated set of Sentinel-1 IW SLC products."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Folder to write (SAFE products in safe/, orbits/, "
                      "dem.tif, truth.json).")
    dates: int = Field(6, ge=2, le=60, description="Number of acquisitions.")
    interval_days: int = Field(12, ge=1, le=120, description="Days between acquisitions.")
    start: dt.date = Field(dt.date(2023, 3, 2), description="First acquisition date.")
    bursts: int = Field(3, ge=1, le=10, description="Bursts per product.")
    lines_per_burst: int = Field(176, ge=40, le=2000, description="Lines of one burst.")
    burst_cycle_lines: int = Field(150, ge=30, le=1800, description="Lines between burst "
                                   "starts (sets the azimuth time interval: beam cycle "
                                   "2.758273 s / this).")
    invalid_lines: int = Field(4, ge=1, le=50, description="Invalid lines at each burst end.")
    samples: int = Field(256, ge=64, le=4096, description="Range samples.")
    range_decimation: int = Field(8, ge=1, le=32, description="Range sampling rate is "
                                  "the real 64.35 MHz divided by this.")
    near_range_m: float = Field(800_000.0, description="Slant range of the first sample (m).")
    doppler_span: float = Field(1.2, gt=0, le=1.8, description="Doppler excursion of the "
                                "data across a burst in units of the line rate (TOPS "
                                "aliasing: > 1).")
    bperp_std_m: float = Field(12.0, ge=0, le=500, description="Spread of baselines (m); "
                               "range pixels are range_decimation times the real ones, so "
                               "12 m here decorrelates like ~100 m on real IW data.")
    timing_error_px: float = Field(0.04, ge=0, le=0.3, description="Magnitude of the "
                                   "annotation azimuth timing error of each secondary (lines, "
                                   "random sign).")
    sync_error_lines: float = Field(0.4, ge=0, le=3, description="Magnitude of the burst "
                                    "synchronisation offset of each secondary (lines).")
    range_offset_px: float = Field(0.6, ge=0, le=5, description="Magnitude of the "
                                   "slant-range start offset of each secondary (samples).")
    velocity: float = Field(0.03, description="Peak LOS velocity of the bump (m/yr, "
                            "positive towards the satellite).")
    sigma_m: float = Field(3000.0, gt=0, description="Width of the velocity bump (m).")
    relief_m: float = Field(600.0, ge=0, le=4000, description="Relief of the DEM hills (m).")
    snr: float = Field(100.0, gt=0, description="Signal-to-noise power ratio.")
    corner_reflectors: int = Field(3, ge=0, le=20, description="Bright point targets at "
                                   "known positions (truth: their latitude, longitude, "
                                   "height).")
    relative_orbit: int = Field(37, ge=1, le=175, description="Relative orbit (track).")
    swaths: int = Field(1, ge=1, le=3, description="Subswaths (IW1..IW3), adjacent in range "
                        "with an overlap of swath_overlap samples; IW(n+1) bursts start a "
                        "third of a burst cycle after IW(n)'s, as on Sentinel-1.")
    swath_overlap: int = Field(24, ge=8, le=1000, description="Range samples two "
                               "consecutive subswaths share.")
    slices: int = Field(1, ge=1, le=4, description="Products (slices) each date is cut into "
                        "along track: consecutive bursts, continuous burst IDs.")
    dem_datum: Literal["ellipsoid", "EGM2008"] = Field(
        "ellipsoid", description="Vertical datum of dem.tif: ellipsoidal heights, or "
        "heights above the EGM2008 geoid (tagged VERTICAL_DATUM=EGM2008, as the DEM "
        "provider's Copernicus DEM) that ingestion must convert.")
    zip: bool = Field(False, description="Write zips instead of SAFE folders.")
    write_orbits: bool = Field(True, description="Write EOF precise orbit files.")
    seed: int = Field(0, description="Random seed.")


@dataclass(frozen=True)
class SimulatedSafe:
    """Where a simulation was written, with its truth."""

    safe_dir: Path
    orbit_dir: Path
    dem: Path
    products: list[Path]
    dates: list[dt.date]
    truth: dict


def velocity_at(lat: np.ndarray, lon: np.ndarray, truth: dict) -> np.ndarray:
    """True LOS velocity (m/yr) at (lat, lon) from ``truth.json``'s model."""
    m = truth["velocity_model"]
    lat0, lon0 = math.radians(m["lat"]), m["lon"]
    dn = (np.asarray(lat) - m["lat"]) * 111_320.0
    de = (np.asarray(lon) - lon0) * 111_320.0 * math.cos(lat0)
    return m["rate"] * np.exp(-(dn * dn + de * de) / (2 * m["sigma_m"] ** 2))


def map_velocity_error(path: str | Path, truth: dict) -> tuple[float, int]:
    """RMSE (m/yr) of a map-projected velocity raster against the truth, and its pixels.

    Errors are referenced to the far field (true |v| < 1 mm/yr), as the products are
    relative to a reference point.
    """
    from pyproj import Transformer

    with rasterio.open(path) as ds:
        v = ds.read(1)
        rows, cols = np.mgrid[:ds.height, :ds.width]
        x, y = rasterio.transform.xy(ds.transform, rows.ravel(), cols.ravel())
        lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
    true_v = velocity_at(np.reshape(lat, v.shape), np.reshape(lon, v.shape), truth)
    ok = np.isfinite(v)
    err = v - true_v
    err -= np.median(err[ok & (np.abs(true_v) < 0.001)])
    return float(np.sqrt(np.mean(err[ok] ** 2))), int(ok.sum())


# ---------------------------------------------------------------- orbit model


@dataclass(frozen=True)
class _Kepler:
    a: float
    inc: float
    raan: float
    u0: float

    @property
    def n(self) -> float:
        return math.sqrt(_GM / self.a ** 3)

    def state(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Earth-fixed position and velocity at s seconds (circular orbit)."""
        s = np.asarray(s, float)
        u = self.u0 + self.n * s
        ro = np.stack([np.cos(u), np.sin(u), np.zeros_like(u)], -1) * self.a
        vo = np.stack([-np.sin(u), np.cos(u), np.zeros_like(u)], -1) * self.a * self.n
        ci, si = math.cos(self.inc), math.sin(self.inc)
        rx = np.array([[1, 0, 0], [0, ci, -si], [0, si, ci]])
        co, so = math.cos(self.raan), math.sin(self.raan)
        rz = np.array([[co, -so, 0], [so, co, 0], [0, 0, 1]])
        m = rz @ rx
        r_eci = ro @ m.T
        v_eci = vo @ m.T
        th = _OMEGA_E * s
        c, sn = np.cos(th), np.sin(th)
        x = c * r_eci[..., 0] + sn * r_eci[..., 1]
        y = -sn * r_eci[..., 0] + c * r_eci[..., 1]
        vx = c * v_eci[..., 0] + sn * v_eci[..., 1] + _OMEGA_E * y
        vy = -sn * v_eci[..., 0] + c * v_eci[..., 1] - _OMEGA_E * x
        return (np.stack([x, y, r_eci[..., 2]], -1), np.stack([vx, vy, v_eci[..., 2]], -1))


# ---------------------------------------------------------------- XML writers


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _sub(parent, tag: str, text=None, **attrib):
    e = etree.SubElement(parent, tag, **{k: str(v) for k, v in attrib.items()})
    if text is not None:
        e.text = text if isinstance(text, str) else repr(float(text)) if isinstance(
            text, float) else str(text)
    return e


def _manifest(name: str, platform: str, absolute: int, relative: int, start: dt.datetime,
              stop: dt.datetime, members: list[str],
              swaths: tuple[str, ...] | list[str] = ("IW1", "IW2", "IW3")) -> bytes:
    ns = {"xfdu": "urn:ccsds:schema:xfdu:1", "safe": "http://www.esa.int/safe/sentinel-1.0",
          "s1": "http://www.esa.int/safe/sentinel-1.0/sentinel-1",
          "s1sarl1": "http://www.esa.int/safe/sentinel-1.0/sentinel-1/sar/level-1"}

    def q(prefix: str, tag: str) -> str:
        return f"{{{ns[prefix]}}}{tag}"

    root = etree.Element(q("xfdu", "XFDU"), nsmap=ns, version="esa/safe/sentinel-1.0/"
                         "sentinel-1/sar/level-1/slc/standard/iwdp")
    meta = etree.SubElement(root, "metadataSection")
    wrap = etree.SubElement(etree.SubElement(meta, "metadataObject", ID="platform"),
                            "metadataWrap", mimeType="text/xml")
    plat = etree.SubElement(etree.SubElement(wrap, "xmlData"), q("safe", "platform"))
    etree.SubElement(plat, q("safe", "nssdcIdentifier")).text = "2014-016A"
    etree.SubElement(plat, q("safe", "familyName")).text = "SENTINEL-1"
    etree.SubElement(plat, q("safe", "number")).text = platform[-1]
    inst = etree.SubElement(plat, q("safe", "instrument"))
    etree.SubElement(inst, q("safe", "familyName"), abbreviation="SAR").text = \
        "Synthetic Aperture Radar"
    ext = etree.SubElement(etree.SubElement(inst, q("safe", "extension")),
                           q("s1sarl1", "instrumentMode"))
    etree.SubElement(ext, q("s1sarl1", "mode")).text = "IW"
    for sw in swaths:
        etree.SubElement(ext, q("s1sarl1", "swath")).text = sw
    wrap = etree.SubElement(etree.SubElement(meta, "metadataObject",
                                             ID="measurementOrbitReference"),
                            "metadataWrap", mimeType="text/xml")
    orb = etree.SubElement(etree.SubElement(wrap, "xmlData"), q("safe", "orbitReference"))
    etree.SubElement(orb, q("safe", "orbitNumber"), type="start").text = str(absolute)
    etree.SubElement(orb, q("safe", "orbitNumber"), type="stop").text = str(absolute)
    etree.SubElement(orb, q("safe", "relativeOrbitNumber"), type="start").text = str(relative)
    etree.SubElement(orb, q("safe", "relativeOrbitNumber"), type="stop").text = str(relative)
    etree.SubElement(orb, q("safe", "cycleNumber")).text = str(1 + (absolute - 73) // 175)
    oext = etree.SubElement(etree.SubElement(orb, q("safe", "extension")),
                            q("s1", "orbitProperties"))
    etree.SubElement(oext, q("s1", "pass")).text = "DESCENDING"
    wrap = etree.SubElement(etree.SubElement(meta, "metadataObject",
                                             ID="generalProductInformation"),
                            "metadataWrap", mimeType="text/xml")
    gen = etree.SubElement(etree.SubElement(wrap, "xmlData"),
                           q("s1sarl1", "standAloneProductInformation"))
    etree.SubElement(gen, q("s1sarl1", "productClass")).text = "S"
    etree.SubElement(gen, q("s1sarl1", "productType")).text = "SLC"
    etree.SubElement(gen, q("s1sarl1", "transmitterReceiverPolarisation")).text = "VV"
    wrap = etree.SubElement(etree.SubElement(meta, "metadataObject", ID="acquisitionPeriod"),
                            "metadataWrap", mimeType="text/xml")
    acq = etree.SubElement(etree.SubElement(wrap, "xmlData"), q("safe", "acquisitionPeriod"))
    etree.SubElement(acq, q("safe", "startTime")).text = _iso(start)
    etree.SubElement(acq, q("safe", "stopTime")).text = _iso(stop)
    data = etree.SubElement(root, "dataObjectSection")
    for k, m in enumerate(members):
        obj = etree.SubElement(data, "dataObject", ID=f"obj{k}", repID="s1Level1Product")
        bs = etree.SubElement(obj, "byteStream", mimeType="text/xml" if m.endswith(".xml")
                              else "application/octet-stream")
        etree.SubElement(bs, "fileLocation", locatorType="URL", href=f"./{m}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# ---------------------------------------------------------------- simulation


def simulate_safe(cfg: SimulateSafeConfig) -> SimulatedSafe:
    """Write simulated SAFE products, orbits, DEM and truth; see the module docstring."""
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)
    safe_dir, orbit_dir = out / "safe", out / "orbits"
    safe_dir.mkdir(parents=True, exist_ok=True)
    orbit_dir.mkdir(parents=True, exist_ok=True)
    nb, lpb, cyc, ns = cfg.bursts, cfg.lines_per_burst, cfg.burst_cycle_lines, cfg.samples
    n_sw = cfg.swaths
    if cyc >= lpb:
        raise ValueError("burst_cycle_lines must be smaller than lines_per_burst (overlap)")
    if cfg.slices > nb:
        raise ValueError(f"{cfg.slices} slices need at least as many bursts (got {nb})")
    if n_sw > 1 and cfg.swath_overlap >= ns // 2:
        raise ValueError("swath_overlap must be below half the samples of a swath")
    dt_line = T_BEAM / cyc
    fs = _FS_FULL / cfg.range_decimation
    wavelength = SPEED_OF_LIGHT / _FC
    a_orb = 6378137.0 + 693_000.0
    inc = math.radians(98.18)
    lat_target = math.radians(45.3)
    u0 = math.pi - math.asin(math.sin(lat_target) / math.sin(inc))  # descending
    ref_orbit = _Kepler(a_orb, inc, math.radians(-177.4), u0)  # scene near 45N 6E
    tau_anx = u0 / ref_orbit.n  # seconds since the ascending node at s = 0
    # first burst time so that burst IDs fall mid-cycle (stable across dates)
    phase = ((cfg.relative_orbit - 1) * T_ORB + tau_anx + 20.0 - T_PRE) / T_BEAM
    s_first0 = 20.0 + (0.5 - (phase - math.floor(phase))) * T_BEAM
    # subswath n: its near range, and its bursts a third of a cycle after IW(n-1)'s
    near = [cfg.near_range_m + n * (ns - cfg.swath_overlap) * SPEED_OF_LIGHT / (2 * fs)
            for n in range(n_sw)]
    s_firsts = [s_first0 + n * (cyc / 3.0) * dt_line for n in range(n_sw)]
    tau0_refs = [2 * r / SPEED_OF_LIGHT for r in near]
    dates = [cfg.start + dt.timedelta(days=cfg.interval_days * k) for k in range(cfg.dates)]
    origins = [dt.datetime.combine(d, dt.time(5, 26, 0)) for d in dates]
    years = np.array([(d - dates[0]).days / 365.25 for d in dates])
    # per-date geometry: baseline, sync and range offsets, timing errors
    orbits, sync, roff, terr, bases = [], [], [], [], []
    for k in range(cfg.dates):
        if k == 0:
            orbits.append(ref_orbit)
            sync.append(0.0)
            roff.append(0.0)
            terr.append(0.0)
            bases.append((0.0, 0.0))
            continue
        bh, bv = rng.normal(0, cfg.bperp_std_m, 2)
        # radial offset -> a; cross-track offset -> a rotation of the orbit plane
        orbits.append(_Kepler(a_orb + bv, inc,
                              ref_orbit.raan + bh / (a_orb * math.cos(lat_target)), u0))
        sync.append(float(rng.uniform(-1, 1) * cfg.sync_error_lines))
        roff.append(float(rng.uniform(-1, 1) * cfg.range_offset_px))
        terr.append(float(rng.choice([-1.0, 1.0]) * cfg.timing_error_px))
        bases.append((float(bh), float(bv)))
    span = (nb - 1) * cyc + lpb
    s_end = s_firsts[-1] + span * dt_line
    s_vec = np.arange(math.floor(s_first0) - 60, s_end + 60, 10.0)
    orbit_objs = []
    for k in range(cfg.dates):
        pos, vel = orbits[k].state(s_vec)
        orbit_objs.append(Orbit(origins[k], s_vec.copy(), pos, vel, f"sim {k}"))
    polys = [o.polynomial(s_first0 - 5, s_end + 5) for o in orbit_objs]

    # flat-earth footprint of every subswath -> DEM
    far = near[-1] + ns / fs * SPEED_OF_LIGHT / 2
    corner_t = np.array([s_first0, s_first0, s_end, s_end])
    corner_r = np.array([near[0], far, near[0], far])
    p0 = polys[0]
    corners = rdr2geo(corner_t, corner_r, p0.coef, p0.t_mid, p0.t_scale)
    clat, clon, _ = ecef_to_llh(corners)
    west, east = clon.min() - 0.08, clon.max() + 0.08
    south, north = clat.min() - 0.08, clat.max() + 0.08
    step = 0.002
    nlon, nlat = int((east - west) / step) + 1, int((north - south) / step) + 1
    glon = west + (np.arange(nlon) + 0.5) * step
    glat = north - (np.arange(nlat) + 0.5) * step
    heights = np.full((nlat, nlon), 150.0)
    for _ in range(4):
        hl = rng.uniform(clat.min(), clat.max())
        ho = rng.uniform(clon.min(), clon.max())
        amp = rng.uniform(0.4, 1.0) * cfg.relief_m
        sig = rng.uniform(0.03, 0.06)
        heights += amp * np.exp(-((glat[:, None] - hl) ** 2 + ((glon[None, :] - ho)
                                  * math.cos(math.radians(hl))) ** 2) / (2 * sig ** 2))
    dem_path = out / "dem.tif"
    stored = heights
    if cfg.dem_datum == "EGM2008":
        from insar.dem import to_ellipsoid

        undulation = to_ellipsoid(np.zeros_like(heights), glon[0], glat[0], step, -step)
        stored = heights - undulation  # orthometric: what a geoid-referenced DEM holds
    with rasterio.open(dem_path, "w", driver="GTiff", width=nlon, height=nlat, count=1,
                       dtype="float32", crs=CRS.from_epsg(4326),
                       transform=Affine(step, 0, west, 0, -step, north)) as ds:
        ds.write(stored.astype(np.float32), 1)
        ds.update_tags(VERTICAL_DATUM=cfg.dem_datum, SOURCE="gdm simulate-safe")
    dem = DemGrid(heights.astype(np.float32), glon[0], glat[0], step, -step)

    # per subswath: reference lattice (2x oversampled) in its merged-line / sample
    # coordinates, its ground points and reflectivity
    margin = 16
    nu = 2 * (span + 2 * margin)
    nv = 2 * (ns + 2 * margin)
    uu = -margin + np.arange(nu) / 2.0
    vv = -margin + np.arange(nv) / 2.0
    grounds, lat_lattice, lon_lattice = [], [], []
    for n in range(n_sw):
        t_ref = s_firsts[n] + uu * dt_line
        r_ref = 0.5 * SPEED_OF_LIGHT * (tau0_refs[n] + vv / fs)
        g = rdr2geo(t_ref[:, None], r_ref[None, :], p0.coef, p0.t_mid, p0.t_scale, dem)
        glat_l, glon_l, _ = ecef_to_llh(g)
        grounds.append(g)
        lat_lattice.append(glat_l)
        lon_lattice.append(glon_l)
    truth_model = {"lat": float(np.nanmean(lat_lattice)), "lon": float(np.nanmean(lon_lattice)),
                   "sigma_m": cfg.sigma_m, "rate": cfg.velocity}
    truth: dict[str, Any] = {"velocity_model": truth_model}
    refls, vels = [], []
    reflectors = []
    for n in range(n_sw):
        vels.append(velocity_at(lat_lattice[n], lon_lattice[n], truth))
        amp = np.exp(0.4 * gaussian_filter(rng.normal(size=(nu, nv)), 3) * 3)
        refl = amp * (rng.normal(size=(nu, nv)) + 1j * rng.normal(size=(nu, nv))) / math.sqrt(2)
        for q in range(cfg.corner_reflectors if n == 0 else 0):
            iu = int(2 * (margin + (q + 0.5) / cfg.corner_reflectors * span)) + q % 2
            iv = int(2 * (margin + rng.uniform(0.2, 0.8) * ns)) + (q + 1) % 2
            refl[iu, iv] = 60.0 * float(np.mean(amp))
            reflectors.append({"lat": float(lat_lattice[n][iu, iv]),
                               "lon": float(lon_lattice[n][iu, iv]),
                               "height": float(ecef_to_llh(grounds[n][iu, iv])[2])})
        refls.append(refl)
    truth["corner_reflectors"] = reflectors
    # low-pass: Hamming-weighted bands (azimuth 0.6 of the line rate, range 0.8 of fs)
    fu = np.fft.fftfreq(nu)[:, None] * 2.0  # cycles per line
    fv = np.fft.fftfreq(nv)[None, :] * 2.0  # cycles per sample
    ba, br = 0.3, 0.4
    win = ((np.abs(fu) < ba) * (0.54 + 0.46 * np.cos(np.pi * fu / ba))
           * (np.abs(fv) < br) * (0.54 + 0.46 * np.cos(np.pi * fv / br)))

    # Doppler parameters: choose the steering rate so the data Doppler spans doppler_span
    t_mid0 = s_first0 + 0.5 * lpb * dt_line
    speed = float(np.linalg.norm(orbit_objs[0].interpolate(t_mid0)[1]))
    ka0 = -2300.0
    kt = cfg.doppler_span / (dt_line * lpb * dt_line)
    ks = kt * ka0 / (ka0 + kt)
    steering = ks * SPEED_OF_LIGHT / (2 * speed * _FC)  # rad/s
    fm_poly = np.array([ka0, 4.5e5, -7.9e7])
    dc_poly = np.array([4.0, -60.0, 0.0])
    pos_mid, vel_mid = orbit_objs[0].interpolate(t_mid0)
    lat_n, lon_n, _ = ecef_to_llh(pos_mid)
    la_r, lo_r = math.radians(float(lat_n)), math.radians(float(lon_n))
    east_v = np.array([-math.sin(lo_r), math.cos(lo_r), 0])
    north_v = np.array([-math.sin(la_r) * math.cos(lo_r), -math.sin(la_r) * math.sin(lo_r),
                        math.cos(la_r)])
    heading = math.degrees(math.atan2(vel_mid @ east_v, vel_mid @ north_v))

    # bursts of each slice: consecutive, as even as possible
    bounds = np.linspace(0, nb, cfg.slices + 1).round().astype(int)
    products = []
    platform = "S1A"
    for k in range(cfg.dates):
        pk = polys[k]
        swath_data = []
        for n in range(n_sw):
            s_first = s_firsts[n]
            r_ref = 0.5 * SPEED_OF_LIGHT * (tau0_refs[n] + vv / fs)
            tau0 = tau0_refs[n] + roff[k] / fs
            true_first = [s_first + (m * cyc + sync[k]) * dt_line for m in range(nb)]
            annotated_first = [t - terr[k] * dt_line for t in true_first]
            t_mid_n = s_first + 0.5 * lpb * dt_line
            t_k, r_k = geo2rdr(grounds[n], pk.coef, pk.t_mid, pk.t_scale, t_guess=t_mid_n)
            psi = (-4 * np.pi * (r_k - r_ref[None, :]) / wavelength
                   + 4 * np.pi * vels[n] * years[k] / wavelength)
            psamp = (2 * r_k / SPEED_OF_LIGHT - tau0) * fs
            meas = np.zeros((nb * lpb, ns), np.complex64)
            first_valid = np.full((nb, lpb), -1, np.int64)
            last_valid = np.full((nb, lpb), -1, np.int64)
            for m in range(nb):
                model = RampModel.from_annotation(speed, _FC, steering, (tau0, fm_poly),
                                                  (tau0, dc_poly), tau0, fs, dt_line, lpb, ns)
                lb = (t_k - true_first[m]) / dt_line
                inside = (lb > -12) & (lb < lpb + 12)
                field = np.where(inside, refls[n] * np.exp(
                    1j * (psi - ramp_phase(model, lb, psamp))), 0)
                base = np.fft.ifft2(np.fft.fft2(field) * win)
                # the burst's pixels traced to the reference lattice
                tl = true_first[m] + np.arange(lpb) * dt_line
                rl = 0.5 * SPEED_OF_LIGHT * (tau0 + np.arange(ns) / fs)
                g = rdr2geo(tl[:, None], rl[None, :], pk.coef, pk.t_mid, pk.t_scale, dem)
                t0g, r0g = geo2rdr(g, p0.coef, p0.t_mid, p0.t_scale, t_guess=t_mid_n)
                lat_u = 2 * ((t0g - s_first) / dt_line + margin)
                lat_v = 2 * ((2 * r0g / SPEED_OF_LIGHT - tau0_refs[n]) * fs + margin)
                vals, ok = resample_sinc(base, lat_u, lat_v, taps=16)
                if not ok[cfg.invalid_lines:lpb - cfg.invalid_lines, 4:ns - 4].all():
                    raise RuntimeError("simulation lattice too small for the burst")
                lines = np.arange(lpb)[:, None].astype(float)
                samples = np.arange(ns)[None, :].astype(float)
                burst = vals * np.exp(1j * ramp_phase(model, lines, samples))
                power = float(np.mean(np.abs(burst) ** 2))
                noise = (rng.normal(size=burst.shape) + 1j * rng.normal(size=burst.shape))
                burst = burst + noise * math.sqrt(power / cfg.snr / 2)
                fvl, lvl = cfg.invalid_lines, lpb - 1 - cfg.invalid_lines
                valid = np.zeros(burst.shape, bool)
                valid[fvl:lvl + 1, 4:ns - 4] = True
                burst[~valid] = 0
                meas[m * lpb:(m + 1) * lpb] = burst
                first_valid[m, fvl:lvl + 1] = 4
                last_valid[m, fvl:lvl + 1] = ns - 5
            scale = 150.0 / float(np.sqrt(np.mean(np.abs(meas[meas != 0]) ** 2)))
            meas_i = np.zeros(meas.shape, np.complex64)
            meas_i.real = np.round(meas.real * scale)
            meas_i.imag = np.round(meas.imag * scale)
            swath_data.append((meas_i, annotated_first, tau0, first_valid, last_valid))

        anx = origins[k] + dt.timedelta(seconds=-tau_anx)
        absolute = 73 + (cfg.relative_orbit - 1) + 175 * (100 + k * cfg.interval_days // 12)
        take = 0x050000 + k
        for sl in range(cfg.slices):
            b0, b1 = int(bounds[sl]), int(bounds[sl + 1])
            t_start = min(d[1][b0] for d in swath_data)
            t_stop = max(d[1][b1 - 1] for d in swath_data) + lpb * dt_line
            start = origins[k] + dt.timedelta(seconds=t_start)
            stop = origins[k] + dt.timedelta(seconds=t_stop)
            image = 4 + sl
            name = (f"{platform}_IW_SLC__1SDV_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_"
                    f"{absolute:06d}_{take:06X}_{k if cfg.slices == 1 else k * 16 + sl:04X}")
            folder = safe_dir / f"{name}.SAFE"
            (folder / "annotation").mkdir(parents=True, exist_ok=True)
            (folder / "measurement").mkdir(parents=True, exist_ok=True)
            members = []
            for n, (meas_i, annotated_first, tau0, first_valid, last_valid) in enumerate(
                    swath_data):
                sw = f"IW{n + 1}"
                stem = (f"s1a-{sw.lower()}-slc-vv-{start:%Y%m%dt%H%M%S}-"
                        f"{stop:%Y%m%dt%H%M%S}-{absolute:06d}-{take:06x}-{image + n:03d}")
                ann = _annotation(cfg, platform, absolute, take, start, stop, anx, origins[k],
                                  orbit_objs[k], annotated_first[b0:b1], dt_line, lpb, ns,
                                  tau0, fs, steering, heading, fm_poly, dc_poly,
                                  first_valid[b0:b1], last_valid[b0:b1], polys[k], dem,
                                  wavelength, swath=sw, image=image + n,
                                  slice_number=sl + 1)
                (folder / "annotation" / f"{stem}.xml").write_bytes(ann)
                with rasterio.open(folder / "measurement" / f"{stem}.tiff", "w",
                                   driver="GTiff", width=ns, height=(b1 - b0) * lpb, count=1,
                                   dtype="complex_int16") as ds:
                    ds.write(meas_i[b0 * lpb:b1 * lpb].astype(np.complex64), 1)
                members += [f"annotation/{stem}.xml", f"measurement/{stem}.tiff"]
            (folder / "manifest.safe").write_bytes(_manifest(
                name, platform, absolute, cfg.relative_orbit, start, stop, members,
                swaths=[f"IW{n + 1}" for n in range(n_sw)]))
            if cfg.zip:
                zpath = safe_dir / f"{name}.zip"
                with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as z:
                    for f in sorted(folder.rglob("*")):
                        if f.is_file():
                            z.write(f, f"{name}.SAFE/{f.relative_to(folder).as_posix()}")
                shutil.rmtree(folder)
                products.append(zpath)
            else:
                products.append(folder)
        if cfg.write_orbits:
            o = orbit_objs[k]
            vt = [origins[k] + dt.timedelta(seconds=float(s)) for s in o.t]
            produced = origins[k] + dt.timedelta(days=20)
            v0 = origins[k] - dt.timedelta(hours=2)
            v1 = origins[k] + dt.timedelta(hours=2)
            # EOF validity spans the scene generously (the vectors cover the scene only)
            write_eof(orbit_dir / (f"{platform}_OPER_AUX_POEORB_OPOD_{produced:%Y%m%dT%H%M%S}_"
                                   f"V{v0:%Y%m%dT%H%M%S}_{v1:%Y%m%dT%H%M%S}.EOF"),
                      vt, o.pos, o.vel, mission="Sentinel-1A")

    # truth
    truth.update({
        "dates": [d.isoformat() for d in dates],
        "timing_error_px": terr, "sync_error_lines": sync, "range_offset_px": roff,
        "baseline_horizontal_vertical_m": list(bases), "wavelength": wavelength,
        "azimuth_time_interval": dt_line, "range_sampling_rate": fs,
        "config": json.loads(cfg.model_dump_json()),
        "units": {"velocity": "m/yr LOS, positive towards the satellite"},
    })
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    return SimulatedSafe(safe_dir=safe_dir, orbit_dir=orbit_dir, dem=dem_path,
                         products=products, dates=dates, truth=truth)


def _annotation(cfg, platform, absolute, take, start, stop, anx, origin, orbit, firsts,
                dt_line, lpb, ns, tau0, fs, steering, heading, fm_poly, dc_poly,
                first_valid, last_valid, poly, dem, wavelength, swath="IW1", image=4,
                slice_number=4) -> bytes:
    nb = len(firsts)

    def at(s: float) -> dt.datetime:
        return origin + dt.timedelta(seconds=float(s))

    root = etree.Element("product")
    h = _sub(root, "adsHeader")
    for tag, text in (("missionId", platform), ("productType", "SLC"), ("polarisation", "VV"),
                      ("mode", "IW"), ("swath", swath), ("startTime", _iso(start)),
                      ("stopTime", _iso(stop)), ("absoluteOrbitNumber", str(absolute)),
                      ("missionDataTakeId", str(take)), ("imageNumber", f"{image:03d}")):
        _sub(h, tag, text)
    gen = _sub(root, "generalAnnotation")
    pi = _sub(gen, "productInformation")
    for tag, text in (("pass", "Descending"), ("timelinessCategory", "Fast-24h"),
                      ("platformHeading", f"{heading:.15e}"), ("projection", "Slant Range"),
                      ("rangeSamplingRate", f"{fs:.15e}"), ("radarFrequency", f"{_FC:.15e}"),
                      ("azimuthSteeringRate", f"{math.degrees(steering):.15e}")):
        _sub(pi, tag, text)
    ol = _sub(gen, "orbitList", count=len(orbit.t))
    for s, p, v in zip(orbit.t, orbit.pos, orbit.vel, strict=True):
        o = _sub(ol, "orbit")
        _sub(o, "time", _iso(at(s)))
        _sub(o, "frame", "Earth Fixed")
        pe = _sub(o, "position")
        ve = _sub(o, "velocity")
        for ax, x, y in zip("xyz", p, v, strict=True):
            _sub(pe, ax, f"{x:.9e}")
            _sub(ve, ax, f"{y:.9e}")
    fl = _sub(gen, "azimuthFmRateList", count=nb)
    for n in range(nb):
        e = _sub(fl, "azimuthFmRate")
        _sub(e, "azimuthTime", _iso(at(firsts[n] + 0.5 * lpb * dt_line)))
        _sub(e, "t0", f"{tau0:.15e}")
        _sub(e, "azimuthFmRatePolynomial", " ".join(f"{c:.15e}" for c in fm_poly), count=3)
    img = _sub(root, "imageAnnotation")
    ii = _sub(img, "imageInformation")
    p_mid, _ = orbit.interpolate(firsts[0])
    for tag, text in (
            ("productFirstLineUtcTime", _iso(at(firsts[0]))),
            ("productLastLineUtcTime", _iso(at(firsts[-1] + (lpb - 1) * dt_line))),
            ("ascendingNodeTime", _iso(anx)), ("anchorTime", _iso(at(firsts[0]))),
            ("productComposition", "Slice"), ("sliceNumber", str(slice_number)),
            ("slantRangeTime", f"{tau0:.15e}"), ("pixelValue", "Complex"),
            ("outputPixels", "16 bit Signed Integer"),
            ("rangePixelSpacing", f"{SPEED_OF_LIGHT / (2 * fs):.6e}"),
            ("azimuthPixelSpacing", f"{6900.0 * dt_line:.6e}"),
            ("azimuthTimeInterval", f"{dt_line:.15e}"),
            ("azimuthFrequency", f"{1 / dt_line:.15e}"),
            ("numberOfSamples", str(ns)), ("numberOfLines", str(nb * lpb)),
            ("zeroDopMinusAcqTime", "1.505e+02"), ("incidenceAngleMidSwath", "3.4e+01")):
        _sub(ii, tag, text)
    dce = _sub(_sub(root, "dopplerCentroid"), "dcEstimateList", count=nb)
    for n in range(nb):
        e = _sub(dce, "dcEstimate")
        _sub(e, "azimuthTime", _iso(at(firsts[n] + 0.5 * lpb * dt_line)))
        _sub(e, "t0", f"{tau0:.15e}")
        _sub(e, "geometryDcPolynomial", " ".join(f"{c:.6e}" for c in dc_poly), count=3)
        _sub(e, "dataDcPolynomial", " ".join(f"{c:.6e}" for c in dc_poly), count=3)
        _sub(e, "dataDcRmsError", "1.0e+00")
        _sub(e, "dataDcRmsErrorAboveThreshold", "false")
    st = _sub(root, "swathTiming")
    _sub(st, "linesPerBurst", str(lpb))
    _sub(st, "samplesPerBurst", str(ns))
    bl = _sub(st, "burstList", count=nb)
    tau_anx0 = (at(0) - anx).total_seconds()
    for n in range(nb):
        b = _sub(bl, "burst")
        _sub(b, "azimuthTime", _iso(at(firsts[n])))
        _sub(b, "azimuthAnxTime", f"{tau_anx0 + firsts[n]:.15e}")
        _sub(b, "sensingTime", _iso(at(firsts[n])))
        _sub(b, "byteOffset", str(n * lpb * ns * 4))
        _sub(b, "firstValidSample", " ".join(map(str, first_valid[n])), count=lpb)
        _sub(b, "lastValidSample", " ".join(map(str, last_valid[n])), count=lpb)
    gl = _sub(_sub(root, "geolocationGrid"), "geolocationGridPointList")
    lines = [min(n * lpb, nb * lpb - 1) for n in range(nb + 1)]
    pixels = np.unique(np.linspace(0, ns - 1, 11).round().astype(int))
    count = 0
    for line in lines:
        b = min(line // lpb, nb - 1)
        s = firsts[b] + (line - b * lpb) * dt_line
        rr = 0.5 * SPEED_OF_LIGHT * (tau0 + pixels / fs)
        g = rdr2geo(np.full(len(pixels), s), rr, poly.coef, poly.t_mid, poly.t_scale, dem)
        lat, lon, hh = ecef_to_llh(g)
        for j, px in enumerate(pixels):
            p = _sub(gl, "geolocationGridPoint")
            sat, _ = orbit.interpolate(s)
            los = sat - g[j]
            up = llh_to_ecef(lat[j], lon[j], 1.0) - llh_to_ecef(lat[j], lon[j], 0.0)
            inc = math.degrees(math.acos(float(los @ up) / float(np.linalg.norm(los))))
            for tag, text in (("azimuthTime", _iso(at(s))),
                              ("slantRangeTime", f"{tau0 + px / fs:.15e}"),
                              ("line", str(line)), ("pixel", str(px)),
                              ("latitude", f"{lat[j]:.15e}"), ("longitude", f"{lon[j]:.15e}"),
                              ("height", f"{hh[j]:.15e}"), ("incidenceAngle", f"{inc:.15e}"),
                              ("elevationAngle", f"{inc - 3.5:.15e}")):
                _sub(p, tag, text)
            count += 1
    gl.set("count", str(count))
    del wavelength
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
