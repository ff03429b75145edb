"""Plain GeoTIFF interferograms, and GDM-SAR's own interferogram folders.

Any GeoTIFF with two dates in its name (``YYYYMMDD`` or ``YYMMDD`` separated by ``-``
or ``_``) is an unwrapped interferogram: band 1, radians unless its ``UNITS`` /
``DATA_UNITS`` tag says ``m`` or ``mm``; positive is a range increase (the convention
of MintPy and of the processors above) unless the tag ``LOS_SIGN`` is
``towards`` (positive towards the satellite). The wavelength comes from the tags
``WAVELENGTH`` / ``WAVELENGTH_METRES`` (m) or ``RADAR_FREQUENCY`` (Hz), else from the
user. A GeoTIFF with the same dates and ``cc``, ``coh``, ``cor`` or ``corr`` in its name
is the coherence.

GDM-SAR products (``interferograms/YYYYMMDD_YYYYMMDD/unwrapped.tif`` and
``coherence.tif``): radians, ``slc_i * conj(slc_j)`` with SLC phase ``-4 pi R / wavelength``
(positive is a range increase); wavelength, perpendicular baselines and geometry from
the product folder's ``report.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

from gdmcore import InputError
from gdmio.insar.base import (
    SPEED_OF_LIGHT,
    Band,
    Interferogram,
    dates_in_name,
    describe_band,
    text_of,
)

__all__ = ["COHERENCE_TOKEN", "geotiff_interferogram", "gdmsar_interferogram",
           "is_coherence_name", "is_gdmsar"]

COHERENCE_TOKEN = re.compile(r"(^|[._-])(cc|coh|cor|corr|coherence)([._-]|$)", re.IGNORECASE)
_TIF = (".tif", ".tiff")


def is_coherence_name(name: str) -> bool:
    """Whether a file name says coherence (``cc``, ``coh``, ``cor``, ``corr``)."""
    return COHERENCE_TOKEN.search(Path(name).stem) is not None


def _coherence_beside(path: Path) -> Path | None:
    dates = dates_in_name(path.name)
    for p in sorted(path.parent.iterdir()):
        if p != path and p.suffix.lower() in _TIF and is_coherence_name(p.name) \
                and dates_in_name(p.name) == dates:
            return p
    return None


def geotiff_interferogram(path: Path) -> Interferogram:
    """Describe a plain GeoTIFF interferogram (metadata from its tags)."""
    dates = dates_in_name(path.name)
    if dates is None:
        raise InputError(f"{path.name}: an interferogram needs two dates in its name "
                         "(YYYYMMDD or YYMMDD, separated by - or _)")
    try:
        with rasterio.open(path) as ds:
            tags = {k.upper(): v for k, v in ds.tags().items()}
    except RasterioError:
        raise InputError(f"{path.name} is not a readable GeoTIFF") from None
    units = tags.get("UNITS", tags.get("DATA_UNITS", "rad")).strip().lower()
    units = {"radians": "rad", "radian": "rad", "metres": "m", "meters": "m", "meter": "m",
             "millimetres": "mm", "millimeters": "mm"}.get(units, units)
    if units not in ("rad", "m", "mm"):
        raise InputError(f"{path.name}: unknown units {units!r} (rad, m or mm)")
    wl = None
    for key in ("WAVELENGTH", "WAVELENGTH_METRES", "RADAR_WAVELENGTH"):
        try:
            wl = float(tags[key])
            break
        except (KeyError, ValueError):
            continue
    if wl is None and "RADAR_FREQUENCY" in tags:
        try:
            wl = SPEED_OF_LIGHT / float(tags["RADAR_FREQUENCY"])
        except (ValueError, ZeroDivisionError):
            wl = None
    sign = -1 if tags.get("LOS_SIGN", "").lower().startswith("toward") else 1
    coh = _coherence_beside(path)
    ifg = Interferogram(fmt="GeoTIFF", name=path.name, date1=dates[0], date2=dates[1],
                        phase=Band(str(path.absolute()), 1, None), units=units, sign=sign,
                        wavelength=wl,
                        coherence=Band(str(coh.absolute()), 1, None) if coh else None)
    return describe_band(ifg)


def is_gdmsar(path: Path) -> bool:
    """``.../interferograms/YYYYMMDD_YYYYMMDD/unwrapped.tif`` of a GDM-SAR product folder."""
    return path.name == "unwrapped.tif" and dates_in_name(path.parent.name) is not None


def gdmsar_interferogram(path: Path) -> Interferogram:
    """Describe one interferogram of a GDM-SAR product folder."""
    d1, d2 = dates_in_name(path.parent.name)  # type: ignore[misc]
    report: dict = {}
    for folder in path.parents[:3]:
        if (folder / "report.json").is_file():
            try:
                report = json.loads(text_of(folder / "report.json"))
            except ValueError:
                raise InputError(f"{folder / 'report.json'} is not valid JSON") from None
            break
    wl = report.get("wavelength_m")
    bperp = None
    dates = report.get("dates") or []
    baselines = report.get("perpendicular_baselines_m") or []
    if len(dates) == len(baselines) and d1.isoformat() in dates and d2.isoformat() in dates:
        bperp = baselines[dates.index(d2.isoformat())] - baselines[dates.index(d1.isoformat())]
    coh = path.with_name("coherence.tif")
    comp = path.with_name("conncomp.tif")
    geom = report.get("geometry") or {}
    ifg = Interferogram(fmt="GDM-SAR", name=f"{path.parent.name}/unwrapped.tif", date1=d1,
                        date2=d2, phase=Band(str(path.absolute()), 1, None), units="rad",
                        sign=1, wavelength=float(wl) if wl else None,
                        coherence=Band(str(coh.absolute()), 1, None) if coh.is_file()
                        else None,
                        bperp=bperp, incidence_deg=geom.get("incidence_deg"),
                        slant_range_m=geom.get("slant_range_m"),
                        heading_deg=geom.get("heading_deg"),
                        valid=Band(str(comp.absolute()), 1, None) if comp.is_file() else None)
    return describe_band(ifg)
