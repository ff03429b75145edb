"""A Sentinel-1 IW frame at real size, for scale measurements (not for accuracy).

:func:`simulate_frame` writes, per date, one SAFE product with three subswaths of
``bursts`` bursts of ``lines_per_burst`` x ``samples`` samples (real IW: 9 bursts of
about 1,500 x 21,000), CInt16 as delivered, with the real annotation structure of
:mod:`simulators.sar_safe` (bursts, valid samples, orbits, Doppler and FM-rate
estimates, geolocation grid), precise orbits (EOF) and a DEM.

What makes it fast enough to write gigabytes per date, and what it gives up: every date
flies the same orbit with the same burst timing (zero baseline, no synchronisation or
timing error), so coregistration resamples at whole-pixel positions; each burst's
reflectivity is white complex noise seeded by (seed, subswath, burst), identical on
every date, times the phase of a LOS velocity bump defined in frame radar coordinates,
plus independent thermal noise (coherence about ``snr / (1 + snr)``). The processing
runs every step at its real cost (geometry of every pixel, deramping, sinc resampling,
ESD over every overlap, subswath merging, interferograms, unwrapping); only the truth
is simpler than :mod:`simulators.sar_safe`'s. Data are generated and written one block
of lines at a time, so memory stays small whatever the frame size.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pydantic import BaseModel, ConfigDict, Field
from rasterio.crs import CRS
from rasterio.windows import Window

from gdmio.s1.orbit import Orbit, write_eof
from gdmio.s1.safe import T_BEAM, T_ORB, T_PRE
from kernels.geometry import SPEED_OF_LIGHT, DemGrid, ecef_to_llh, rdr2geo
from simulators.sar_safe import _FC, _FS_FULL, _annotation, _Kepler, _manifest

__all__ = ["FrameScaleConfig", "simulate_frame"]


class FrameScaleConfig(BaseModel):
    """A real-size simulated IW frame."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Folder to write (safe/, orbits/, dem.tif).")
    dates: int = Field(2, ge=2, le=30, description="Acquisitions (12 days apart).")
    bursts: int = Field(9, ge=2, le=12, description="Bursts per subswath.")
    lines_per_burst: int = Field(1500, ge=100, le=2000, description="Lines of one burst.")
    burst_cycle_lines: int = Field(1342, ge=50, le=1900, description="Lines between "
                                   "burst starts.")
    samples: int = Field(21000, ge=256, le=26000, description="Range samples per burst.")
    swath_overlap: int = Field(1500, ge=64, le=4000, description="Range samples shared by "
                               "consecutive subswaths.")
    snr: float = Field(4.0, gt=0, description="Signal-to-noise power ratio.")
    velocity: float = Field(0.02, description="Peak LOS velocity of the bump (m/yr).")
    relative_orbit: int = Field(37, ge=1, le=175, description="Track.")
    seed: int = Field(0, description="Random seed.")


def simulate_frame(cfg: FrameScaleConfig) -> list[Path]:
    """Write the frame's SAFE products (one per date), orbits and DEM; return the products."""
    out = Path(cfg.out)
    safe_dir, orbit_dir = out / "safe", out / "orbits"
    safe_dir.mkdir(parents=True, exist_ok=True)
    orbit_dir.mkdir(parents=True, exist_ok=True)
    nb, lpb, cyc, ns = cfg.bursts, cfg.lines_per_burst, cfg.burst_cycle_lines, cfg.samples
    dt_line = T_BEAM / cyc
    fs = _FS_FULL
    wavelength = SPEED_OF_LIGHT / _FC
    a_orb = 6378137.0 + 693_000.0
    inc = math.radians(98.18)
    lat_target = math.radians(45.3)
    u0 = math.pi - math.asin(math.sin(lat_target) / math.sin(inc))
    orbit_model = _Kepler(a_orb, inc, math.radians(-177.4), u0)
    tau_anx = u0 / orbit_model.n
    phase = ((cfg.relative_orbit - 1) * T_ORB + tau_anx + 20.0 - T_PRE) / T_BEAM
    s_first0 = 20.0 + (0.5 - (phase - math.floor(phase))) * T_BEAM
    near0 = 800_000.0
    near = [near0 + n * (ns - cfg.swath_overlap) * SPEED_OF_LIGHT / (2 * fs) for n in range(3)]
    s_firsts = [s_first0 + n * (cyc / 3.0) * dt_line for n in range(3)]
    span = (nb - 1) * cyc + lpb
    s_end = s_firsts[-1] + span * dt_line
    s_vec = np.arange(math.floor(s_first0) - 60, s_end + 60, 10.0)
    pos, vel = orbit_model.state(s_vec)
    dates = [dt.date(2023, 3, 2) + dt.timedelta(days=12 * k) for k in range(cfg.dates)]
    origins = [dt.datetime.combine(d, dt.time(5, 26, 0)) for d in dates]
    orbit0 = Orbit(origins[0], s_vec.copy(), pos, vel, "sim")
    poly = orbit0.polynomial(s_first0 - 5, s_end + 5)

    # DEM over the frame (ellipsoidal heights, gentle hills)
    far = near[-1] + ns / fs * SPEED_OF_LIGHT / 2
    corners = rdr2geo(np.array([s_first0, s_first0, s_end, s_end]),
                      np.array([near[0], far, near[0], far]), poly.coef, poly.t_mid,
                      poly.t_scale)
    clat, clon, _ = ecef_to_llh(corners)
    west, east = clon.min() - 0.1, clon.max() + 0.1
    south, north = clat.min() - 0.1, clat.max() + 0.1
    step = 0.004
    nlon, nlat = int((east - west) / step) + 1, int((north - south) / step) + 1
    glon = west + (np.arange(nlon) + 0.5) * step
    glat = north - (np.arange(nlat) + 0.5) * step
    heights = 300.0 + 200.0 * np.sin(glat[:, None] * 7.0) * np.cos(glon[None, :] * 5.0)
    with rasterio.open(out / "dem.tif", "w", driver="GTiff", width=nlon, height=nlat,
                       count=1, dtype="float32", crs=CRS.from_epsg(4326),
                       transform=Affine(step, 0, west, 0, -step, north)) as ds:
        ds.write(heights.astype(np.float32), 1)
        ds.update_tags(VERTICAL_DATUM="ellipsoid", SOURCE="gdm simulate-frame")
    dem = DemGrid(heights.astype(np.float32), glon[0], glat[0], step, -step)

    t_mid0 = s_first0 + 0.5 * lpb * dt_line
    speed = float(np.linalg.norm(orbit0.interpolate(t_mid0)[1]))
    ka0 = -2300.0
    kt = 1.2 / (dt_line * lpb * dt_line)
    ks = kt * ka0 / (ka0 + kt)
    steering = ks * SPEED_OF_LIGHT / (2 * speed * _FC)
    fm_poly = np.array([ka0, 4.5e5, -7.9e7])
    dc_poly = np.array([4.0, -60.0, 0.0])
    heading = -167.0
    frame_rows = (nb - 1) * cyc + lpb + cyc
    frame_cols = 3 * ns - 2 * cfg.swath_overlap
    block = 250
    products = []
    for k in range(cfg.dates):
        years = (dates[k] - dates[0]).days / 365.25
        start = origins[k] + dt.timedelta(seconds=s_first0)
        stop = origins[k] + dt.timedelta(seconds=s_end)
        absolute = 73 + (cfg.relative_orbit - 1) + 175 * (100 + k)
        take = 0x050000 + k
        name = (f"S1A_IW_SLC__1SDV_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_"
                f"{absolute:06d}_{take:06X}_{k:04X}")
        folder = safe_dir / f"{name}.SAFE"
        (folder / "annotation").mkdir(parents=True, exist_ok=True)
        (folder / "measurement").mkdir(parents=True, exist_ok=True)
        members = []
        anx = origins[k] + dt.timedelta(seconds=-tau_anx)
        orbit_k = Orbit(origins[k], s_vec.copy(), pos, vel, f"sim {k}")
        for n in range(3):
            sw = f"IW{n + 1}"
            tau0 = 2 * near[n] / SPEED_OF_LIGHT
            firsts = [s_firsts[n] + m * cyc * dt_line for m in range(nb)]
            fv = np.full((nb, lpb), -1, np.int64)
            lv = np.full((nb, lpb), -1, np.int64)
            fv[:, 4:lpb - 4] = 4
            lv[:, 4:lpb - 4] = ns - 5
            stem = (f"s1a-{sw.lower()}-slc-vv-{start:%Y%m%dt%H%M%S}-{stop:%Y%m%dt%H%M%S}-"
                    f"{absolute:06d}-{take:06x}-{4 + n:03d}")
            ann = _annotation(cfg, "S1A", absolute, take, start, stop, anx, origins[k],
                              orbit_k, firsts, dt_line, lpb, ns, tau0, fs, steering,
                              heading, fm_poly, dc_poly, fv, lv, poly, dem, wavelength,
                              swath=sw, image=4 + n, slice_number=1)
            (folder / "annotation" / f"{stem}.xml").write_bytes(ann)
            path = folder / "measurement" / f"{stem}.tiff"
            with rasterio.open(path, "w", driver="GTiff", width=ns, height=nb * lpb, count=1,
                               dtype="complex_int16", tiled=True, blockxsize=512,
                               blockysize=16) as ds:
                for m in range(nb):
                    row0 = round((firsts[m] - s_first0) / dt_line)
                    col0 = n * (ns - cfg.swath_overlap)
                    for a in range(0, lpb, block):
                        h = min(block, lpb - a)
                        rng = np.random.default_rng([cfg.seed, n, m, a])
                        refl = (rng.standard_normal((h, ns), np.float32)
                                + 1j * rng.standard_normal((h, ns), np.float32))
                        rr = (row0 + a + np.arange(h))[:, None] / frame_rows - 0.5
                        cc = (col0 + np.arange(ns))[None, :] / frame_cols - 0.5
                        v = cfg.velocity * np.exp(-(rr * rr + cc * cc) / (2 * 0.15 ** 2))
                        phi = (4 * np.pi / wavelength * years * v).astype(np.float32)
                        data = refl * np.exp(1j * phi)
                        noise = np.random.default_rng([cfg.seed, n, m, a, k + 1])
                        sigma = math.sqrt(2.0 / cfg.snr / 2)
                        data += sigma * (noise.standard_normal((h, ns), np.float32)
                                         + 1j * noise.standard_normal((h, ns), np.float32))
                        data *= 40.0
                        data[:, :4] = 0
                        data[:, ns - 4:] = 0
                        if a == 0:
                            data[:4] = 0
                        if a + h > lpb - 4:
                            data[lpb - 4 - a:] = 0
                        q = np.empty(data.shape, np.complex64)
                        q.real = np.round(data.real)
                        q.imag = np.round(data.imag)
                        ds.write(q, 1, window=Window(0, m * lpb + a, ns, h))
            members += [f"annotation/{stem}.xml", f"measurement/{stem}.tiff"]
        (folder / "manifest.safe").write_bytes(_manifest(name, "S1A", absolute,
                                                         cfg.relative_orbit, start, stop,
                                                         members, swaths=["IW1", "IW2", "IW3"]))
        vt = [origins[k] + dt.timedelta(seconds=float(s)) for s in s_vec]
        produced = origins[k] + dt.timedelta(days=20)
        v0, v1 = origins[k] - dt.timedelta(hours=2), origins[k] + dt.timedelta(hours=2)
        write_eof(orbit_dir / (f"S1A_OPER_AUX_POEORB_OPOD_{produced:%Y%m%dT%H%M%S}_"
                               f"V{v0:%Y%m%dT%H%M%S}_{v1:%Y%m%dT%H%M%S}.EOF"),
                  vt, pos, vel, mission="Sentinel-1A")
        products.append(folder)
    return products
