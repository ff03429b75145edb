"""ESA SNAP products: BEAM-DIMAP (``.dim`` + ``.data/``) and ZNAP (``.znap``, zarr v2).

Pure reading, no interpretation: :func:`open_snap` gives a :class:`SnapProduct` with its
raster size, bands (read by rows, scaled to physical values), tie-point grids
(interpolated as SNAP does: pixel ``(x, y)`` is sampled at ``(x + 0.5, y + 0.5)``,
bilinear between tie points at ``offset + k * step``) and its metadata tree (the
``MDElem``/``MDATTR`` tree SNAP keeps: ``Abstracted_Metadata``, ``Slave_Metadata``, ...),
with values typed (text, numbers, UTC times as naive ``datetime``).

Layouts read:

- BEAM-DIMAP: the XML header ``NAME.dim`` (``Raster_Dimensions``, ``Image_Interpretation/
  Spectral_Band_Info``, ``Data_Access/Data_File``, ``Tie_Point_Grids``,
  ``Dataset_Sources/MDElem``) and one ENVI raster per band in ``NAME.data/`` (``.hdr``
  + ``.img``, band sequential, big-endian as SNAP writes, little-endian accepted),
  tie-point grids in ``NAME.data/tie_point_grids/``; also inside a zip.
- ZNAP: a zarr v2 group (``.zgroup``, ``.zattrs`` with ``znap_format``), one array per
  band (dims ``y, x``) or tie-point grid (dims ``yt, xt`` with ``subsampling_x/y``,
  ``offset_x/y``), chunks uncompressed, zlib or gzip (others through ``numcodecs`` when
  installed), the metadata tree in ``SNAP/product_metadata.json``; a folder or a
  ``.znap.zip``.

Everything read is checked (sizes, data types, paths that stay inside the product,
decompressed sizes), so a hostile product raises :class:`~gdmcore.InputError`
with one line naming the product and the problem.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import posixpath
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from lxml import etree

from gdmcore import InputError

__all__ = ["MetadataElement", "SnapBand", "TiePointGrid", "SnapProduct", "open_snap",
           "find_snap_products", "is_snap_product", "parse_snap_time"]

_MJD2000 = dt.datetime(2000, 1, 1)
_MONTHS = {m: k + 1 for k, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))}
_UTC_TEXT = re.compile(r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})"
                       r"(?:\.(\d{1,6}))?\s*$")
# ENVI "data type" codes -> numpy kinds (byte order added from "byte order")
_ENVI_TYPES = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 6: "c8", 9: "c16", 12: "u2",
               13: "u4", 14: "i8", 15: "u8"}
_DIMAP_TYPES = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4",
                "uint32": "u4", "int64": "i8", "uint64": "u8", "float32": "f4",
                "float64": "f8"}
_MAX_PIXELS = 2_000_000_000  # one band: 2 G pixels is beyond any SNAP SLC subswath
_MAX_XML = 512 * 2**20
_MAX_JSON = 512 * 2**20


def parse_snap_time(value: Any) -> dt.datetime:
    """Parse a SNAP UTC value.

    ``31-MAR-2023 05:50:35.812250`` (DIMAP text) or ``[days since 2000-01-01, seconds,
    microseconds]`` (ZNAP JSON); returns a naive UTC datetime.
    """
    if isinstance(value, list | tuple) and len(value) == 3:
        d, s, us = (int(v) for v in value)
        return _MJD2000 + dt.timedelta(days=d, seconds=s, microseconds=us)
    if isinstance(value, str):
        m = _UTC_TEXT.match(value)
        if m and m.group(2).upper() in _MONTHS:
            frac = (m.group(7) or "0").ljust(6, "0")
            return dt.datetime(int(m.group(3)), _MONTHS[m.group(2).upper()], int(m.group(1)),
                               int(m.group(4)), int(m.group(5)), int(m.group(6)), int(frac))
    raise ValueError(f"not a SNAP UTC time: {value!r}")


@dataclass
class MetadataElement:
    """One ``MDElem`` of SNAP's metadata tree: typed attributes and child elements."""

    name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    elements: list[MetadataElement] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # SNAP type of each attribute

    def element(self, name: str) -> MetadataElement | None:
        """The first child element called ``name`` (None when absent)."""
        return next((e for e in self.elements if e.name == name), None)

    def find(self, name: str) -> MetadataElement | None:
        """The first element called ``name`` at any depth below (depth first)."""
        for e in self.elements:
            if e.name == name:
                return e
            hit = e.find(name)
            if hit is not None:
                return hit
        return None

    def get(self, name: str, default: Any = None) -> Any:
        """The value of attribute ``name`` (``default`` when absent)."""
        return self.attributes.get(name, default)

    def walk(self) -> Iterator[MetadataElement]:
        """Iterate over this element and every element below it."""
        yield self
        for e in self.elements:
            yield from e.walk()


def _typed(kind: str, raw: Any, label: str) -> Any:
    """A metadata value of SNAP type ``kind`` from its DIMAP text or ZNAP JSON form."""
    kind = (kind or "ascii").lower()
    try:
        if kind == "ascii":
            return "" if raw is None else str(raw)
        if kind == "utc":
            return parse_snap_time(raw)
        if isinstance(raw, str) and kind in ("uint8", "int8") and raw.endswith("=") and \
                not raw.lstrip("-").isdigit():
            vals: list[Any] = list(base64.b64decode(raw))  # ZNAP's byte arrays
        elif isinstance(raw, str):
            parts = [p for p in re.split(r"[,\s]+", raw.strip()) if p]
            vals = parts
        elif isinstance(raw, list):
            vals = raw
        else:
            vals = [raw]
        if kind.startswith("float"):
            out: list[Any] = [float(v) for v in vals]
        else:
            out = [int(v) for v in vals]
    except (ValueError, TypeError, base64.binascii.Error):  # type: ignore[attr-defined]
        raise InputError(f"{label}: metadata value {str(raw)[:60]!r} is not {kind}") from None
    if not out:
        return None
    return out[0] if len(out) == 1 else out


@dataclass
class TiePointGrid:
    """A SNAP tie-point grid: values at pixel ``offset + k * step`` (SNAP image coordinates)."""

    name: str
    data: np.ndarray
    offset_x: float
    offset_y: float
    step_x: float
    step_y: float
    unit: str = ""

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Values at pixels (rows, cols), bilinear in the grid, extrapolated at the edges.

        SNAP samples pixel ``(x, y)`` at image coordinates ``(x + 0.5, y + 0.5)``.
        """
        rows = np.asarray(rows, np.float64)
        cols = np.asarray(cols, np.float64)
        gy = (rows + 0.5 - self.offset_y) / self.step_y
        gx = (cols + 0.5 - self.offset_x) / self.step_x
        ny, nx = self.data.shape
        iy = np.clip(np.floor(gy).astype(np.int64), 0, ny - 2)
        ix = np.clip(np.floor(gx).astype(np.int64), 0, nx - 2)
        fy, fx = gy - iy, gx - ix
        d = self.data.astype(np.float64)
        return ((1 - fy) * ((1 - fx) * d[iy, ix] + fx * d[iy, ix + 1])
                + fy * ((1 - fx) * d[iy + 1, ix] + fx * d[iy + 1, ix + 1]))

    def full(self, height: int, width: int) -> np.ndarray:
        """The grid interpolated at every pixel of a ``height`` x ``width`` raster."""
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        return self.at(rows, cols)


@dataclass
class SnapBand:
    """A band: its size, stored data type and how to read rows of it."""

    name: str
    width: int
    height: int
    dtype: np.dtype
    unit: str
    scale: float
    offset: float
    reader: Callable[[int, int], np.ndarray] = field(repr=False)

    def read(self, r0: int = 0, r1: int | None = None) -> np.ndarray:
        """Rows ``r0:r1`` as physical values (scaling applied; complex stays complex)."""
        r1 = self.height if r1 is None else r1
        if not 0 <= r0 <= r1 <= self.height:
            raise ValueError(f"rows {r0}:{r1} outside band {self.name} ({self.height} rows)")
        raw = self.reader(r0, r1)
        if self.scale == 1.0 and self.offset == 0.0:
            return raw
        return raw * self.scale + self.offset


@dataclass
class SnapProduct:
    """A SNAP product opened for reading."""

    path: Path
    format: str  # "BEAM-DIMAP" or "ZNAP"
    name: str
    width: int
    height: int
    bands: dict[str, SnapBand]
    tie_point_grids: dict[str, TiePointGrid]
    metadata: MetadataElement
    start: dt.datetime | None = None
    _close: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """How errors name the product."""
        return self.path.name

    def abstracted(self) -> MetadataElement:
        """``Abstracted_Metadata`` (InputError when the product has none)."""
        am = self.metadata.element("Abstracted_Metadata") or self.metadata.find(
            "Abstracted_Metadata")
        if am is None:
            raise InputError(f"{self.label}: no Abstracted_Metadata in the SNAP metadata "
                             "(not a SAR product written by SNAP?)")
        return am

    def close(self) -> None:
        """Release open archives."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> SnapProduct:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- files of a product


class _Files:
    """Files of a product, in a folder or a zip, addressed by relative POSIX paths."""

    def __init__(self, root: Path, label: str) -> None:
        self.label = label
        self.zip: zipfile.ZipFile | None = None
        self.root = root
        self.names: set[str] = set()
        if root.is_file():
            try:
                self.zip = zipfile.ZipFile(root)
            except (zipfile.BadZipFile, OSError) as exc:
                raise InputError(f"{label}: not a readable zip ({exc})") from None
            self.names = {n for n in self.zip.namelist() if not n.endswith("/")}

    def _safe(self, rel: str) -> str:
        rel = posixpath.normpath(rel.replace("\\", "/"))
        if rel.startswith(("/", "../")) or rel == ".." or re.match(r"^[A-Za-z]:", rel):
            raise InputError(f"{self.label}: path {rel!r} leaves the product")
        return rel

    def exists(self, rel: str) -> bool:
        rel = self._safe(rel)
        if self.zip is not None:
            return rel in self.names
        p = self.root / rel
        return p.is_file() and p.resolve().is_relative_to(self.root.resolve())

    def size(self, rel: str) -> int:
        rel = self._safe(rel)
        if self.zip is not None:
            return self.zip.getinfo(rel).file_size
        return (self.root / rel).stat().st_size

    def read(self, rel: str, limit: int | None = None) -> bytes:
        rel = self._safe(rel)
        if not self.exists(rel):
            raise InputError(f"{self.label}: {rel} is missing")
        if limit is not None and self.size(rel) > limit:
            raise InputError(f"{self.label}: {rel} is larger than {limit // 2**20} MiB")
        if self.zip is not None:
            return self.zip.read(rel)
        return (self.root / rel).read_bytes()

    def read_range(self, rel: str, start: int, length: int) -> bytes:
        rel = self._safe(rel)
        if self.zip is not None:
            with self.zip.open(rel) as f:
                f.seek(start)
                data = f.read(length)
        else:
            with open(self.root / rel, "rb") as f:
                f.seek(start)
                data = f.read(length)
        if len(data) != length:
            raise InputError(f"{self.label}: {rel} is truncated")
        return data

    def listdir(self, rel: str) -> list[str]:
        """Names directly inside folder ``rel`` ('' for the root)."""
        rel = "" if rel in ("", ".") else self._safe(rel).rstrip("/") + "/"
        if self.zip is not None:
            out = set()
            for n in self.names:
                if n.startswith(rel):
                    out.add(n[len(rel):].split("/", 1)[0])
            return sorted(out)
        folder = self.root / rel
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()
            self.zip = None


# ---------------------------------------------------------------- ENVI rasters (DIMAP)


def _envi_header(text: str, label: str) -> dict[str, str]:
    if not text.lstrip().startswith("ENVI"):
        raise InputError(f"{label}: not an ENVI header")
    out: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip().lower()] = v.strip()
    return out


def _envi_band(files: _Files, hdr_rel: str, name: str, width: int, height: int
               ) -> tuple[np.dtype, Callable[[int, int], np.ndarray]]:
    label = f"{files.label}: band {name}"
    h = _envi_header(files.read(hdr_rel, 1 << 20).decode("latin-1"), label)
    try:
        samples, lines = int(h["samples"]), int(h["lines"])
        nbands = int(h.get("bands", "1"))
        code = int(h["data type"])
        order = int(h.get("byte order", "1"))
        offset = int(h.get("header offset", "0"))
    except (KeyError, ValueError) as exc:
        raise InputError(f"{label}: ENVI header without a valid {exc}") from None
    if (samples, lines) != (width, height):
        raise InputError(f"{label}: ENVI raster {samples}x{lines} differs from the "
                         f"declared band size {width}x{height}")
    if nbands != 1 or h.get("interleave", "bsq").lower() != "bsq":
        raise InputError(f"{label}: only single-band BSQ ENVI rasters are SNAP's layout")
    if code not in _ENVI_TYPES or order not in (0, 1) or offset < 0:
        raise InputError(f"{label}: unsupported ENVI data type {code} / byte order {order}")
    dtype = np.dtype(("<" if order == 0 else ">") + _ENVI_TYPES[code])
    img = hdr_rel[:-4] + ".img"
    if not files.exists(img):
        raise InputError(f"{label}: raster file {posixpath.basename(img)} is missing")
    need = offset + width * height * dtype.itemsize
    if files.size(img) < need:
        raise InputError(f"{label}: {posixpath.basename(img)} holds {files.size(img)} bytes, "
                         f"{need} expected")

    def read(r0: int, r1: int) -> np.ndarray:
        row = width * dtype.itemsize
        raw = files.read_range(img, offset + r0 * row, (r1 - r0) * row)
        return np.frombuffer(raw, dtype).reshape(r1 - r0, width).astype(dtype.newbyteorder("="))

    return dtype, read


def _open_dimap(files: _Files, dim_rel: str, path: Path) -> SnapProduct:
    label = files.label
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        root = etree.fromstring(files.read(dim_rel, _MAX_XML), parser)
    except etree.XMLSyntaxError as exc:
        raise InputError(f"{label}: the .dim header is not XML ({exc})") from None
    if root.tag != "Dimap_Document":
        raise InputError(f"{label}: not a BEAM-DIMAP header (root <{root.tag}>)")
    try:
        width = int(root.findtext("Raster_Dimensions/NCOLS"))  # type: ignore[arg-type]
        height = int(root.findtext("Raster_Dimensions/NROWS"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{label}: Raster_Dimensions NCOLS/NROWS missing") from None
    _check_size(width, height, label)
    base = posixpath.dirname(dim_rel)
    hrefs: dict[int, str] = {}
    for df in root.findall("Data_Access/Data_File"):
        node = df.find("DATA_FILE_PATH")
        try:
            idx = int(df.findtext("BAND_INDEX"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"{label}: Data_File without BAND_INDEX") from None
        if node is None or not node.get("href"):
            raise InputError(f"{label}: Data_File {idx} without DATA_FILE_PATH href")
        hrefs[idx] = posixpath.join(base, node.get("href"))  # type: ignore[arg-type]
    bands: dict[str, SnapBand] = {}
    for sbi in root.findall("Image_Interpretation/Spectral_Band_Info"):
        name = (sbi.findtext("BAND_NAME") or "").strip()
        try:
            idx = int(sbi.findtext("BAND_INDEX"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"{label}: band {name or '?'} without BAND_INDEX") from None
        if idx not in hrefs:  # virtual bands (expressions) have no data file
            continue
        w = int(sbi.findtext("BAND_RASTER_WIDTH") or width)
        hgt = int(sbi.findtext("BAND_RASTER_HEIGHT") or height)
        dtype, reader = _envi_band(files, hrefs[idx], name, w, hgt)
        declared = (sbi.findtext("DATA_TYPE") or "").strip().lower()
        if declared and _DIMAP_TYPES.get(declared, "?") != dtype.str[1:]:
            raise InputError(f"{label}: band {name} is declared {declared} but its ENVI "
                             f"raster holds {dtype.name}")
        bands[name] = SnapBand(name, w, hgt, dtype, (sbi.findtext("PHYSICAL_UNIT") or ""),
                               float(sbi.findtext("SCALING_FACTOR") or 1.0),
                               float(sbi.findtext("SCALING_OFFSET") or 0.0), reader)
    tpg_files: dict[int, str] = {}
    for tf in root.findall("Data_Access/Tie_Point_Grid_File"):
        node = tf.find("TIE_POINT_GRID_FILE_PATH")
        try:
            idx = int(tf.findtext("TIE_POINT_GRID_INDEX"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if node is not None and node.get("href"):
            tpg_files[idx] = posixpath.join(base, node.get("href"))  # type: ignore[arg-type]
    grids: dict[str, TiePointGrid] = {}
    for info in root.findall("Tie_Point_Grids/Tie_Point_Grid_Info"):
        name = (info.findtext("TIE_POINT_GRID_NAME") or "").strip()
        try:
            idx = int(info.findtext("TIE_POINT_GRID_INDEX"))  # type: ignore[arg-type]
            nx, ny = int(info.findtext("NCOLS")), int(info.findtext("NROWS"))  # type: ignore[arg-type]
            geo = [float(info.findtext(k))  # type: ignore[arg-type]
                   for k in ("OFFSET_X", "OFFSET_Y", "STEP_X", "STEP_Y")]
        except (TypeError, ValueError):
            raise InputError(f"{label}: tie-point grid {name or '?'} is incomplete") from None
        if idx not in tpg_files or nx < 2 or ny < 2 or geo[2] <= 0 or geo[3] <= 0:
            raise InputError(f"{label}: tie-point grid {name} has no file or a bad geometry")
        _, reader = _envi_band(files, tpg_files[idx], name, nx, ny)
        grids[name] = TiePointGrid(name, reader(0, ny).astype(np.float64), geo[0], geo[1],
                                   geo[2], geo[3], unit=info.findtext("PHYSICAL_UNIT") or "")
    sources = root.find("Dataset_Sources")
    meta_xml = sources.find("MDElem") if sources is not None else None
    metadata = (_md_from_xml(meta_xml, label) if meta_xml is not None
                else MetadataElement("metadata"))
    start = None
    text = root.findtext("Production/PRODUCT_SCENE_RASTER_START_TIME")
    if text:
        try:
            start = parse_snap_time(text)
        except ValueError:
            start = None
    name = (root.findtext("Dataset_Id/DATASET_NAME") or Path(dim_rel).stem).strip()
    return SnapProduct(path=path, format="BEAM-DIMAP", name=name, width=width, height=height,
                       bands=bands, tie_point_grids=grids, metadata=metadata, start=start,
                       _close=files.close)


def _md_from_xml(node: etree._Element, label: str) -> MetadataElement:
    el = MetadataElement(node.get("name") or "")
    for child in node:
        if child.tag == "MDATTR":
            name = child.get("name") or ""
            el.types[name] = (child.get("type") or "ascii").lower()
            el.attributes[name] = _typed(el.types[name], child.text, label)
            if child.get("unit"):
                el.units[name] = child.get("unit") or ""
        elif child.tag == "MDElem":
            el.elements.append(_md_from_xml(child, label))
    return el


# ---------------------------------------------------------------- zarr v2 (ZNAP)


def _zarr_array(files: _Files, rel: str, label: str) -> tuple[dict, dict]:
    try:
        meta = json.loads(files.read(posixpath.join(rel, ".zarray"), 1 << 20))
        attrs_rel = posixpath.join(rel, ".zattrs")
        attrs = json.loads(files.read(attrs_rel, 16 << 20)) if files.exists(attrs_rel) else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{label}: zarr metadata of {rel} is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("zarr_format") != 2:
        raise InputError(f"{label}: {rel} is not a zarr v2 array")
    return meta, attrs if isinstance(attrs, dict) else {}


def _decompress(compressor: dict | None, raw: bytes, nbytes: int, label: str) -> bytes:
    if compressor is None:
        return raw
    cid = str(compressor.get("id", "")).lower()
    try:
        if cid in ("zlib", "gzip"):
            d = zlib.decompressobj(zlib.MAX_WBITS | (16 if cid == "gzip" else 0))
            out = d.decompress(raw, nbytes + 1)
        else:
            try:
                import numcodecs  # optional: blosc, zstd, lz4 chunks
            except ImportError:
                raise InputError(f"{label}: zarr compressor {cid!r} needs the numcodecs "
                                 "package (uncompressed, zlib and gzip are built in)") from None
            out = bytes(numcodecs.get_codec(compressor).decode(raw))
    except zlib.error as exc:
        raise InputError(f"{label}: corrupt {cid} chunk ({exc})") from None
    if len(out) != nbytes:
        raise InputError(f"{label}: a chunk decompresses to {len(out)} bytes, {nbytes} "
                         "expected")
    return out


def _zarr_reader(files: _Files, rel: str, meta: dict, label: str
                 ) -> tuple[np.dtype, tuple[int, int], Callable[[int, int], np.ndarray]]:
    try:
        shape = tuple(int(v) for v in meta["shape"])
        chunks = tuple(int(v) for v in meta["chunks"])
        dtype = np.dtype(meta["dtype"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{label}: zarr array {rel} has a bad shape/chunks/dtype ({exc})") \
            from None
    if len(shape) != 2 or len(chunks) != 2 or min(chunks) < 1 or min(shape) < 1:
        raise InputError(f"{label}: zarr array {rel} is not a 2-D raster")
    if dtype.kind not in "iufc" or dtype.itemsize > 16:
        raise InputError(f"{label}: zarr array {rel} has unsupported dtype {dtype}")
    if meta.get("filters"):
        raise InputError(f"{label}: zarr array {rel} uses filters (not SNAP's layout)")
    order = meta.get("order", "C")
    sep = meta.get("dimension_separator", ".")
    if order not in ("C", "F") or sep not in (".", "/"):
        raise InputError(f"{label}: zarr array {rel} has order {order!r} / separator {sep!r}")
    fill = meta.get("fill_value")
    fill_value = 0 if fill is None or isinstance(fill, str) else fill
    compressor = meta.get("compressor")
    if compressor is not None and not isinstance(compressor, dict):
        raise InputError(f"{label}: zarr array {rel} has a bad compressor entry")
    ch, cw = chunks
    nbytes = ch * cw * dtype.itemsize

    def chunk(i: int, j: int) -> np.ndarray:
        key = posixpath.join(rel, f"{i}{sep}{j}")
        if not files.exists(key):
            return np.full((ch, cw), fill_value, dtype)
        raw = files.read(key, max(nbytes * 2 + 1024, 1 << 20) if compressor else None)
        if compressor is None and len(raw) != nbytes:
            raise InputError(f"{label}: chunk {key} holds {len(raw)} bytes, {nbytes} expected")
        buf = _decompress(compressor, raw, nbytes, f"{label}: {key}")
        return np.frombuffer(buf, dtype).reshape((ch, cw), order=order)

    def read(r0: int, r1: int) -> np.ndarray:
        out = np.empty((r1 - r0, shape[1]), dtype.newbyteorder("="))
        for i in range(r0 // ch, (r1 - 1) // ch + 1 if r1 > r0 else r0 // ch):
            a, b = max(r0, i * ch), min(r1, (i + 1) * ch)
            for j in range(math.ceil(shape[1] / cw)):
                c0, c1 = j * cw, min(shape[1], (j + 1) * cw)
                out[a - r0:b - r0, c0:c1] = chunk(i, j)[a - i * ch:b - i * ch, :c1 - c0]
        return out

    return dtype, shape, read  # type: ignore[return-value]


def _md_from_json(node: Any, label: str) -> MetadataElement:
    if not isinstance(node, dict):
        raise InputError(f"{label}: SNAP/product_metadata.json is not a metadata tree")
    el = MetadataElement(str(node.get("name", "")))
    for a in node.get("attributes", []) or []:
        if not isinstance(a, dict):
            continue
        data = a.get("data") or {}
        name = str(a.get("name", ""))
        el.types[name] = str(data.get("type", "ascii")).lower()
        el.attributes[name] = _typed(el.types[name], data.get("elems"), label)
        if a.get("unit"):
            el.units[name] = str(a["unit"])
    el.elements = [_md_from_json(e, label) for e in node.get("elements", []) or []]
    return el


def _open_znap(files: _Files, base: str, path: Path) -> SnapProduct:
    label = files.label
    try:
        attrs = json.loads(files.read(posixpath.join(base, ".zattrs"), 16 << 20))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{label}: .zattrs is not JSON ({exc})") from None
    if not isinstance(attrs, dict) or "znap_format" not in attrs:
        raise InputError(f"{label}: a zarr group without znap_format (not a SNAP ZNAP product)")
    try:
        width = int(attrs["product_scene_raster_width"])
        height = int(attrs["product_scene_raster_height"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{label}: .zattrs without product_scene_raster_width/height") \
            from None
    _check_size(width, height, label)
    bands: dict[str, SnapBand] = {}
    grids: dict[str, TiePointGrid] = {}
    for name in files.listdir(base):
        rel = posixpath.join(base, name)
        if not files.exists(posixpath.join(rel, ".zarray")):
            continue
        meta, a = _zarr_array(files, rel, label)
        dtype, shape, reader = _zarr_reader(files, rel, meta, label)
        dims = a.get("_ARRAY_DIMENSIONS", [])
        if "subsampling_x" in a or dims == ["yt", "xt"]:
            try:
                geo = [float(a.get(k, 0.0)) for k in ("offset_x", "offset_y")] + \
                      [float(a[k]) for k in ("subsampling_x", "subsampling_y")]
            except (KeyError, TypeError, ValueError):
                raise InputError(f"{label}: tie-point grid {name} without subsampling") \
                    from None
            if min(shape) < 2 or geo[2] <= 0 or geo[3] <= 0:
                raise InputError(f"{label}: tie-point grid {name} has a bad geometry")
            grids[name] = TiePointGrid(name, reader(0, shape[0]).astype(np.float64), geo[0],
                                       geo[1], geo[2], geo[3], unit=str(a.get("units", "")))
            continue
        if shape != (height, width):
            raise InputError(f"{label}: band {name} is {shape[1]}x{shape[0]}, the product "
                             f"{width}x{height}")
        bands[name] = SnapBand(name, width, height, dtype, str(a.get("units", "")),
                               float(a.get("scale_factor", 1.0)),
                               float(a.get("add_offset", 0.0)), reader)
    meta_rel = posixpath.join(base, "SNAP", "product_metadata.json")
    if files.exists(meta_rel):
        try:
            tree = json.loads(files.read(meta_rel, _MAX_JSON))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{label}: SNAP/product_metadata.json is not JSON ({exc})") \
                from None
        top = tree if isinstance(tree, list) else [tree]
        metadata = MetadataElement("metadata", elements=[_md_from_json(e, label) for e in top])
    else:
        metadata = MetadataElement("metadata")
    start = None
    if attrs.get("time_coverage_start"):
        try:
            start = dt.datetime.fromisoformat(str(attrs["time_coverage_start"])
                                              .replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            start = None
    return SnapProduct(path=path, format="ZNAP", name=str(attrs.get("product_name", path.stem)),
                       width=width, height=height, bands=bands, tie_point_grids=grids,
                       metadata=metadata, start=start, _close=files.close)


def _check_size(width: int, height: int, label: str) -> None:
    if width < 1 or height < 1 or width * height > _MAX_PIXELS:
        raise InputError(f"{label}: raster size {width}x{height} is not plausible")


# ---------------------------------------------------------------- entry points


def _is_znap_dir(p: Path) -> bool:
    return p.is_dir() and (p / ".zgroup").is_file() and (p / ".zattrs").is_file()


def is_snap_product(path: str | Path) -> bool:
    """Whether ``path`` is laid out as a SNAP product (checked by layout, not read).

    A ``.dim`` file, a ``.znap`` folder with its zarr group, or a zip holding a ``.dim``
    or a ZNAP group (``.znap.zip``).
    """
    p = Path(path)
    if p.name.startswith("."):
        return False
    if p.is_dir():
        return p.suffix.lower() == ".znap" and _is_znap_dir(p)
    if not p.is_file():
        return False
    if p.suffix.lower() == ".dim":
        return True
    if p.suffix.lower() != ".zip" or not zipfile.is_zipfile(p):
        return False
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.lower().endswith(".dim") for n in names) or (
        p.name.lower().endswith(".znap.zip") and any(n.endswith(".zgroup") for n in names))


def find_snap_products(folder: str | Path) -> list[Path]:
    """SNAP products directly inside ``folder``, sorted by name.

    ``*.dim`` headers, ``*.znap`` folders, ``*.znap.zip`` and zips holding a ``.dim``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if is_snap_product(p)]


def open_snap(path: str | Path) -> SnapProduct:
    """Open a SNAP product for reading.

    A ``.dim`` file, a ``.znap`` folder, a ``.znap.zip``, or a zip holding one ``.dim``
    with its ``.data`` folder.

    Raises
    ------
    InputError
        When the path is not a readable SNAP product (one line naming it and the problem).

    """
    path = Path(path)
    label = path.name
    if not path.exists():
        raise InputError(f"SNAP product not found: {path}")
    if path.is_file() and path.suffix.lower() == ".dim":
        files = _Files(path.parent, label)
        return _open_dimap(files, path.name, path)
    if path.is_dir():
        if not _is_znap_dir(path):
            raise InputError(f"{label}: a folder without .zgroup/.zattrs (not a ZNAP product)")
        return _open_znap(_Files(path, label), "", path)
    if not zipfile.is_zipfile(path):
        raise InputError(f"{label}: not a SNAP product (.dim, .znap folder or zip)")
    files = _Files(path, label)
    try:
        dims = sorted(n for n in files.names if n.lower().endswith(".dim"))
        groups = sorted((n for n in files.names if posixpath.basename(n) == ".zgroup"),
                        key=lambda n: n.count("/"))
        if len(dims) == 1:
            return _open_dimap(files, dims[0], path)
        if len(dims) > 1:
            raise InputError(f"{label}: the zip holds {len(dims)} .dim products; one per zip")
        if groups:
            return _open_znap(files, posixpath.dirname(groups[0]), path)
        raise InputError(f"{label}: the zip holds no .dim and no ZNAP group")
    except BaseException:
        files.close()
        raise
