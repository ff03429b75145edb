"""Unwrapped interferograms made elsewhere: format detection and readers.

:func:`find_interferograms` takes files and folders and returns one
:class:`~gdmio.insar.base.Interferogram` per pair, whatever wrote it:

========== ============================================ ======= ======================
format     what is recognised                           units   positive value means
========== ============================================ ======= ======================
ROI_PAC    ``*.unw`` + ``*.unw.rsc`` (2-band BIL)        rad     range increase
NSBAS      ROI_PAC files (``filtSW_*.unw``)             rad     range increase
GAMMA      ``*.unw`` (big-endian) or GeoTIFF + ``.par``  rad     range increase
ISCE2      ``*.unw`` + ``.xml``/``.vrt`` (2-band BIL)     rad     range increase
HyP3       product zip/folder, ``*_unw_phase.tif``       rad     range increase
LiCSAR     ``*.geo.unw.tif`` (+ ``.geo.cc.tif``)          rad     range increase
FLATSIM    ``CNES_InU_*.tiff`` (zip or folder)            rad     range increase
GDM-SAR    ``interferograms/*/unwrapped.tif``            rad     range increase
GeoTIFF    two dates in the name; tags                  tags    tag ``LOS_SIGN``
========== ============================================ ======= ======================

All of them are converted to the project's convention (LOS metres, positive towards
the satellite) by :meth:`Interferogram.to_metres`.
"""

from __future__ import annotations

import os
from pathlib import Path

from gdmcore import InputError
from gdmio.insar.base import (
    S1_WAVELENGTH,
    Band,
    Interferogram,
    dates_in_name,
)
from gdmio.insar.flatsim import flatsim_interferograms, is_flatsim
from gdmio.insar.gamma import find_headers, gamma_interferogram
from gdmio.insar.geotiff import (
    gdmsar_interferogram,
    geotiff_interferogram,
    is_coherence_name,
    is_gdmsar,
)
from gdmio.insar.hyp3 import hyp3_interferograms, is_hyp3
from gdmio.insar.isce import is_isce, isce_interferogram
from gdmio.insar.licsar import is_licsar, licsar_interferogram
from gdmio.insar.roipac import is_roipac, roipac_interferogram

__all__ = ["Band", "FORMATS", "Interferogram", "S1_WAVELENGTH", "find_interferograms"]

#: Names of the formats, for help texts.
FORMATS = ("ROI_PAC", "NSBAS", "GAMMA", "ISCE2", "HyP3", "LiCSAR", "FLATSIM", "GDM-SAR",
           "GeoTIFF")

_TIF = (".tif", ".tiff")
_MAX_DEPTH = 6


def _walk(folder: Path) -> list[Path]:
    """Files and folders under ``folder`` (hidden ones skipped), sorted, bounded depth."""
    out: list[Path] = []
    base = len(folder.parts)
    for root, dirs, files in os.walk(folder):
        r = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if len(r.parts) - base >= _MAX_DEPTH:
            dirs[:] = []
        out.extend(r / d for d in dirs)
        out.extend(r / f for f in sorted(files) if not f.startswith("."))
    return out


def _is_gamma_unw(path: Path) -> bool:
    return path.suffix == ".unw" and not is_roipac(path) and not is_isce(path)


def _gamma_coherence(path: Path) -> Path | None:
    if path.suffix == ".unw":
        for cand in (path.with_suffix(".cc"), path.with_suffix(".cor")):
            if cand.is_file():
                return cand
        return None
    dates = dates_in_name(path.name)
    for p in sorted(path.parent.iterdir()):
        if p.suffix.lower() in _TIF and is_coherence_name(p.name) and \
                dates_in_name(p.name) == dates:
            return p
    return None


def _classify(path: Path, explicit: bool, workdir: Path, wavelength: float | None,
              gamma_dirs: list[Path]) -> list[Interferogram]:
    """Interferograms at ``path`` ([] when it is not one and was found by a walk)."""
    name = path.name
    if is_hyp3(path):
        return hyp3_interferograms(path)
    if path.is_dir():
        return []
    if is_flatsim(path):
        return flatsim_interferograms(path)
    if is_licsar(path):
        return [licsar_interferogram(path)]
    if is_gdmsar(path):
        return [gdmsar_interferogram(path)]
    if is_isce(path):
        return [isce_interferogram(path, workdir, wavelength)]
    if is_roipac(path):
        fmt = "NSBAS" if name.startswith(("filtSW", "filtROI", "filt_")) and \
            "rlks" in name else "ROI_PAC"
        return [roipac_interferogram(path, workdir, fmt)]
    suffix = path.suffix.lower()
    is_unw_name = "unw" in name.lower()
    if _is_gamma_unw(path) or (suffix in _TIF and is_unw_name):
        headers = find_headers([path.parent, *gamma_dirs])
        if headers.image:
            if dates_in_name(name) is None:
                raise InputError(f"{name}: an interferogram needs two dates in its name")
            return [gamma_interferogram(path, _gamma_coherence(path), headers, workdir)]
        if suffix not in _TIF:
            raise InputError(f"{name}: a .unw without .rsc, .xml/.vrt or GAMMA .par "
                             "headers is no format we read")
    if suffix in _TIF:
        if is_coherence_name(name) or (not explicit and dates_in_name(name) is None):
            return []
        if dates_in_name(name) is None:
            raise InputError(f"{name}: an interferogram needs two dates in its name "
                             "(YYYYMMDD or YYMMDD, separated by - or _); found "
                             + ("one" if _one_date(name) else "none"))
        return [geotiff_interferogram(path)]
    if explicit:
        raise InputError(f"{name}: unknown interferogram format (known: "
                         f"{', '.join(FORMATS)})")
    return []


def _one_date(name: str) -> bool:
    from gdmio.raster import date_from_name

    return date_from_name(name) is not None


def find_interferograms(inputs: list[str | os.PathLike[str]], workdir: Path,
                        wavelength: float | None = None) -> list[Interferogram]:
    """Every unwrapped interferogram in ``inputs`` (files or folders), sorted by pair.

    ``workdir`` receives small VRT files describing headerless binaries.
    ``wavelength`` (m) is used where the format carries none.

    Raises
    ------
    InputError
        Missing input, unknown format, a file without two dates, an interferogram
        without wavelength, the same pair twice, nothing found.

    """
    if not inputs:
        raise InputError("no interferograms given")
    found: list[Interferogram] = []
    gamma_dirs = [Path(p) for p in inputs if Path(p).is_dir()]
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise InputError(f"input not found: {p}")
        if p.is_file() or is_hyp3(p):
            found.extend(_classify(p, True, workdir, wavelength, gamma_dirs))
            continue
        hyp3_dirs: set[Path] = set()
        for q in _walk(p):
            if any(h in q.parents for h in hyp3_dirs):
                continue
            if q.is_dir() and is_hyp3(q):
                hyp3_dirs.add(q)
            found.extend(_classify(q, False, workdir, wavelength, gamma_dirs))
    if not found:
        raise InputError("no unwrapped interferogram found in "
                         f"{', '.join(str(p) for p in inputs)} (known formats: "
                         f"{', '.join(FORMATS)})")
    out: dict[tuple, Interferogram] = {}
    for ifg in found:
        if ifg.date2 == ifg.date1:
            raise InputError(f"{ifg.name}: both dates are {ifg.date1}")
        if ifg.date2 < ifg.date1:
            raise InputError(f"{ifg.name}: its second date {ifg.date2} is before its "
                             f"first {ifg.date1}")
        if ifg.wavelength is None and wavelength is not None:
            ifg = ifg.with_wavelength(wavelength)
        if ifg.units == "rad" and ifg.wavelength is None:
            raise InputError(f"{ifg.name} ({ifg.fmt}): the radar wavelength is unknown; "
                             "give it with --wavelength (metres)")
        key = (ifg.date1, ifg.date2)
        if key in out:
            raise InputError(f"pair {ifg.pair} given twice: {out[key].name} and {ifg.name}")
        out[key] = ifg
    return [out[k] for k in sorted(out)]
