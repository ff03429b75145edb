"""Open optical input rasters: GeoTIFF, JP2, Sentinel-2 SAFE folders and zips.

:func:`open_info` checks an input once (exists, is a readable raster, is georeferenced,
has the requested band) and returns a small immutable :class:`RasterInfo`; the data is
read later, block by block, with :func:`read_band` or :func:`gdmio.grid.read_on_grid`.
Every problem with the input raises :class:`~gdmcore.InputError` with a one-line
message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from gdmcore import InputError
from gdmio._util import first_line, quiet_rasterio

__all__ = [
    "RasterInfo",
    "S2_BANDS",
    "date_from_name",
    "open_dataset",
    "open_info",
    "read_band",
]

#: Band names accepted for Sentinel-2 SAFE inputs.
S2_BANDS = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
    "B12", "TCI", "SCL", "AOT", "WVP",
)

_DATE_TOKEN = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")
_TAG_DATE = re.compile(r"^\s*(\d{4})[:\-/](\d{2})[:\-/](\d{2})")
_GDAL_NAME = re.compile(r"^(/vsi[a-z0-9_]+/|[A-Za-z][A-Za-z0-9_]+:)")
_IMG_DATA = re.compile(r"(^|/)GRANULE/[^/]+/IMG_DATA/(R(\d+)m/)?[^/]+\.jp2$", re.IGNORECASE)


@dataclass(frozen=True)
class RasterInfo:
    """An input raster band, checked and described, not yet read.

    Attributes
    ----------
    path : str
        GDAL dataset name actually opened: a file path, a ``/vsizip/`` path to a JP2
        inside a zipped SAFE, or any other GDAL dataset name.
    band : int
        1-based band index in that dataset.
    crs, transform, width, height, dtype, nodata
        As GDAL reports them (``nodata`` is 0 for Sentinel-2 bands, the product's
        no-data value, although the JP2 files do not declare it).
    date : datetime.date or None
        Acquisition date (from the name, else ``TIFFTAG_DATETIME``), None if unknown.
    name : str
        Short human label (file name; ``<SAFE name>:<band>`` for Sentinel-2).

    """

    path: str
    band: int
    crs: CRS
    transform: Affine
    width: int
    height: int
    dtype: str
    nodata: float | None
    date: dt.date | None
    name: str

    @property
    def resolution(self) -> float:
        """Pixel size along x, in CRS units."""
        return float(math.hypot(self.transform.a, self.transform.d))

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of the footprint's bounding box in ``crs``."""
        xs, ys = [], []
        for col, row in ((0, 0), (self.width, 0), (0, self.height), (self.width, self.height)):
            x, y = self.transform @ (col, row)
            xs.append(x)
            ys.append(y)
        return (min(xs), min(ys), max(xs), max(ys))


def date_from_name(name: str) -> dt.date | None:
    """First valid ``YYYYMMDD`` token (not part of a longer number) in ``name``, or None.

    Examples
    --------
    >>> date_from_name("S2A_MSIL1C_20230415T103021_N0509_R108_T31TGL_20230415T141222.SAFE")
    datetime.date(2023, 4, 15)

    """
    for m in _DATE_TOKEN.finditer(name):
        y, mo, d = (int(g) for g in m.groups())
        if not 1950 <= y <= 2200:
            continue
        try:
            return dt.date(y, mo, d)
        except ValueError:
            continue
    return None


def _date_from_tags(tags: dict[str, str]) -> dt.date | None:
    for key in ("TIFFTAG_DATETIME", "ACQUISITION_DATE"):
        value = tags.get(key)
        if not value:
            continue
        m = _TAG_DATE.match(value)
        if m is None:
            continue
        try:
            return dt.date(*(int(g) for g in m.groups()))
        except ValueError:
            continue
    return None


def _is_gdal_name(text: str) -> bool:
    """Tell whether ``text`` is a GDAL dataset name, not a local path (/vsi..., URL...)."""
    if re.match(r"^[A-Za-z]:[\\/]", text):  # a Windows drive letter
        return False
    return bool(_GDAL_NAME.match(text))


@contextlib.contextmanager
def open_dataset(path: str, name: str | None = None) -> Iterator[DatasetReader]:
    """Open a GDAL dataset for reading, turning every open failure into InputError.

    Parameters
    ----------
    path : str
        GDAL dataset name (as in :attr:`RasterInfo.path`).
    name : str, optional
        Label used in error messages (default: ``path``).

    """
    label = name or path
    try:
        with quiet_rasterio():
            ds = rasterio.open(path)
    except RasterioError as exc:
        raise InputError(
            f"cannot read {label}: not a raster or corrupt ({first_line(exc)})"
        ) from exc
    try:
        yield ds
    finally:
        ds.close()


def _normalise_s2_band(band: str | int | None) -> str:
    if band is None:
        return "B04"
    if isinstance(band, int) and not isinstance(band, bool):
        text = f"B{band:02d}"
    else:
        text = str(band).strip().upper()
    m = re.fullmatch(r"B0*(\d{1,2})", text)
    if m:
        text = f"B{int(m.group(1)):02d}"
    elif text in ("B8A", "B08A"):
        text = "B8A"
    if text not in S2_BANDS:
        raise InputError(
            f"unknown Sentinel-2 band {band!r}: expected one of {', '.join(S2_BANDS)}"
        )
    return text


def _pick_s2_member(members: list[str], band: str, label: str) -> str:
    """Choose the JP2 of ``band`` among IMG_DATA members (finest resolution wins)."""
    pat = re.compile(rf"_{band}(_(\d+)m)?\.jp2$", re.IGNORECASE)
    found: list[tuple[int, str]] = []
    for m in members:
        img = _IMG_DATA.search(m)
        hit = pat.search(m.rsplit("/", 1)[-1])
        if img is None or hit is None:
            continue
        res = hit.group(2) or img.group(3) or "0"
        found.append((int(res), m))
    if not found:
        raise InputError(f"band {band} not found in {label}")
    finest = min(r for r, _ in found)
    best = sorted(m for r, m in found if r == finest)
    granules = {m.split("/GRANULE/", 1)[-1].split("/", 1)[0] for m in best}
    if len(granules) > 1:
        raise InputError(
            f"{label} holds {len(granules)} granules; give the JP2 of one tile instead"
        )
    return best[0]


def _locate_safe(path: Path, band: str | int | None) -> tuple[str, str, str, dt.date | None]:
    """GDAL name, label, band name and date of a band inside a SAFE folder or zip."""
    band_name = _normalise_s2_band(band)
    if path.is_dir():
        members = [
            p.relative_to(path).as_posix()
            for p in path.glob("GRANULE/*/IMG_DATA/**/*")
            if p.suffix.lower() == ".jp2" and p.is_file()
        ]
        member = _pick_s2_member(members, band_name, path.name)
        gdal_name = str((path / member).absolute())
        safe_name = path.name
    else:
        try:
            with zipfile.ZipFile(path) as zf:
                members = [i.filename for i in zf.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"cannot read {path.name}: corrupt zip ({first_line(exc)})") from exc
        if not any(_IMG_DATA.search(m) for m in members):
            raise InputError(f"{path.name} is a zip without a Sentinel-2 SAFE product inside")
        member = _pick_s2_member(members, band_name, path.name)
        gdal_name = f"/vsizip/{path.absolute().as_posix()}/{member}"
        inner = [part for part in member.split("/") if part.upper().endswith(".SAFE")]
        safe_name = inner[0] if inner else path.name
    date = (
        date_from_name(safe_name)
        or date_from_name(path.name)
        or date_from_name(member.rsplit("/", 1)[-1])
    )
    return gdal_name, f"{safe_name}:{band_name}", band_name, date


def _is_safe(path: Path) -> bool:
    if path.is_dir():
        return path.name.upper().endswith(".SAFE") or (path / "GRANULE").is_dir()
    return path.is_file() and zipfile.is_zipfile(path)


def _select_band(ds: DatasetReader, band: str | int | None, label: str) -> int:
    if band is None:
        return 1
    if isinstance(band, bool):
        raise InputError(f"band must be a 1-based index or a band name, got {band!r}")
    if isinstance(band, int) or (isinstance(band, str) and band.strip().isdigit()):
        idx = int(band)
        if not 1 <= idx <= ds.count:
            raise InputError(f"band {idx} not found in {label} ({ds.count} band(s))")
        return idx
    wanted = str(band).strip().lower()
    for i, desc in enumerate(ds.descriptions, start=1):
        if desc and desc.strip().lower() == wanted:
            return i
    named = [d for d in ds.descriptions if d]
    listing = ", ".join(named) if named else "none named"
    raise InputError(f"band {band!r} not found in {label} (bands: {listing})")


def _probe(ds: DatasetReader, band: int, label: str) -> None:
    """Read the last pixel: catches truncated files at open time, for the cost of a block."""
    try:
        ds.read(band, window=Window(ds.width - 1, ds.height - 1, 1, 1))
    except RasterioError as exc:
        raise InputError(
            f"cannot read {label}: file is corrupt or truncated ({first_line(exc)})"
        ) from exc


def open_info(path: str | os.PathLike[str], band: str | int | None = None) -> RasterInfo:
    """Check an input raster and describe one of its bands.

    Parameters
    ----------
    path : str or PathLike
        GeoTIFF / JP2 (or any georeferenced raster GDAL reads), a Sentinel-2 ``*.SAFE``
        folder, or a zip of one. GDAL dataset names (``/vsizip/...``, ``/vsis3/...``,
        ``SENTINEL2_L1C:...``) are passed through.
    band : str or int, optional
        Plain rasters: 1-based index (default 1) or a band description. SAFE inputs:
        band name such as ``"B04"`` (default), ``"B08"``, ``"B8A"``, ``"B11"``; for L2A the
        finest resolution folder holding that band is used.

    Returns
    -------
    RasterInfo

    Raises
    ------
    InputError
        Missing file, unreadable or corrupt raster, no CRS or geotransform, band not found.

    """
    text = os.fspath(path)
    p = Path(text)
    nodata_override: float | None = None
    if p.exists():
        if _is_safe(p):
            gdal_name, label, _, date_hint = _locate_safe(p, band)
            band = None
            nodata_override = 0.0  # Sentinel-2 L1C/L2A NODATA pixel value
        elif p.is_dir():
            raise InputError(f"{p.name} is a folder, not a raster or a Sentinel-2 SAFE")
        else:
            gdal_name, label, date_hint = str(p.absolute()), p.name, date_from_name(p.name)
    elif _is_gdal_name(text):
        gdal_name, label = text, text.rstrip("/").rsplit("/", 1)[-1]
        date_hint = date_from_name(label)
    else:
        raise InputError(f"input file not found: {text}")

    with open_dataset(gdal_name, label) as ds:
        if ds.count < 1 or ds.width < 1 or ds.height < 1:
            raise InputError(f"{label} holds no raster band")
        idx = _select_band(ds, band, label)
        _probe(ds, idx, label)  # before the CRS checks: truncation also loses GeoTIFF tags
        if ds.crs is None:
            raise InputError(f"{label} has no CRS: the image must be georeferenced")
        if ds.transform == Affine.identity() or ds.transform.determinant == 0:
            raise InputError(
                f"{label} has no CRS geotransform (pixel-to-map transform): "
                "the image must be georeferenced"
            )
        nodata = ds.nodatavals[idx - 1]
        if nodata is None:
            nodata = nodata_override
        date = date_hint or _date_from_tags(ds.tags())
        return RasterInfo(
            path=gdal_name,
            band=idx,
            crs=ds.crs,
            transform=ds.transform,
            width=ds.width,
            height=ds.height,
            dtype=ds.dtypes[idx - 1],
            nodata=None if nodata is None else float(nodata),
            date=date,
            name=label,
        )


def _mask_invalid(
    raw: np.ndarray, nodata: float | None, mask: np.ndarray | None = None
) -> np.ndarray:
    """Convert to float32 (complex64 for complex data) with NaN at nodata / masked pixels."""
    out_dtype = np.complex64 if np.iscomplexobj(raw) else np.float32
    out = raw.astype(out_dtype, copy=True)
    if nodata is not None and not math.isnan(nodata):
        out[raw == nodata] = np.nan
    if mask is not None:
        out[mask == 0] = np.nan
    return out


def _dataset_mask_needed(ds: DatasetReader, band: int) -> bool:
    flags = ds.mask_flag_enums[band - 1]
    return MaskFlags.per_dataset in flags or MaskFlags.alpha in flags


def read_window(
    ds: DatasetReader, info: RasterInfo, window: Window
) -> np.ndarray:
    """Read ``window`` (inside the raster) of ``info``'s band from an open dataset.

    Returns float32 (complex64 for complex rasters) with NaN at nodata and at pixels
    masked by a per-dataset mask or alpha band.
    """
    try:
        raw = ds.read(info.band, window=window)
        mask = None
        if _dataset_mask_needed(ds, info.band):
            mask = ds.read_masks(info.band, window=window)
    except RasterioError as exc:
        raise InputError(f"cannot read {info.name}: file is corrupt ({first_line(exc)})") from exc
    return _mask_invalid(raw, info.nodata, mask)


def read_band(info: RasterInfo, window: Window | None = None) -> np.ndarray:
    """Read a band (or a window of it) on its native grid.

    Parameters
    ----------
    info : RasterInfo
        From :func:`open_info`.
    window : rasterio.windows.Window, optional
        Integer window inside the raster; the whole band if None.

    Returns
    -------
    numpy.ndarray
        float32 (complex64 for complex rasters), NaN where nodata.

    """
    if window is None:
        window = Window(0, 0, info.width, info.height)
    c0, r0, w, h = (
        int(round(v)) for v in (window.col_off, window.row_off, window.width, window.height)
    )
    if c0 < 0 or r0 < 0 or w < 0 or h < 0 or c0 + w > info.width or r0 + h > info.height:
        raise ValueError(
            f"window {window} is not inside {info.name} ({info.width}x{info.height})"
        )
    with open_dataset(info.path, info.name) as ds:
        return read_window(ds, info, Window(c0, r0, w, h))
