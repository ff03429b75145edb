"""Sentinel-2 quality layers: L2A scene classification (SCL) and L1C detector footprints.

* **SCL** (L2A): the scene classification at 20 m, ``GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2``
  in a SAFE, or an ``*SCL*`` raster with the same ``YYYYMMDD`` beside a plain image.
  :data:`SCL_MASKED` are the classes left out of the correlation.
* **Detector footprints** (L1C and L2A): ``GRANULE/*/QI_DATA/MSK_DETFOO_<band>.gml`` in older
  products (one GML polygon per detector, the detector number in the feature's
  ``gml:id``, e.g. ``detector_footprint-B04-07-0``) or ``MSK_DETFOO_<band>.jp2`` since
  processing baseline 04.00 (a raster whose value is the detector number, 0 outside);
  beside a plain image, an ``*DETFOO*`` file with the same date.

Both are read onto a target grid (nearest neighbour). Every problem raises
:class:`~gdmcore.InputError` with a one-line message.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path

import numpy as np
from lxml import etree
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioError
from rasterio.features import rasterize
from rasterio.warp import transform_bounds, transform_geom
from rasterio.windows import Window

from gdmcore import InputError
from gdmio._util import first_line, quiet_rasterio
from gdmio.grid import Grid, read_on_grid
from gdmio.raster import RasterInfo, date_from_name, open_info

__all__ = [
    "SCL_CLASSES",
    "SCL_MASKED",
    "check_scl",
    "find_detfoo",
    "find_scl",
    "parse_detfoo_gml",
    "read_detector_map",
    "read_scl_mask",
]

#: Sentinel-2 L2A scene classification values.
SCL_CLASSES = {
    0: "no data", 1: "saturated or defective", 2: "dark area", 3: "cloud shadow",
    4: "vegetation", 5: "not vegetated", 6: "water", 7: "unclassified",
    8: "cloud medium probability", 9: "cloud high probability", 10: "thin cirrus",
    11: "snow or ice",
}
#: Classes masked out of the correlation.
SCL_MASKED = (0, 1, 3, 6, 8, 9, 10, 11)

_SCL_MEMBER = re.compile(r"(^|/)GRANULE/[^/]+/IMG_DATA/(R\d+m/)?[^/]*_SCL(_\d+m)?\.jp2$",
                         re.IGNORECASE)
_DET_ID = re.compile(r"-(\d{1,2})(?:-\d+)?$")
_MIN_COVER = 0.99


def _siblings(image: Path, word: str, date: dt.date | None) -> list[Path]:
    """Files beside ``image`` whose name holds ``word`` and the same date."""
    if date is None or not image.is_file():
        return []
    out = []
    for p in sorted(image.parent.iterdir()):
        if p == image or not p.is_file() or word not in p.name.upper():
            continue
        if p.suffix.lower() not in (".tif", ".tiff", ".jp2", ".gml", ".vrt"):
            continue
        if date_from_name(p.name) == date:
            out.append(p)
    return out


def _safe_members(safe: Path) -> tuple[list[str], str]:
    """Member paths of a SAFE folder or zip, and the prefix to open them with GDAL."""
    if safe.is_dir():
        members = [p.relative_to(safe).as_posix() for p in safe.glob("GRANULE/*/*/**/*")
                   if p.is_file()]
        return members, str(safe.absolute()) + "/"
    try:
        with zipfile.ZipFile(safe) as zf:
            members = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"cannot read {safe.name}: corrupt zip ({first_line(exc)})") from exc
    return members, f"/vsizip/{safe.absolute().as_posix()}/"


def _is_safe(path: Path) -> bool:
    if path.is_dir():
        return path.name.upper().endswith(".SAFE") or (path / "GRANULE").is_dir()
    return path.is_file() and zipfile.is_zipfile(path)


def find_scl(image: Path, date: dt.date | None) -> RasterInfo | None:
    """The scene classification of an input image, or None when it has none.

    Raises
    ------
    InputError
        When the SCL raster is unreadable or not georeferenced, or when several
        ``*SCL*`` files beside the image have its date.

    """
    image = Path(image)
    if _is_safe(image):
        members, _ = _safe_members(image)
        if not any(_SCL_MEMBER.search(m) for m in members):
            return None
        return open_info(image, band="SCL")
    found = _siblings(image, "SCL", date)
    if not found:
        return None
    if len(found) > 1:
        raise InputError(f"several scene classifications for {image.name}: "
                         f"{', '.join(p.name for p in found)}")
    return open_info(found[0])


def _covers(info: RasterInfo, grid: Grid, label: str) -> None:
    """Raise unless ``info`` covers the grid's footprint (99 %)."""
    try:
        left, bottom, right, top = transform_bounds(info.crs, grid.crs, *info.bounds)
    except (CRSError, RasterioError) as exc:
        raise InputError(f"{label}: cannot transform its CRS to the grid's "
                         f"({first_line(exc)})") from exc
    gl, gb, gr, gt = grid.bounds
    w = max(0.0, min(right, gr) - max(left, gl))
    h = max(0.0, min(top, gt) - max(bottom, gb))
    area = (gr - gl) * (gt - gb)
    if area <= 0 or w * h < _MIN_COVER * area:
        raise InputError(f"{label} does not cover the image it goes with (covers "
                         f"{100 * w * h / max(area, 1e-300):.0f}%): wrong file, extent or CRS")


def check_scl(info: RasterInfo, grid: Grid) -> None:
    """Check that an SCL raster is a scene classification over the whole grid."""
    if np.dtype(info.dtype).kind not in "ui":
        raise InputError(f"{info.name} is not a scene classification: values are "
                         f"{info.dtype}, not integer classes 0-11")
    _covers(info, grid, info.name)


def read_scl_mask(info: RasterInfo, grid: Grid, window: Window | None = None) -> np.ndarray:
    """Masked pixels (True) of a scene classification on a window of ``grid``.

    Pixels outside the SCL footprint are not masked (the image's own no-data decides).

    Raises
    ------
    InputError
        When it holds values that are not SCL classes (0-11).

    """
    scl = read_on_grid(info, grid, window, resampling="nearest")
    finite = np.isfinite(scl)
    values = scl[finite]
    if values.size and (values.max() > 11 or values.min() < 0 or
                        np.any(values != np.round(values))):
        raise InputError(f"{info.name} is not a scene classification: values outside the "
                         "classes 0-11")
    return finite & np.isin(np.where(finite, scl, 2), SCL_MASKED)


def find_detfoo(image: Path, band: str, date: dt.date | None) -> str | None:
    """GDAL name or path of the detector-footprint mask of an input image, or None."""
    image = Path(image)
    if _is_safe(image):
        members, prefix = _safe_members(image)
        pat = re.compile(rf"(^|/)GRANULE/[^/]+/QI_DATA/MSK_DETFOO_{band}\.(gml|jp2)$",
                         re.IGNORECASE)
        hits = sorted(m for m in members if pat.search(m))
        if not hits:
            return None
        return prefix + hits[0]
    found = _siblings(image, "DETFOO", date)
    if not found:
        return None
    if len(found) > 1:
        raise InputError(f"several detector footprint masks for {image.name}: "
                         f"{', '.join(p.name for p in found)}")
    return str(found[0])


def _read_bytes(name: str) -> bytes:
    """Bytes of a file, or of a member of a zip named ``/vsizip/<zip>/<member>``."""
    if name.startswith("/vsizip/"):
        rest = name[len("/vsizip/"):]
        for k in [i for i, ch in enumerate(rest) if ch == "/"]:
            if Path(rest[:k]).is_file():
                try:
                    with zipfile.ZipFile(rest[:k]) as zf:
                        return zf.read(rest[k + 1:])
                except (zipfile.BadZipFile, OSError, KeyError) as exc:
                    raise InputError(f"cannot read {rest[k + 1:]}: {first_line(exc)}") from exc
        raise InputError(f"cannot read {name}: zip not found")
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {Path(name).name}: {first_line(exc)}") from exc


def _srs(text: str | None) -> CRS | None:
    if not text:
        return None
    m = re.search(r"EPSG(?::[\d.]*)?:{1,2}(\d+)$", text.strip()) or re.search(
        r"EPSG/\d+/(\d+)$", text.strip())
    try:
        return CRS.from_epsg(int(m.group(1))) if m else CRS.from_user_input(text)
    except CRSError:
        return None


def parse_detfoo_gml(data: bytes, label: str) -> tuple[CRS, list[tuple[int, dict]]]:
    """Detector polygons of an ``MSK_DETFOO_*.gml``: the CRS and (detector, GeoJSON) pairs."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise InputError(f"cannot read {label}: corrupt GML ({first_line(exc)})") from exc
    crs = None
    for el in root.iter():
        crs = _srs(el.get("srsName"))
        if crs is not None:
            break
    if crs is None:
        raise InputError(f"cannot read {label}: no srsName (CRS) in the GML")
    out: list[tuple[int, dict]] = []
    for feat in root.iter():
        if not isinstance(feat.tag, str) or not feat.tag.endswith("MaskFeature"):
            continue
        fid = next((v for k, v in feat.attrib.items() if k.endswith("}id") or k == "id"), "")
        m = _DET_ID.search(fid)
        if not m:
            raise InputError(f"cannot read {label}: feature {fid!r} names no detector")
        det = int(m.group(1))
        for poly in feat.iter():
            if not isinstance(poly.tag, str) or not poly.tag.endswith("}Polygon"):
                continue
            rings = []
            for ring in poly.iter():
                if not isinstance(ring.tag, str) or not ring.tag.endswith("}posList"):
                    continue
                dim = int(ring.get("srsDimension") or poly.get("srsDimension") or 2)
                try:
                    vals = np.array((ring.text or "").split(), dtype=np.float64)
                except ValueError:
                    raise InputError(f"cannot read {label}: non-numeric coordinates in "
                                     f"detector {det}") from None
                if dim not in (2, 3) or vals.size < 3 * dim or vals.size % dim:
                    raise InputError(f"cannot read {label}: malformed polygon of "
                                     f"detector {det}")
                xy = vals.reshape(-1, dim)[:, :2]
                if not np.all(np.isfinite(xy)):
                    raise InputError(f"cannot read {label}: non-finite coordinates")
                rings.append(xy.tolist())
            if rings:
                out.append((det, {"type": "Polygon", "coordinates": rings}))
    if not out:
        raise InputError(f"cannot read {label}: no detector polygon in the GML")
    return crs, out


def read_detector_map(name: str, grid: Grid) -> np.ndarray:
    """Detector number of every cell of ``grid`` (int16; -1 outside every footprint).

    ``name``: a ``.gml`` (polygons, rasterised at cell centres) or a raster (resampled by
    nearest neighbour, 0 = no detector).

    Raises
    ------
    InputError
        Unreadable or corrupt mask, detector numbers outside 1-12, no coverage of the grid.

    """
    label = name.rstrip("/").rsplit("/", 1)[-1]
    if name.lower().endswith(".gml"):
        crs, polys = parse_detfoo_gml(_read_bytes(name), label)
        shapes = []
        for det, geom in polys:
            if not 1 <= det <= 12:
                raise InputError(f"{label}: detector number {det} outside 1-12")
            if crs != grid.crs:
                try:
                    geom = transform_geom(crs, grid.crs, geom)
                except (CRSError, RasterioError, ValueError) as exc:
                    raise InputError(f"{label}: cannot transform to the grid's CRS "
                                     f"({first_line(exc)})") from exc
            shapes.append((geom, det))
        with quiet_rasterio():
            dets = rasterize(shapes, out_shape=(grid.height, grid.width),
                             transform=grid.transform, fill=0, dtype="int16")
    else:
        info = open_info(name)
        if np.dtype(info.dtype).kind not in "ui":
            raise InputError(f"{label} is not a detector mask: values are {info.dtype}")
        raw = read_on_grid(info, grid, resampling="nearest")
        finite = np.isfinite(raw)
        if finite.any() and (raw[finite].max() > 12 or raw[finite].min() < 0):
            raise InputError(f"{label} is not a detector mask: values outside 0-12")
        dets = np.where(finite, raw, 0).astype(np.int16)
    if not np.any(dets > 0):
        raise InputError(f"{label}: no detector footprint over the image")
    return np.where(dets > 0, dets, -1).astype(np.int16)
