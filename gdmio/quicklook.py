"""PNG quicklooks of product rasters: colour map, colour bar with units, scale bar, title.

The raster is read decimated (overviews are used when present), so a quicklook of a
large product stays cheap. Figures are drawn with matplotlib's Agg canvas directly (no
pyplot global state, safe in worker threads) and written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from gdmio.writer import LayerMeta

__all__ = ["display_limits", "quicklook", "quicklook_layer", "interferogram_grid", "network_plot",
           "pair_coherence"]

_NAN_COLOUR = "#c8c8c8"
_DPI = 100
_IMAGE_PX = 800  # long side of the image area in the PNG
_MIN_WIDTH_PX = 640  # room for the title above narrow images


def _eroded_extremes(values: np.ndarray, size: int = 2) -> tuple[float, float] | None:
    """Largest and smallest values that a whole ``size`` x ``size`` block of pixels reaches.

    ``max`` over the field of the block minimum (a grey-level opening): an isolated
    outlier (or a line of them) cannot set it, while any signal at least ``size`` pixels
    wide reaches it. None when no block is entirely valid.
    """
    if values.ndim != 2 or min(values.shape) < size:
        return None
    rows, cols = values.shape[0] - size + 1, values.shape[1] - size + 1
    lo_blocks = np.full((rows, cols), np.inf, np.float64)
    hi_blocks = np.full((rows, cols), -np.inf, np.float64)
    for dr in range(size):
        for dc in range(size):
            part = values[dr:dr + rows, dc:dc + cols]
            lo_blocks = np.minimum(lo_blocks, part)  # NaN propagates: blocks with a gap drop
            hi_blocks = np.maximum(hi_blocks, part)
    ok = np.isfinite(lo_blocks) & np.isfinite(hi_blocks)
    if not ok.any():
        return None
    return float(hi_blocks[ok].min()), float(lo_blocks[ok].max())


def display_limits(
    values: np.ndarray,
    symmetric: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
) -> tuple[float, float]:
    """Robust colour limits of finite ``values`` that never saturate the signal.

    For a 2-D field the limits are the extremes of its 2x2 grey-level opening: the
    largest (smallest) value that a whole 2x2 block of pixels reaches. Isolated outliers
    (and lines of them) do not set them; a signal two pixels wide or more is not
    saturated, however small its area (the 2nd-98th
    percentiles would clip a deformation covering less than 2 % of the image). Symmetric:
    ``(-m, m)`` with ``m`` that extreme of ``|value|``. Other arrays, or fields with no
    whole valid block: the 2nd and 98th percentiles. Given ``vmin`` / ``vmax`` override.
    Degenerate ranges are widened so that ``lo < hi`` always holds.
    """
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    lo = hi = float("nan")
    if finite.size:
        opened = _eroded_extremes(np.abs(arr) if symmetric else arr)
        if opened is not None:
            lo, hi = opened
        else:
            lo, hi = (float(v) for v in np.percentile(np.abs(finite) if symmetric
                                                      else finite, [2, 98]))
        if symmetric:
            m = hi if hi > 0 else float(np.max(np.abs(finite)))
            lo, hi = -m, m
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = (-1.0, 1.0) if symmetric else (0.0, 1.0)
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


def _reference_pixel(tags: dict[str, str]) -> tuple[float, float] | None:
    """(row, col) of a ``REFERENCE_PIXEL`` tag ("row,col"), or None."""
    try:
        row, col = (float(v) for v in tags["REFERENCE_PIXEL"].split(","))
    except (KeyError, ValueError):
        return None
    return row, col


def _read_decimated(path: Path, band: int, max_size: int
                    ) -> tuple[np.ndarray, float, tuple[float, float] | None]:
    """Band (float32, NaN at nodata) decimated to ``max_size``, pixel size, reference pixel.

    The reference pixel (``REFERENCE_PIXEL`` tag) is in decimated pixel coordinates, None
    without the tag. The pixel size (m) is NaN when the raster has no usable
    georeferencing.
    """
    try:
        with quiet_rasterio(), rasterio.open(path) as ds:
            if not 1 <= band <= ds.count:
                raise InputError(f"band {band} not found in {path.name} ({ds.count} band(s))")
            scale = max(1.0, max(ds.width, ds.height) / max_size)
            shape = (max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
            data = ds.read(band, out_shape=shape, resampling=Resampling.average, masked=True)
            arr = np.ma.filled(data.astype(np.float32), np.nan)
            ref = _reference_pixel(ds.tags())
            if ref is not None:
                ref = ((ref[0] + 0.5) * shape[0] / ds.height - 0.5,
                       (ref[1] + 0.5) * shape[1] / ds.width - 0.5)
            t = ds.transform
            pixel_x = math.hypot(t.a, t.d) * ds.width / shape[1]
            metres = None
            if ds.crs is not None and t != Affine.identity():
                _, cy = t @ (ds.width / 2, ds.height / 2)
                metres = _metres_per_unit(ds.crs, cy)
    except RasterioError as exc:
        raise InputError(f"cannot read {path.name}: {first_line(exc)}") from exc
    pixel_m = pixel_x * metres if metres else float("nan")
    return arr, pixel_m, ref


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
    scale: float = 1.0,
    mark_reference: bool = True,
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
        Limits ``(-m, m)`` around zero when True (signed quantities); both from
        :func:`display_limits` (robust, never saturating the signal).
    vmin, vmax : float, optional
        Override the computed limits.
    band : int
        1-based band to show.
    max_size : int
        Longest side, in pixels, of the decimated array read from the raster.
    scale : float
        Values are shown multiplied by ``scale`` (1000: metres shown in mm).
    mark_reference : bool
        Mark the reference pixel of a raster that has a ``REFERENCE_PIXEL`` tag.

    Returns
    -------
    pathlib.Path
        ``png_path``.

    """
    src = Path(tif_path)
    dest = Path(png_path)
    if not src.is_file():
        raise InputError(f"file not found: {src}")
    arr, pixel_m, ref = _read_decimated(src, band, max(16, int(max_size)))
    if scale != 1.0:
        arr *= np.float32(scale)
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
    if mark_reference and ref is not None:
        ax.plot([ref[1]], [ref[0]], marker="s", ms=9, mfc="none", mec="black", mew=2.2)
        ax.plot([ref[1]], [ref[0]], marker="s", ms=9, mfc="none", mec="white", mew=0.9)
        ax.annotate("reference", (ref[1], ref[0]), xytext=(7, 7), textcoords="offset points",
                    fontsize=9, color="black",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.75,
                          "ec": "none"})
        ax.set_xlim(-0.5, cols - 0.5)
        ax.set_ylim(rows - 0.5, -0.5)
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


def quicklook_layer(
    tif_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    meta: LayerMeta,
    title: str,
    band: int = 1,
    **kwargs: Any,
) -> Path:
    """A quicklook drawn as the product table says: display units, colour map, symmetry."""
    kwargs.setdefault("cmap", meta.colour_map)
    kwargs.setdefault("symmetric", meta.signed)
    return quicklook(tif_path, png_path, title, meta.shown_units, band=band,
                     scale=meta.display_scale, **kwargs)


def interferogram_grid(
    pair_dirs: Sequence[str | os.PathLike[str]],
    png_path: str | os.PathLike[str],
    title: str,
    layer: str = "wrapped.tif",
    max_tiles: int = 48,
    tile_px: int = 160,
) -> Path:
    """An overview of many interferograms: one small wrapped-phase map per pair, in a grid.

    Each tile is labelled with its pair folder name (``YYYYMMDD_YYYYMMDD``) and mean
    coherence (``coherence.tif`` beside, when present); one cyclic colour bar in radians.
    With more than ``max_tiles`` pairs, an even selection is shown and the title says so.
    """
    dirs = [Path(d) for d in pair_dirs]
    if not dirs:
        raise InputError("no interferogram to show")
    shown = dirs if len(dirs) <= max_tiles else [
        dirs[round(k * (len(dirs) - 1) / (max_tiles - 1))] for k in range(max_tiles)]
    ncol = min(len(shown), max(1, math.ceil(math.sqrt(len(shown) * 1.6))))
    nrow = math.ceil(len(shown) / ncol)
    tiles = []
    for d in shown:
        arr, _, _ = _read_decimated(d / layer, 1, tile_px)
        coh = None
        if (d / "coherence.tif").is_file():
            c, _, _ = _read_decimated(d / "coherence.tif", 1, tile_px)
            coh = float(np.nanmean(c)) if np.isfinite(c).any() else None
        tiles.append((d.name, arr, coh))
    aspect = tiles[0][1].shape[0] / tiles[0][1].shape[1]
    cell_w = 2.0
    cell_h = cell_w * min(max(aspect, 0.3), 3.0) + 0.35
    fig = Figure(figsize=(ncol * cell_w + 1.0, nrow * cell_h + 0.7), dpi=_DPI)
    FigureCanvasAgg(fig)
    fig.suptitle(title + ("" if len(shown) == len(dirs) else
                          f" ({len(shown)} of {len(dirs)} pairs shown)"), fontsize=12)
    cmap = colormaps["twilight"].with_extremes(bad=_NAN_COLOUR)
    image = None
    for k, (name, arr, coh) in enumerate(tiles):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        image = ax.imshow(arr, cmap=cmap, vmin=-math.pi, vmax=math.pi,
                          interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        label = f"{name[2:8]}-{name[11:17]}" if len(name) == 17 else name
        if coh is not None:
            label += f"  γ {coh:.2f}"
        ax.set_title(label, fontsize=7.5, pad=2)
    fig.subplots_adjust(left=0.02, right=0.9, bottom=0.02, top=1 - 0.55 / fig.get_figheight(),
                        wspace=0.06, hspace=0.3)
    cax = fig.add_axes((0.92, 0.15, 0.018, 0.7))
    assert image is not None  # at least one tile was drawn
    bar = fig.colorbar(image, cax=cax)
    bar.set_label("wrapped phase (rad)")
    bar.set_ticks([-math.pi, 0, math.pi], labels=["-π", "0", "π"])
    dest = Path(png_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return dest


def pair_coherence(pair_dir: str | os.PathLike[str]) -> float | None:
    """Mean of a pair folder's ``coherence.tif`` (decimated read), or None without one."""
    path = Path(pair_dir) / "coherence.tif"
    if not path.is_file():
        return None
    arr, _, _ = _read_decimated(path, 1, 256)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else None


def network_plot(
    dates: Sequence[Any],
    bperp: Sequence[float],
    pairs: Sequence[tuple[int, int]],
    png_path: str | os.PathLike[str],
    title: str,
    coherence: Sequence[float | None] | None = None,
    failed: Sequence[bool] | None = None,
    dropped: Sequence[Any] = (),
) -> Path:
    """The interferogram network: dates against perpendicular baseline, one edge per pair.

    Edges are coloured by the pair's mean ``coherence`` (a colour bar from 0 to 1; grey
    when unknown); ``failed`` pairs are dashed red; ``dropped`` dates get a dotted orange
    line.
    """
    from matplotlib.colors import Normalize
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    fig = Figure(figsize=(8.5, 4.6), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.09, 0.13, 0.76, 0.77))
    cmap = colormaps["viridis"]
    norm = Normalize(0.0, 1.0)
    order = sorted(range(len(pairs)), key=lambda k: (coherence or [None] * len(pairs))[k]
                   or 0.0)  # most coherent drawn last, on top
    for k in order:
        i, j = pairs[k]
        bad = bool(failed[k]) if failed is not None else False
        coh = coherence[k] if coherence is not None else None
        colour = "tab:red" if bad else (_NAN_COLOUR if coh is None else cmap(norm(coh)))
        ax.plot([dates[i], dates[j]], [bperp[i], bperp[j]], color=colour,
                lw=1.4 if bad else 1.6, ls="--" if bad else "-", zorder=2)
    ax.plot(list(dates), list(bperp), "o", color="black", ms=3.5, zorder=3)
    for d in dropped:
        ax.axvline(d, color="tab:orange", ls=":", lw=1.5)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("acquisition date")
    ax.set_ylabel("perpendicular baseline (m)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    from matplotlib.cm import ScalarMappable

    cax = fig.add_axes((0.88, 0.13, 0.02, 0.77))
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    bar.set_label("mean coherence of the pair")
    dest = Path(png_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return dest
