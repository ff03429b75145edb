"""RPC camera models from the files real deliveries carry, in one pixel convention.

Sources (see :func:`read_rpc_file` and :func:`image_rpc`):

- the GeoTIFF RPC tag (or any RPC that GDAL finds: ``_RPC.TXT``, a DIMAP side-car);
- a DIMAP V2 ``RPC_*.XML`` of a Pléiades/SPOT delivery (``Global_RFM``); its image
  coordinates count the first pixel as (1, 1), so one is taken off the line and sample
  offsets;
- an OSSIM/OTB keyword file (``.geom``: ``line_num_coeff_00..19`` are the RPC00B
  ``LINE_NUM_COEFF_1..20``, ``line_off``..., zero-based pixel centres);
- GDAL's ``RPC00B`` text (``_RPC.TXT``, ``LINE_OFF: ...``).

The project's convention (:mod:`kernels.rpc`): integer (row, col) at pixel centres,
(0, 0) the first pixel of the image that is read.

Crop offsets: a crop of a full scene whose RPC file describes the full scene carries
its position in the GeoTIFF ModelTransformationTag (no CRS, a unit-scale translation:
GDAL reports the transform ``(1, 0, col0, 0, 1, row0)``, as OTB and CARS write it).
:func:`image_rpc` moves the offsets of an external RPC file by that crop position.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from gdmcore import InputError
from kernels.rpc import Rpc

__all__ = ["read_rpc_file", "parse_geom", "parse_dimap_rpc", "parse_rpc_txt", "crop_offset",
           "shift_rpc", "image_rpc", "rpc_agreement"]

_SCALARS = ("line_off", "samp_off", "lat_off", "long_off", "height_off", "line_scale",
            "samp_scale", "lat_scale", "long_scale", "height_scale")
_POLYS = ("line_num", "line_den", "samp_num", "samp_den")


def _build(values: dict[str, Any], name: str) -> Rpc:
    missing = [k for k in _SCALARS + _POLYS if k not in values]
    if missing:
        raise InputError(f"{name}: incomplete RPC model (missing {', '.join(missing[:4])})")
    try:
        return Rpc(**values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: invalid RPC model ({exc})") from None


def _float(text: str, name: str, key: str) -> float:
    try:
        return float(text.strip().split()[0])
    except (ValueError, IndexError):
        raise InputError(f"{name}: RPC value {key} is not a number ({text[:30]!r})") from None


def parse_geom(text: str, name: str = "RPC") -> Rpc:
    """An RPC model from an OSSIM/OTB keyword list (``.geom``), zero-based pixel centres.

    Raises
    ------
    InputError
        When a key is missing or a value is not a number.

    """
    kv: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            kv[k.strip()] = v.strip()
    if "line_num_coeff_00" not in kv:
        raise InputError(f"{name}: not an OSSIM RPC keyword file (no line_num_coeff_00)")
    vals: dict[str, Any] = {k: _float(kv[k], name, k) for k in _SCALARS if k in kv}
    for poly in _POLYS:
        coeffs = []
        for i in range(20):
            key = f"{poly}_coeff_{i:02d}"
            if key not in kv:
                raise InputError(f"{name}: missing {key}")
            coeffs.append(_float(kv[key], name, key))
        vals[poly] = coeffs
    return _build(vals, name)


def parse_rpc_txt(text: str, name: str = "RPC") -> Rpc:
    """An RPC model from GDAL's RPC00B text (``LINE_OFF: ...``, ``LINE_NUM_COEFF_1: ...``)."""
    kv: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            kv[k.strip().upper()] = v.strip()
    vals: dict[str, Any] = {k: _float(kv[k.upper()], name, k) for k in _SCALARS
                            if k.upper() in kv}
    for poly in _POLYS:
        key = f"{poly.upper()}_COEFF"
        if key in kv:  # one line of 20 values
            coeffs = [float(x) for x in kv[key].split()]
        else:
            coeffs = [_float(kv.get(f"{key}_{i}", "nan"), name, f"{key}_{i}")
                      for i in range(1, 21)]
        vals[poly] = coeffs
    return _build(vals, name)


def parse_dimap_rpc(path: str | os.PathLike[str]) -> Rpc:
    """An RPC model from a DIMAP V2 ``RPC_*.XML`` (one-based pixels moved to zero-based).

    Raises
    ------
    InputError
        When the file is not readable XML or lacks a coefficient.

    """
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{p.name}: not a readable RPC XML ({exc})") from None
    found: dict[str, str] = {}
    for el in root.iter():
        if isinstance(el.tag, str) and el.text and el.text.strip():
            found[el.tag.split("}")[-1].upper()] = el.text.strip()
    if "LINE_OFF" not in found or "SAMP_NUM_COEFF_1" not in found:
        raise InputError(f"{p.name}: no RPC model (no LINE_OFF / SAMP_NUM_COEFF_1)")
    vals: dict[str, Any] = {}
    for k in _SCALARS:
        if k.upper() in found:
            vals[k] = _float(found[k.upper()], p.name, k)
    for poly in _POLYS:
        coeffs = []
        for i in range(1, 21):
            key = f"{poly.upper()}_COEFF_{i}"
            if key not in found:
                raise InputError(f"{p.name}: missing {key}")
            coeffs.append(_float(found[key], p.name, key))
        vals[poly] = coeffs
    if "line_off" in vals and "samp_off" in vals:
        vals["line_off"] -= 1.0  # DIMAP counts the first pixel as (1, 1)
        vals["samp_off"] -= 1.0
    return _build(vals, p.name)


def read_rpc_file(path: str | os.PathLike[str]) -> Rpc:
    """An RPC model from a file of any supported kind (found by its content).

    Raises
    ------
    InputError
        When the file is missing, unreadable or holds no RPC model.

    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"RPC file {p}: no such file")
    try:
        head = p.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError as exc:
        raise InputError(f"RPC file {p.name}: not readable ({exc.strerror})") from None
    if head.lstrip().startswith("<"):
        return parse_dimap_rpc(p)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"RPC file {p.name}: not readable ({exc.strerror})") from None
    if "line_num_coeff_00" in text:
        return parse_geom(text, p.name)
    if re.search(r"(?im)^\s*LINE_OFF\s*:", text):
        return parse_rpc_txt(text, p.name)
    raise InputError(f"RPC file {p.name}: not an RPC model (DIMAP RPC XML, OSSIM .geom or "
                     "RPC00B text expected)")


def crop_offset(transform: Any, crs: Any) -> tuple[float, float]:
    """(row0, col0) of a crop in its full scene, from a unit-scale transform without CRS.

    Anything else (a map transform, a scaled or rotated one) is not a crop offset: (0, 0).
    """
    if crs is not None or transform is None:
        return 0.0, 0.0
    a, b, c, d, e, f = (float(x) for x in tuple(transform)[:6])
    if a == 1.0 and e == 1.0 and b == 0.0 and d == 0.0 and c == int(c) and f == int(f):
        return f, c
    return 0.0, 0.0


def shift_rpc(rpc: Rpc, row0: float, col0: float) -> Rpc:
    """The model of a crop starting at (row0, col0) of the image ``rpc`` describes."""
    from dataclasses import replace

    if row0 == 0 and col0 == 0:
        return rpc
    return replace(rpc, line_off=rpc.line_off - row0, samp_off=rpc.samp_off - col0)


def image_rpc(image: str | os.PathLike[str], gdal_rpcs: Any, transform: Any, crs: Any,
              rpc_file: str | os.PathLike[str] | None = None) -> tuple[Rpc, str]:
    """The RPC model of an image and where it came from.

    Order: ``rpc_file`` if given (moved by the crop offset); the RPC that GDAL reads
    (TIFF tag, ``_RPC.TXT``, DIMAP side-car; used as it is: GDAL rebases it on crops);
    an OSSIM ``<stem>.geom`` beside the image (moved by the crop offset).

    Raises
    ------
    InputError
        When there is none or it is invalid.

    """
    p = Path(image)
    row0, col0 = crop_offset(transform, crs)
    if rpc_file is not None:
        src = Path(rpc_file)
        return shift_rpc(read_rpc_file(src), row0, col0), f"{src.name} (crop {row0:.0f}, " \
            f"{col0:.0f})"
    if gdal_rpcs is not None:
        try:
            return Rpc.from_rasterio(gdal_rpcs), "GDAL RPC metadata"
        except (TypeError, ValueError) as exc:
            raise InputError(f"{p.name}: invalid RPC model ({exc})") from None
    geom = p.with_suffix(".geom")
    if geom.is_file():
        return shift_rpc(read_rpc_file(geom), row0, col0), f"{geom.name} (crop {row0:.0f}, " \
            f"{col0:.0f})"
    raise InputError(f"{p.name}: no RPC camera model (no RPC tag, no _RPC.TXT or RPC_*.XML "
                     "side-car that GDAL finds, no .geom beside it; give one with --rpc)")


def rpc_agreement(a: Rpc, b: Rpc, rows: int, cols: int) -> float:
    """Largest image distance (px) between two models over an image's corners and heights.

    A check for tests and reports: the same camera read from two sources should agree to
    well below a pixel.
    """
    r = np.array([0, 0, rows - 1, rows - 1, (rows - 1) / 2], float)
    c = np.array([0, cols - 1, 0, cols - 1, (cols - 1) / 2], float)
    worst = 0.0
    for h in (a.height_range[0] + 1, a.height_off, a.height_range[1] - 1):
        lon, lat = a.localise(r, c, h)
        rr, cc = b.project(lon, lat, h)
        worst = max(worst, float(np.nanmax(np.hypot(rr - r, cc - c))))
    return worst
