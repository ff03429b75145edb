"""What every InSAR format reader returns: an :class:`Interferogram` description.

A reader never loads pixels: it finds the unwrapped-phase band (and the coherence
band, when the format has one), the two dates, and the metadata that turns the stored
values into the project's convention, LOS metres positive towards the satellite:
``metres = value * ifg.to_metres()``. Pixels are read later, window by window.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError

from gdmcore import InputError
from gdmio._util import first_line, quiet_rasterio

__all__ = ["Band", "Interferogram", "SPEED_OF_LIGHT", "S1_WAVELENGTH", "dates_in_name",
           "describe_band", "parse_date"]

SPEED_OF_LIGHT = 299_792_458.0
#: Sentinel-1 C-band carrier (5.405000454 GHz), for formats that only carry Sentinel-1.
S1_WAVELENGTH = SPEED_OF_LIGHT / 5.405000454334350e9

_PAIR8 = re.compile(r"(?<!\d)(\d{8})[-_](\d{8})(?!\d)")
_PAIR6 = re.compile(r"(?<!\d)(\d{6})[-_](\d{6})(?!\d)")
_STAMP_PAIR = re.compile(r"(?<!\d)(\d{8})T\d{6}_(\d{8})T\d{6}")


def parse_date(token: str) -> dt.date | None:
    """``YYYYMMDD`` or ``YYMMDD`` (ROI_PAC; 19YY from 90 on, else 20YY) -> date, or None."""
    try:
        if len(token) == 8:
            return dt.datetime.strptime(token, "%Y%m%d").date()
        if len(token) == 6:
            yy = int(token[:2])
            century = 1900 if yy >= 90 else 2000
            return dt.date(century + yy, int(token[2:4]), int(token[4:6]))
    except ValueError:
        return None
    return None


def dates_in_name(name: str) -> tuple[dt.date, dt.date] | None:
    """The two dates of a file or folder name (``YYYYMMDD`` or ``YYMMDD``, ``-`` or ``_``).

    Also reads HyP3's ``YYYYMMDDTHHMMSS_YYYYMMDDTHHMMSS``. Returns None unless exactly
    one pair of valid dates is found.
    """
    for pattern in (_STAMP_PAIR, _PAIR8, _PAIR6):
        found = {(parse_date(a), parse_date(b)) for a, b in pattern.findall(name)}
        found = {p for p in found if p[0] and p[1]}
        if len(found) == 1:
            return found.pop()  # type: ignore[return-value]
        if len(found) > 1:
            return None
    return None


@dataclass(frozen=True)
class Band:
    """One band of a raster GDAL opens (a file, a ``/vsizip/`` member, a VRT)."""

    path: str
    band: int = 1
    nodata: float | None = None
    scale: float = 1.0


@dataclass(frozen=True)
class Interferogram:
    """An unwrapped interferogram found by a format reader (no pixels loaded).

    ``sign`` is +1 when a positive stored value means a range increase (motion away
    from the satellite: ROI_PAC, GAMMA, ISCE2, HyP3, LiCSAR, NSBAS/FLATSIM, MintPy),
    -1 when it means motion towards it. ``units`` is ``rad``, ``m`` or ``mm``.
    ``valid``, when the format has one, is the connected-components band of the
    unwrapper: 0 marks pixels left unwrapped (no data).
    """

    fmt: str
    name: str
    date1: dt.date
    date2: dt.date
    phase: Band
    units: str = "rad"
    sign: int = 1
    wavelength: float | None = None
    coherence: Band | None = None
    crs: CRS | None = None
    transform: Affine = field(default_factory=Affine.identity)
    width: int = 0
    height: int = 0
    bperp: float | None = None
    incidence_deg: float | None = None
    slant_range_m: float | None = None
    heading_deg: float | None = None
    valid: Band | None = None  # connected components: 0 = not unwrapped

    @property
    def pair(self) -> str:
        """``YYYYMMDD_YYYYMMDD``."""
        return f"{self.date1:%Y%m%d}_{self.date2:%Y%m%d}"

    def to_metres(self) -> float:
        """Factor from stored values to LOS metres, positive towards the satellite."""
        if self.units == "m":
            return -float(self.sign)
        if self.units == "mm":
            return -1e-3 * self.sign
        if self.wavelength is None:
            raise InputError(f"{self.name}: the radar wavelength is unknown "
                             "(give --wavelength)")
        return -self.sign * self.wavelength / (4 * math.pi)

    def with_wavelength(self, wavelength: float | None) -> Interferogram:
        """A copy with ``wavelength`` set where the format gave none (or forced)."""
        return replace(self, wavelength=wavelength)


def describe_band(ifg: Interferogram) -> Interferogram:
    """Fill the grid (CRS, transform, size) of ``ifg`` from its phase band.

    Raises InputError naming the file when GDAL cannot open it or the band is missing.
    """
    try:
        with quiet_rasterio(), rasterio.open(ifg.phase.path) as ds:
            if ifg.phase.band > ds.count:
                raise InputError(f"{ifg.name}: band {ifg.phase.band} missing "
                                 f"(the file has {ds.count})")
            crs = ds.crs
            transform = ds.transform
            georef = crs is not None and transform != Affine.identity()
            nodata = ifg.phase.nodata
            if nodata is None:
                nodata = ds.nodatavals[ifg.phase.band - 1]
            return replace(ifg, crs=crs if georef else None,
                           transform=transform if georef else Affine.identity(),
                           width=ds.width, height=ds.height,
                           phase=replace(ifg.phase, nodata=nodata))
    except RasterioError as exc:
        raise InputError(f"cannot read {ifg.name}: {first_line(exc)}") from None


def text_of(path: Path, limit: int = 4 << 20) -> str:
    """A small text file (header, metadata) as text; InputError when unreadable."""
    try:
        if path.stat().st_size > limit:
            raise InputError(f"{path.name} is too large for a metadata file")
        return path.read_text(errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
