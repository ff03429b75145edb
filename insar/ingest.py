"""Sentinel-1 IW SLC products -> the coregistered SLC stack that GDM-SAR reads.

Steps:

1. read every SAFE product (folder or zip), check one track / IW / SLC, and choose the
   bursts covering the AOI on every date (same burst IDs);
2. orbits: the newest precise EOF covering each date (``orbits`` folder), else a
   restituted one, else (``orbit_source`` ``auto`` or ``annotation``) the annotation's
   own state vectors; Hermite interpolation, one polynomial per date;
3. geometry: every reference pixel of the chosen bursts is put on the DEM
   (range-Doppler, zero Doppler) and traced back into each secondary (orbit + DEM);
4. per secondary burst: deramp (its own TOPS ramp), resample onto the reference burst
   grid (windowed sinc), reramp (its ramp at the resampled positions), and remove the
   geometric phase ``4 pi (R_sec - R_ref) / wavelength`` (flat Earth and topography);
5. enhanced spectral diversity: the double-difference phase of the burst overlaps gives
   the residual azimuth misregistration of each secondary (one constant per date),
   applied and re-estimated (``esd_iterations``);
6. stitching: each output line is taken from one burst (cut in the middle of the
   overlaps); the common valid rectangle of every date is kept;
7. output: one CFloat32 GeoTIFF per date (``slc_YYYYMMDD.tif``) with the stack metadata
   (perpendicular baselines from the orbits at the scene centre), ``geometry.json`` and
   ``geometry.npz`` (latitude, longitude, height of every pixel; the orbit and line
   timing for geocoding) and ``ingest_report.json``.

The stack's grid is the reference radar geometry (rows = azimuth, columns = range).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gdmcore import InputError, Progress
from gdmio.s1.orbit import Orbit, OrbitPolynomial, find_orbit_file, parse_eof
from gdmio.s1.safe import (
    Burst,
    SafeProduct,
    SwathAnnotation,
    find_products,
    open_safe,
    select_bursts,
)
from kernels.geometry import SPEED_OF_LIGHT, DemGrid, ecef_to_llh, geo2rdr, llh_to_ecef, rdr2geo
from kernels.tops import RampModel, deramp, doppler_centroid, esd_shift, ramp_phase, resample_sinc

__all__ = ["IngestConfig", "IngestResult", "ingest", "is_safe_folder", "ingested", "load_dem",
           "StackGeometry", "read_geometry"]


class IngestConfig(BaseModel):
    """Sentinel-1 IW SLC products -> coregistered SLC stack."""

    model_config = ConfigDict(extra="forbid")

    safe: Path = Field(description="Folder holding the SAFE products (*.SAFE folders or "
                       "S1*.zip), one per date, one track.")
    out: Path = Field(description="Stack folder to write (one CFloat32 GeoTIFF per date).")
    orbits: Path | None = Field(None, description="Folder of EOF orbit files (searched "
                                "recursively: precise preferred, else restituted).")
    orbit_source: Literal["auto", "precise", "annotation"] = Field(
        "auto", description="'precise': an EOF must cover every date; 'auto': EOF when one "
        "covers the date, else the annotation's state vectors; 'annotation': always the "
        "annotation's.")
    dem: Path | None = Field(None, description="DEM GeoTIFF in EPSG:4326 with ellipsoidal "
                             "heights (m); none: the ellipsoid (h = 0).")
    aoi: tuple[float, float, float, float] | None = Field(
        None, description="West, south, east, north (degrees): bursts covering it are "
        "kept; none: every burst common to all dates.")
    swath: str | None = Field(None, description="IW1, IW2 or IW3 (default: the swath "
                              "covering most of the AOI).")
    polarisation: str | None = Field(None, description="Polarisation (default VV, else HH).")
    esd: bool = Field(True, description="Estimate the azimuth misregistration by enhanced "
                      "spectral diversity in the burst overlaps.")
    esd_iterations: int = Field(2, ge=1, le=5, description="ESD estimate-and-apply rounds.")
    taps: int = Field(8, ge=4, le=32, description="Sinc interpolation kernel length.")

    @field_validator("aoi")
    @classmethod
    def _aoi(cls, v):
        if v is not None:
            w, s, e, n = v
            if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise ValueError("aoi must be west < east, south < north, in degrees")
        return v


@dataclass
class IngestResult:
    """What :func:`ingest` wrote."""

    stack_dir: Path
    dates: list[dt.date]
    paths: list[Path]
    bperp: list[float]
    esd: list[dict]
    report: Path
    geometry: Path
    burst_keys: list[str] = field(default_factory=list)


def ingested(safe: str | Path, out: str | Path) -> bool:
    """Whether ``out`` already holds the stack ingested from the products in ``safe``.

    Read from the stack's ``ingest_report.json`` (a rerun skips the ingestion).
    """
    report = Path(out) / "ingest_report.json"
    if not report.is_file():
        return False
    try:
        done = json.loads(report.read_text()).get("products", [])
    except ValueError:
        return False
    names = [p.name.removesuffix(".zip").removesuffix(".SAFE") for p in find_products(safe)]
    return sorted(done) == sorted(names)


def is_safe_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds Sentinel-1 SAFE products (folders or zips)."""
    return bool(find_products(folder))


def load_dem(path: str | Path | None) -> tuple[DemGrid, bool]:
    """A :class:`DemGrid` from a GeoTIFF (EPSG:4326); the ellipsoid when ``path`` is None.

    Raises
    ------
    InputError
        Unreadable file, or not on EPSG:4326, or no valid height.

    """
    if path is None:
        return DemGrid.flat(0.0), True
    path = Path(path)
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None or ds.crs.to_epsg() != 4326:
                raise InputError(f"DEM {path.name}: must be on EPSG:4326 (lon/lat), got "
                                 f"{ds.crs}")
            h = ds.read(1, masked=True).astype(np.float64)
            tr = ds.transform
            datum = ds.tags().get("VERTICAL_DATUM", "")
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"DEM {path}: cannot be read ({exc})") from None
    data = h.filled(np.nan)
    if not np.isfinite(data).any():
        raise InputError(f"DEM {path.name}: no valid height")
    data[~np.isfinite(data)] = np.nanmean(data)
    lon0, lat0 = tr.c + 0.5 * tr.a, tr.f + 0.5 * tr.e
    if "EGM" in datum.upper():
        data = _geoid_to_ellipsoid(data, lon0, lat0, tr.a, tr.e)
    return DemGrid(data, lon0, lat0, tr.a, tr.e), False


def _geoid_to_ellipsoid(h: np.ndarray, lon0: float, lat0: float, dlon: float, dlat: float
                        ) -> np.ndarray:
    """EGM2008 heights -> ellipsoidal heights with PROJ, when its geoid grid is installed.

    Without the grid (PROJ returns the heights unchanged) the heights are kept and
    :func:`dem_note` says so in the ingest report.
    """
    from pyproj import Transformer

    ny, nx = h.shape
    step = max(1, min(ny, nx) // 16)
    rows, cols = np.arange(0, ny, step), np.arange(0, nx, step)
    lon = lon0 + cols * dlon
    lat = lat0 + rows * dlat
    t = Transformer.from_crs("EPSG:4326+3855", "EPSG:4979", always_xy=True)
    glon, glat = np.meshgrid(lon, lat)
    _, _, z = t.transform(glon, glat, np.zeros_like(glon))
    z = np.asarray(z, float)
    if not np.all(np.isfinite(z)) or np.all(z == 0):
        return h
    from scipy.interpolate import RegularGridInterpolator

    f = RegularGridInterpolator((rows, cols), z, bounds_error=False, fill_value=None)
    rr, cc = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    return h + f(np.column_stack([rr.ravel(), cc.ravel()])).reshape(h.shape)


def dem_note(path: str | Path | None) -> str:
    """How the DEM heights were taken (for the report)."""
    if path is None:
        return "no DEM: the WGS84 ellipsoid (h = 0)"
    with rasterio.open(path) as ds:
        datum = ds.tags().get("VERTICAL_DATUM", "")
    if "EGM" not in datum.upper():
        return f"{Path(path).name}: heights taken as ellipsoidal ({datum or 'no datum tag'})"
    from pyproj import Transformer

    _, _, z = Transformer.from_crs("EPSG:4326+3855", "EPSG:4979", always_xy=True).transform(
        6.0, 45.0, 0.0)
    if z == 0:
        return (f"{Path(path).name}: EGM2008 heights used as ellipsoidal: the PROJ geoid grid "
                "(us_nga_egm08_25.tif) is not installed; expect a bias of the geoid "
                "undulation (tens of metres) in heights")
    return f"{Path(path).name}: EGM2008 heights converted to ellipsoidal with PROJ"


@dataclass
class StackGeometry:
    """The reference radar geometry of a stack written by :func:`ingest`."""

    epoch: dt.datetime
    poly: OrbitPolynomial
    line_times: np.ndarray
    first_sample: int
    slant_range_time: float
    range_sampling_rate: float
    wavelength: float
    dem: Path | None
    lat: np.ndarray
    lon: np.ndarray
    height: np.ndarray

    def slant_range(self, cols: np.ndarray) -> np.ndarray:
        """Slant range (m) of stack columns."""
        return 0.5 * SPEED_OF_LIGHT * (self.slant_range_time
                                       + (np.asarray(cols, float) + self.first_sample)
                                       / self.range_sampling_rate)

    def col_of(self, slant_range: np.ndarray) -> np.ndarray:
        """(Fractional) stack column of slant ranges."""
        return ((2 * np.asarray(slant_range, float) / SPEED_OF_LIGHT - self.slant_range_time)
                * self.range_sampling_rate - self.first_sample)

    def row_of(self, t: np.ndarray) -> np.ndarray:
        """(Fractional) stack row of orbit times (NaN outside the stack)."""
        rows = np.arange(len(self.line_times), dtype=float)
        return np.interp(t, self.line_times, rows, left=np.nan, right=np.nan)


def read_geometry(stack_dir: str | Path) -> StackGeometry:
    """Read ``geometry.json`` and ``geometry.npz`` of an ingested stack."""
    stack_dir = Path(stack_dir)
    try:
        meta = json.loads((stack_dir / "geometry.json").read_text())
        with np.load(stack_dir / "geometry.npz") as npz:
            arrays = {k: npz[k] for k in ("lat", "lon", "height")}
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{stack_dir}: no radar geometry (not a stack ingested from SAFE "
                         f"products?): {exc}") from None
    o = meta["orbit"]
    poly = OrbitPolynomial(coef=np.array(o["coef"]), t_mid=o["t_mid"], t_scale=o["t_scale"],
                           t_start=o["t_start"], t_end=o["t_end"],
                           fit_error_m=o["fit_error_m"])
    return StackGeometry(epoch=dt.datetime.fromisoformat(meta["epoch"]), poly=poly,
                         line_times=np.array(meta["line_times"]),
                         first_sample=int(meta["first_sample"]),
                         slant_range_time=float(meta["slant_range_time"]),
                         range_sampling_rate=float(meta["range_sampling_rate"]),
                         wavelength=float(meta["wavelength"]),
                         dem=Path(meta["dem"]) if meta.get("dem") else None,
                         lat=arrays["lat"], lon=arrays["lon"], height=arrays["height"])


# ---------------------------------------------------------------- helpers


def _load_orbit(product: SafeProduct, ann: SwathAnnotation, cfg: IngestConfig,
                epoch: dt.datetime, t0: float, t1: float) -> Orbit:
    path = None
    if cfg.orbit_source != "annotation" and cfg.orbits is not None:
        path = find_orbit_file(cfg.orbits, product.platform, product.start, product.stop)
    if cfg.orbit_source == "precise" and path is None:
        where = cfg.orbits if cfg.orbits is not None else "(no orbit folder given)"
        raise InputError(f"{product.name}: no precise or restituted orbit file in {where} "
                         "covers the acquisition")
    if path is not None:
        orbit = parse_eof(path).rebase(epoch).crop(t0, t1)
    else:
        orbit = ann.orbit(epoch)
    if not orbit.covers(t0, t1, margin=1.0):
        raise InputError(f"{product.name}: the orbit ({orbit.source}) does not cover the "
                         "bursts (missing orbit state vectors)")
    return orbit


def _ramp(ann: SwathAnnotation, orbit: Orbit, burst: Burst, epoch: dt.datetime) -> RampModel:
    mid = burst.azimuth_time + dt.timedelta(seconds=0.5 * burst.lines
                                            * ann.azimuth_time_interval)
    _, vel = orbit.interpolate(orbit.seconds(mid))
    return RampModel.from_annotation(
        float(np.linalg.norm(vel)), ann.radar_frequency, ann.azimuth_steering_rate,
        ann.nearest(ann.fm, mid), ann.nearest(ann.dc, mid), ann.slant_range_time,
        ann.range_sampling_rate, ann.azimuth_time_interval, burst.lines, burst.samples)


@dataclass
class _RefBurst:
    burst: Burst
    offset: int  # merged line of the burst's line 0
    lines: np.ndarray  # burst lines kept (valid)
    data: np.ndarray  # reference samples (lines x cols)
    ground: np.ndarray  # (lines, cols, 3)
    ramp: RampModel
    col0: int  # burst sample of the first column


@dataclass
class _SecBurst:
    lines: np.ndarray  # (lines, cols) secondary burst line of each reference pixel
    samples: np.ndarray
    dphase: np.ndarray  # 4 pi (R_sec - R_ref) / wavelength
    raw: np.ndarray  # deramped secondary burst (columns from col0)
    ramp: RampModel
    valid_box: tuple[float, float, float, float]
    col0: int = 0


def _coregister(sb: _SecBurst, shift: float, taps: int) -> tuple[np.ndarray, np.ndarray]:
    lines = sb.lines + shift
    vals, ok = resample_sinc(sb.raw, lines, sb.samples - sb.col0, taps)
    l0, l1, s0, s1 = sb.valid_box
    ok &= (lines >= l0) & (lines <= l1) & (sb.samples >= s0) & (sb.samples <= s1)
    out = vals * np.exp(1j * (ramp_phase(sb.ramp, lines, sb.samples) + sb.dphase))
    out[~ok] = 0
    return out.astype(np.complex64), ok


def _write_slc(path: Path, data: np.ndarray, tags: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(tmp, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype="complex64", tiled=True, blockxsize=256,
                       blockysize=256) as ds:
        ds.write(data, 1)
        ds.update_tags(**tags)
    tmp.replace(path)


# ---------------------------------------------------------------- main


def ingest(cfg: IngestConfig, progress: Progress | None = None) -> IngestResult:
    """Turn the SAFE products of ``cfg.safe`` into a coregistered stack in ``cfg.out``.

    Raises
    ------
    InputError
        No product, a product of another mode or type, mixed tracks, bursts not covering
        the AOI, missing orbits, a DEM that cannot be used.

    """
    def report(f: float, m: str) -> None:
        if progress is not None:
            progress(min(max(f, 0.0), 1.0), m)

    from shapely.geometry import box

    paths = find_products(cfg.safe)
    if not paths:
        raise InputError(f"no Sentinel-1 SAFE product (*.SAFE folder or S1*.zip) in {cfg.safe}")
    pols = (cfg.polarisation.upper(),) if cfg.polarisation else None
    products = [open_safe(p, pols) for p in paths]
    aoi = box(*cfg.aoi) if cfg.aoi is not None else None
    sel = select_bursts(products, aoi, cfg.swath, cfg.polarisation)
    anns = [p.swath(sel.swath, sel.polarisation) for p in sel.products]
    ref = anns[0]
    for p, a in zip(sel.products[1:], anns[1:], strict=True):
        for attr in ("range_sampling_rate", "azimuth_time_interval", "radar_frequency"):
            if abs(getattr(a, attr) - getattr(ref, attr)) > 1e-9 * abs(getattr(ref, attr)):
                raise InputError(f"{p.name}: {attr} differs from the reference date")
    dem, flat = load_dem(cfg.dem)
    dtl = ref.azimuth_time_interval
    wavelength = ref.wavelength
    n_dates = len(anns)
    report(0.02, f"{n_dates} dates, {len(sel.keys)} burst(s) of {sel.swath} "
           f"{sel.polarisation}")

    # orbits, one epoch per date (the first chosen burst)
    epochs = [b[0].azimuth_time for b in sel.bursts]
    orbits, polys = [], []
    for k in range(n_dates):
        bl = sel.bursts[k]
        t0 = 0.0
        t1 = (bl[-1].azimuth_time - epochs[k]).total_seconds() + bl[-1].lines * dtl
        orbit = _load_orbit(sel.products[k], anns[k], cfg, epochs[k], t0, t1)
        orbits.append(orbit)
        polys.append(orbit.polynomial(t0 - 2, t1 + 2))

    # reference bursts: columns common to their valid areas
    half = cfg.taps // 2 + 1
    rb = sel.bursts[0]
    c0 = max(b.first_valid_sample for b in rb) + half
    c1 = min(b.last_valid_sample for b in rb) - half
    if aoi is not None:
        a0, a1 = _aoi_columns(ref, aoi)
        c0, c1 = max(c0, a0 - 32), min(c1, a1 + 32)
    if c1 - c0 < 16:
        raise InputError("the chosen bursts share fewer than 16 valid range samples")
    cols = np.arange(c0, c1 + 1)
    r_ref = ref.range_of(cols)
    p0 = polys[0]
    refs: list[_RefBurst] = []
    for b in rb:
        off = round((b.azimuth_time - epochs[0]).total_seconds() / dtl)
        lines = np.arange(b.first_valid_line, b.last_valid_line + 1)
        t = (b.azimuth_time - epochs[0]).total_seconds() + lines * dtl
        ground = rdr2geo(t[:, None], r_ref[None, :], p0.coef, p0.t_mid, p0.t_scale, dem)
        if not np.isfinite(ground).all():
            raise InputError("range-Doppler geolocation failed for part of the bursts "
                             "(DEM or orbit inconsistent with the product)")
        data = ref.read_burst(b, (int(cols[0]), int(cols[-1]) + 1))[lines]
        refs.append(_RefBurst(b, off, lines, data, ground, _ramp(ref, orbits[0], b, epochs[0]),
                              int(c0)))
    if not flat:
        lat, lon, _ = ecef_to_llh(np.concatenate([r.ground[::8, ::8].reshape(-1, 3)
                                                  for r in refs]))
        w, e = dem.params[0], dem.params[0] + dem.params[2] * (dem.heights.shape[1] - 1)
        n, s = dem.params[1], dem.params[1] + dem.params[3] * (dem.heights.shape[0] - 1)
        lo, hi = sorted((w, e)), sorted((s, n))
        if lon.min() < lo[0] or lon.max() > lo[1] or lat.min() < hi[0] or lat.max() > hi[1]:
            raise InputError(f"DEM {cfg.dem}: does not cover the bursts (lon {lon.min():.3f}.."
                             f"{lon.max():.3f}, lat {lat.min():.3f}..{lat.max():.3f})")
    report(0.1, "reference geometry")

    # merged (stitched) line range and cuts
    first = refs[0].offset + refs[0].lines[0]
    last = refs[-1].offset + refs[-1].lines[-1]
    cuts = [first]
    for up, down in zip(refs[:-1], refs[1:], strict=True):
        a_end = up.offset + up.lines[-1] + 1
        b_start = down.offset + down.lines[0]
        if b_start >= a_end:
            raise InputError(f"bursts {up.burst.key} and {down.burst.key} do not overlap")
        cuts.append((a_end + b_start) // 2)
    cuts.append(last + 1)
    n_rows, n_cols = last + 1 - first, len(cols)

    def stitch(pieces: list[np.ndarray]) -> np.ndarray:
        outp = np.zeros((n_rows, n_cols) + pieces[0].shape[2:], pieces[0].dtype)
        for j, (r, piece) in enumerate(zip(refs, pieces, strict=True)):
            a, b = cuts[j], cuts[j + 1]
            src = np.arange(a, b) - r.offset - r.lines[0]
            outp[a - first:b - first] = piece[src]
        return outp

    slcs = [stitch([r.data for r in refs])]
    valid_all = np.ones((n_rows, n_cols), bool)
    esd_info: list[dict] = [{"date": sel.dates[0].isoformat(), "reference": True}]
    for k in range(1, n_dates):
        ann, pk = anns[k], polys[k]
        secs: list[_SecBurst] = []
        for r, b in zip(refs, sel.bursts[k], strict=True):
            t_guess = (b.azimuth_time - epochs[k]).total_seconds() + 0.5 * b.lines * dtl
            tk, rk = geo2rdr(r.ground, pk.coef, pk.t_mid, pk.t_scale, t_guess=t_guess)
            tb = (b.azimuth_time - epochs[k]).total_seconds()
            sec_lines = (tk - tb) / dtl
            samples = ann.sample_of(rk)
            dphase = 4 * np.pi * (rk - r_ref[None, :]) / wavelength
            ramp = _ramp(ann, orbits[k], b, epochs[k])
            fin = samples[np.isfinite(samples)]
            if fin.size == 0:
                raise InputError(f"{sel.products[k].name}: burst {b.key} does not see the "
                                 "reference area (geometry)")
            s_a = max(int(np.floor(fin.min())) - cfg.taps, 0)
            s_b = min(int(np.ceil(fin.max())) + cfg.taps + 1, b.samples)
            raw = deramp(ann.read_burst(b, (s_a, s_b)), ramp, first_sample=s_a)
            box_ = (b.first_valid_line + half - 1, b.last_valid_line - half + 1,
                    b.first_valid_sample + half - 1, b.last_valid_sample - half + 1)
            secs.append(_SecBurst(sec_lines, samples, dphase, raw, ramp, box_, s_a))
        shift = 0.0
        estimates = []
        coreg = [_coregister(s, shift, cfg.taps) for s in secs]
        if cfg.esd and len(refs) > 1:
            for _ in range(cfg.esd_iterations + 1):
                e, coh = _esd(refs, coreg, dtl)
                estimates.append((e, coh))
                if len(estimates) > cfg.esd_iterations:
                    break
                shift -= e
                coreg = [_coregister(s, shift, cfg.taps) for s in secs]
        data = stitch([c[0] for c in coreg])
        ok = stitch([c[1] for c in coreg])
        valid_all &= ok
        slcs.append(data)
        esd_info.append({
            "date": sel.dates[k].isoformat(), "reference": False,
            "azimuth_shift_lines": shift,
            "esd_estimates_lines": [round(e, 6) for e, _ in estimates],
            "esd_coherence": [round(c, 4) for _, c in estimates],
            "residual_lines": estimates[-1][0] if estimates else None,
        })
        report(0.1 + 0.8 * k / (n_dates - 1), f"coregistered {sel.dates[k]}")

    # the common valid rectangle
    mostly = valid_all.mean(axis=1) > 0.5
    colf = valid_all[mostly].mean(axis=0) > 0.999 if mostly.any() else mostly[:0]
    if not colf.any():
        raise InputError("the dates share no valid area after coregistration")
    ca, cb = np.flatnonzero(colf)[[0, -1]]
    rowf = valid_all[:, ca:cb + 1].all(axis=1)
    if not rowf.any():
        raise InputError("the dates share no valid area after coregistration")
    ra, rbb = np.flatnonzero(rowf)[[0, -1]]
    win = (slice(ra, rbb + 1), slice(ca, cb + 1))

    # geometry of the stitched grid
    ground = stitch([r.ground for r in refs])[win]
    line_times = np.concatenate([
        (r.burst.azimuth_time - epochs[0]).total_seconds()
        + (np.arange(cuts[j], cuts[j + 1]) - r.offset) * dtl for j, r in enumerate(refs)])
    line_times = line_times[ra:rbb + 1]
    lat, lon, hgt = ecef_to_llh(ground)
    cy, cx = ground.shape[0] // 2, ground.shape[1] // 2
    g = ground[cy, cx]
    s0_pos = p0.position(line_times[cy])
    u = (g - s0_pos) / np.linalg.norm(g - s0_pos)
    up = llh_to_ecef(lat[cy, cx], lon[cy, cx], 1.0) - llh_to_ecef(lat[cy, cx], lon[cy, cx], 0.0)
    up /= np.linalg.norm(up)
    nperp = up - (up @ u) * u
    nperp /= np.linalg.norm(nperp)
    incidence = math.degrees(math.acos(float(-u @ up)))
    slant = float(np.linalg.norm(g - s0_pos))
    bperp = []
    for k in range(n_dates):
        tk, _ = geo2rdr(g[None], polys[k].coef, polys[k].t_mid, polys[k].t_scale)
        bperp.append(float((polys[k].position(tk[0]) - s0_pos) @ nperp))

    final = Path(cfg.out)
    if final.exists() and any(final.iterdir()):
        raise InputError(f"stack folder {final} exists and is not empty")
    final.parent.mkdir(parents=True, exist_ok=True)
    out = final.with_name(f".{final.name}.partial")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    try:
        written = _write_outputs(out, final, cfg, sel, slcs, win, valid_all, wavelength, bperp,
                                 incidence, slant, ref, epochs, p0, orbits, line_times, cols,
                                 ca, cuts, first, ra, rbb, cb, lat, lon, hgt, esd_info)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    if final.exists():
        final.rmdir()
    out.replace(final)
    report(1.0, "stack written")
    return IngestResult(stack_dir=final, dates=sel.dates,
                        paths=[final / p.name for p in written],
                        bperp=[b - bperp[0] for b in bperp], esd=esd_info,
                        report=final / "ingest_report.json",
                        geometry=final / "geometry.json", burst_keys=sel.keys)


def _write_outputs(out, final, cfg, sel, slcs, win, valid_all, wavelength, bperp, incidence,
                   slant, ref, epochs, p0, orbits, line_times, cols, ca, cuts, first, ra, rbb,
                   cb, lat, lon, hgt, esd_info) -> list[Path]:
    n_dates = len(slcs)
    written = []
    for k in range(n_dates):
        d = sel.dates[k]
        data = slcs[k][win].copy()
        data[~valid_all[win]] = 0
        tags = {"ACQUISITION_DATE": d.isoformat(), "WAVELENGTH": repr(wavelength),
                "PERPENDICULAR_BASELINE": f"{bperp[k] - bperp[0]:.3f}",
                "INCIDENCE_ANGLE": f"{incidence:.4f}", "SLANT_RANGE": f"{slant:.3f}",
                "HEADING": f"{ref.heading:.4f}", "SOURCE_PRODUCT": sel.products[k].name,
                "BURSTS": ",".join(sel.keys), "POLARISATION": sel.polarisation}
        p = out / f"slc_{d:%Y%m%d}.tif"
        _write_slc(p, data, tags)
        written.append(p)
    geometry = {
        "epoch": epochs[0].isoformat(),
        "orbit": {"coef": p0.coef.tolist(), "t_mid": p0.t_mid, "t_scale": p0.t_scale,
                  "t_start": p0.t_start, "t_end": p0.t_end, "fit_error_m": p0.fit_error_m,
                  "source": orbits[0].source},
        "line_times": line_times.tolist(), "first_sample": int(cols[ca]),
        "slant_range_time": ref.slant_range_time,
        "range_sampling_rate": ref.range_sampling_rate, "wavelength": wavelength,
        "dem": str(Path(cfg.dem).resolve()) if cfg.dem else None,
        "swath": sel.swath, "polarisation": sel.polarisation, "bursts": sel.keys,
        "stitch_rows": [int(c - first - ra) for c in cuts[1:-1]],
    }
    (out / "geometry.json").write_text(json.dumps(geometry))
    np.savez_compressed(out / "geometry.npz", lat=lat.astype(np.float64),
                        lon=lon.astype(np.float64), height=hgt.astype(np.float32))
    rep = {
        "products": [p.name for p in sel.products], "dates": [d.isoformat() for d in sel.dates],
        "swath": sel.swath, "polarisation": sel.polarisation, "bursts": sel.keys,
        "orbits": [o.source for o in orbits], "dem": dem_note(cfg.dem),
        "grid": {"rows": int(rbb + 1 - ra), "cols": int(cb + 1 - ca)},
        "perpendicular_baselines_m": [round(b - bperp[0], 3) for b in bperp],
        "incidence_deg": incidence, "slant_range_m": slant, "esd": esd_info,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (out / "ingest_report.json").write_text(json.dumps(rep, indent=2))
    return written


def _aoi_columns(ann: SwathAnnotation, aoi) -> tuple[int, int]:
    """Range samples spanned by the AOI (through the geolocation grid)."""
    from scipy.interpolate import LinearNDInterpolator

    g = ann.grid
    f = LinearNDInterpolator(np.column_stack([g["longitude"], g["latitude"]]), g["pixel"])
    ring = np.asarray(aoi.exterior.coords)
    dense = np.concatenate([np.linspace(a, b, 16) for a, b in zip(ring[:-1], ring[1:],
                                                                  strict=True)])
    px = f(dense)
    px = px[np.isfinite(px)]
    if px.size == 0:  # the AOI is larger than the swath: keep every sample
        return 0, ann.samples_per_burst
    return int(np.floor(px.min())), int(np.ceil(px.max()))


def _esd(refs: list[_RefBurst], coreg: list[tuple[np.ndarray, np.ndarray]], dtl: float
         ) -> tuple[float, float]:
    """Pooled ESD misregistration (lines) over every burst overlap."""
    a_all, b_all, df_all = [], [], []
    for j in range(len(refs) - 1):
        ra, rb = refs[j], refs[j + 1]
        # merged lines where both bursts are valid
        m0 = max(ra.offset + ra.lines[0], rb.offset + rb.lines[0])
        m1 = min(ra.offset + ra.lines[-1], rb.offset + rb.lines[-1])
        if m1 < m0:
            continue
        merged = np.arange(m0, m1 + 1)
        ia = merged - ra.offset - ra.lines[0]
        ib = merged - rb.offset - rb.lines[0]
        sa, oka = coreg[j]
        sb, okb = coreg[j + 1]
        ok = oka[ia] & okb[ib]
        ifa = ra.data[ia] * np.conj(sa[ia])
        ifb = rb.data[ib] * np.conj(sb[ib])
        cols = np.arange(ra.data.shape[1], dtype=float)[None, :]
        # the samples of the reference data are the burst's columns from its first column
        fa = doppler_centroid(ra.ramp, (merged - ra.offset)[:, None].astype(float),
                              cols + ra.col0)
        fb = doppler_centroid(rb.ramp, (merged - rb.offset)[:, None].astype(float),
                              cols + rb.col0)
        a_all.append(np.where(ok, ifa, 0).ravel())
        b_all.append(np.where(ok, ifb, 0).ravel())
        df_all.append((fa - fb).ravel())
    if not a_all:
        raise InputError("the chosen bursts have no overlap for spectral diversity")
    return esd_shift(np.concatenate(a_all), np.concatenate(b_all), np.concatenate(df_all), dtl)
