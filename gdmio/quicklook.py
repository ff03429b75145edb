"""PNG quicklooks of product rasters: colour map, colour bar with units, scale bar, title.

The raster is read decimated (overviews are used when present), so a quicklook of a
large product stays cheap. Figures are drawn with matplotlib's Agg canvas directly (no
pyplot global state, safe in worker threads) and written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioError

from gdmcore import InputError
from gdmio._util import first_line, quiet_rasterio
from gdmio.atomic import atomic_path

__all__ = ["display_limits", "quicklook"]

_NAN_COLOUR = "#c8c8c8"
_DPI = 100
_IMAGE_PX = 800  # long side of the image area in the PNG
_MIN_WIDTH_PX = 640  # room for the title above narrow images


def display_limits(
    values: np.ndarray,
    symmetric: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
) -> tuple[float, float]:
    """Robust colour limits of finite ``values``.

    Symmetric: ``(-m, m)`` with ``m`` the 98th percentile of ``|value|``; otherwise the
    2nd and 98th percentiles. Given ``vmin`` / ``vmax`` override. Degenerate ranges are
    widened so that ``lo < hi`` always holds.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        lo, hi = (-1.0, 1.0) if symmetric else (0.0, 1.0)
    elif symmetric:
        m = float(np.percentile(np.abs(finite), 98))
        if m == 0:
            m = float(np.max(np.abs(finite))) or 1.0
        lo, hi = -m, m
    else:
        lo, hi = (float(v) for v in np.percentile(finite, [2, 98]))
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    if not hi > lo:
        pad = max(abs(lo), abs(hi), 1.0) * 0.5
        lo, hi = (lo - pad, hi + pad) if vmin is None and vmax is None else (
            (lo, lo + pad) if vmin is not None else (hi - pad, hi)
        )
    return lo, hi


def _nice_length(target: float) -> float:
    """Largest 1, 2 or 5 times a power of ten not above ``target``."""
    exp = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10**exp <= target:
            return float(m * 10**exp)
    return float(10**exp)


def _metres_per_unit(crs: CRS | None, lat: float) -> float | None:
    """Ground metres per CRS unit along x (approximate for geographic CRS), or None."""
    if crs is None:
        return None
    try:
        if crs.is_projected:
            return float(crs.linear_units_factor[1])
        if crs.is_geographic:
            return 111_320.0 * math.cos(math.radians(lat))
    except CRSError:
        return None
    return None


def _read_decimated(path: Path, band: int, max_size: int) -> tuple[np.ndarray, float]:
    """Band as float32 with NaN at nodata, decimated to ``max_size``; and its pixel size (m).

    The pixel size is NaN when the raster has no usable georeferencing.
    """
    try:
        with quiet_rasterio(), rasterio.open(path) as ds:
            if not 1 <= band <= ds.count:
                raise InputError(f"band {band} not found in {path.name} ({ds.count} band(s))")
            scale = max(1.0, max(ds.width, ds.height) / max_size)
            shape = (max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
            data = ds.read(band, out_shape=shape, resampling=Resampling.average, masked=True)
            arr = np.ma.filled(data.astype(np.float32), np.nan)
            t = ds.transform
            pixel_x = math.hypot(t.a, t.d) * ds.width / shape[1]
            metres = None
            if ds.crs is not None and t != Affine.identity():
                _, cy = t @ (ds.width / 2, ds.height / 2)
                metres = _metres_per_unit(ds.crs, cy)
    except RasterioError as exc:
        raise InputError(f"cannot read {path.name}: {first_line(exc)}") from exc
    pixel_m = pixel_x * metres if metres else float("nan")
    return arr, pixel_m


def quicklook(
    tif_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    title: str,
    units: str,
    cmap: str = "RdBu_r",
    symmetric: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    band: int = 1,
    max_size: int = 1024,
) -> Path:
    """Render a raster band as a PNG with colour bar, scale bar and title.

    Parameters
    ----------
    tif_path : str or PathLike
        Raster to show.
    png_path : str or PathLike
        PNG to write (atomically; parent folders are created).
    title : str
        Figure title.
    units : str
        Colour-bar label (e.g. "m", "m/yr"; empty for none).
    cmap : str
        Matplotlib colour map name.
    symmetric : bool
        Limits ``(-m, m)`` around zero (m = 98th percentile of ``|value|``) when True,
        else the 2nd-98th percentiles.
    vmin, vmax : float, optional
        Override the computed limits.
    band : int
        1-based band to show.
    max_size : int
        Longest side, in pixels, of the decimated array read from the raster.

    Returns
    -------
    pathlib.Path
        ``png_path``.

    """
    src = Path(tif_path)
    dest = Path(png_path)
    if not src.is_file():
        raise InputError(f"file not found: {src}")
    arr, pixel_m = _read_decimated(src, band, max(16, int(max_size)))
    lo, hi = display_limits(arr, symmetric, vmin, vmax)

    rows, cols = arr.shape
    aspect = rows / cols
    img_w = _IMAGE_PX if aspect <= 1 else max(120, round(_IMAGE_PX / aspect))
    img_h = _IMAGE_PX if aspect > 1 else max(120, round(_IMAGE_PX * aspect))
    right, bottom, top = 130, 20, 60  # margins in PNG pixels (colour bar, -, title)
    fig_w = max(img_w + 20 + right, _MIN_WIDTH_PX)
    left = (fig_w - img_w - right) // 2
    fig_h = img_h + bottom + top
    fig = Figure(figsize=(fig_w / _DPI, fig_h / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, img_w / fig_w, img_h / fig_h))
    colour_map = colormaps[cmap].with_extremes(bad=_NAN_COLOUR)
    image = ax.imshow(arr, cmap=colour_map, vmin=lo, vmax=hi, interpolation="nearest",
                      aspect="auto")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.suptitle(title, fontsize=12, y=1 - 12 / fig_h, va="top", wrap=True)

    finite = arr[np.isfinite(arr)]
    below = bool(finite.size and finite.min() < lo)
    above = bool(finite.size and finite.max() > hi)
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max",
              (True, True): "both"}[(below, above)]
    cax = fig.add_axes(((left + img_w + 15) / fig_w, bottom / fig_h, 18 / fig_w,
                        img_h / fig_h))
    bar = fig.colorbar(image, cax=cax, extend=extend)
    if units:
        bar.set_label(units)

    if math.isfinite(pixel_m) and pixel_m > 0:
        _draw_scale_bar(ax, cols, rows, pixel_m)
    if finite.size == 0:
        ax.text(0.5, 0.5, "no valid data", transform=ax.transAxes, ha="center",
                va="center", fontsize=14)

    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return dest


def _draw_scale_bar(ax: Axes, cols: int, rows: int, pixel_m: float) -> None:
    """Draw a white-boxed scale bar in the lower-left corner (axes in pixel units)."""
    length_m = _nice_length(cols * pixel_m / 4)
    length_px = length_m / pixel_m
    label = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
    bar = AnchoredSizeBar(ax.transData, length_px, label, loc="lower left", pad=0.4,
                          borderpad=0.8, sep=4, frameon=True,
                          size_vertical=max(rows, cols) / 150)
    bar.patch.set_facecolor("white")
    bar.patch.set_alpha(0.75)
    bar.patch.set_edgecolor("none")
    ax.add_artist(bar)
