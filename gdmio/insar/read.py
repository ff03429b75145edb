"""Read interferograms on a common grid, window by window, in LOS metres."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from affine import Affine
from rasterio.windows import Window

from gdmcore import InputError
from gdmio.grid import Grid, common_grid, read_on_grid
from gdmio.insar.base import Band, Interferogram
from gdmio.raster import RasterInfo, open_dataset, read_window

__all__ = ["insar_grid", "read_coherence", "read_labels", "read_metres"]


def _info(ifg: Interferogram, band: Band) -> RasterInfo:
    return RasterInfo(path=band.path, band=band.band, crs=ifg.crs,  # type: ignore[arg-type]
                      transform=ifg.transform, width=ifg.width, height=ifg.height,
                      dtype="float32", nodata=band.nodata, date=None, name=ifg.name)


def insar_grid(ifgs: Sequence[Interferogram]) -> Grid:
    """The grid shared by the interferograms: their common extent on the first's grid.

    Georeferenced products of different extents (or pixel sizes, or CRSs) are brought
    to the intersection of their footprints, on the first one's CRS and pixel size.
    Products without georeferencing (radar geometry) must all have the same size.

    Raises InputError when the grids cannot be brought together.
    """
    georef = [i for i in ifgs if i.crs is not None]
    if georef and len(georef) != len(ifgs):
        bad = next(i for i in ifgs if i.crs is None)
        raise InputError(f"{bad.name} has no georeferencing while {georef[0].name} has: "
                         "radar-geometry and geocoded interferograms cannot be mixed")
    if not georef:
        sizes = {(i.width, i.height) for i in ifgs}
        if len(sizes) > 1:
            a = ifgs[0]
            b = next(i for i in ifgs if (i.width, i.height) != (a.width, a.height))
            raise InputError(f"{a.name} ({a.width}x{a.height}) and {b.name} "
                             f"({b.width}x{b.height}) are in radar geometry without "
                             "georeferencing and have different sizes: they cannot be "
                             "brought to one grid")
        a = ifgs[0]
        return Grid(None, Affine.identity(), a.width, a.height)  # type: ignore[arg-type]
    return common_grid([_info(i, i.phase) for i in ifgs])


def _read(ifg: Interferogram, band: Band, grid: Grid, window: Window,
          resampling: str = "bilinear") -> np.ndarray:
    if grid.crs is None:
        c0, r0 = int(window.col_off), int(window.row_off)
        w, h = int(window.width), int(window.height)
        with open_dataset(band.path, ifg.name) as ds:
            return read_window(ds, _info(ifg, band), Window(c0, r0, w, h))
    return read_on_grid(_info(ifg, band), grid, window, resampling=resampling)


def read_metres(ifg: Interferogram, grid: Grid, window: Window | None = None) -> np.ndarray:
    """LOS displacement (m, positive towards the satellite) of ``ifg`` in ``window``.

    float32, NaN where the product has no data (its nodata value, NaN, outside it).
    """
    if window is None:
        window = Window(0, 0, grid.width, grid.height)
    raw = _read(ifg, ifg.phase, grid, window)
    raw *= np.float32(ifg.to_metres())
    if ifg.valid is not None:
        labels = _read(ifg, ifg.valid, grid, window, "nearest")
        raw[~(labels > 0)] = np.nan
    raw[~np.isfinite(raw)] = np.nan
    return raw


def read_labels(ifg: Interferogram, grid: Grid, window: Window | None = None
                ) -> np.ndarray | None:
    """Connected-component labels of ``ifg`` in ``window`` (uint16, 0 = none), or None."""
    if ifg.valid is None:
        return None
    if window is None:
        window = Window(0, 0, grid.width, grid.height)
    lab = _read(ifg, ifg.valid, grid, window, "nearest")
    return np.where(np.isfinite(lab) & (lab > 0), lab, 0).astype(np.uint16)


def read_coherence(ifg: Interferogram, grid: Grid, window: Window | None = None
                   ) -> np.ndarray | None:
    """Coherence of ``ifg`` in ``window`` (float32 in [0, 1], NaN = none), or None."""
    if ifg.coherence is None:
        return None
    if window is None:
        window = Window(0, 0, grid.width, grid.height)
    coh = _read(ifg, ifg.coherence, grid, window)
    if ifg.coherence.scale != 1.0:
        coh *= np.float32(ifg.coherence.scale)
    np.clip(coh, 0.0, 1.0, out=coh)
    return coh


def phase_to_metres(wavelength: float) -> float:
    """Metres (towards the satellite) per radian of range-increase phase."""
    return -wavelength / (4 * math.pi)
