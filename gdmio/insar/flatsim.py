"""FLATSIM deliveries (ForM@Ter / CNES, NSBAS chain) and NSBAS interferograms.

A FLATSIM track delivery holds, per interferogram (a zip or an unzipped folder under
``INT/``), GeoTIFFs named ``CNES_<product>_<geometry>_<date1>_<date2>_..._<n>rlks.tiff``:
``InU`` the unwrapped interferogram (band 1: unwrapped phase in radians, 0 = not
unwrapped), ``InW``/``InWF`` the wrapped one, ``Coh`` the coherence (band 1), in
``geo`` (EPSG:4326) or ``radar`` geometry. NSBAS keeps ROI_PAC's sign convention:
positive phase is a range increase (NSBAS converts radians to mm with
``-wavelength / (4 pi)``). FLATSIM processes Sentinel-1 only: C band. NSBAS outputs
outside FLATSIM (``filtSW_<d1>-<d2>_<n>rlks.unw`` + ``.rsc``) are ROI_PAC files.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from gdmcore import InputError
from gdmio.insar.base import S1_WAVELENGTH, Band, Interferogram, dates_in_name, describe_band

__all__ = ["FLATSIM_NAME", "flatsim_interferograms", "is_flatsim"]

FLATSIM_NAME = re.compile(r"CNES_(InU|Coh)_(geo|radar)_(\d{8})_(\d{8})[^/]*\.tiff?$")


def is_flatsim(path: Path) -> bool:
    """A FLATSIM ``CNES_InU_*`` GeoTIFF, or a zip holding one."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                return any(FLATSIM_NAME.search(n) and "_InU_" in n for n in zf.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    m = FLATSIM_NAME.search(path.name)
    return m is not None and m.group(1) == "InU"


def _pairs(paths: list[str]) -> list[tuple[str, str | None]]:
    """(InU, Coh or None) per pair and geometry."""
    inu: dict[tuple[str, str, str], str] = {}
    coh: dict[tuple[str, str, str], str] = {}
    for p in paths:
        m = FLATSIM_NAME.search(p)
        if m:
            key = (m.group(2), m.group(3), m.group(4))
            (inu if m.group(1) == "InU" else coh)[key] = p
    return [(p, coh.get(k)) for k, p in sorted(inu.items())]


def _ifg(unw: str, coh: str | None) -> Interferogram:
    d1, d2 = dates_in_name(unw.rsplit("/", 1)[-1]) or (None, None)
    if d1 is None or d2 is None:
        raise InputError(f"{unw}: no dates in the FLATSIM name")
    ifg = Interferogram(fmt="FLATSIM", name=unw.rsplit("/", 1)[-1], date1=d1, date2=d2,
                        phase=Band(unw, 1, 0.0), units="rad", sign=1,
                        wavelength=S1_WAVELENGTH,
                        coherence=Band(coh, 1, 0.0) if coh else None)
    return describe_band(ifg)


def flatsim_interferograms(path: Path) -> list[Interferogram]:
    """The interferograms of a FLATSIM zip or ``CNES_InU`` GeoTIFF (coherence beside)."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                members = [f"/vsizip/{path.absolute()}/{n}" for n in zf.namelist()]
        except zipfile.BadZipFile:
            raise InputError(f"{path.name} is not a readable zip") from None
        return [_ifg(u, c) for u, c in _pairs(members)]
    siblings = [str(p.absolute()) for p in path.parent.iterdir()]
    return [_ifg(u, c) for u, c in _pairs(siblings) if Path(u).name == path.name]
