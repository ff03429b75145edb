"""The common grid on which images are compared, and reading any image onto it.

An image already on the grid (same CRS, same pixel size, pixel-aligned) is read
directly, bit for bit; any other image is resampled window by window through a GDAL
warped VRT, so only the source pixels a window needs are ever read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window

from gdmcore import InputError
from gdmio._util import first_line, quiet_rasterio
from gdmio.raster import RasterInfo, open_dataset, read_window

__all__ = ["Grid", "common_grid", "is_on_grid", "read_on_grid", "MIN_OVERLAP_PX",
           "WARP_TOLERANCE_PX"]

#: Smallest common extent (pixels, both directions) accepted by :func:`common_grid`.
MIN_OVERLAP_PX = 16
#: Error allowed to GDAL's approximate coordinate transformer when warping, in source
#: pixels (GDAL's default, 0.125 px, is too coarse for sub-pixel correlation).
WARP_TOLERANCE_PX = 1e-4
_MIN_WARP_PX = 64  # smallest window handed to GDAL's warper (see read_on_grid)
_EPS = 1e-6  # pixel fraction under which two grid lines are the same


def _int_window(window: Window) -> tuple[int, int, int, int]:
    """``(col_off, row_off, width, height)`` of a window that must have integer values."""
    vals = (window.col_off, window.row_off, window.width, window.height)
    ints = tuple(int(round(v)) for v in vals)
    if any(abs(v - i) > 1e-9 for v, i in zip(vals, ints, strict=True)):
        raise ValueError(f"window must have integer offsets and sizes, got {window}")
    if ints[2] < 0 or ints[3] < 0:
        raise ValueError(f"window must have non-negative sizes, got {window}")
    return ints  # type: ignore[return-value]


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform (pixel corner to map) and size."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @classmethod
    def of(cls, info: RasterInfo) -> Grid:
        """Return the native grid of an input raster."""
        return cls(info.crs, info.transform, info.width, info.height)

    @property
    def resolution(self) -> float:
        """Pixel size along x, in CRS units."""
        return float(math.hypot(self.transform.a, self.transform.d))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in CRS units."""
        return self.window_bounds(Window(0, 0, self.width, self.height))

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    def window_transform(self, window: Window) -> Affine:
        """Transform of the pixel corner of ``window``'s first pixel."""
        return self.transform @ Affine.translation(float(window.col_off), float(window.row_off))

    def window_bounds(self, window: Window) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of a window, in CRS units."""
        t = self.window_transform(window)
        corners = [t @ (c, r) for c in (0, float(window.width)) for r in (0, float(window.height))]
        xs = [x for x, _ in corners]
        ys = [y for _, y in corners]
        return (min(xs), min(ys), max(xs), max(ys))

    def subgrid(self, window: Window) -> Grid:
        """Return the grid of the pixels inside ``window`` (integer offsets and sizes)."""
        c0, r0, w, h = _int_window(window)
        return Grid(self.crs, self.transform @ Affine.translation(c0, r0), w, h)

    def xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of pixel centres (fractional rows/cols allowed)."""
        t = self.transform
        c = np.asarray(cols, dtype=np.float64) + 0.5
        r = np.asarray(rows, dtype=np.float64) + 0.5
        return t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f


def _to_crs(crs: CRS | str | int | None, default: CRS) -> CRS:
    if crs is None:
        return default
    if isinstance(crs, CRS):
        return crs
    try:
        return CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputError(f"unknown CRS {crs!r}: {first_line(exc)}") from exc


def _north_up(t: Affine) -> bool:
    return t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0


def _same_linear_units(a: CRS, b: CRS) -> bool:
    if not (a.is_projected and b.is_projected):
        return False
    try:
        return a.linear_units_factor == b.linear_units_factor
    except CRSError:
        return False


def _native_resolution(info: RasterInfo, crs: CRS) -> float:
    """Pixel size of ``info`` once reprojected to ``crs``."""
    if info.crs == crs:
        return info.resolution
    try:
        with quiet_rasterio():
            dst, _, _ = calculate_default_transform(
                info.crs, crs, info.width, info.height, *info.bounds
            )
    except (RasterioError, CRSError) as exc:
        raise InputError(f"cannot reproject {info.name} to {crs}: {first_line(exc)}") from exc
    estimate = float(abs(dst.a))
    # Between two metric projections the pixel size hardly changes (scale factors differ
    # by ~1e-3): keep the native size rather than an odd 9.99 m.
    if _same_linear_units(info.crs, crs) and abs(estimate / info.resolution - 1) < 0.01:
        return info.resolution
    return estimate


def _footprint(info: RasterInfo, crs: CRS) -> tuple[float, float, float, float]:
    if info.crs == crs:
        return info.bounds
    try:
        with quiet_rasterio():
            b = transform_bounds(info.crs, crs, *info.bounds, densify_pts=21)
    except (RasterioError, CRSError) as exc:
        raise InputError(f"cannot reproject {info.name} to {crs}: {first_line(exc)}") from exc
    if not all(math.isfinite(v) for v in b):
        raise InputError(f"footprint of {info.name} cannot be expressed in {crs}")
    return b


def _intersect(boxes: Sequence[tuple[float, float, float, float]]) -> tuple[float, ...]:
    return (
        max(b[0] for b in boxes),
        max(b[1] for b in boxes),
        min(b[2] for b in boxes),
        min(b[3] for b in boxes),
    )


def _too_small(box: Sequence[float], res: float, min_px: int) -> bool:
    return (box[2] - box[0]) < min_px * res or (box[3] - box[1]) < min_px * res


def _names(infos: Sequence[RasterInfo]) -> str:
    names = [i.name for i in infos]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def common_grid(
    infos: Sequence[RasterInfo],
    resolution: float | None = None,
    crs: CRS | str | int | None = None,
    min_size: int = MIN_OVERLAP_PX,
) -> Grid:
    """Compute the grid on which all images are compared.

    Parameters
    ----------
    infos : sequence of RasterInfo
        The images; the first one sets the defaults.
    resolution : float, optional
        Pixel size in target CRS units (default: the first image's pixel size, estimated
        after reprojection when its CRS differs).
    crs : CRS or str or int, optional
        Target CRS (default: the first image's).
    min_size : int
        Smallest accepted overlap, in pixels, along both axes.

    Returns
    -------
    Grid
        North-up grid covering the intersection of all footprints. Snapped to the first
        image's pixels when that image is already on the target CRS and pixel size (so it
        is read without resampling), else to multiples of the pixel size.

    Raises
    ------
    InputError
        No images, bad CRS or resolution, or an overlap smaller than ``min_size`` pixels
        ("images do not overlap: A and B").

    """
    if not infos:
        raise InputError("no images given")
    first = infos[0]
    target = _to_crs(crs, first.crs)
    if resolution is None:
        res = _native_resolution(first, target)
    else:
        res = float(resolution)
        if not (math.isfinite(res) and res > 0):
            raise InputError(f"resolution must be a positive number, got {resolution!r}")

    boxes = [_footprint(i, target) for i in infos]
    box = _intersect(boxes)
    if _too_small(box, res, min_size):
        for a, b in combinations(range(len(infos)), 2):
            if _too_small(_intersect([boxes[a], boxes[b]]), res, min_size):
                raise InputError(f"images do not overlap: {infos[a].name} and {infos[b].name}")
        raise InputError(f"images do not overlap: {_names(infos)}")

    left, bottom, right, top = box
    t0 = first.transform
    snap_to_first = (
        first.crs == target
        and _north_up(t0)
        and abs(t0.a - res) <= _EPS * res
        and abs(-t0.e - res) <= _EPS * res
    )
    if snap_to_first:
        ox, oy = t0.c, t0.f
    else:
        ox, oy = 0.0, 0.0
    c0 = math.ceil((left - ox) / res - _EPS)
    c1 = math.floor((right - ox) / res + _EPS)
    r0 = math.ceil((oy - top) / res - _EPS)
    r1 = math.floor((oy - bottom) / res + _EPS)
    width, height = c1 - c0, r1 - r0
    if width < min_size or height < min_size:
        raise InputError(f"images do not overlap: {_names(infos)}")
    if snap_to_first:
        transform = t0 @ Affine.translation(c0, r0)
    else:
        transform = Affine(res, 0.0, ox + c0 * res, 0.0, -res, oy - r0 * res)
    return Grid(target, transform, int(width), int(height))


def is_on_grid(info: RasterInfo, grid: Grid) -> bool:
    """Tell whether ``info``'s pixels are ``grid``'s pixels (same CRS, size, alignment)."""
    if info.crs != grid.crs:
        return False
    s, g = info.transform, grid.transform
    tol = _EPS * max(abs(g.a), abs(g.e), 1e-300)
    if any(abs(x - y) > tol for x, y in ((s.a, g.a), (s.b, g.b), (s.d, g.d), (s.e, g.e))):
        return False
    col, row = (~s) @ (g.c, g.f)
    return abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6


def _resampling(name: str | Resampling) -> Resampling:
    if isinstance(name, Resampling):
        return name
    try:
        return Resampling[str(name).lower()]
    except KeyError:
        choices = ", ".join(r.name for r in Resampling)
        raise InputError(f"unknown resampling {name!r}: expected one of {choices}") from None


def read_on_grid(
    info: RasterInfo,
    grid: Grid,
    window: Window | None = None,
    resampling: str | Resampling = "cubic",
) -> np.ndarray:
    """Read an image on the common grid, one window at a time.

    Parameters
    ----------
    info : RasterInfo
        Image to read.
    grid : Grid
        Target grid.
    window : rasterio.windows.Window, optional
        Integer window of ``grid`` (may extend beyond it); the whole grid if None.
    resampling : str or Resampling
        Used only when the image is not on the grid ("cubic", "bilinear", "nearest"...).

    Returns
    -------
    numpy.ndarray
        float32 ``(window.height, window.width)`` (complex64 for complex images read
        without resampling), NaN outside the image footprint and at nodata.

    """
    if window is None:
        window = Window(0, 0, grid.width, grid.height)
    c0, r0, w, h = _int_window(window)
    method = _resampling(resampling)
    if is_on_grid(info, grid):
        return _read_direct(info, grid, c0, r0, w, h)
    if np.dtype(info.dtype).kind == "c":
        raise InputError(f"{info.name} is complex: it cannot be resampled to another grid")
    if w == 0 or h == 0:
        return np.full((h, w), np.nan, dtype=np.float32)
    # GDAL's warper loses accuracy on tiny destination windows (< ~9 px: up to 0.1 px of
    # error in tests), so small windows are warped with a margin and cropped.
    pad_c, pad_r = max(0, _MIN_WARP_PX - w), max(0, _MIN_WARP_PX - h)
    left, top = pad_c // 2, pad_r // 2
    big = np.full((h + pad_r, w + pad_c), np.nan, dtype=np.float32)
    dst_transform = grid.transform @ Affine.translation(c0 - left, r0 - top)
    with open_dataset(info.path, info.name) as src:
        try:
            with quiet_rasterio(), WarpedVRT(
                src,
                src_nodata=info.nodata,
                crs=grid.crs,
                transform=dst_transform,
                width=big.shape[1],
                height=big.shape[0],
                nodata=np.nan,
                dtype="float32",
                resampling=method,
                tolerance=WARP_TOLERANCE_PX,
            ) as vrt:
                vrt.read(info.band, out=big)
        except RasterioError as exc:
            raise InputError(
                f"cannot read {info.name} on the common grid: {first_line(exc)}"
            ) from exc
    if pad_c == 0 and pad_r == 0:
        return big
    return np.ascontiguousarray(big[top:top + h, left:left + w])


def _read_direct(info: RasterInfo, grid: Grid, c0: int, r0: int, w: int, h: int) -> np.ndarray:
    """Read pixels of an image that is on the grid: no resampling, NaN outside."""
    col, row = (~info.transform) @ (grid.transform.c, grid.transform.f)
    sc0, sr0 = int(round(col)) + c0, int(round(row)) + r0
    dtype = np.complex64 if np.dtype(info.dtype).kind == "c" else np.float32
    out = np.full((h, w), np.nan, dtype=dtype)
    a0, a1 = max(sc0, 0), min(sc0 + w, info.width)
    b0, b1 = max(sr0, 0), min(sr0 + h, info.height)
    if a1 <= a0 or b1 <= b0:
        return out
    with open_dataset(info.path, info.name) as ds:
        data = read_window(ds, info, Window(a0, b0, a1 - a0, b1 - b0))
    out[b0 - sr0:b1 - sr0, a0 - sc0:a1 - sc0] = data
    return out
