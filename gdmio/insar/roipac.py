"""ROI_PAC (and NSBAS) unwrapped interferograms: ``.unw`` + ``.unw.rsc``.

Layout (ROI_PAC manual, "rmg" files): little-endian float32, two bands interleaved by
line (BIL): each line of amplitude is followed by the same line of unwrapped phase, in
radians. The ``.rsc`` header holds ``WIDTH``, ``FILE_LENGTH``, ``WAVELENGTH`` (m),
``DATE12`` (``YYMMDD-YYMMDD``), and when geocoded ``X_FIRST``/``Y_FIRST``/``X_STEP``/
``Y_STEP`` (degrees, ``PROJECTION LL``), plus optional ``P_BASELINE_TOP_HDR``,
``P_BASELINE_BOTTOM_HDR``, ``STARTING_RANGE``, ``INCIDENCE`` / ``LOOK_REF*``, ``HEADING``.
Coherence: ``.cor`` files are "rmg" too (band 2 = coherence). Sign: positive phase is
a range increase (motion away from the satellite), zero is no data.
"""

from __future__ import annotations

from pathlib import Path

from affine import Affine
from rasterio.crs import CRS

from gdmcore import InputError
from gdmio.insar.base import Band, Interferogram, dates_in_name, parse_date, text_of
from gdmio.insar.rawvrt import raw_vrt

__all__ = ["read_rsc", "roipac_interferogram", "is_roipac"]


def read_rsc(path: Path) -> dict[str, str]:
    """``KEY value`` lines of a ROI_PAC resource file."""
    out: dict[str, str] = {}
    for line in text_of(path).splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            out[parts[0].upper()] = parts[1].strip()
    return out


def is_roipac(path: Path) -> bool:
    """A ``.unw`` with its ``.rsc`` beside it."""
    return path.suffix == ".unw" and Path(f"{path}.rsc").is_file()


def _float(rsc: dict[str, str], key: str) -> float | None:
    try:
        return float(rsc[key])
    except (KeyError, ValueError):
        return None


def _georef(rsc: dict[str, str]) -> tuple[CRS | None, Affine]:
    x0, y0 = _float(rsc, "X_FIRST"), _float(rsc, "Y_FIRST")
    dx, dy = _float(rsc, "X_STEP"), _float(rsc, "Y_STEP")
    if None in (x0, y0, dx, dy):
        return None, Affine.identity()
    proj = rsc.get("PROJECTION", "LL").upper()
    if proj in ("LL", "LATLON", "GEO"):
        crs = CRS.from_epsg(4326)
    elif proj.startswith("UTM"):
        zone = rsc.get("UTM_ZONE", proj[3:]).strip()
        north = not zone.upper().endswith("S")
        digits = "".join(ch for ch in zone if ch.isdigit())
        if not digits:
            raise InputError(f"ROI_PAC header: UTM projection without a zone ({proj})")
        crs = CRS.from_epsg((32600 if north else 32700) + int(digits))
    else:
        crs = CRS.from_user_input(rsc.get("EPSG", "EPSG:4326"))
    return crs, Affine(dx, 0.0, x0, 0.0, dy, y0)  # type: ignore[arg-type]


def _rmg_band(path: Path, rsc: dict[str, str], workdir: Path, band: int) -> Band:
    try:
        width, length = int(rsc["WIDTH"]), int(rsc["FILE_LENGTH"])
    except (KeyError, ValueError):
        raise InputError(f"{path.name}.rsc: WIDTH and FILE_LENGTH are required") from None
    crs, transform = _georef(rsc)
    vrt = raw_vrt(workdir, path, width, length, bands=2, band_index=band, interleave="BIL",
                  crs=crs, transform=transform if crs is not None else None, nodata=0.0)
    return Band(str(vrt), 1, 0.0)


def roipac_interferogram(path: Path, workdir: Path, fmt: str = "ROI_PAC") -> Interferogram:
    """Describe a ROI_PAC ``.unw`` (its ``.cor`` with the same stem is the coherence)."""
    rsc = read_rsc(Path(f"{path}.rsc"))
    dates = None
    if "DATE12" in rsc:
        a, _, b = rsc["DATE12"].partition("-")
        d1, d2 = parse_date(a.strip()), parse_date(b.strip())
        dates = (d1, d2) if d1 and d2 else None
    dates = dates or dates_in_name(path.name)
    if dates is None:
        raise InputError(f"{path.name}: no DATE12 in its .rsc and no two dates in its name")
    coh = None
    for cand in (path.with_suffix(".cor"), path.with_name(path.stem + ".cor")):
        if cand.is_file() and Path(f"{cand}.rsc").is_file():
            coh = _rmg_band(cand, read_rsc(Path(f"{cand}.rsc")), workdir, 2)
            break
    crs, transform = _georef(rsc)
    bt, bb = _float(rsc, "P_BASELINE_TOP_HDR"), _float(rsc, "P_BASELINE_BOTTOM_HDR")
    bperp = None if bt is None else (bt if bb is None else (bt + bb) / 2)
    incidence = _float(rsc, "INCIDENCE") or _float(rsc, "LOOK_REF1")
    return Interferogram(
        fmt=fmt, name=path.name, date1=dates[0], date2=dates[1],
        phase=_rmg_band(path, rsc, workdir, 2), units="rad", sign=1,
        wavelength=_float(rsc, "WAVELENGTH"), coherence=coh, crs=crs, transform=transform,
        width=int(rsc["WIDTH"]), height=int(rsc["FILE_LENGTH"]), bperp=bperp,
        incidence_deg=incidence,
        slant_range_m=_float(rsc, "STARTING_RANGE") or _float(rsc, "SLANT_RANGE"),
        heading_deg=_float(rsc, "HEADING") or _float(rsc, "HEADING_DEG"))
