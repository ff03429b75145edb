"""SNAP-coregistered Sentinel-1 stacks (BEAM-DIMAP or ZNAP) -> the GDM-SAR stack.

A folder of SNAP products (``*.dim`` + ``*.data/``, ``*.znap`` folders, ``*.znap.zip`` or
zips of a ``.dim``) coregistered on one reference by SNAP (Back-Geocoding or Create
Stack, usually followed by TOPS Deburst and Subset): one date per product or several
dates in one product. Everything is read from the products, never assumed:

- acquisitions: every pair of bands ``i_<tag>`` / ``q_<tag>`` whose tag ends with SNAP's
  date suffix (``..._19Mar2023``); its time is the ``first_line_time`` of the SNAP
  metadata element of that date (``Abstracted_Metadata`` for the reference, the
  ``Slave_Metadata`` element for a secondary); polarisation from the tag (``--polarisation``
  picks one, default VV, else HH, VH, HV);
- wavelength from ``radar_frequency``; incidence angle and slant range at the scene
  centre from the ``incident_angle`` and ``slant_range_time`` tie-point grids (else
  ``incidence_near/far``, ``slant_range_to_first_pixel`` + ``range_spacing``); heading
  from ``centre_heading``;
- perpendicular baselines from ``Abstracted_Metadata/Baselines/Ref_<reference>/
  Secondary_<date>/Perp Baseline``; where that element is missing, from the reference
  and secondary orbit state vectors in the metadata (zero-Doppler positions for the
  scene-centre pixel). SNAP's ``Perp Baseline`` of a secondary has the project's sign
  (checked against the state vectors by the tests);
- latitude/longitude of every pixel from SNAP's ``latitude*``/``longitude*`` bands when
  the product has them, else from the ``latitude``/``longitude`` tie-point grids.

:func:`import_snap` writes the stack convention (one CFloat32 GeoTIFF per date with the
metadata keys of :mod:`insar.stack`), ``snap_geometry.npz`` (latitude, longitude) and
``snap_import.json``, into a hidden folder renamed when complete.
:func:`geocode_snap_products` puts GDM-SAR products on a UTM (or any) map grid with
those per-pixel coordinates.

SNAP's "no value" (99999) counts as missing. Bad input (no i/q bands, products of
different sizes or references, a date without metadata, no coordinates, ...) raises
:class:`~gdmcore.InputError`, before anything is written.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import rasterio
from pydantic import BaseModel, ConfigDict, Field
from rasterio.errors import NotGeoreferencedWarning

from gdmcore import InputError
from gdmio.s1.orbit import Orbit
from gdmio.snap import (
    MetadataElement,
    SnapProduct,
    find_snap_products,
    is_snap_product,
    open_snap,
)
from insar.stack import writing_stack
from kernels.geometry import SPEED_OF_LIGHT, geo2rdr, llh_to_ecef

__all__ = ["SnapImportConfig", "SnapAcquisition", "SnapStack", "read_snap_stack",
           "import_snap", "import_snap_inputs", "is_snap_folder", "is_snap_product",
           "snap_imported",
           "geocode_snap_products", "radar_coordinates_latlon", "SNAP_GEOMETRY",
           "SNAP_REPORT"]

Progress = Callable[[float, str], None]
SNAP_GEOMETRY = "snap_geometry.npz"
SNAP_REPORT = "snap_import.json"
_NO_VALUE = 99999.0
_DATE_TAG = re.compile(r"_(\d{2})([A-Za-z]{3})(\d{4})$")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_POLS = ("VV", "HH", "VH", "HV")


class SnapImportConfig(BaseModel):
    """SNAP-coregistered products -> coregistered SLC stack (project convention)."""

    model_config = ConfigDict(extra="forbid")

    folder: Path = Field(description="Folder of SNAP products (*.dim with *.data/, *.znap, "
                         "*.znap.zip, or zips of a .dim), coregistered on one reference.")
    out: Path = Field(description="Stack folder to write (one CFloat32 GeoTIFF per date).")
    polarisation: str | None = Field(None, description="Polarisation to use when the "
                                     "products hold several (default VV, else HH, VH, HV).")
    block_mb: int = Field(256, ge=16, le=8192, description="Rows converted at a time "
                          "(MiB of complex samples).")


@dataclass(frozen=True)
class SnapAcquisition:
    """One date of the stack: where its samples are and what SNAP says of it."""

    product: Path
    i_band: str
    q_band: str
    polarisation: str
    time: dt.datetime  # first line (UTC)
    role: str  # "reference" or "secondary"
    source: str  # the original product name in SNAP's metadata
    bperp: float  # m, relative to the SNAP reference, project sign
    bperp_source: str
    bperp_orbits: float | None  # m, from the state vectors (cross-check)

    @property
    def date(self) -> dt.date:
        """Acquisition date (UTC)."""
        return self.time.date()


@dataclass
class SnapStack:
    """A checked SNAP stack: acquisitions sorted by date and their common geometry."""

    products: list[Path]
    acquisitions: list[SnapAcquisition]
    width: int
    height: int
    reference: str
    reference_time: dt.datetime
    wavelength: float
    incidence_deg: float
    slant_range: float
    heading_deg: float
    lat: np.ndarray
    lon: np.ndarray
    latlon_source: str
    geometry_sources: dict[str, str] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- helpers


def _snap_tag(t: dt.datetime) -> str:
    return f"{t.day:02d}{_MONTHS[t.month - 1].title()}{t.year}"


def _number(el: MetadataElement | None, name: str) -> float | None:
    """A numeric metadata value, None when absent or SNAP's 'no value' (99999)."""
    if el is None:
        return None
    v = el.get(name)
    if isinstance(v, list):
        v = v[0] if v else None
    if v is None or isinstance(v, str | dt.datetime):
        return None
    v = float(v)
    if not math.isfinite(v) or abs(v - _NO_VALUE) < 1e-6:
        return None
    return v


def _orbit(el: MetadataElement | None) -> Orbit | None:
    osv = el.element("Orbit_State_Vectors") if el is not None else None
    if osv is None:
        return None
    times, pos, vel = [], [], []
    for v in osv.elements:
        t = v.get("time")
        xyz = [_number(v, k) for k in ("x_pos", "y_pos", "z_pos", "x_vel", "y_vel", "z_vel")]
        if not isinstance(t, dt.datetime) or any(x is None for x in xyz):
            continue
        times.append(t)
        pos.append(xyz[:3])
        vel.append(xyz[3:])
    if len(times) < 4:
        return None
    order = np.argsort(np.array([(t - times[0]).total_seconds() for t in times]))
    times = [times[k] for k in order]
    epoch = times[0]
    try:
        return Orbit(epoch, np.array([(t - epoch).total_seconds() for t in times]),
                     np.array(pos)[order], np.array(vel)[order], "SNAP metadata")
    except InputError:
        return None


def _orbit_bperp(ref: Orbit, sec: Orbit, ground: np.ndarray, lat: float, lon: float
                 ) -> float | None:
    """Perpendicular baseline (m, secondary minus reference) for one ground point."""
    try:
        pr = ref.polynomial(ref.t[0], ref.t[-1], margin=0.0)
        ps = sec.polynomial(sec.t[0], sec.t[-1], margin=0.0)
        tr, _ = geo2rdr(ground[None], pr.coef, pr.t_mid, pr.t_scale, t_guess=pr.t_mid)
        ts, _ = geo2rdr(ground[None], ps.coef, ps.t_mid, ps.t_scale, t_guess=ps.t_mid)
    except (InputError, ValueError):
        return None
    if not (pr.t_start <= tr[0] <= pr.t_end and ps.t_start <= ts[0] <= ps.t_end):
        return None
    s0, s1 = pr.position(tr[0]), ps.position(ts[0])
    u = (ground - s0) / np.linalg.norm(ground - s0)
    up = llh_to_ecef(lat, lon, 1.0) - llh_to_ecef(lat, lon, 0.0)
    up = up / np.linalg.norm(up)
    nperp = up - (up @ u) * u
    nperp /= np.linalg.norm(nperp)
    return float((s1 - s0) @ nperp)


def _pairs(product: SnapProduct) -> list[tuple[str, str, str]]:
    """(i band, q band, tag) of every complex pair of a product."""
    out = []
    for name in product.bands:
        if name.startswith("i_") and f"q_{name[2:]}" in product.bands:
            out.append((name, f"q_{name[2:]}", name[2:]))
    return out


def _pol_of(tag: str) -> str:
    parts = tag.upper().split("_")
    pols = [p for p in parts if p in _POLS]
    return pols[0] if pols else ""


def is_snap_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds SNAP products."""
    return bool(find_snap_products(folder))


# ---------------------------------------------------------------- reading


def _date_element(product: SnapProduct, tag_date: str, am: MetadataElement
                  ) -> tuple[MetadataElement, str]:
    """The metadata element of the acquisition with SNAP date tag ``tag_date``."""
    t = am.get("first_line_time")
    if isinstance(t, dt.datetime) and _snap_tag(t).upper() == tag_date.upper():
        return am, "reference"
    hits = []
    sm = product.metadata.element("Slave_Metadata") or product.metadata.find("Slave_Metadata")
    for el in (sm.elements if sm is not None else []):
        ts = el.get("first_line_time")
        if isinstance(ts, dt.datetime) and _snap_tag(ts).upper() == tag_date.upper():
            hits.append(el)
    if len(hits) != 1:
        what = "no" if not hits else f"{len(hits)}"
        raise InputError(f"{product.label}: {what} acquisition of {tag_date} in the SNAP "
                         "metadata (Abstracted_Metadata, Slave_Metadata): missing metadata")
    return hits[0], "secondary"


def _baseline(am: MetadataElement, ref_tag: str, tag: str) -> float | None:
    bl = am.element("Baselines")
    ref = bl.element(f"Ref_{ref_tag}") if bl is not None else None
    sec = ref.element(f"Secondary_{tag}") if ref is not None else None
    return _number(sec, "Perp Baseline")


def _geometry(product: SnapProduct, am: MetadataElement, label: str
              ) -> tuple[float, float, float, float, dict[str, str]]:
    """Wavelength, incidence (deg) and slant range (m) at the centre, heading (deg)."""
    src: dict[str, str] = {}
    freq = _number(am, "radar_frequency")
    unit = am.units.get("radar_frequency", "MHz").lower()
    if freq is None:
        raise InputError(f"{label}: missing metadata radar_frequency (the wavelength)")
    freq *= {"mhz": 1e6, "ghz": 1e9, "hz": 1.0}.get(unit, 1e6)
    wavelength = SPEED_OF_LIGHT / freq
    if not 0.005 < wavelength < 1.0:
        raise InputError(f"{label}: radar_frequency {freq:.4g} Hz is not a radar band")
    cy, cx = 0.5 * (product.height - 1), 0.5 * (product.width - 1)
    grids = product.tie_point_grids
    if "incident_angle" in grids:
        inc = float(grids["incident_angle"].at(np.array(cy), np.array(cx)))
        src["incidence"] = "tie-point grid incident_angle at the scene centre"
    else:
        near, far = _number(am, "incidence_near"), _number(am, "incidence_far")
        if near is None or far is None:
            raise InputError(f"{label}: missing metadata: no incident_angle tie-point grid "
                             "and no incidence_near/incidence_far")
        inc = 0.5 * (near + far)
        src["incidence"] = "mean of incidence_near and incidence_far"
    if "slant_range_time" in grids:
        t = float(grids["slant_range_time"].at(np.array(cy), np.array(cx)))
        scale = {"ns": 1e-9, "s": 1.0, "us": 1e-6}.get(grids["slant_range_time"].unit.lower(),
                                                        1e-9)
        slant = 0.5 * SPEED_OF_LIGHT * t * scale
        src["slant_range"] = "tie-point grid slant_range_time at the scene centre"
    else:
        r0, dr = _number(am, "slant_range_to_first_pixel"), _number(am, "range_spacing")
        if r0 is None or dr is None:
            raise InputError(f"{label}: missing metadata: no slant_range_time tie-point grid "
                             "and no slant_range_to_first_pixel/range_spacing")
        slant = r0 + dr * cx
        src["slant_range"] = "slant_range_to_first_pixel + range_spacing x centre column"
    heading = _number(am, "centre_heading")
    if heading is None:
        raise InputError(f"{label}: missing metadata centre_heading")
    heading = (heading + 180.0) % 360.0 - 180.0
    if not 0 < inc < 90 or not 1e5 < slant < 5e6:
        raise InputError(f"{label}: implausible geometry (incidence {inc:.2f} deg, slant "
                         f"range {slant:.0f} m)")
    return wavelength, inc, slant, heading, src


def _latlon(products: list[SnapProduct], pol: str) -> tuple[np.ndarray, np.ndarray, str]:
    def pick(p: SnapProduct, pattern: str) -> str | None:
        names = [n for n in p.bands if re.fullmatch(rf"{pattern}(_.*)?", n, re.IGNORECASE)]
        names.sort(key=lambda n: (pol.upper() not in n.upper(), n))
        return names[0] if names else None

    for p in products:
        la, lo = pick(p, "lat(itude)?"), pick(p, "lon(gitude)?")
        if la and lo:
            lat = p.bands[la].read().astype(np.float64)
            lon = p.bands[lo].read().astype(np.float64)
            return lat, lon, f"bands {la}/{lo} of {p.label}"
    for p in products:
        g = p.tie_point_grids
        if "latitude" in g and "longitude" in g:
            lat = g["latitude"].full(p.height, p.width)
            lon = g["longitude"].full(p.height, p.width)
            return lat, lon, f"tie-point grids latitude/longitude of {p.label}"
    raise InputError("no per-pixel latitude/longitude in the SNAP products (neither "
                     "latitude/longitude bands nor tie-point grids): missing metadata")


def read_snap_stack(folder: str | Path, polarisation: str | None = None) -> SnapStack:
    """Find, read and check the SNAP products of ``folder`` (nothing is written).

    Raises
    ------
    InputError
        Naming the product and the problem: no product, a product without i/q bands,
        products of different sizes or coregistered on different references, a date
        without metadata (time, baseline), a missing polarisation, fewer than 2 dates.

    """
    folder = Path(folder)
    paths = find_snap_products(folder)
    if not paths:
        raise InputError(f"no SNAP product (*.dim, *.znap, *.znap.zip) in {folder}")
    products: list[SnapProduct] = []
    try:
        for p in paths:
            products.append(open_snap(p))
        return _read(products, polarisation)
    finally:
        for p in products:
            p.close()


def _read(products: list[SnapProduct], polarisation: str | None) -> SnapStack:
    first = products[0]
    am0 = first.abstracted()
    ref_time = am0.get("first_line_time")
    if not isinstance(ref_time, dt.datetime):
        raise InputError(f"{first.label}: missing metadata first_line_time")
    ref_name = str(am0.get("PRODUCT", ""))
    candidates: list[tuple[SnapProduct, str, str, str, str]] = []
    for p in products:
        if (p.width, p.height) != (first.width, first.height):
            raise InputError(f"{p.label}: raster {p.width}x{p.height} differs from "
                             f"{first.label} ({first.width}x{first.height}): the products "
                             "must be coregistered on one grid (mixed sizes)")
        am = p.abstracted()
        if am.get("first_line_time") != ref_time or str(am.get("PRODUCT", "")) != ref_name:
            raise InputError(f"{p.label}: coregistered on another reference or subset than "
                             f"{first.label} ({am.get('PRODUCT')} {am.get('first_line_time')} "
                             f"vs {ref_name} {ref_time})")
        for key in ("subset_offset_x", "subset_offset_y"):
            if _number(am, key) != _number(am0, key):
                raise InputError(f"{p.label}: {key} differs from {first.label}: another "
                                 "subset of the reference (mixed grids)")
        if _number(am, "coregistered_stack") != 1:
            raise InputError(f"{p.label}: not a coregistered stack (SNAP's "
                             "coregistered_stack flag is not set): coregister with SNAP "
                             "(Back-Geocoding or Create Stack) first")
        pairs = _pairs(p)
        if not pairs:
            raise InputError(f"{p.label}: no i_*/q_* band pair (complex SLC samples); bands: "
                             f"{', '.join(sorted(p.bands)) or 'none'}")
        for i, q, tag in pairs:
            m = _DATE_TAG.search(tag)
            if not m:
                raise InputError(f"{p.label}: band {i} has no SNAP date suffix (_ddMonYYYY)")
            candidates.append((p, i, q, tag, m.group(0)[1:]))
    pols = sorted({_pol_of(c[3]) for c in candidates})
    if polarisation:
        pol = polarisation.upper()
        if pol not in pols:
            raise InputError(f"polarisation {pol} is not in the SNAP products (they hold "
                             f"{', '.join(p or '?' for p in pols)})")
    else:
        pol = next((p for p in _POLS if p in pols), pols[0])
    wavelength, inc, slant, heading, geo_src = _geometry(first, am0, first.label)
    lat, lon, ll_src = _latlon(products, pol)
    if not (np.all(np.isfinite(lat)) and np.abs(lat).max() <= 90 and np.abs(lon).max() <= 360):
        raise InputError("the SNAP latitude/longitude hold invalid values")
    cy, cx = lat.shape[0] // 2, lat.shape[1] // 2
    height_c = _number(am0, "avg_scene_height") or 0.0
    ground = llh_to_ecef(lat[cy, cx], lon[cy, cx], height_c)
    ref_orbit = _orbit(am0)
    ref_tag = _snap_tag(ref_time)
    acqs: dict[dt.date, SnapAcquisition] = {}
    duplicates = []
    for p, i, q, tag, date_tag in candidates:
        if _pol_of(tag) != pol:
            continue
        am = p.abstracted()
        el, role = _date_element(p, date_tag, am)
        t = el.get("first_line_time")
        assert isinstance(t, dt.datetime)
        if role == "reference":
            bperp_orb: float | None = 0.0
        else:
            sec_orbit = _orbit(el)
            bperp_orb = (_orbit_bperp(ref_orbit, sec_orbit, ground, lat[cy, cx], lon[cy, cx])
                         if ref_orbit is not None and sec_orbit is not None else None)
        bperp = _baseline(am, ref_tag, date_tag)
        source = f"Baselines/Ref_{ref_tag}/Secondary_{date_tag}/Perp Baseline"
        if bperp is None and role == "reference":
            bperp, source = 0.0, "the reference"
        if bperp is None and bperp_orb is not None:
            bperp, source = bperp_orb, "orbit state vectors of the SNAP metadata"
        if bperp is None:
            raise InputError(f"{p.label}: missing metadata: no perpendicular baseline for "
                             f"{date_tag} (no Baselines element, no orbit state vectors)")
        acq = SnapAcquisition(product=p.path, i_band=i, q_band=q, polarisation=pol, time=t,
                              role=role, source=str(el.get("PRODUCT", el.name)), bperp=bperp,
                              bperp_source=source, bperp_orbits=bperp_orb)
        if acq.date in acqs:
            other = acqs[acq.date]
            if other.time != acq.time:
                raise InputError(f"{p.label}: two acquisitions on {acq.date} ({other.time} in "
                                 f"{other.product.name}, {acq.time}): one per date")
            duplicates.append(f"{acq.date} in {p.path.name} (kept {other.product.name})")
            continue
        acqs[acq.date] = acq
    ordered = [acqs[d] for d in sorted(acqs)]
    if len(ordered) < 2:
        raise InputError(f"a stack needs at least 2 dates, the SNAP products hold "
                         f"{len(ordered)} in {pol}")
    return SnapStack(products=[p.path for p in products], acquisitions=ordered,
                     width=first.width, height=first.height, reference=ref_name,
                     reference_time=ref_time, wavelength=wavelength, incidence_deg=inc,
                     slant_range=slant, heading_deg=heading, lat=lat, lon=lon,
                     latlon_source=ll_src, geometry_sources=geo_src, duplicates=duplicates)


# ---------------------------------------------------------------- writing


def snap_imported(folder: str | Path, out: str | Path) -> bool:
    """Whether ``out`` already holds the stack imported from the products of ``folder``."""
    report = Path(out) / SNAP_REPORT
    if not report.is_file():
        return False
    try:
        done = json.loads(report.read_text())["products"]
    except (OSError, ValueError, KeyError):
        return False
    return sorted(done) == sorted(p.name for p in find_snap_products(folder))


def _write_slc(path: Path, product: SnapProduct, acq: SnapAcquisition, rows: int,
               tags: dict[str, str]) -> None:
    i_band, q_band = product.bands[acq.i_band], product.bands[acq.q_band]
    with warnings.catch_warnings(), \
            rasterio.open(path, "w", driver="GTiff", width=product.width,
                          height=product.height, count=1, dtype="complex64", tiled=True,
                          blockxsize=256, blockysize=256) as ds:
        # radar geometry: no georeferencing, as for every stack in radar coordinates
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for r0 in range(0, product.height, rows):
            r1 = min(product.height, r0 + rows)
            i = i_band.read(r0, r1).astype(np.float32)
            q = q_band.read(r0, r1).astype(np.float32)
            if not (np.all(np.isfinite(i)) and np.all(np.isfinite(q))):
                bad = ~(np.isfinite(i) & np.isfinite(q))
                i, q = np.where(bad, 0, i), np.where(bad, 0, q)
            ds.write((i + 1j * q).astype(np.complex64), 1,
                     window=rasterio.windows.Window(0, r0, product.width, r1 - r0))
        ds.update_tags(**tags)


def import_snap(cfg: SnapImportConfig, progress: Progress | None = None) -> Path:
    """Write the stack of the SNAP products of ``cfg.folder`` into ``cfg.out``.

    Returns the stack folder. Nothing is left in ``cfg.out`` unless every date was
    written (a hidden ``.NAME.partial`` folder is renamed at the end).

    Raises
    ------
    InputError
        See :func:`read_snap_stack`; also when ``cfg.out`` exists and is not empty.

    """
    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(fraction, message)

    stack = read_snap_stack(cfg.folder, cfg.polarisation)
    final = Path(cfg.out)
    rows = max(1, cfg.block_mb * 2**20 // (16 * stack.width))
    b0 = stack.acquisitions[0].bperp
    with writing_stack(final) as out:
        opened: dict[Path, SnapProduct] = {}
        try:
            for k, acq in enumerate(stack.acquisitions):
                product = opened.get(acq.product) or open_snap(acq.product)
                opened[acq.product] = product
                tags = {"ACQUISITION_DATE": acq.date.isoformat(),
                        "WAVELENGTH": repr(stack.wavelength),
                        "PERPENDICULAR_BASELINE": f"{acq.bperp - b0:.4f}",
                        "INCIDENCE_ANGLE": f"{stack.incidence_deg:.5f}",
                        "SLANT_RANGE": f"{stack.slant_range:.3f}",
                        "HEADING": f"{stack.heading_deg:.5f}",
                        "SOURCE_PRODUCT": acq.source, "SNAP_PRODUCT": acq.product.name,
                        "SNAP_BANDS": f"{acq.i_band},{acq.q_band}",
                        "POLARISATION": acq.polarisation,
                        "FIRST_LINE_TIME": acq.time.isoformat()}
                _write_slc(out / f"slc_{acq.date:%Y%m%d}.tif", product, acq, rows, tags)
                report((k + 1) / len(stack.acquisitions), f"imported {acq.date}")
        finally:
            for p in opened.values():
                p.close()
        np.savez_compressed(out / SNAP_GEOMETRY, lat=stack.lat, lon=stack.lon)
        rep = {
            "products": sorted(p.name for p in stack.products),
            "reference": stack.reference, "reference_time": stack.reference_time.isoformat(),
            "polarisation": stack.acquisitions[0].polarisation,
            "grid": {"rows": stack.height, "cols": stack.width},
            "wavelength_m": stack.wavelength, "incidence_deg": stack.incidence_deg,
            "slant_range_m": stack.slant_range, "heading_deg": stack.heading_deg,
            "geometry_sources": {**stack.geometry_sources, "latlon": stack.latlon_source},
            "acquisitions": [{
                "date": a.date.isoformat(), "first_line_time": a.time.isoformat(),
                "role": a.role, "source": a.source, "snap_product": a.product.name,
                "bands": [a.i_band, a.q_band],
                "perpendicular_baseline_m": round(a.bperp - b0, 4),
                "baseline_source": a.bperp_source,
                "baseline_from_orbits_m": (None if a.bperp_orbits is None
                                           else round(a.bperp_orbits - b0, 4)),
            } for a in stack.acquisitions],
            "duplicates_skipped": stack.duplicates,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        (out / SNAP_REPORT).write_text(json.dumps(rep, indent=2))
    return final


def import_snap_inputs(sources: list[Path], inputs_dir: Path,
                       progress: Progress | None = None) -> Path | None:
    """A job's input files -> its stack, when they are SNAP products (else None).

    The products (zips of a ``.dim`` or ``.znap.zip``, or folders) are linked into
    ``inputs_dir/snap`` and imported into ``inputs_dir/stack`` (skipped when an earlier
    attempt of the job imported the same products).

    Raises
    ------
    InputError
        When SNAP products and other files are mixed, or the products are bad input.

    """
    snap = [p for p in sources if is_snap_product(p)]
    if not snap:
        return None
    if len(snap) < len(sources):
        others = ", ".join(p.name for p in sources if p not in snap)
        raise InputError(f"SNAP products mixed with other files ({others}): give one kind")
    folder = inputs_dir / "snap"
    folder.mkdir(parents=True, exist_ok=True)
    for src in snap:
        dest = folder / src.name
        if not dest.exists():
            dest.symlink_to(src.resolve())
    out = inputs_dir / "stack"
    if snap_imported(folder, out):
        return out
    if out.exists():
        shutil.rmtree(out)
    return import_snap(SnapImportConfig(folder=folder, out=out), progress=progress)


# ---------------------------------------------------------------- geocoding


def radar_coordinates_latlon(lat: np.ndarray, lon: np.ndarray, grid, iterations: int = 3
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Fractional stack (row, col) of every map pixel centre, from per-pixel lat/lon.

    The radar pixels' map coordinates are triangulated on a decimated grid (linear
    interpolation of row/col), then refined by Newton steps on the bilinear
    interpolation of the full-resolution map coordinates. NaN outside the stack.
    """
    from pyproj import Transformer
    from scipy.interpolate import LinearNDInterpolator
    from scipy.ndimage import map_coordinates

    ny, nx = lat.shape
    to_map = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    x, y = to_map.transform(lon, lat)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    step = max(1, int(math.ceil(math.sqrt(ny * nx / 200_000))))
    rr = np.unique(np.r_[np.arange(0, ny, step), ny - 1])
    cc = np.unique(np.r_[np.arange(0, nx, step), nx - 1])
    gr, gc = np.meshgrid(rr, cc, indexing="ij")
    interp = LinearNDInterpolator(np.column_stack([x[gr, gc].ravel(), y[gr, gc].ravel()]),
                                  np.column_stack([gr.ravel(), gc.ravel()]).astype(float))
    mx, my = grid.centres()
    rc = interp(np.column_stack([mx.ravel(), my.ravel()]))
    rows, cols = rc[:, 0].copy(), rc[:, 1].copy()
    ok = np.isfinite(rows)
    tx, ty = mx.ravel()[ok], my.ravel()[ok]
    r, c = rows[ok], cols[ok]
    h = 0.25

    def xy(rq, cq):
        coords = np.vstack([np.clip(rq, 0, ny - 1), np.clip(cq, 0, nx - 1)])
        return (map_coordinates(x, coords, order=1, mode="nearest"),
                map_coordinates(y, coords, order=1, mode="nearest"))

    def misfit(rq, cq):
        xq, yq = xy(rq, cq)
        return np.hypot(xq - tx, yq - ty)

    r_lin, c_lin = r.copy(), c.copy()
    for _ in range(iterations):
        x0, y0 = xy(r, c)
        xr, yr = xy(r + h, c)
        xc, yc = xy(r, c + h)
        a, b = (xr - x0) / h, (xc - x0) / h
        cc_, d = (yr - y0) / h, (yc - y0) / h
        det = a * d - b * cc_
        det = np.where(np.abs(det) < 1e-12, np.nan, det)
        ex, ey = tx - x0, ty - y0
        r = r + (d * ex - b * ey) / det
        c = c + (-cc_ * ex + a * ey) / det
    # where Newton strays (a fold of the lat/lon field), keep the better of the two, and
    # drop map pixels that no radar position reaches within half a map pixel
    m_newton = np.where(np.isfinite(r) & np.isfinite(c), misfit(r, c), np.inf)
    m_lin = misfit(r_lin, c_lin)
    worse = m_newton > m_lin
    r[worse], c[worse] = r_lin[worse], c_lin[worse]
    far = np.minimum(m_newton, m_lin) > 0.5 * abs(grid.transform.a)
    r[far], c[far] = np.nan, np.nan
    rows[ok], cols[ok] = r, c
    inside = (rows >= -0.5) & (rows <= ny - 0.5) & (cols >= -0.5) & (cols <= nx - 0.5)
    rows[~inside] = np.nan
    cols[~inside] = np.nan
    return rows.reshape(mx.shape), cols.reshape(mx.shape)


def geocode_snap_products(product_dir: str | Path, stack_dir: str | Path,
                          out_dir: str | Path, crs: str | None = None,
                          spacing: float | None = None,
                          names: tuple[str, ...] | None = None) -> list[Path]:
    """Geocode GDM-SAR products of a SNAP-imported stack with SNAP's per-pixel lat/lon."""
    from insar.geocode import GEOCODED, geocode_raster, map_grid

    product_dir = Path(product_dir)
    try:
        with np.load(Path(stack_dir) / SNAP_GEOMETRY) as npz:
            lat, lon = npz["lat"], npz["lon"]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{stack_dir}: no SNAP geometry ({exc})") from None
    try:
        report = json.loads((product_dir / "report.json").read_text())
        looks = tuple(int(v) for v in report["grid"]["looks"])
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{product_dir}: no GDM-SAR report.json with the looks ({exc})") \
            from None
    grid = map_grid(SimpleNamespace(lat=lat, lon=lon, shape=lat.shape),  # type: ignore[arg-type]
                    looks, crs, spacing)
    rows, cols = radar_coordinates_latlon(lat, lon, grid)
    written = []
    for name in names or GEOCODED:
        src = product_dir / name
        if src.is_file():
            written.append(geocode_raster(src, Path(out_dir) / name, rows, cols, looks,  # type: ignore[arg-type]
                                          grid))
    return written
