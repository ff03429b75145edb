"""Write Cloud-Optimized GeoTIFFs, from memory or block by block, atomically.

Products are first written to a hidden tiled GeoTIFF next to the destination, then
converted by GDAL's ``COG`` driver (512 px tiles, DEFLATE or ZSTD with a predictor,
internal overviews averaged down to < 512 px) into another hidden file, which is finally
renamed onto the destination. The destination therefore either holds a complete COG or
is untouched; temporary files are removed on failure.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.io import DatasetWriter
from rasterio.windows import Window

from gdmcore import InputError
from gdmio._util import first_line, quiet_rasterio, remove_quietly
from gdmio.atomic import atomic_path, temp_sibling

__all__ = ["COG_BLOCKSIZE", "CogWriter", "validate_cog", "write_cog"]

COG_BLOCKSIZE = 512
_COMPRESSIONS = ("DEFLATE", "ZSTD", "LZW")


@functools.cache
def _codec_available(name: str) -> bool:
    """Whether this GDAL build writes GeoTIFF with compression ``name``."""
    probe = f"/vsimem/gdmio-codec-probe-{name}.tif"
    try:
        with quiet_rasterio(), rasterio.open(
            probe, "w", driver="GTiff", width=16, height=16, count=1, dtype="uint8",
            compress=name,
        ) as ds:
            ds.write(np.zeros((1, 16, 16), np.uint8))
        with quiet_rasterio(), rasterio.open(probe) as ds:
            return (ds.compression is not None) and ds.compression.name.upper() == name
    except (RasterioError, ValueError):
        return False
    finally:
        try:
            rasterio.shutil.delete(probe)
        except RasterioError:
            pass


def _check_nodata(nodata: float | None, dtype: str) -> None:
    dt = np.dtype(dtype)
    if nodata is None or dt.kind in "fc":
        return
    if math.isnan(nodata):
        raise ValueError(f"nodata NaN is not valid for {dtype} data: pass a number or None")
    info = np.iinfo(dt)
    if not (info.min <= nodata <= info.max and float(nodata).is_integer()):
        raise ValueError(f"nodata {nodata} is not representable in {dtype}")


def _cog_options(dtype: str, compress: str) -> dict[str, str]:
    kind = np.dtype(dtype).kind
    predictor = {"f": "FLOATING_POINT", "i": "STANDARD", "u": "STANDARD"}.get(kind, "NO")
    return {
        "BLOCKSIZE": str(COG_BLOCKSIZE),
        "COMPRESS": compress,
        "PREDICTOR": predictor,
        "OVERVIEWS": "AUTO",
        "OVERVIEW_RESAMPLING": "AVERAGE",
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }


def _finish_cog(staged: Path, dest: Path, dtype: str, compress: str) -> None:
    """Convert the staged GeoTIFF to a COG under a hidden name, then rename onto ``dest``."""
    with atomic_path(dest) as part:
        try:
            with quiet_rasterio():
                rasterio.shutil.copy(str(staged), str(part), driver="COG",
                                     **_cog_options(dtype, compress))
        finally:
            remove_quietly(Path(f"{part}.ovr.tmp"), Path(f"{part}.aux.xml"))


class CogWriter:
    """Write a COG block by block (for rasters too big for memory).

    Use as a context manager::

        with CogWriter(path, width, height, 1, crs, transform) as w:
            for block in iter_blocks(width, height):
                w.write(compute(block), block.core)

    On a clean exit the staged raster becomes a COG at ``path`` (atomic rename); if
    the block raises, every temporary file is removed and ``path`` is left untouched.
    Pixels never written hold ``nodata``.

    Parameters
    ----------
    path : str or PathLike
        Destination (parent folders are created).
    width, height, count : int
        Raster size and number of bands.
    crs, transform
        Georeferencing.
    nodata : float or None
        No-data value (default NaN; must be a number or None for integer types).
    dtype : str
        Pixel type ("float32" by default).
    descriptions : sequence of str, optional
        One description per band.
    tags : mapping, optional
        Dataset metadata (values converted to str).
    band_tags : sequence of mapping, optional
        Metadata per band.
    compress : str
        "DEFLATE" (default, readable everywhere), "ZSTD" or "LZW".

    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        count: int,
        crs: CRS | str,
        transform: Affine,
        nodata: float | None = float("nan"),
        dtype: str = "float32",
        descriptions: Sequence[str] | None = None,
        tags: Mapping[str, Any] | None = None,
        band_tags: Sequence[Mapping[str, Any]] | None = None,
        compress: str = "DEFLATE",
    ) -> None:
        if width < 1 or height < 1 or count < 1:
            raise ValueError(f"raster must have a positive size, got {count}x{height}x{width}")
        np.dtype(dtype)  # raises TypeError for an unknown type
        _check_nodata(nodata, dtype)
        compress = compress.upper()
        if compress not in _COMPRESSIONS:
            raise ValueError(f"compress must be one of {_COMPRESSIONS}, got {compress!r}")
        if compress != "DEFLATE" and not _codec_available(compress):
            compress = "DEFLATE"
        if descriptions is not None and len(descriptions) != count:
            raise ValueError(f"{len(descriptions)} descriptions for {count} band(s)")
        if band_tags is not None and len(band_tags) != count:
            raise ValueError(f"{len(band_tags)} band_tags for {count} band(s)")
        self.path = Path(path)
        self.width, self.height, self.count = int(width), int(height), int(count)
        self.crs = crs
        self.transform = transform
        self.nodata = nodata
        self.dtype = str(np.dtype(dtype))
        self.descriptions = list(descriptions) if descriptions is not None else None
        self.tags = dict(tags or {})
        self.band_tags = [dict(t) for t in band_tags] if band_tags is not None else None
        self.compress = compress
        self._staged: Path | None = None
        self._ds: DatasetWriter | None = None

    def __enter__(self) -> CogWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._staged = temp_sibling(self.path, ".stage.tif")
        fast = "ZSTD" if _codec_available("ZSTD") else "DEFLATE"
        level = {"ZSTD": {"zstd_level": 1}, "DEFLATE": {"zlevel": 1}}[fast]
        try:
            with quiet_rasterio():
                self._ds = rasterio.open(
                    self._staged, "w", driver="GTiff", width=self.width, height=self.height,
                    count=self.count, dtype=self.dtype, crs=self.crs, transform=self.transform,
                    nodata=self.nodata, tiled=True, blockxsize=COG_BLOCKSIZE,
                    blockysize=COG_BLOCKSIZE, compress=fast, bigtiff="IF_SAFER",
                    sparse_ok=True, **level,
                )
            ds = self._ds
            if self.descriptions is not None:
                for i, d in enumerate(self.descriptions, start=1):
                    ds.set_band_description(i, str(d))
            if self.tags:
                ds.update_tags(**{k: str(v) for k, v in self.tags.items()})
            if self.band_tags is not None:
                for i, bt in enumerate(self.band_tags, start=1):
                    if bt:
                        ds.update_tags(i, **{k: str(v) for k, v in bt.items()})
        except BaseException:
            self._abort()
            raise
        return self

    def write(
        self, array: np.ndarray, window: Window | None = None, band: int | None = None
    ) -> None:
        """Write a block.

        Parameters
        ----------
        array : numpy.ndarray
            2-D ``(rows, cols)`` for one band, or 3-D ``(count, rows, cols)`` for all.
        window : Window, optional
            Where the block goes (integer offsets; whole raster if None).
        band : int, optional
            1-based band for a 2-D array (may be omitted when ``count`` is 1).

        """
        if self._ds is None:
            raise RuntimeError("CogWriter.write called outside its 'with' block")
        arr = np.asarray(array)
        if window is None:
            window = Window(0, 0, self.width, self.height)
        if arr.ndim == 2:
            if band is None:
                if self.count != 1:
                    raise ValueError("band is required for a 2-D block of a multi-band raster")
                band = 1
            if not 1 <= band <= self.count:
                raise ValueError(f"band {band} out of range 1..{self.count}")
            indexes: int | list[int] = band
            rows, cols = arr.shape
        elif arr.ndim == 3:
            if arr.shape[0] != self.count or band is not None:
                raise ValueError(
                    f"a 3-D block must hold all {self.count} bands, got shape {arr.shape}"
                )
            indexes = list(range(1, self.count + 1))
            rows, cols = arr.shape[1:]
        else:
            raise ValueError(f"block must be 2-D or 3-D, got shape {arr.shape}")
        if (rows, cols) != (int(window.height), int(window.width)):
            raise ValueError(f"block shape {(rows, cols)} does not match window {window}")
        c0, r0 = int(window.col_off), int(window.row_off)
        if c0 < 0 or r0 < 0 or c0 + cols > self.width or r0 + rows > self.height:
            raise ValueError(f"window {window} is outside the {self.width}x{self.height} raster")
        self._ds.write(arr.astype(self.dtype, copy=False), indexes, window=window)

    def _abort(self) -> None:
        if self._ds is not None:
            try:
                self._ds.close()
            finally:
                self._ds = None
        if self._staged is not None:
            remove_quietly(self._staged, Path(f"{self._staged}.aux.xml"))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and self._ds is not None and self._staged is not None:
                self._ds.close()
                self._ds = None
                _finish_cog(self._staged, self.path, self.dtype, self.compress)
        finally:
            self._abort()


def write_cog(
    path: str | os.PathLike[str],
    data: np.ndarray,
    crs: CRS | str,
    transform: Affine,
    nodata: float | None = float("nan"),
    descriptions: Sequence[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    band_tags: Sequence[Mapping[str, Any]] | None = None,
    dtype: str = "float32",
    compress: str = "DEFLATE",
) -> Path:
    """Write an in-memory array as a Cloud-Optimized GeoTIFF, atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination (parent folders are created).
    data : numpy.ndarray
        2-D ``(rows, cols)`` or 3-D ``(bands, rows, cols)``.
    crs, transform
        Georeferencing of the array.
    nodata, descriptions, tags, band_tags, dtype, compress
        As for :class:`CogWriter`.

    Returns
    -------
    pathlib.Path
        ``path``.

    """
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise ValueError(f"data must be 2-D or 3-D, got shape {arr.shape}")
    count, height, width = arr.shape
    with CogWriter(path, width, height, count, crs, transform, nodata=nodata, dtype=dtype,
                   descriptions=descriptions, tags=tags, band_tags=band_tags,
                   compress=compress) as writer:
        writer.write(arr, Window(0, 0, width, height))
    return Path(path)


def validate_cog(path: str | os.PathLike[str]) -> tuple[bool, list[str], list[str]]:
    """Check a file against the COG layout rules (``rio cogeo validate``).

    Returns
    -------
    tuple
        ``(is_valid, errors, warnings)``.

    """
    from rio_cogeo.cogeo import cog_validate

    p = Path(path)
    if not p.is_file():
        raise InputError(f"file not found: {p}")
    try:
        with quiet_rasterio():
            valid, errors, warns = cog_validate(str(p), quiet=True)
    except RasterioError as exc:
        return False, [f"not a readable GeoTIFF: {first_line(exc)}"], []
    return bool(valid), list(errors), list(warns)
