"""ISCE2 unwrapped interferograms: ``filt_*.unw`` / ``filt_fine.unw`` with ``.xml``/``.vrt``.

ISCE2 writes raw little-endian rasters with an XML description (``<component
name="...">`` with ``<property name="width">``, ``length``, ``number_bands``,
``scheme``, ``data_type``) and a GDAL ``.vrt`` beside. An unwrapped interferogram is two
bands, BIL: amplitude then unwrapped phase in radians; ``*.unw.conncomp`` holds the
connected components (0 = not unwrapped), coherence is ``*.cor`` (``filt_fine.cor``,
1 band, or ``topophase.cor``: 2 bands, coherence in band 2) or ``phsig.cor``.
Layouts: stripmapStack ``Igrams/YYYYMMDD_YYYYMMDD/filt_YYYYMMDD_YYYYMMDD.unw``,
topsStack ``merged/interferograms/YYYYMMDD_YYYYMMDD/filt_fine.unw`` (dates from the
folder), and single pairs (``filt_topophase.unw``). The wavelength is the
``radarwavelength`` property of the stack's reference metadata
(``reference/IW*.xml``, ``referenceShelve``-free ``*.xml``) when found, else given by
the user. Sign: ``reference * conj(secondary)``, positive is a range increase.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from gdmcore import InputError
from gdmio.insar.base import Band, Interferogram, dates_in_name, describe_band, text_of
from gdmio.insar.rawvrt import raw_vrt

__all__ = ["isce_interferogram", "is_isce", "isce_properties", "find_wavelength"]

_TYPES = {"FLOAT": "Float32", "DOUBLE": "Float64", "SHORT": "Int16", "BYTE": "Byte",
          "CFLOAT": "CFloat32"}


def isce_properties(xml: Path) -> dict[str, str]:
    """Every ``<property name=...><value>`` of an ISCE2 XML file (names lower-cased)."""
    try:
        root = ET.fromstring(text_of(xml))
    except ET.ParseError as exc:
        raise InputError(f"{xml.name} is not valid ISCE XML: {exc}") from None
    out: dict[str, str] = {}
    for prop in root.iter("property"):
        name = (prop.get("name") or "").lower()
        value = prop.findtext("value")
        if name and value is not None and name not in out:
            out[name] = value.strip()
    return out


def is_isce(path: Path) -> bool:
    """An ISCE2 raster: its ``.xml`` (ISCE component) or ``.vrt`` is beside it."""
    return path.suffix in (".unw",) and (Path(f"{path}.xml").is_file()
                                         or Path(f"{path}.vrt").is_file())


def find_wavelength(start: Path) -> float | None:
    """``radarwavelength`` from the stack's reference metadata above ``start``."""
    for d in [start, *start.parents][:5]:
        for sub in ("reference", "referencedir", "master"):
            folder = d / sub
            if folder.is_dir():
                for xml in sorted(folder.glob("*.xml")):
                    props = isce_properties(xml)
                    for key in ("radarwavelength", "radarwavelegth", "wavelength"):
                        if key in props:
                            try:
                                return float(props[key])
                            except ValueError:
                                pass
    return None


def _band(path: Path, band: int, workdir: Path) -> Band:
    vrt = Path(f"{path}.vrt")
    if vrt.is_file():
        return Band(str(vrt.absolute()), band, 0.0)
    props = isce_properties(Path(f"{path}.xml"))
    try:
        width, length = int(props["width"]), int(props["length"])
    except (KeyError, ValueError):
        raise InputError(f"{path.name}.xml: width and length are required") from None
    nb = int(props.get("number_bands", "1"))
    dtype = _TYPES.get(props.get("data_type", "FLOAT").upper(), "Float32")
    scheme = props.get("scheme", "BIL").upper()
    big = props.get("byte_order", "l").lower().startswith("b")
    return Band(str(raw_vrt(workdir, path, width, length, bands=nb, band_index=band,
                            interleave=scheme, dtype=dtype, big_endian=big, nodata=0.0)),
                1, 0.0)


def isce_interferogram(path: Path, workdir: Path, wavelength: float | None = None
                       ) -> Interferogram:
    """Describe an ISCE2 unwrapped interferogram (coherence found beside it)."""
    dates = dates_in_name(path.name) or dates_in_name(path.parent.name)
    if dates is None:
        raise InputError(f"{path}: no two dates in the file or folder name")
    props = isce_properties(Path(f"{path}.xml")) if Path(f"{path}.xml").is_file() else {}
    bands = int(props.get("number_bands", "2"))
    phase = _band(path, 2 if bands >= 2 else 1, workdir)
    coh = None
    stem = path.name[:-4]
    for cand, band in ((path.with_name(f"{stem}.cor"), None),
                       (path.with_name("phsig.cor"), 1),
                       (path.with_name("topophase.cor"), 2)):
        if cand.is_file() and (Path(f"{cand}.xml").is_file() or Path(f"{cand}.vrt").is_file()):
            if band is None:
                cp = isce_properties(Path(f"{cand}.xml")) if Path(f"{cand}.xml").is_file() \
                    else {}
                band = 2 if int(cp.get("number_bands", "1")) >= 2 else 1
            coh = _band(cand, band, workdir)
            break
    wl = wavelength or find_wavelength(path.parent)
    comp = Path(f"{path}.conncomp")
    valid = None
    if comp.is_file() and (Path(f"{comp}.vrt").is_file() or Path(f"{comp}.xml").is_file()):
        valid = _band(comp, 1, workdir)
        valid = Band(valid.path, valid.band, None)  # 0 is a label here, not no-data
    ifg = Interferogram(fmt="ISCE2", name=f"{path.parent.name}/{path.name}", date1=dates[0],
                        date2=dates[1], phase=phase, units="rad", sign=1, wavelength=wl,
                        coherence=coh, valid=valid)
    return describe_band(ifg)
