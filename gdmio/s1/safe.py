"""Sentinel-1 IW SLC SAFE products (folders or zips): manifest, annotation, bursts.

:func:`open_safe` reads the manifest (mission, mode, product type, orbit numbers, pass)
and every swath annotation (``annotation/s1?-iw?-slc-??-*.xml``): timing, radar
parameters, burst list with valid-sample ranges, Doppler centroid and azimuth FM rate
estimates, geolocation grid and the annotation's own orbit state vectors. Measurement
rasters are read burst by burst (``/vsizip/`` for zips).

Burst IDs follow ESA's convention (Sentinel-1 Level-1 Detailed Algorithm Definition,
table 9-7): with the nominal orbit ``T_orb = 12 d / 175``, beam cycle ``T_beam`` and
preamble ``T_pre``, a burst whose sensing time is ``dt`` seconds after the ascending
node on relative orbit ``r`` has ID ``1 + floor(((r - 1) T_orb + dt - T_pre) / T_beam)``.
The same ground area has the same burst ID (and swath) on every date of a track.

Naive datetimes are UTC.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from lxml import etree
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from gdmcore import InputError
from gdmio.s1.orbit import Orbit, parse_time

__all__ = ["Burst", "SwathAnnotation", "SafeProduct", "open_safe", "find_products",
           "parse_annotation", "burst_id", "select_bursts", "BurstSelection",
           "choose_polarisation", "covering_bursts",
           "T_BEAM", "T_PRE", "T_ORB"]

T_BEAM = 2.758273
T_PRE = 2.299849
T_ORB = 12 * 24 * 3600 / 175
_N_ORBITS = 175
SPEED_OF_LIGHT = 299792458.0
_ANNOTATION = re.compile(r"annotation/(s1[abcd])-(iw[1-3]|ew[1-5]|s[1-6]|wv[12])-(slc|grd)-"
                         r"(hh|hv|vv|vh)-.*\.xml$", re.IGNORECASE)


def burst_id(relative_orbit: int, seconds_after_anx: float) -> int:
    """ESA burst ID of a burst sensed ``seconds_after_anx`` after the ascending node."""
    t = (relative_orbit - 1) * T_ORB + seconds_after_anx - T_PRE
    t = math.fmod(t, _N_ORBITS * T_ORB)
    if t < 0:
        t += _N_ORBITS * T_ORB
    return 1 + int(math.floor(t / T_BEAM))


@dataclass(frozen=True)
class Burst:
    """One burst of a swath; lines/samples are in the measurement raster."""

    swath: str
    polarisation: str
    index: int
    burst_id: int
    azimuth_time: dt.datetime  # first line
    sensing_time: dt.datetime
    azimuth_anx_time: float
    first_line: int  # row of the burst's first line in the measurement raster
    lines: int
    samples: int
    first_valid_line: int  # within the burst
    last_valid_line: int  # inclusive
    first_valid_sample: int
    last_valid_sample: int  # inclusive

    @property
    def key(self) -> str:
        """``IW1_123456``: what identifies the same ground area across dates."""
        return f"{self.swath}_{self.burst_id}"


@dataclass
class SwathAnnotation:
    """What the geometry and the coregistration need from one swath annotation."""

    mission: str
    mode: str
    product_type: str
    swath: str
    polarisation: str
    pass_direction: str
    start: dt.datetime
    stop: dt.datetime
    radar_frequency: float
    range_sampling_rate: float
    slant_range_time: float  # two-way, first sample (s)
    range_pixel_spacing: float
    azimuth_pixel_spacing: float
    azimuth_time_interval: float
    azimuth_steering_rate: float  # rad/s
    heading: float
    incidence_mid: float
    lines_per_burst: int
    samples_per_burst: int
    number_of_lines: int
    number_of_samples: int
    ascending_node_time: dt.datetime
    orbit_times: list[dt.datetime]
    orbit_pos: np.ndarray
    orbit_vel: np.ndarray
    bursts: list[Burst]
    dc: list[tuple[dt.datetime, float, np.ndarray]]  # (time, t0, data DC polynomial)
    fm: list[tuple[dt.datetime, float, np.ndarray]]  # (time, t0, FM rate polynomial)
    grid: dict[str, np.ndarray]  # geolocation grid: line, pixel, lat, lon, height, ...
    grid_times: list[dt.datetime]
    measurement: str = ""  # path rasterio opens
    annotation: str = ""

    @property
    def wavelength(self) -> float:
        """Radar wavelength (m)."""
        return SPEED_OF_LIGHT / self.radar_frequency

    def range_of(self, sample: np.ndarray | float) -> np.ndarray:
        """Slant range (m) of a (fractional) sample."""
        return 0.5 * SPEED_OF_LIGHT * (self.slant_range_time
                                       + np.asarray(sample, float) / self.range_sampling_rate)

    def sample_of(self, slant_range: np.ndarray | float) -> np.ndarray:
        """(Fractional) sample of a slant range (m)."""
        return (2.0 * np.asarray(slant_range, float) / SPEED_OF_LIGHT
                - self.slant_range_time) * self.range_sampling_rate

    def orbit(self, epoch: dt.datetime | None = None) -> Orbit:
        """The annotation's own state vectors as an :class:`Orbit`."""
        epoch = epoch or self.start
        t = np.array([(x - epoch).total_seconds() for x in self.orbit_times])
        return Orbit(epoch, t, self.orbit_pos, self.orbit_vel,
                     f"annotation {Path(self.annotation).name}")

    def nearest(self, table: list[tuple[dt.datetime, float, np.ndarray]], when: dt.datetime
                ) -> tuple[float, np.ndarray]:
        """(t0, polynomial) of the estimate nearest in time to ``when``."""
        best = min(table, key=lambda e: abs((e[0] - when).total_seconds()))
        return best[1], best[2]

    def read_burst(self, burst: Burst, cols: tuple[int, int] | None = None) -> np.ndarray:
        """The burst's samples (complex64, lines x samples); invalid margins are zero.

        ``cols`` = (first, stop) reads only those samples (all by default).
        """
        c0, c1 = (0, burst.samples) if cols is None else (max(0, cols[0]),
                                                             min(burst.samples, cols[1]))
        if c1 <= c0:
            raise ValueError(f"empty column window {cols}")
        win = Window(c0, burst.first_line, c1 - c0, burst.lines)
        try:
            with rasterio.open(self.measurement) as ds:
                if ds.width < c1 or ds.height < burst.first_line + burst.lines:
                    raise InputError(f"{Path(self.measurement).name}: {ds.width}x{ds.height} "
                                     f"raster too small for burst {burst.index} "
                                     f"({burst.samples} samples, lines {burst.first_line}.."
                                     f"{burst.first_line + burst.lines})")
                data = ds.read(1, window=win).astype(np.complex64)
        except RasterioIOError as exc:
            raise InputError(f"{self.measurement}: cannot read the measurement ({exc})") from None
        out = np.zeros_like(data)
        l0, l1 = burst.first_valid_line, burst.last_valid_line + 1
        s0 = max(burst.first_valid_sample - c0, 0)
        s1 = min(burst.last_valid_sample + 1 - c0, c1 - c0)
        if s1 > s0:
            out[l0:l1, s0:s1] = data[l0:l1, s0:s1]
        return out


@dataclass
class SafeProduct:
    """A Sentinel-1 SLC product and its swath annotations."""

    path: Path
    name: str
    platform: str
    mode: str
    product_type: str
    absolute_orbit: int
    relative_orbit: int
    pass_direction: str
    start: dt.datetime
    stop: dt.datetime
    swaths: dict[tuple[str, str], SwathAnnotation] = field(default_factory=dict)

    @property
    def polarisations(self) -> list[str]:
        """Polarisations with an annotation."""
        return sorted({p for _, p in self.swaths})

    def swath(self, swath: str, polarisation: str) -> SwathAnnotation:
        """One swath's annotation."""
        try:
            return self.swaths[(swath.upper(), polarisation.upper())]
        except KeyError:
            raise InputError(f"{self.name}: no {swath.upper()} {polarisation.upper()} "
                             f"annotation (has {sorted(self.swaths)})") from None


# ---------------------------------------------------------------- reading


class _Source:
    """Members of a SAFE folder or zip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            self.zip = None
            self.root = path
            self.members = [p.relative_to(path).as_posix() for p in path.rglob("*")
                            if p.is_file()]
        elif zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
            manifests = [n for n in names if n.endswith("manifest.safe")]
            if not manifests:
                raise InputError(f"{path.name}: zip without manifest.safe (not a SAFE product)")
            prefix = manifests[0][: -len("manifest.safe")]
            self.prefix = prefix
            self.members = [n[len(prefix):] for n in names if n.startswith(prefix)
                            and not n.endswith("/")]
        else:
            raise InputError(f"{path}: neither a SAFE folder nor a zip")

    def read(self, member: str) -> bytes:
        if self.zip is None:
            return (self.root / member).read_bytes()
        return self.zip.read(self.prefix + member)

    def gdal_path(self, member: str) -> str:
        if self.zip is None:
            return str(self.root / member)
        return f"/vsizip/{self.path}/{self.prefix}{member}"

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _xml(data: bytes, label: str) -> etree._Element:
    try:
        return etree.fromstring(data)
    except etree.XMLSyntaxError as exc:
        raise InputError(f"{label}: not XML ({exc})") from None


def _text(root: etree._Element, path: str, label: str) -> str:
    node = root.find(path)
    if node is None or node.text is None:
        raise InputError(f"{label}: missing {path.lstrip('./')}")
    return node.text.strip()


def _float(root: etree._Element, path: str, label: str) -> float:
    text = _text(root, path, label)
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{label}: {path} = {text!r} is not a number") from None


def _local(root: etree._Element, name: str) -> list[etree._Element]:
    return root.xpath(f".//*[local-name()='{name}']")


def _manifest(data: bytes, label: str) -> dict[str, str]:
    root = _xml(data, label)
    out: dict[str, str] = {}
    for key, name in (("number", "number"), ("mode", "mode"), ("product_type", "productType"),
                      ("pass", "pass"), ("start", "startTime"), ("stop", "stopTime")):
        nodes = _local(root, name)
        if nodes and nodes[0].text:
            out[key] = nodes[0].text.strip()
    for node in _local(root, "orbitNumber"):
        if node.get("type") == "start" and node.text:
            out["absolute_orbit"] = node.text.strip()
    for node in _local(root, "relativeOrbitNumber"):
        if node.get("type") == "start" and node.text:
            out["relative_orbit"] = node.text.strip()
    return out


def _ints(text: str | None) -> np.ndarray:
    return np.array(text.split(), dtype=np.int64) if text else np.zeros(0, np.int64)


def _floats(text: str | None) -> np.ndarray:
    return np.array(text.split(), dtype=np.float64) if text else np.zeros(0)


def parse_annotation(data: bytes, label: str, relative_orbit: int) -> SwathAnnotation:
    """Parse one swath annotation XML (``label`` names it in errors)."""
    root = _xml(data, label)
    if root.tag != "product":
        raise InputError(f"{label}: not a Sentinel-1 product annotation (root <{root.tag}>)")
    h = "adsHeader/"
    gi = "generalAnnotation/productInformation/"
    ii = "imageAnnotation/imageInformation/"
    mission = _text(root, h + "missionId", label)
    mode = _text(root, h + "mode", label)
    ptype = _text(root, h + "productType", label)
    swath = _text(root, h + "swath", label).upper()
    pol = _text(root, h + "polarisation", label).upper()
    lpb = int(_float(root, "swathTiming/linesPerBurst", label))
    spb = int(_float(root, "swathTiming/samplesPerBurst", label))
    orbits = root.findall("generalAnnotation/orbitList/orbit")
    otimes, opos, ovel = [], [], []
    for o in orbits:
        otimes.append(parse_time(_text(o, "time", label)))
        opos.append([_float(o, f"position/{k}", label) for k in "xyz"])
        ovel.append([_float(o, f"velocity/{k}", label) for k in "xyz"])
    anx = parse_time(_text(root, ii + "ascendingNodeTime", label))
    bursts = []
    for k, b in enumerate(root.findall("swathTiming/burstList/burst")):
        first = _ints(b.findtext("firstValidSample"))
        last = _ints(b.findtext("lastValidSample"))
        valid = np.flatnonzero((first >= 0) & (last >= 0))
        if valid.size == 0:
            raise InputError(f"{label}: burst {k} has no valid line")
        sensing = parse_time(_text(b, "sensingTime", label))
        anx_time = _float(b, "azimuthAnxTime", label)
        bid_node = b.find("burstId")
        bid = (int(bid_node.text) if bid_node is not None and bid_node.text
               else burst_id(relative_orbit, (sensing - anx).total_seconds()))
        bursts.append(Burst(
            swath=swath, polarisation=pol, index=k, burst_id=bid,
            azimuth_time=parse_time(_text(b, "azimuthTime", label)), sensing_time=sensing,
            azimuth_anx_time=anx_time, first_line=k * lpb, lines=lpb, samples=spb,
            first_valid_line=int(valid[0]), last_valid_line=int(valid[-1]),
            first_valid_sample=int(first[valid].max()),
            last_valid_sample=int(last[valid].min())))
    dc = []
    for e in root.findall("dopplerCentroid/dcEstimateList/dcEstimate"):
        dc.append((parse_time(_text(e, "azimuthTime", label)), _float(e, "t0", label),
                   _floats(e.findtext("dataDcPolynomial"))))
    fm = []
    for e in root.findall("generalAnnotation/azimuthFmRateList/azimuthFmRate"):
        poly = e.find("azimuthFmRatePolynomial")
        if poly is not None:
            coeffs = _floats(poly.text)
        else:  # IPF < 2.43: separate c0, c1, c2
            coeffs = np.array([_float(e, c, label) for c in ("c0", "c1", "c2")])
        fm.append((parse_time(_text(e, "azimuthTime", label)), _float(e, "t0", label), coeffs))
    pts = root.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
    grid_keys = ("slantRangeTime", "line", "pixel", "latitude", "longitude", "height",
                 "incidenceAngle")
    grid = {k: np.array([float(p.findtext(k) or "nan") for p in pts]) for k in grid_keys}
    grid_times = [parse_time(_text(p, "azimuthTime", label)) for p in pts]
    steering = _float(root, gi + "azimuthSteeringRate", label)
    ann = SwathAnnotation(
        mission=mission, mode=mode, product_type=ptype, swath=swath, polarisation=pol,
        pass_direction=_text(root, gi + "pass", label),
        start=parse_time(_text(root, h + "startTime", label)),
        stop=parse_time(_text(root, h + "stopTime", label)),
        radar_frequency=_float(root, gi + "radarFrequency", label),
        range_sampling_rate=_float(root, gi + "rangeSamplingRate", label),
        slant_range_time=_float(root, ii + "slantRangeTime", label),
        range_pixel_spacing=_float(root, ii + "rangePixelSpacing", label),
        azimuth_pixel_spacing=_float(root, ii + "azimuthPixelSpacing", label),
        azimuth_time_interval=_float(root, ii + "azimuthTimeInterval", label),
        azimuth_steering_rate=math.radians(steering),
        heading=_float(root, gi + "platformHeading", label),
        incidence_mid=_float(root, ii + "incidenceAngleMidSwath", label),
        lines_per_burst=lpb, samples_per_burst=spb,
        number_of_lines=int(_float(root, ii + "numberOfLines", label)),
        number_of_samples=int(_float(root, ii + "numberOfSamples", label)),
        ascending_node_time=anx, orbit_times=otimes,
        orbit_pos=np.array(opos).reshape(-1, 3), orbit_vel=np.array(ovel).reshape(-1, 3),
        bursts=bursts, dc=dc, fm=fm, grid=grid, grid_times=grid_times, annotation=label)
    return ann


def open_safe(path: str | Path, polarisations: tuple[str, ...] | None = None) -> SafeProduct:
    """Read a Sentinel-1 IW SLC product (``.SAFE`` folder or zip).

    Raises
    ------
    InputError
        When the path is not a SAFE product, is not an SLC, is of another mode than IW
        (EW, SM, WV), or its annotation is missing or malformed.

    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"SAFE product not found: {path}")
    src = _Source(path)
    try:
        name = path.name.removesuffix(".zip").removesuffix(".SAFE")
        if "manifest.safe" not in src.members:
            raise InputError(f"{path.name}: no manifest.safe (not a SAFE product)")
        man = _manifest(src.read("manifest.safe"), f"{path.name}/manifest.safe")
        mode = man.get("mode", "")
        ptype = man.get("product_type", "")
        if ptype and ptype != "SLC":
            raise InputError(f"{name}: product type {ptype}, only SLC products can be "
                             "ingested")
        if mode != "IW":
            raise InputError(f"{name}: acquisition mode {mode or 'unknown'}, only IW "
                             "(TOPS interferometric wide swath) SLC products are supported")
        try:
            rel = int(man["relative_orbit"])
            absolute = int(man["absolute_orbit"])
        except (KeyError, ValueError):
            raise InputError(f"{name}: manifest without orbit numbers") from None
        start = parse_time(man["start"]) if "start" in man else dt.datetime.min
        stop = parse_time(man["stop"]) if "stop" in man else dt.datetime.min
        product = SafeProduct(path=path, name=name, platform=f"S1{man.get('number', 'A')}",
                              mode=mode, product_type=ptype or "SLC", absolute_orbit=absolute,
                              relative_orbit=rel, pass_direction=man.get("pass", "").upper(),
                              start=start, stop=stop)
        members = sorted(m for m in src.members if _ANNOTATION.search(m)
                         and "/calibration/" not in m and "/rfi/" not in m)
        if not members:
            raise InputError(f"{name}: no swath annotation in annotation/")
        for member in members:
            pol = _ANNOTATION.search(member).group(4).upper()  # type: ignore[union-attr]
            if polarisations and pol not in polarisations:
                continue
            ann = parse_annotation(src.read(member), f"{name}/{member}", rel)
            if ann.mode != "IW" or not ann.swath.startswith("IW"):
                raise InputError(f"{name}: annotation of mode {ann.mode}, only IW is supported")
            if ann.product_type != "SLC":
                raise InputError(f"{name}: annotation of a {ann.product_type} product, "
                                 "not SLC")
            tiff = "measurement/" + Path(member).name.removesuffix(".xml") + ".tiff"
            if tiff not in src.members:
                raise InputError(f"{name}: measurement {tiff} is missing")
            ann.measurement = src.gdal_path(tiff)
            product.swaths[(ann.swath, ann.polarisation)] = ann
        if not product.swaths:
            raise InputError(f"{name}: no annotation for polarisation(s) {polarisations}")
        return product
    finally:
        src.close()


def find_products(folder: str | Path) -> list[Path]:
    """SAFE folders and S1 zips directly inside ``folder`` (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if (p.is_dir() and p.suffix.upper() == ".SAFE")
                  or (p.is_file() and p.suffix.lower() == ".zip" and p.name.startswith("S1")))


# ---------------------------------------------------------------- burst selection


def _burst_footprint(ann: SwathAnnotation, burst: Burst):
    """Lon/lat polygon of a burst's valid area, interpolated in the geolocation grid."""
    from scipy.interpolate import LinearNDInterpolator
    from shapely.geometry import Polygon

    g = ann.grid
    pts = np.column_stack([g["line"], g["pixel"]])
    f = LinearNDInterpolator(pts, np.column_stack([g["longitude"], g["latitude"]]))
    l0 = burst.first_line + burst.first_valid_line
    l1 = burst.first_line + burst.last_valid_line
    s0, s1 = burst.first_valid_sample, burst.last_valid_sample
    lmax, smax = g["line"].max(), g["pixel"].max()
    ss = np.linspace(s0, min(s1, smax), 8)
    ring = [(min(l0, lmax), s) for s in ss] + [(min(l1, lmax), s) for s in ss[::-1]]
    xy = f(np.array(ring))
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if len(xy) < 3:
        raise InputError(f"{ann.annotation}: geolocation grid does not cover burst "
                         f"{burst.index}")
    return Polygon(xy)


def covering_bursts(bursts: Iterable[tuple[SwathAnnotation, Burst]], aoi=None
                    ) -> tuple[list[Burst], float]:
    """The bursts (with their swath's annotation) whose footprint meets ``aoi``.

    Returns them in order with the area of ``aoi`` they cover (degrees squared); without
    an AOI, every burst and the area of their footprints.
    """
    chosen: list[Burst] = []
    area = 0.0
    for ann, b in bursts:
        fp = _burst_footprint(ann, b)
        if aoi is None:
            chosen.append(b)
            area += fp.area
        elif fp.intersects(aoi):
            chosen.append(b)
            area += fp.intersection(aoi).area
    return chosen, area


@dataclass
class BurstSelection:
    """Bursts chosen for a job: the same burst keys on every date."""

    swath: str
    polarisation: str
    keys: list[str]
    products: list[SafeProduct]
    bursts: list[list[Burst]]  # [date][burst], same order as keys

    @property
    def dates(self) -> list[dt.date]:
        """Acquisition dates (UTC) of the products."""
        return [p.start.date() for p in self.products]


def choose_polarisation(common: set[str], polarisation: str | None = None) -> str:
    """The polarisation to process among those that every product has (``common``).

    ``polarisation`` if given (any case), else the first of VV, HH, VH, HV there.

    Raises
    ------
    InputError
        ``polarisation`` is not common to every product, or there is no common one.

    """
    if polarisation:
        if polarisation.upper() not in common:
            raise InputError(f"polarisation {polarisation.upper()} is not in every product "
                             f"(common: {sorted(common) or 'none'})")
        return polarisation.upper()
    if not common:
        raise InputError("the products share no polarisation")
    return next(p for p in ("VV", "HH", "VH", "HV") if p in common)


def select_bursts(products: list[SafeProduct], aoi=None, swath: str | None = None,
                  polarisation: str | None = None) -> BurstSelection:
    """Choose the bursts covering ``aoi`` (a shapely geometry in lon/lat) on every date.

    Products are sorted by date. The swath is the one whose bursts cover most of the
    AOI on the first date (or ``swath``); bursts are matched across dates by burst ID.

    Raises
    ------
    InputError
        Fewer than two products, mixed tracks (relative orbit or pass), two products on
        the same date, no common polarisation, no burst covering the AOI, or a date that
        lacks one of the chosen bursts.

    """
    if len(products) < 2:
        raise InputError(f"a stack needs at least 2 SAFE products, got {len(products)}")
    products = sorted(products, key=lambda p: p.start)
    tracks = sorted({(p.relative_orbit, p.pass_direction) for p in products})
    if len(tracks) > 1:
        desc = ", ".join(f"relative orbit {r} {d.lower()}" for r, d in tracks)
        raise InputError(f"mixed tracks: {desc}; one track per stack")
    dates = [p.start.date() for p in products]
    dups = sorted({str(d) for d in dates if dates.count(d) > 1})
    if dups:
        raise InputError(f"two products on the same date ({', '.join(dups)}): assemble "
                         "slices first or give one product per date")
    pols = set(products[0].polarisations)
    for p in products[1:]:
        pols &= set(p.polarisations)
    pol = choose_polarisation(pols, polarisation)
    ref = products[0]
    swaths = sorted({s for s, p in ref.swaths if p == pol})
    if swath:
        if swath.upper() not in swaths:
            raise InputError(f"{ref.name}: no swath {swath.upper()} (has {swaths})")
        swaths = [swath.upper()]
    best: tuple[float, str, list[Burst]] | None = None
    for sw in swaths:
        ann = ref.swath(sw, pol)
        chosen, area = covering_bursts(((ann, b) for b in ann.bursts), aoi)
        if chosen and (best is None or area > best[0]):
            best = (area, sw, chosen)
    if best is None:
        raise InputError(f"no burst of {ref.name} ({', '.join(swaths)} {pol}) covers the AOI "
                         f"{aoi.bounds if aoi is not None else ''}")
    _, sw, chosen = best
    keys = [b.key for b in chosen]
    per_date = [chosen]
    for p in products[1:]:
        by_key = {b.key: b for b in p.swath(sw, pol).bursts}
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise InputError(f"{p.name}: burst(s) {', '.join(missing)} of the reference "
                             f"{ref.name} are missing (the product does not cover the AOI)")
        per_date.append([by_key[k] for k in keys])
    return BurstSelection(swath=sw, polarisation=pol, keys=keys, products=products,
                          bursts=per_date)
