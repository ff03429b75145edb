"""GAMMA unwrapped interferograms: binary ``*.unw`` or GeoTIFF, with ``.par`` headers.

GAMMA writes headerless rasters in big-endian byte order: ``*.unw`` float32 unwrapped
phase in radians (0 = not unwrapped), ``*.cc`` float32 coherence. Their size and
geometry are in the parameter files: the ISP image parameters (``*.slc.par``,
``*_slc.par``, ``*.mli.par``: ``date``, ``radar_frequency`` in Hz, ``incidence_angle``,
``center_range_slc``, ``heading``, ``range_samples``/``azimuth_lines``) and, for geocoded
products, the DEM/MAP parameters (``*.dem_par``: ``width``, ``nlines``, ``corner_lat``,
``corner_lon``, ``post_lat``, ``post_lon``, EQA = EPSG:4326). GeoTIFF exports
(``data2geotiff``) carry the georeferencing themselves. Perpendicular baselines come from
``base_perp`` output (``*_bperp.par``/``*.base_perp``: table with a ``bperp`` column).

Sign: GAMMA forms ``SLC1 * conj(SLC2)``; positive unwrapped phase is a range increase
(motion away from the satellite), as ISCE2 and ROI_PAC. The wavelength is always
``c / radar_frequency`` from the headers; a GeoTIFF's own tags are not trusted for it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from affine import Affine
from rasterio.crs import CRS

from gdmcore import InputError
from gdmio.insar.base import (
    SPEED_OF_LIGHT,
    Band,
    Interferogram,
    dates_in_name,
    describe_band,
    text_of,
)
from gdmio.insar.rawvrt import raw_vrt

__all__ = ["GammaHeaders", "gamma_interferogram", "find_headers", "read_par"]

_NUM = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def read_par(path: Path) -> dict[str, str]:
    """``key: value`` lines of a GAMMA parameter file (values keep their units)."""
    out: dict[str, str] = {}
    for line in text_of(path).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def _num(par: dict[str, str], key: str) -> float | None:
    tok = par.get(key, "").split()
    if tok and _NUM.match(tok[0]):
        return float(tok[0])
    return None


@dataclass
class GammaHeaders:
    """The parameter files found around the interferograms, by date."""

    image: dict[dt.date, dict[str, str]]   # ISP image parameters per acquisition date
    dem: dict[str, str] | None             # DEM/MAP parameters (geocoded products)
    baselines: dict[tuple[dt.date, dt.date], float]

    def wavelength(self, date: dt.date) -> float | None:
        """``c / radar_frequency`` of the acquisition at ``date`` (else of any header)."""
        for par in ([self.image[date]] if date in self.image else []) + \
                list(self.image.values()):
            f = _num(par, "radar_frequency")
            if f:
                return SPEED_OF_LIGHT / f
        return None


def _par_date(par: dict[str, str]) -> dt.date | None:
    tok = par.get("date", "").split()
    try:
        return dt.date(int(tok[0]), int(tok[1]), int(float(tok[2])))
    except (IndexError, ValueError):
        return None


def _bperp_table(path: Path) -> float | None:
    """Mean of the ``bperp`` column of a ``base_perp`` output file."""
    lines = text_of(path).splitlines()
    for k, line in enumerate(lines):
        cols = line.split()
        if "bperp" in cols:
            # counted from the end: "look angle" is two header words for one value
            back = len(cols) - cols.index("bperp")
            vals = []
            for row in lines[k + 1:]:
                tok = row.split()
                if len(tok) >= back + 2 and all(_NUM.match(t) for t in tok):
                    vals.append(float(tok[-back]))
            return sum(vals) / len(vals) if vals else None
    return None


def find_headers(folders: Iterable[Path]) -> GammaHeaders:
    """Read every GAMMA parameter file in ``folders`` (and their ``headers``/``geometry``)."""
    seen: set[Path] = set()
    image: dict[dt.date, dict[str, str]] = {}
    rank: dict[dt.date, int] = {}
    dem = None
    baselines: dict[tuple[dt.date, dt.date], float] = {}
    dirs: list[Path] = []
    for f in folders:
        for d in (f, f / "headers", f / "geometry", f.parent / "headers",
                  f.parent / "geometry", f.parent):
            if d.is_dir() and d.resolve() not in seen:
                seen.add(d.resolve())
                dirs.append(d)
    for d in dirs:
        for p in sorted(d.iterdir()):
            name = p.name
            if not p.is_file():
                continue
            if name.endswith(("slc.par", "mli.par")):
                par = read_par(p)
                date = _par_date(par)
                if date is None or "radar_frequency" not in par:
                    continue
                r = 0 if name.endswith("slc.par") else 1  # full-resolution SLC first
                if date not in image or r < rank[date]:
                    image[date], rank[date] = par, r
            elif name.endswith(("dem_par", "dem.par")):
                par = read_par(p)
                if "corner_lat" in par and dem is None:
                    dem = par
            elif name.endswith(("bperp.par", ".base_perp")):
                pair = dates_in_name(name)
                if pair is not None and pair not in baselines:
                    b = _bperp_table(p)
                    if b is not None:
                        baselines[pair] = b
    return GammaHeaders(image, dem, baselines)


def _dem_grid(dem: dict[str, str]) -> tuple[int, int, CRS, Affine]:
    try:
        width, lines = int(_num(dem, "width") or 0), int(_num(dem, "nlines") or 0)
        lat0, lon0 = _num(dem, "corner_lat"), _num(dem, "corner_lon")
        dlat, dlon = _num(dem, "post_lat"), _num(dem, "post_lon")
    except ValueError:
        width = lines = 0
    proj = dem.get("DEM_projection", "EQA").split()[0].upper()
    if proj != "EQA" or not width or not lines or None in (lat0, lon0, dlat, dlon):
        raise InputError("GAMMA DEM parameters: only EQA (lat/lon) grids with width, "
                         "nlines, corner and post values are supported")
    return width, lines, CRS.from_epsg(4326), Affine(dlon, 0, lon0, 0, dlat, lat0)  # type: ignore[arg-type]


def gamma_interferogram(path: Path, coherence: Path | None, headers: GammaHeaders,
                        workdir: Path) -> Interferogram:
    """Describe a GAMMA unwrapped interferogram (binary ``.unw`` or GeoTIFF)."""
    dates = dates_in_name(path.name)
    if dates is None:
        raise InputError(f"{path.name}: no two dates (YYYYMMDD-YYYYMMDD) in the name")
    d1, d2 = dates
    par = headers.image.get(d1) or (next(iter(headers.image.values()))
                                    if headers.image else {})
    is_tif = path.suffix.lower() in (".tif", ".tiff")
    if is_tif:
        phase = Band(str(path.absolute()), 1, 0.0)
        coh = Band(str(coherence.absolute()), 1, 0.0) if coherence else None
    else:
        if headers.dem is not None:
            width, lines, crs, transform = _dem_grid(headers.dem)
        else:
            width = int(_num(par, "range_samples") or 0)
            lines = int(_num(par, "azimuth_lines") or 0)
            crs, transform = None, None
            if not width:
                raise InputError(f"{path.name}: no GAMMA .dem_par or .mli.par gives its size")
        phase = Band(str(raw_vrt(workdir, path, width, lines, big_endian=True, crs=crs,
                                 transform=transform, nodata=0.0)), 1, 0.0)
        coh = None
        if coherence is not None:
            coh = Band(str(raw_vrt(workdir, coherence, width, lines, big_endian=True,
                                   crs=crs, transform=transform, nodata=0.0)), 1, 0.0)
    ifg = Interferogram(
        fmt="GAMMA", name=path.name, date1=d1, date2=d2, phase=phase, units="rad",
        sign=1, wavelength=headers.wavelength(d1), coherence=coh,
        bperp=headers.baselines.get((d1, d2)),
        incidence_deg=_num(par, "incidence_angle"),
        slant_range_m=_num(par, "center_range_slc"), heading_deg=_num(par, "heading"))
    return describe_band(ifg)
