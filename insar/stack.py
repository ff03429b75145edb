"""Reading and checking a coregistered SLC stack (the project's fixed convention).

One complex GeoTIFF (CFloat32) per date, the date as ``YYYYMMDD`` in the file name, and
in the default metadata domain: ``ACQUISITION_DATE`` (YYYY-MM-DD), ``WAVELENGTH`` (m),
``PERPENDICULAR_BASELINE`` (m, relative to the first date), ``INCIDENCE_ANGLE`` (deg),
``SLANT_RANGE`` (m), ``HEADING`` (deg).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from gdmcore import InputError

__all__ = ["Stack", "read_stack", "writing_stack", "REQUIRED_KEYS"]

REQUIRED_KEYS = ("ACQUISITION_DATE", "WAVELENGTH", "PERPENDICULAR_BASELINE",
                 "INCIDENCE_ANGLE", "SLANT_RANGE", "HEADING")
_DATE = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Stack:
    """A checked stack: files sorted by date and their shared geometry."""

    paths: list[Path]
    dates: list[dt.date]
    bperp: np.ndarray
    wavelength: float
    incidence_deg: float
    slant_range: float
    heading_deg: float
    width: int
    height: int
    crs: CRS | None
    transform: Affine

    def read(self, k: int, window: Window | None = None) -> np.ndarray:
        """The SLC of date ``k`` (complex64), or a window of it."""
        with rasterio.open(self.paths[k]) as ds:
            return ds.read(1, window=window).astype(np.complex64, copy=False)


def _number(path: Path, tags: dict[str, str], key: str) -> float:
    try:
        value = float(tags[key])
    except KeyError:
        raise InputError(f"{path.name}: missing metadata key {key}") from None
    except ValueError:
        raise InputError(f"{path.name}: metadata {key}={tags[key]!r} is not a number") from None
    if not np.isfinite(value):
        raise InputError(f"{path.name}: metadata {key} is not finite")
    return value


def read_stack(folder: str | Path) -> Stack:
    """Find, read and check the stack in ``folder``.

    Raises
    ------
    InputError
        Naming the file and the problem: no folder, fewer than two dates, a file that
        is not a complex raster or cannot be read, a missing or inconsistent metadata
        key, duplicate dates, or files on different grids.

    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"stack folder not found: {folder}")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in _SUFFIXES and not p.name.startswith("."))
    if not files:
        raise InputError(f"no GeoTIFF SLC in {folder}")
    records = []
    for path in files:
        m = _DATE.search(path.name)
        if not m:
            raise InputError(f"{path.name}: no YYYYMMDD date in the file name")
        try:
            with rasterio.open(path) as ds:
                tags = ds.tags()
                dtype = ds.dtypes[0]
                shape = (ds.height, ds.width)
                crs, transform = ds.crs, ds.transform
                count = ds.count
        except RasterioIOError as exc:
            raise InputError(f"{path.name}: cannot be read as a raster ({exc})") from None
        if count != 1 or not dtype.startswith("complex"):
            raise InputError(f"{path.name}: expected one complex band (CFloat32 SLC), got "
                             f"{count} band(s) of {dtype}")
        missing = [k for k in REQUIRED_KEYS if k not in tags]
        if missing:
            raise InputError(f"{path.name}: missing metadata key(s) {', '.join(missing)}")
        try:
            date = dt.date.fromisoformat(tags["ACQUISITION_DATE"][:10])
        except ValueError:
            raise InputError(f"{path.name}: ACQUISITION_DATE "
                             f"{tags['ACQUISITION_DATE']!r} is not YYYY-MM-DD") from None
        if date.strftime("%Y%m%d") != m.group(1):
            raise InputError(f"{path.name}: ACQUISITION_DATE {date} disagrees with the name")
        records.append((date, path, tags, shape, crs, transform))
    records.sort(key=lambda r: r[0])
    dates = [r[0] for r in records]
    if len(dates) < 2:
        raise InputError(f"a stack needs at least 2 dates, found {len(dates)} in {folder}")
    dups = sorted({d for d in dates if dates.count(d) > 1})
    if dups:
        raise InputError(f"duplicate date(s) in the stack: {', '.join(map(str, dups))}")
    _, p0, t0, shape0, crs0, tr0 = records[0]
    for _date, path, _tags, shape, crs, tr in records[1:]:
        if shape != shape0:
            raise InputError(f"{path.name}: grid {shape[1]}x{shape[0]} differs from "
                             f"{p0.name} ({shape0[1]}x{shape0[0]}): the stack must be "
                             "coregistered")
        if crs != crs0 or not tr.almost_equals(tr0):
            raise InputError(f"{path.name}: georeferencing differs from {p0.name}: the stack "
                             "must be coregistered on one grid")
    consts = {}
    for key in ("WAVELENGTH", "INCIDENCE_ANGLE", "SLANT_RANGE", "HEADING"):
        values = [_number(r[1], r[2], key) for r in records]
        consts[key] = float(np.mean(values))
        if key == "WAVELENGTH" and np.ptp(values) > 1e-6 * consts[key]:
            raise InputError("WAVELENGTH differs between dates: one sensor per stack")
    if not 0.001 < consts["WAVELENGTH"] < 1.0:
        raise InputError(f"WAVELENGTH {consts['WAVELENGTH']} m is not a radar wavelength")
    if not 0 < consts["INCIDENCE_ANGLE"] < 90:
        raise InputError(f"INCIDENCE_ANGLE {consts['INCIDENCE_ANGLE']} is not within (0, 90)")
    if consts["SLANT_RANGE"] <= 0:
        raise InputError("SLANT_RANGE must be positive")
    bperp = np.array([_number(r[1], r[2], "PERPENDICULAR_BASELINE") for r in records])
    return Stack(paths=[r[1] for r in records], dates=dates, bperp=bperp - bperp[0],
                 wavelength=consts["WAVELENGTH"], incidence_deg=consts["INCIDENCE_ANGLE"],
                 slant_range=consts["SLANT_RANGE"], heading_deg=consts["HEADING"],
                 width=shape0[1], height=shape0[0], crs=crs0, transform=tr0)


@contextlib.contextmanager
def writing_stack(final: str | Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``final`` to write a stack into.

    When the block ends the folder becomes ``final`` (``.NAME.partial`` renamed), so a
    stack folder is complete or absent; if the block raises, the hidden folder is
    removed. A ``.NAME.partial`` left by an earlier, killed attempt is removed first.

    Raises
    ------
    InputError
        ``final`` exists and is not empty.

    """
    final = Path(final)
    if final.exists() and any(final.iterdir()):
        raise InputError(f"stack folder {final} exists and is not empty")
    final.parent.mkdir(parents=True, exist_ok=True)
    out = final.with_name(f".{final.name}.partial")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    try:
        yield out
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    if final.exists():
        final.rmdir()
    out.replace(final)
