"""Sentinel-1 IW SLC products -> the coregistered SLC stack that GDM-SAR and FLATSIM read.

Steps:

1. read every SAFE product (folder or zip), check one track / IW / SLC; group them by
   date and join consecutive slices along track (bursts of the same swath, in time
   order, by burst ID); choose the bursts covering the AOI on every date (same burst
   IDs), of one subswath (default: the one covering most of the AOI) or of all three
   (``swath="all"``, a FLATSIM frame);
2. orbits: the newest precise EOF covering each date (``orbits`` folder), else a
   restituted one, else (``orbit_source`` ``auto`` or ``annotation``) the annotation's
   own state vectors; Hermite interpolation, one polynomial per date;
3. the frame: rows on the reference date's line grid (every burst of every subswath at
   its own azimuth time), columns on one slant-range grid (each subswath at its own
   range offset); bursts are cut in mid-overlap along track and subswaths in
   mid-overlap across track;
4. enhanced spectral diversity: the double-difference phase of every burst overlap of
   every subswath gives each secondary's residual azimuth misregistration (one constant
   per date), applied and re-estimated (``esd_iterations``);
5. streaming: per subswath, burst and block of ``block_lines`` lines, the reference
   pixels are put on the DEM once (range-Doppler, zero Doppler) and traced into every
   secondary (orbit + DEM); each secondary block is deramped (its own TOPS ramp),
   resampled (windowed sinc), reramped and flattened (``4 pi (R_sec - R_ref) /
   wavelength``), and every date's block is written to its file. Memory holds one block
   (a few hundred MB at full Sentinel-1 width), whatever the number of bursts;
6. subswath phase continuity: in the range overlap of two subswaths, the double
   difference of their interferograms must vanish; it is measured for every secondary
   and a step above 0.5 rad (where coherent) fails the ingestion;
7. output: one CFloat32 GeoTIFF per date (``slc_YYYYMMDD.tif``) with the stack metadata
   (perpendicular baselines from the orbits at the frame centre), ``geometry.json`` (the
   orbit, line timing and range grid for geocoding, the subswath layout),
   ``geometry.npz`` (latitude, longitude, ellipsoidal height every ``geometry_step``
   pixels) and ``ingest_report.json`` (ESD, continuity, valid fractions).

The stack's grid is the reference radar geometry (rows = azimuth, columns = range).
Pixels a secondary does not cover (frame edges) are 0 in its file.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rasterio.windows import Window

from gdmcore import InputError, Progress
from gdmio.atomic import atomic_path
from gdmio.s1.orbit import Orbit, OrbitPolynomial, find_orbit_file, parse_eof
from gdmio.s1.safe import (
    Burst,
    SafeProduct,
    SwathAnnotation,
    choose_polarisation,
    covering_bursts,
    find_products,
    open_safe,
)
from insar.dem import dem_note, load_dem
from insar.stack import writing_stack
from kernels.geometry import SPEED_OF_LIGHT, ecef_to_llh, geo2rdr, llh_to_ecef, rdr2geo
from kernels.tops import RampModel, deramp, doppler_centroid, ramp_phase, resample_sinc

__all__ = ["IngestConfig", "IngestResult", "ingest", "is_safe_folder", "ingested", "load_dem",
           "StackGeometry", "read_geometry", "assemble_slices", "select_frame",
           "FrameSelection", "SwathBursts"]


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
    swath: str | None = Field(None, description="IW1, IW2 or IW3, or 'all' (every subswath, "
                              "merged: a whole frame); default: the swath covering most of "
                              "the AOI.")
    polarisation: str | None = Field(None, description="Polarisation (default VV, else HH).")
    esd: bool = Field(True, description="Estimate the azimuth misregistration by enhanced "
                      "spectral diversity in the burst overlaps.")
    esd_iterations: int = Field(2, ge=1, le=5, description="ESD estimate-and-apply rounds.")
    taps: int = Field(8, ge=4, le=32, description="Sinc interpolation kernel length.")
    block_lines: int = Field(512, ge=16, le=8192, description="Lines of a burst processed "
                             "at a time (memory: about 150 bytes per pixel of the block).")
    geometry_step: int = Field(1, ge=1, le=64, description="geometry.npz keeps latitude, "
                               "longitude and height every this many rows and columns.")

    @field_validator("swath")
    @classmethod
    def _swath(cls, v):
        if v is not None and v.upper() not in ("IW1", "IW2", "IW3", "ALL"):
            raise ValueError("swath must be IW1, IW2, IW3 or all")
        return v if v is None or v.upper() != "ALL" else "all"

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
    step: int = 1
    shape: tuple[int, int] = (0, 0)
    heading: float | None = None

    def __post_init__(self) -> None:
        if self.shape == (0, 0):
            self.shape = (self.lat.shape[0] * self.step, self.lat.shape[1] * self.step)

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
                         lat=arrays["lat"], lon=arrays["lon"], height=arrays["height"],
                         step=int(meta.get("geometry_step", 1)),
                         shape=tuple(meta.get("shape", (0, 0))),  # type: ignore[arg-type]
                         heading=meta.get("heading"))


# ---------------------------------------------------------------- selection


@dataclass
class SwathBursts:
    """The bursts of one subswath chosen on every date (same burst IDs, in order)."""

    swath: str
    keys: list[str]
    bursts: list[list[tuple[SwathAnnotation, Burst]]]  # [date][burst]


@dataclass
class FrameSelection:
    """What one ingestion processes: dates (slices assembled), polarisation, subswaths."""

    polarisation: str
    dates: list[dt.date]
    products: list[list[SafeProduct]]  # [date][slice], along track
    swaths: list[SwathBursts]

    @property
    def names(self) -> list[str]:
        """Every product name (slices of every date)."""
        return [p.name for ps in self.products for p in ps]


def assemble_slices(products: list[SafeProduct]) -> list[list[SafeProduct]]:
    """Products grouped by acquisition date, consecutive slices along track in order.

    Raises
    ------
    InputError
        Fewer than two dates, or mixed tracks (relative orbit or pass).

    """
    tracks = sorted({(p.relative_orbit, p.pass_direction) for p in products})
    if len(tracks) > 1:
        desc = ", ".join(f"relative orbit {r} {d.lower()}" for r, d in tracks)
        raise InputError(f"mixed tracks: {desc}; one track per stack")
    by_date: dict[dt.date, list[SafeProduct]] = {}
    for p in sorted(products, key=lambda p: p.start):
        by_date.setdefault(p.start.date(), []).append(p)
    if len(by_date) < 2:
        raise InputError(f"a stack needs at least 2 dates of SAFE products, got "
                         f"{len(by_date)}")
    return [by_date[d] for d in sorted(by_date)]


def _date_swath(slices: list[SafeProduct], swath: str, pol: str
                ) -> list[tuple[SwathAnnotation, Burst]]:
    """One date's bursts of a swath, slices joined along track (duplicates dropped)."""
    seen: dict[str, tuple[SwathAnnotation, Burst]] = {}
    for p in slices:
        if (swath, pol) not in p.swaths:
            continue
        ann = p.swaths[(swath, pol)]
        for b in ann.bursts:
            seen.setdefault(b.key, (ann, b))
    return sorted(seen.values(), key=lambda ab: ab[1].azimuth_time)


def select_frame(groups: list[list[SafeProduct]], aoi=None, swath: str | None = None,
                 polarisation: str | None = None) -> FrameSelection:
    """The bursts of every date to ingest: one swath (default: most of the AOI) or all.

    Bursts are matched across dates by burst ID; slices of a date are joined first.

    Raises
    ------
    InputError
        No common polarisation, no burst covering the AOI, or a date missing a burst.

    """
    pols = set(groups[0][0].polarisations)
    for g in groups:
        pols &= set().union(*(p.polarisations for p in g))
    pol = choose_polarisation(pols, polarisation)
    ref = groups[0]
    names = ref[0].name
    swaths = sorted({s for p in ref for s, q in p.swaths if q == pol})
    if swath and swath.lower() != "all":
        if swath.upper() not in swaths:
            raise InputError(f"{names}: no swath {swath.upper()} (has {swaths})")
        swaths = [swath.upper()]
    chosen: dict[str, tuple[float, list[Burst]]] = {}
    for sw in swaths:
        picks, area = covering_bursts(_date_swath(ref, sw, pol), aoi)
        if picks:
            chosen[sw] = (area, picks)
    if not chosen:
        raise InputError(f"no burst of {names} ({', '.join(swaths)} {pol}) covers the AOI "
                         f"{aoi.bounds if aoi is not None else ''}")
    if not (swath and swath.lower() == "all"):
        best = max(chosen, key=lambda sw: chosen[sw][0])
        chosen = {best: chosen[best]}
    out = []
    for sw, (_, picks) in sorted(chosen.items()):
        keys = [b.key for b in picks]
        per_date = []
        for g in groups:
            by_key = {b.key: (ann, b) for ann, b in _date_swath(g, sw, pol)}
            missing = [k for k in keys if k not in by_key]
            if missing:
                raise InputError(f"{g[0].name}: burst(s) {', '.join(missing)} of the "
                                 f"reference {names} are missing (the product does not "
                                 "cover the area)")
            per_date.append([by_key[k] for k in keys])
        out.append(SwathBursts(sw, keys, per_date))
    return FrameSelection(pol, [g[0].start.date() for g in groups], groups, out)


# ---------------------------------------------------------------- helpers


def _load_orbit(products: list[SafeProduct], ann: SwathAnnotation, cfg: IngestConfig,
                epoch: dt.datetime, t0: float, t1: float) -> Orbit:
    first, last = products[0], products[-1]
    path = None
    if cfg.orbit_source != "annotation" and cfg.orbits is not None:
        path = find_orbit_file(cfg.orbits, first.platform, first.start, last.stop)
    if cfg.orbit_source == "precise" and path is None:
        where = cfg.orbits if cfg.orbits is not None else "(no orbit folder given)"
        raise InputError(f"{first.name}: no precise or restituted orbit file in {where} "
                         "covers the acquisition")
    if path is not None:
        orbit = parse_eof(path).rebase(epoch).crop(t0, t1)
    else:
        orbit = ann.orbit(epoch)
    if not orbit.covers(t0, t1, margin=1.0):
        raise InputError(f"{first.name}: the orbit ({orbit.source}) does not cover the "
                         "bursts (missing orbit state vectors)")
    return orbit


def _ramp(ann: SwathAnnotation, orbit: Orbit, burst: Burst) -> RampModel:
    mid = burst.azimuth_time + dt.timedelta(seconds=0.5 * burst.lines
                                            * ann.azimuth_time_interval)
    _, vel = orbit.interpolate(orbit.seconds(mid))
    return RampModel.from_annotation(
        float(np.linalg.norm(vel)), ann.radar_frequency, ann.azimuth_steering_rate,
        ann.nearest(ann.fm, mid), ann.nearest(ann.dc, mid), ann.slant_range_time,
        ann.range_sampling_rate, ann.azimuth_time_interval, burst.lines, burst.samples)


def _read_lines(ann: SwathAnnotation, burst: Burst, l0: int, l1: int, c0: int, c1: int
                ) -> np.ndarray:
    """Burst lines ``l0:l1`` and samples ``c0:c1`` (complex64); invalid margins are zero."""
    l0, l1 = max(l0, 0), min(l1, burst.lines)
    c0, c1 = max(c0, 0), min(c1, burst.samples)
    if l1 <= l0 or c1 <= c0:
        return np.zeros((max(l1 - l0, 0), max(c1 - c0, 0)), np.complex64)
    try:
        with rasterio.open(ann.measurement) as ds:
            if ds.width < c1 or ds.height < burst.first_line + l1:
                raise InputError(f"{Path(ann.measurement).name}: {ds.width}x{ds.height} "
                                 f"raster too small for burst {burst.index}")
            data = ds.read(1, window=Window(c0, burst.first_line + l0, c1 - c0, l1 - l0)
                           ).astype(np.complex64)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{ann.measurement}: cannot read the measurement ({exc})") from None
    out = np.zeros_like(data)
    a, b = max(burst.first_valid_line, l0) - l0, min(burst.last_valid_line + 1, l1) - l0
    s0 = max(burst.first_valid_sample - c0, 0)
    s1 = min(burst.last_valid_sample + 1 - c0, c1 - c0)
    if b > a and s1 > s0:
        out[a:b, s0:s1] = data[a:b, s0:s1]
    return out


def _write_slc(path: Path, data: np.ndarray, tags: dict[str, str]) -> None:
    with atomic_path(path) as tmp, rasterio.open(
            tmp, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
            dtype="complex64", tiled=True, blockxsize=256, blockysize=256) as ds:
        ds.write(data, 1)
        ds.update_tags(**tags)


@dataclass
class _Swath:
    """One subswath's layout in the frame and its per-date models."""

    sel: SwathBursts
    anns: list[SwathAnnotation]  # per date: annotation of the first burst (radar params)
    offsets: list[int]  # frame line of each reference burst's line 0
    cuts: list[int]  # frame rows: burst j covers cuts[j]..cuts[j+1]
    col_offset: int  # frame column of swath sample 0
    x0: int  # frame columns [x0, x1) taken from this swath
    x1: int
    ramps: list[list[RampModel]] = field(default_factory=list)  # [date][burst]

    def burst_at(self, row: int) -> int:
        """Index of the reference burst that covers frame row ``row``."""
        return int(np.clip(np.searchsorted(self.cuts, row, side="right") - 1, 0,
                           len(self.offsets) - 1))


class _Esd:
    """Pooled enhanced-spectral-diversity sums (as :func:`kernels.tops.esd_shift`)."""

    def __init__(self) -> None:
        self.s = 0j
        self.w = 0.0
        self.wdf = 0.0

    def add(self, a: np.ndarray, b: np.ndarray, df: np.ndarray) -> None:
        dd = a * np.conj(b)
        good = np.isfinite(dd) & (np.abs(dd) > 0) & np.isfinite(df)
        mag = np.abs(dd[good]).astype(np.float64)
        self.s += complex(np.sum(dd[good].astype(np.complex128)))
        self.w += float(mag.sum())
        self.wdf += float((mag * df[good]).sum())

    def shift(self, dtl: float) -> tuple[float, float]:
        if self.w == 0 or self.wdf == 0:
            raise InputError("the chosen bursts have no overlap for spectral diversity")
        mean_df = self.wdf / self.w
        return float(-np.angle(self.s) / (2 * np.pi * mean_df * dtl)), abs(self.s) / self.w


# ---------------------------------------------------------------- main


def ingest(cfg: IngestConfig, progress: Progress | None = None) -> IngestResult:
    """Turn the SAFE products of ``cfg.safe`` into a coregistered stack in ``cfg.out``.

    Raises
    ------
    InputError
        No product, a product of another mode or type, mixed tracks, bursts not covering
        the AOI, missing orbits, a DEM that cannot be used, subswaths that do not join.

    """
    def report(f: float, m: str) -> None:
        if progress is not None:
            progress(min(max(f, 0.0), 1.0), m)

    from shapely.geometry import box

    paths = find_products(cfg.safe)
    if not paths:
        raise InputError(f"no Sentinel-1 SAFE product (*.SAFE folder or S1*.zip) in {cfg.safe}")
    pols = (cfg.polarisation.upper(),) if cfg.polarisation else None
    groups = assemble_slices([open_safe(p, pols) for p in paths])
    aoi = box(*cfg.aoi) if cfg.aoi is not None else None
    sel = select_frame(groups, aoi, cfg.swath, cfg.polarisation)
    n_dates = len(sel.dates)
    ref_ann = sel.swaths[0].bursts[0][0][0]
    for sw in sel.swaths:
        for k in range(1, n_dates):
            other = sw.bursts[k][0][0]
            for attr in ("range_sampling_rate", "azimuth_time_interval", "radar_frequency"):
                if abs(getattr(other, attr) - getattr(ref_ann, attr)) > 1e-9 * abs(
                        getattr(ref_ann, attr)):
                    raise InputError(f"{sel.products[k][0].name}: {attr} differs from the "
                                     "reference date")
    dem, flat = load_dem(cfg.dem)
    dtl = ref_ann.azimuth_time_interval
    fs = ref_ann.range_sampling_rate
    wavelength = ref_ann.wavelength
    n_bursts = sum(len(s.keys) for s in sel.swaths)
    report(0.02, f"{n_dates} dates ({sum(len(g) for g in sel.products)} products), "
           f"{n_bursts} burst(s) of {', '.join(s.swath for s in sel.swaths)} "
           f"{sel.polarisation}")

    # orbits: one epoch per date (its first chosen burst, any swath)
    epochs = [min(sw.bursts[k][0][1].azimuth_time for sw in sel.swaths)
              for k in range(n_dates)]
    orbits, polys = [], []
    for k in range(n_dates):
        t1 = max((sw.bursts[k][-1][1].azimuth_time - epochs[k]).total_seconds()
                 + sw.bursts[k][-1][1].lines * dtl for sw in sel.swaths)
        orbit = _load_orbit(sel.products[k], sel.swaths[0].bursts[k][0][0], cfg, epochs[k],
                            0.0, t1)
        orbits.append(orbit)
        polys.append(orbit.polynomial(-2.0, t1 + 2))
    p0 = polys[0]

    # the frame: rows on the reference date's line grid, columns on one range grid
    half = cfg.taps // 2 + 1
    tau_min = min(sw.bursts[0][0][0].slant_range_time for sw in sel.swaths)
    layout: list[_Swath] = []
    for sw in sel.swaths:
        rb = [b for _, b in sw.bursts[0]]
        ann0 = sw.bursts[0][0][0]
        offs = [round((b.azimuth_time - epochs[0]).total_seconds() / dtl) for b in rb]
        c0 = max(b.first_valid_sample for b in rb) + half
        c1 = min(b.last_valid_sample for b in rb) - half
        if aoi is not None and len(sel.swaths) == 1:
            a0, a1 = _aoi_columns(ann0, aoi)
            c0, c1 = max(c0, a0 - 32), min(c1, a1 + 32)
        if c1 - c0 < 16:
            raise InputError(f"{sw.swath}: the chosen bursts share fewer than 16 valid "
                             "range samples")
        cuts = [offs[0] + rb[0].first_valid_line]
        for j in range(len(rb) - 1):
            a_end = offs[j] + rb[j].last_valid_line + 1
            b_start = offs[j + 1] + rb[j + 1].first_valid_line
            if b_start >= a_end:
                raise InputError(f"bursts {rb[j].key} and {rb[j + 1].key} do not overlap")
            cuts.append((a_end + b_start) // 2)
        cuts.append(offs[-1] + rb[-1].last_valid_line + 1)
        co = round((ann0.slant_range_time - tau_min) * fs)
        layout.append(_Swath(sw, [sw.bursts[k][0][0] for k in range(n_dates)], offs, cuts,
                             co, co + c0, co + c1 + 1))
    margin = 4  # secondary dates cover the reference up to their synchronisation offsets
    r0 = max(s.cuts[0] for s in layout) + margin
    r1 = min(s.cuts[-1] for s in layout) - margin
    if r1 - r0 < 16:
        raise InputError("the subswaths share fewer than 16 lines")
    for near_sw, far_sw in zip(layout[:-1], layout[1:], strict=True):
        if far_sw.x0 >= near_sw.x1:
            raise InputError(f"subswaths {near_sw.sel.swath} and {far_sw.sel.swath} do not "
                             "overlap in range: cannot merge them")
        cut = (near_sw.x1 + far_sw.x0) // 2
        near_sw.x1, far_sw.x0 = cut, cut
    layout[0].x0 += margin
    layout[-1].x1 -= margin
    x_first, x_last = layout[0].x0, layout[-1].x1
    n_rows, n_cols = r1 - r0, x_last - x_first
    step = cfg.geometry_step
    g_rows = np.arange(0, n_rows, step)
    g_cols = np.arange(0, n_cols, step)
    geo_lat = np.full((g_rows.size, g_cols.size), np.nan)
    geo_lon = np.full_like(geo_lat, np.nan)
    geo_h = np.full(geo_lat.shape, np.nan, np.float32)
    for s in layout:
        s.ramps = [[_ramp(ann, orbits[k], b)
                    for ann, b in s.sel.bursts[k]] for k in range(n_dates)]
    report(0.05, f"frame {n_cols} x {n_rows} from {len(layout)} subswath(s)")
    def t_ref(s: _Swath, j: int, rows: np.ndarray) -> np.ndarray:
        b = s.sel.bursts[0][j][1]
        return (b.azimuth_time - epochs[0]).total_seconds() + (rows - s.offsets[j]) * dtl

    def ground_of(s: _Swath, j: int, rows: np.ndarray, xs: np.ndarray) -> np.ndarray:
        ann0 = s.sel.bursts[0][j][0]
        r_ref = ann0.range_of(xs - s.col_offset)
        g = rdr2geo(t_ref(s, j, rows)[:, None], r_ref[None, :], p0.coef, p0.t_mid,
                    p0.t_scale, dem)
        if not np.isfinite(g).all():
            raise InputError("range-Doppler geolocation failed for part of the bursts "
                             "(DEM or orbit inconsistent with the product)")
        return g

    def coregister(s: _Swath, j: int, k: int, ground: np.ndarray, xs: np.ndarray,
                   shift: float) -> tuple[np.ndarray, np.ndarray]:
        """Date k's burst j of swath s resampled on the reference pixels of ``ground``."""
        ann, b = s.sel.bursts[k][j]
        pk = polys[k]
        t_guess = (b.azimuth_time - epochs[k]).total_seconds() + 0.5 * b.lines * dtl
        tk, rk = geo2rdr(ground, pk.coef, pk.t_mid, pk.t_scale, t_guess=t_guess)
        lines = (tk - (b.azimuth_time - epochs[k]).total_seconds()) / dtl + shift
        samples = ann.sample_of(rk)
        r_ref = s.sel.bursts[0][j][0].range_of(xs - s.col_offset)
        dphase = 4 * np.pi * (rk - r_ref[None, :]) / wavelength
        fin = np.isfinite(lines) & np.isfinite(samples)
        out = np.zeros(lines.shape, np.complex64)
        ok = np.zeros(lines.shape, bool)
        if not fin.any():
            return out, ok
        la = max(int(np.floor(lines[fin].min())) - cfg.taps, 0)
        lb = min(int(np.ceil(lines[fin].max())) + cfg.taps + 1, b.lines)
        sa = max(int(np.floor(samples[fin].min())) - cfg.taps, 0)
        sb = min(int(np.ceil(samples[fin].max())) + cfg.taps + 1, b.samples)
        if lb <= la or sb <= sa:
            return out, ok
        ramp = s.ramps[k][j]
        raw = deramp(_read_lines(ann, b, la, lb, sa, sb), ramp, first_line=la,
                     first_sample=sa)
        vals, ok = resample_sinc(raw, np.where(fin, lines - la, -1e6),
                                 np.where(fin, samples - sa, -1e6), cfg.taps)
        ok &= fin & (lines >= b.first_valid_line + half - 1) & \
            (lines <= b.last_valid_line - half + 1) & \
            (samples >= b.first_valid_sample + half - 1) & \
            (samples <= b.last_valid_sample - half + 1)
        out = vals * np.exp(1j * (ramp_phase(ramp, np.where(fin, lines, 0.0),
                                             np.where(fin, samples, 0.0)) + dphase))
        out[~ok] = 0
        return out.astype(np.complex64), ok

    def ref_block(s: _Swath, j: int, rows: np.ndarray, xs: np.ndarray) -> np.ndarray:
        ann, b = s.sel.bursts[0][j]
        lines = rows - s.offsets[j]
        cols = xs - s.col_offset
        return _read_lines(ann, b, int(lines[0]), int(lines[-1]) + 1, int(cols[0]),
                           int(cols[-1]) + 1)

    if not flat:  # the DEM must cover the frame: its corners and burst edges on the DEM
        pts = []
        for s in layout:
            for j in range(len(s.offsets)):
                rows = np.clip(np.array([s.cuts[j], s.cuts[j + 1] - 1]), r0, r1 - 1)
                pts.append(ground_of(s, j, rows, np.array([s.x0, s.x1 - 1])).reshape(-1, 3))
        plat, plon, _ = ecef_to_llh(np.concatenate(pts))
        lo = sorted((dem.params[0], dem.params[0] + dem.params[2] * (dem.heights.shape[1] - 1)))
        la_ = sorted((dem.params[1], dem.params[1] + dem.params[3] * (dem.heights.shape[0] - 1)))
        if plon.min() < lo[0] or plon.max() > lo[1] or plat.min() < la_[0] or \
                plat.max() > la_[1]:
            raise InputError(f"DEM {cfg.dem}: does not cover the bursts (lon {plon.min():.3f}.."
                             f"{plon.max():.3f}, lat {plat.min():.3f}..{plat.max():.3f})")


    # 1. enhanced spectral diversity: one azimuth shift per secondary date, pooled over
    #    every burst overlap of every subswath
    shifts = [0.0] * n_dates
    esd_info: list[dict] = [{"date": sel.dates[0].isoformat(), "reference": True}]
    estimates: list[list[tuple[float, float]]] = [[] for _ in range(n_dates)]
    overlaps = []
    for s in layout:
        rb = [b for _, b in s.sel.bursts[0]]
        for j in range(len(rb) - 1):
            m0 = max(s.offsets[j] + rb[j].first_valid_line,
                     s.offsets[j + 1] + rb[j + 1].first_valid_line)
            m1 = min(s.offsets[j] + rb[j].last_valid_line,
                     s.offsets[j + 1] + rb[j + 1].last_valid_line)
            if m1 >= m0:
                xs_all = np.arange(max(s.x0, x_first), min(s.x1, x_last))
                cstep = max(1, xs_all.size // 2048)
                overlaps.append((s, j, np.arange(m0, m1 + 1), xs_all[::cstep]))
    do_esd = cfg.esd and bool(overlaps)
    if do_esd:
        for it in range(cfg.esd_iterations + 1):
            acc = [_Esd() for _ in range(n_dates)]
            for s, j, rows, xs in overlaps:
                ga, gb = ground_of(s, j, rows, xs), ground_of(s, j + 1, rows, xs)
                ra, rbk = _read_cols(s, 0, j, rows, xs), _read_cols(s, 0, j + 1, rows, xs)
                fa = doppler_centroid(s.ramps[0][j], (rows - s.offsets[j])[:, None]
                                      .astype(float), (xs - s.col_offset)[None, :].astype(float))
                fb = doppler_centroid(s.ramps[0][j + 1], (rows - s.offsets[j + 1])[:, None]
                                      .astype(float), (xs - s.col_offset)[None, :].astype(float))
                for k in range(1, n_dates):
                    sa, oka = coregister(s, j, k, ga, xs, shifts[k])
                    sb, okb = coregister(s, j + 1, k, gb, xs, shifts[k])
                    ok = oka & okb
                    acc[k].add(np.where(ok, ra * np.conj(sa), 0).ravel(),
                               np.where(ok, rbk * np.conj(sb), 0).ravel(), (fa - fb).ravel())
            for k in range(1, n_dates):
                e, coh = acc[k].shift(dtl)
                estimates[k].append((e, coh))
                if it < cfg.esd_iterations:
                    shifts[k] -= e
            report(0.05 + 0.15 * (it + 1) / (cfg.esd_iterations + 1), "spectral diversity")
    for k in range(1, n_dates):
        esd_info.append({
            "date": sel.dates[k].isoformat(), "reference": False,
            "azimuth_shift_lines": shifts[k],
            "esd_estimates_lines": [round(e, 6) for e, _ in estimates[k]],
            "esd_coherence": [round(c, 4) for _, c in estimates[k]],
            "residual_lines": estimates[k][-1][0] if estimates[k] else None,
        })

    # 2. stream: per subswath, burst and block of lines, the reference ground once and
    #    every date's samples, written to each date's file
    final = Path(cfg.out)
    names = [f"slc_{d:%Y%m%d}.tif" for d in sel.dates]
    valid_px = np.zeros(n_dates, np.int64)
    with writing_stack(final) as out:
        with rasterio.Env(GDAL_CACHEMAX=64 * 2**20):
            dsets = [rasterio.open(out / f".{n}.tmp", "w", driver="GTiff", width=n_cols,
                                   height=n_rows, count=1, dtype="complex64", tiled=True,
                                   blockxsize=256, blockysize=256) for n in names]
            try:
                blocks = []
                for s in layout:
                    for j in range(len(s.offsets)):
                        first, stop = max(s.cuts[j], r0), min(s.cuts[j + 1], r1)
                        for ba in range(first, stop, cfg.block_lines):
                            blocks.append((s, j, ba, min(stop, ba + cfg.block_lines)))
                for q, (s, j, ba, bb) in enumerate(blocks):
                    rows = np.arange(ba, bb)
                    xs = np.arange(s.x0, s.x1)
                    g = ground_of(s, j, rows, xs)
                    win = Window(s.x0 - x_first, ba - r0, xs.size, rows.size)
                    ref = ref_block(s, j, rows, xs)
                    dsets[0].write(ref, 1, window=win)
                    valid_px[0] += int(np.count_nonzero(ref))
                    gr = (rows - r0)
                    keep_r = gr % step == 0
                    keep_c = (xs - x_first) % step == 0
                    if keep_r.any() and keep_c.any():
                        lat, lon, hgt = ecef_to_llh(g[keep_r][:, keep_c])
                        ri = gr[keep_r] // step
                        ci = (xs[keep_c] - x_first) // step
                        geo_lat[np.ix_(ri, ci)] = lat
                        geo_lon[np.ix_(ri, ci)] = lon
                        geo_h[np.ix_(ri, ci)] = hgt
                    for k in range(1, n_dates):
                        data, ok = coregister(s, j, k, g, xs, shifts[k])
                        dsets[k].write(data, 1, window=win)
                        valid_px[k] += int(ok.sum())
                    del g
                    report(0.2 + 0.75 * (q + 1) / len(blocks),
                           f"{s.sel.swath} burst {j + 1}/{len(s.offsets)}: rows {bb - r0}")
                continuity = _swath_continuity(layout, range(1, n_dates), r0, r1,
                                               ground_of, ref_block, coregister, shifts,
                                               half)
            finally:
                for ds in dsets:
                    ds.close()
        bad = [c for c in continuity if not c["ok"]]
        if bad:
            c = bad[0]
            raise InputError(f"subswaths {c['swaths']} do not join in phase on "
                             f"{sel.dates[c['date_index']]}: {c['phase_step_rad']:+.2f} rad "
                             "(coregistration failed between subswaths)")
        # geometry of the frame
        mid = layout[len(layout) // 2]
        frame_rows = np.arange(r0, r1)
        line_times = np.concatenate([t_ref(mid, j, frame_rows[(frame_rows >= mid.cuts[j])
                                                              & (frame_rows < mid.cuts[j + 1])])
                                     for j in range(len(mid.offsets))])
        cy, cx = n_rows // 2, n_cols // 2
        jc = mid.burst_at(r0 + cy)
        xc = int(np.clip(x_first + cx, mid.x0, mid.x1 - 1))
        g = ground_of(mid, jc, np.array([r0 + cy]), np.array([xc]))[0, 0]
        s0_pos = p0.position(float(t_ref(mid, jc, np.array([r0 + cy]))[0]))
        u = (g - s0_pos) / np.linalg.norm(g - s0_pos)
        glat, glon, _ = ecef_to_llh(g)
        up = llh_to_ecef(glat, glon, 1.0) - llh_to_ecef(glat, glon, 0.0)
        up /= np.linalg.norm(up)
        nperp = up - (up @ u) * u
        nperp /= np.linalg.norm(nperp)
        incidence = math.degrees(math.acos(float(-u @ up)))
        slant = float(np.linalg.norm(g - s0_pos))
        bperp = []
        for k in range(n_dates):
            tk, _ = geo2rdr(g[None], polys[k].coef, polys[k].t_mid, polys[k].t_scale)
            bperp.append(float((polys[k].position(tk[0]) - s0_pos) @ nperp))
        keys = [k for sw in sel.swaths for k in sw.keys]
        for k, name in enumerate(names):
            tags = {"ACQUISITION_DATE": sel.dates[k].isoformat(),
                    "WAVELENGTH": repr(wavelength),
                    "PERPENDICULAR_BASELINE": f"{bperp[k] - bperp[0]:.3f}",
                    "INCIDENCE_ANGLE": f"{incidence:.4f}", "SLANT_RANGE": f"{slant:.3f}",
                    "HEADING": f"{ref_ann.heading:.4f}",
                    "SOURCE_PRODUCT": ",".join(p.name for p in sel.products[k]),
                    "BURSTS": ",".join(keys), "POLARISATION": sel.polarisation}
            with rasterio.open(out / f".{name}.tmp", "r+") as ds:
                ds.update_tags(**tags)
            (out / f".{name}.tmp").replace(out / name)
        geometry = {
            "epoch": epochs[0].isoformat(),
            "orbit": {"coef": p0.coef.tolist(), "t_mid": p0.t_mid, "t_scale": p0.t_scale,
                      "t_start": p0.t_start, "t_end": p0.t_end, "fit_error_m": p0.fit_error_m,
                      "source": orbits[0].source},
            "line_times": line_times.tolist(), "first_sample": int(x_first),
            "slant_range_time": tau_min, "range_sampling_rate": fs,
            "wavelength": wavelength, "heading": ref_ann.heading,
            "dem": str(Path(cfg.dem).resolve()) if cfg.dem else None,
            "swath": ",".join(sw.swath for sw in sel.swaths),
            "swaths": [{"swath": s.sel.swath, "columns": [int(s.x0 - x_first),
                                                          int(s.x1 - x_first)],
                        "stitch_rows": [int(c - r0) for c in s.cuts[1:-1] if r0 < c < r1]}
                       for s in layout],
            "polarisation": sel.polarisation, "bursts": keys,
            "stitch_rows": [int(c - r0) for c in layout[0].cuts[1:-1] if r0 < c < r1],
            "geometry_step": step, "shape": [n_rows, n_cols],
        }
        (out / "geometry.json").write_text(json.dumps(geometry))
        np.savez_compressed(out / "geometry.npz", lat=geo_lat, lon=geo_lon,
                            height=geo_h.astype(np.float32))
        rep = {
            "products": sel.names, "dates": [d.isoformat() for d in sel.dates],
            "slices_per_date": [len(g) for g in sel.products],
            "swath": ",".join(sw.swath for sw in sel.swaths),
            "polarisation": sel.polarisation, "bursts": keys,
            "orbits": [o.source for o in orbits], "dem": dem_note(cfg.dem),
            "grid": {"rows": n_rows, "cols": n_cols},
            "perpendicular_baselines_m": [round(b - bperp[0], 3) for b in bperp],
            "incidence_deg": incidence, "slant_range_m": slant, "esd": esd_info,
            "swath_continuity": continuity,
            "valid_fraction": [round(float(v) / (n_rows * n_cols), 4) for v in valid_px],
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        (out / "ingest_report.json").write_text(json.dumps(rep, indent=2))
    report(1.0, "stack written")
    return IngestResult(stack_dir=final, dates=sel.dates, paths=[final / n for n in names],
                        bperp=[b - bperp[0] for b in bperp], esd=esd_info,
                        report=final / "ingest_report.json",
                        geometry=final / "geometry.json", burst_keys=keys)


def _read_cols(s: _Swath, k: int, j: int, rows: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Reference samples of frame ``rows`` x (thinned) columns ``xs``."""
    ann, b = s.sel.bursts[k][j]
    lines = rows - s.offsets[j]
    cols = xs - s.col_offset
    block = _read_lines(ann, b, int(lines[0]), int(lines[-1]) + 1, int(cols[0]),
                        int(cols[-1]) + 1)
    return block[:, cols - cols[0]]


def _swath_continuity(layout: list[_Swath], dates, r0: int, r1: int, ground_of, ref_block,
                      coregister, shifts, margin: int, max_step: float = 0.5) -> list[dict]:
    """Interferometric phase step between consecutive subswaths, per secondary date.

    In the range overlap of two subswaths both see the same ground: the double
    difference of their interferograms (reference times conjugate secondary) must be
    zero. Measured on the middle lines of each burst of the first subswath; a step above
    ``max_step`` radians (where the overlap is coherent) marks a failed merge.
    """
    out = []
    for a, b in zip(layout[:-1], layout[1:], strict=True):
        lo = b.col_offset + max(bb.first_valid_sample for _, bb in b.sel.bursts[0]) + margin
        hi = a.col_offset + min(bb.last_valid_sample for _, bb in a.sel.bursts[0]) - margin
        if hi - lo < 4:
            continue
        xs = np.arange(lo, hi)
        pieces = []
        for j in range(len(a.offsets)):
            mid = (max(a.cuts[j], r0) + min(a.cuts[j + 1], r1)) // 2
            jb = b.burst_at(int(mid))
            rows = np.arange(max(mid - 16, r0, b.cuts[jb]), min(mid + 16, r1, b.cuts[jb + 1]))
            if rows.size == 0:
                continue
            pieces.append((j, jb, rows))
        for k in dates:
            acc = 0j
            mag = 0.0
            for j, jb, rows in pieces:
                ga, gb = ground_of(a, j, rows, xs), ground_of(b, jb, rows, xs)
                ra, rb = ref_block(a, j, rows, xs), ref_block(b, jb, rows, xs)
                sa, oka = coregister(a, j, k, ga, xs, shifts[k])
                sb, okb = coregister(b, jb, k, gb, xs, shifts[k])
                ok = oka & okb & (ra != 0) & (rb != 0)
                dd = (ra * np.conj(sa))[ok] * np.conj((rb * np.conj(sb))[ok])
                acc += complex(dd.astype(np.complex128).sum())
                mag += float(np.abs(dd).sum())
            coh = abs(acc) / mag if mag else 0.0
            step = float(np.angle(acc)) if mag else float("nan")
            out.append({"swaths": f"{a.sel.swath}/{b.sel.swath}", "date_index": k,
                        "phase_step_rad": round(step, 4), "coherence": round(coh, 4),
                        "ok": bool(not (coh > 0.3 and abs(step) > max_step))})
    return out


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
