"""ASF HyP3 InSAR products (GAMMA ``INSAR_GAMMA`` and ISCE2 ``INSAR_ISCE_BURST``).

A product is a zip (or its unzipped folder) named like
``S1AA_20180106T004006_20180130T004005_VVP024_INT80_G_ueF_5A1B`` (GAMMA) or
``S1_136231_IW2_20200604_20200616_VV_INT80_7F4C`` (ISCE2 burst), holding GeoTIFFs in a
UTM projection: ``<name>_unw_phase.tif`` (radians), ``<name>_corr.tif`` (coherence),
``<name>_lv_theta.tif`` / ``<name>_lv_phi.tif`` (look vector, radians), ``<name>_dem.tif``,
``<name>_water_mask.tif``... and ``<name>.txt``: ``Key: value`` lines (``Reference
Granule``, ``Baseline``, ``UTC time``, ``Heading``, ``Slant range center``, ``Range
looks``...). The HyP3 product guide states that the unwrapped phase has the opposite
sign to its displacement maps (which are positive towards the sensor): positive phase
is a range increase. HyP3 processes Sentinel-1 only: the wavelength is C band.
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

from gdmcore import InputError
from gdmio.insar.base import S1_WAVELENGTH, Band, Interferogram, dates_in_name, describe_band

__all__ = ["HYP3_NAME", "hyp3_interferograms", "is_hyp3"]

HYP3_NAME = re.compile(
    r"S1[ABCD_]{1,2}_(?:\d{8}T\d{6}_\d{8}T\d{6}_(?:VV|HH|VH|HV)[PRO]\d{3,4}_INT\d{2}_G_"
    r"[uw][ec][123F]_[0-9A-F]{4}"
    r"|\d{6}_IW[123]_\d{8}_\d{8}_(?:VV|HH)_INT\d{2}_[0-9A-F]{4}"
    r"|\d{3}_\d{6}s1n\d{2}-\d{6}s2n\d{2}-\d{6}s3n\d{2}_IW_\d{8}_\d{8}_(?:VV|HH)_INT\d{2}"
    r"_[0-9A-F]{4})")


def is_hyp3(path: Path) -> bool:
    """A HyP3 product zip, product folder, or ``*_unw_phase.tif`` of one."""
    name = path.name
    if path.suffix == ".zip" or path.is_dir():
        return HYP3_NAME.fullmatch(path.stem if path.suffix == ".zip" else name) is not None
    return name.endswith("_unw_phase.tif") and HYP3_NAME.match(name) is not None


def _metadata(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def _num(meta: dict[str, str], key: str) -> float | None:
    try:
        return float(meta[key].split()[0])
    except (KeyError, ValueError, IndexError):
        return None


def _product(root: str, name: str, members: set[str], read_text) -> Interferogram:
    unw = f"{name}_unw_phase.tif"
    if unw not in members:
        raise InputError(f"HyP3 product {name} has no {unw}")
    dates = dates_in_name(name)
    if dates is None:
        raise InputError(f"HyP3 product {name}: no dates in the name")
    meta = _metadata(read_text(f"{name}.txt")) if f"{name}.txt" in members else {}
    coh = Band(f"{root}/{name}_corr.tif", 1, 0.0) if f"{name}_corr.tif" in members else None
    heading = _num(meta, "heading")
    ifg = Interferogram(
        fmt="HyP3", name=name, date1=dates[0], date2=dates[1],
        phase=Band(f"{root}/{unw}", 1, 0.0), units="rad", sign=1, wavelength=S1_WAVELENGTH,
        coherence=coh, bperp=_num(meta, "baseline"),
        slant_range_m=_num(meta, "slant range center"),
        heading_deg=None if heading is None else math.remainder(heading, 360.0))
    return describe_band(ifg)


def hyp3_interferograms(path: Path) -> list[Interferogram]:
    """The interferogram of a HyP3 zip, product folder or ``*_unw_phase.tif``."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                by_base = {n.rsplit("/", 1)[-1]: n for n in names}
                name = path.stem
                prefix = by_base.get(f"{name}_unw_phase.tif", "").rsplit("/", 1)
                inner = prefix[0] if len(prefix) == 2 else ""
                root = f"/vsizip/{path.absolute()}" + (f"/{inner}" if inner else "")

                def read_text(member: str) -> str:
                    with zf.open(by_base[member]) as fh:
                        return fh.read(1 << 20).decode(errors="replace")

                return [_product(root, name, set(by_base), read_text)]
        except zipfile.BadZipFile:
            raise InputError(f"{path.name} is not a readable zip") from None
    folder = path if path.is_dir() else path.parent
    name = path.name if path.is_dir() else path.name[: -len("_unw_phase.tif")]
    members = {p.name for p in folder.iterdir()}
    return [_product(str(folder.absolute()), name, members,
                     lambda m: (folder / m).read_text(errors="replace")[: 1 << 20])]
