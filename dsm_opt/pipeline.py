"""The DSM-OPT chain: views, pair, epipolar rectification, matching, triangulation, DSM.

Steps:

1. open the images and their RPC models; check they overlap on the ground;
2. bound the heights (explicit bounds, a coarse DEM widened by the preset's margin, or
   the RPC validity range);
3. choose the pair of a triplet by its base-to-height ratio (refuse degenerate ones);
4. epipolar grids from the RPCs at two heights; relative pointing correction: the
   across-epipolar misalignment the RPCs leave is measured by phase correlation of
   rectified tiles and removed by shifting the second view's RPC (a few rounds);
5. band by band of epipolar rows (only the raw windows a band needs are read):
   bicubic resampling of both images, dense matching (census/ZNCC + SGM, tiled),
   left–right check, filters, triangulation of every valid disparity (intersection of
   the lines of sight) and rasterisation on the UTM grid of the scene centre (median
   height per cell, point count, uncertainty, ortho-image);
6. close the one-cell gaps of the irregular point spacing (median of the neighbours);
7. optional hole filling of enclosed holes (flagged in filled.tif);
8. quicklook (hillshade), report, STAC item; optionally record it in a STAC catalogue.

Everything is written into a staging folder published only on success.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds

from dsm_opt.config import DsmConfig, DsmParams
from dsm_opt.dsmgrid import BlockGrid, align_pairs, write_products
from dsm_opt.geometry import (
    EpipolarGrids,
    LosGrids,
    View,
    disparity_range,
    epipolar_grids,
    footprint,
    ground_sampling_distance,
    load_view,
    los_grids,
    pointing_offset,
    resample,
    select_pair,
    triangulate,
    triangulate_grids,
    utm_epsg,
)
from dsm_opt.sparse import (
    correct_pointing_sparse,
    disparity_bounds,
    match_heights,
    sparse_matches,
    tile_height_ranges,
)
from gdmcore import InputError, Progress
from gdmio.cog import write_cog
from gdmio.products import ProductDir
from gdmio.quicklook import quicklook
from gdmio.stac import write_item
from kernels.stereo import MASK, match

__all__ = ["DsmOutputs", "NODATA", "run", "hillshade", "height_bounds"]

_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_MIN_OVERLAP = 0.05  # of the smaller footprint
MAX_DSM_CELLS = 4_000_000_000
"""Largest DSM grid (cells): a 63,000² grid, over three times a whole Pléiades scene
(40,000² px) at 0.5 m. The grid is streamed in blocks, so memory does not bound it."""
_SUMS_BYTES_PER_CELL = 20  # float32 sums a pair keeps per cell (BlockGrid, 5 layers)
NODATA = -9999.0  # of dsm.tif
_SIGMA_DISPARITY = 0.25  # prior matching precision (pixels) for the uncertainty layer
_POINTING_ROUNDS = 3  # measure-and-shift rounds of the relative pointing correction
_POINTING_TOLERANCE_PX = 0.02  # a misalignment below this is left alone


@dataclass
class DsmOutputs:
    """Paths of the products written by :func:`run` and a few facts about the job."""

    out_dir: Path
    dsm: Path
    ortho: Path
    count: Path
    uncertainty: Path
    quicklook: Path
    item: Path
    report: Path
    filled: Path | None = None
    pair: tuple[int, int] = (0, 1)
    bh: float = float("nan")
    epsg: int = 0
    quicklooks: list[Path] = field(default_factory=list)

    def all_paths(self) -> list[Path]:
        """Every product file."""
        paths = [self.dsm, self.ortho, self.count, self.uncertainty, self.quicklook,
                 self.report, self.item]
        return paths + ([self.filled] if self.filled else [])


def hillshade(z: np.ndarray, res: float, azimuth: float = 315.0, altitude: float = 45.0
              ) -> np.ndarray:
    """Hillshade in [0, 1] of a north-up height grid (NaN where a neighbour is NaN)."""
    gy, gx = np.gradient(z.astype(np.float64), res)
    slope = np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)
    az = np.deg2rad(360.0 - azimuth + 90.0)
    alt = np.deg2rad(altitude)
    hs = np.sin(alt) * np.cos(slope) + np.cos(alt) * np.sin(slope) * np.cos(az - aspect)
    return np.clip(hs, 0.0, 1.0).astype(np.float32)


def height_bounds(cfg: DsmConfig, views: list[View], margin: float) -> tuple[float, float, str]:
    """The height interval searched: explicit, from the DEM, or from the RPCs."""
    if cfg.height_min is not None and cfg.height_max is not None:
        return cfg.height_min, cfg.height_max, "explicit"
    lo = max(v.rpc.height_range[0] for v in views)
    hi = min(v.rpc.height_range[1] for v in views)
    if cfg.dem is not None:
        hm = 0.5 * (lo + hi) if hi > lo else views[0].rpc.height_off
        foot = footprint(views[0], hm)
        for v in views[1:]:
            foot = foot.union(footprint(v, hm))
        try:
            with rasterio.open(cfg.dem) as ds:
                if ds.crs is None:
                    raise InputError(f"DEM {cfg.dem.name} has no CRS")
                b = transform_bounds("EPSG:4326", ds.crs, *foot.bounds)
                w = rasterio.windows.from_bounds(*b, transform=ds.transform)
                # every DEM cell touching the scene, plus one around (coarse cells)
                c0 = max(int(np.floor(w.col_off)) - 1, 0)
                r0 = max(int(np.floor(w.row_off)) - 1, 0)
                c1 = min(int(np.ceil(w.col_off + w.width)) + 1, ds.width)
                r1 = min(int(np.ceil(w.row_off + w.height)) + 1, ds.height)
                if c1 <= c0 or r1 <= r0:
                    raise InputError(f"DEM {cfg.dem.name} does not cover the scene")
                win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
                z = ds.read(1, window=win, masked=True).astype(np.float64)
        except RasterioIOError as exc:
            raise InputError(f"DEM {cfg.dem}: not readable ({str(exc).splitlines()[0]})") \
                from None
        z = z.compressed() if np.ma.isMaskedArray(z) else z.ravel()
        z = z[np.isfinite(z)]
        if z.size == 0:
            raise InputError(f"DEM {cfg.dem.name} has no height over the scene")
        return float(z.min()) - margin, float(z.max()) + margin, "dem"
    if not hi > lo:
        raise InputError("the RPC models have no common height range: give height_min "
                         "and height_max")
    return lo, hi, "rpc"


@dataclass
class _PairResult:
    """One pair's contribution to the DSM grid and its report."""

    i: int
    j: int
    bh: float
    acc: BlockGrid
    report: dict
    codes: np.ndarray
    points: int
    gaps: list[float]
    m_per_px: float
    left: View
    right: View
    grids: EpipolarGrids


def _match_tile(left: View, right: View, grids: EpipolarGrids, y0: int, y1: int, x0: int,
                x1: int, dmin: int, dmax: int, params: DsmParams, lr_threshold: float,
                overlap: int, refine_window: int | None, clock: dict[str, float] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense disparity of one epipolar tile (core rows y0:y1, columns x0:x1).

    Returns the disparity and mask of the core and the left image of the core; adds the
    seconds spent resampling and matching to ``clock``.
    """
    clock = {} if clock is None else clock
    t0 = time.perf_counter()
    ny, nx = grids.shape
    ov = overlap + params.window
    a0, a1 = max(y0 - ov, 0), min(y1 + ov, ny)
    b0, b1 = max(x0 - ov, 0), min(x1 + ov, nx)
    rc0, rc1 = b0 + dmin - params.window, b1 + dmax + params.window
    epi_l = resample(left, grids, "left", slice(a0, a1), slice(b0, b1))
    core = (slice(y0 - a0, y1 - a0), slice(x0 - b0, x1 - b0))
    if not np.isfinite(epi_l[core]).any():
        return (np.full((y1 - y0, x1 - x0), np.nan, np.float32),
                np.full((y1 - y0, x1 - x0), MASK["nodata"], np.uint8), epi_l[core])
    epi_r = resample(right, grids, "right", slice(a0, a1), slice(rc0, rc1))
    if not np.isfinite(epi_r).any():
        return (np.full((y1 - y0, x1 - x0), np.nan, np.float32),
                np.full((y1 - y0, x1 - x0), MASK["out_of_range"], np.uint8), epi_l[core])
    shift = b0 - rc0  # right array column = left array column + d + shift
    t1 = time.perf_counter()
    clock["resample"] = clock.get("resample", 0.0) + t1 - t0
    res = match(epi_l, epi_r, dmin + shift, dmax + shift, cost=params.cost,
                window=params.window, p1=params.p1, p2=params.p2, subpixel=params.subpixel,
                lr_threshold=lr_threshold, speckle_size=params.speckle_size,
                tile=max(a1 - a0, b1 - b0), overlap=0, refine_window=refine_window)
    clock["match"] = clock.get("match", 0.0) + time.perf_counter() - t1
    return res.disparity[core] - shift, res.mask[core], epi_l[core]


@dataclass(frozen=True)
class _TileTask:
    """One epipolar tile to match: its core and its disparity and height ranges."""

    y0: int
    y1: int
    x0: int
    x1: int
    dmin: int
    dmax: int
    h_lo: float
    h_hi: float


@dataclass(frozen=True)
class _TileJob:
    """What every tile of a pair needs (pickled once per worker process)."""

    left: View
    right: View
    grids: EpipolarGrids
    params: DsmParams
    lr_threshold: float
    overlap: int
    refine_window: int | None
    epsg: int
    los: LosGrids


@dataclass
class _TilePoints:
    """The triangulated points of one tile (UTM metres, heights) and its mask counts."""

    east: np.ndarray
    north: np.ndarray
    h: np.ndarray
    colour: np.ndarray
    codes: np.ndarray
    gap: float
    clock: dict[str, float] = field(default_factory=dict)
    pid: int = 0


_TRANSFORMERS: dict[int, Transformer] = {}


def _tile_points(job: _TileJob, t: _TileTask) -> _TilePoints:
    """Match, check and triangulate one tile (runs in a worker process or in line)."""
    to_utm = _TRANSFORMERS.get(job.epsg)
    if to_utm is None:  # ECEF straight to UTM and ellipsoidal height
        to_utm = _TRANSFORMERS.setdefault(
            job.epsg, Transformer.from_crs("EPSG:4978", f"EPSG:{job.epsg}", always_xy=True))
    clock: dict[str, float] = {"pid": os.getpid()}
    disp, mask, colour = _match_tile(job.left, job.right, job.grids, t.y0, t.y1, t.x0, t.x1,
                                     t.dmin, t.dmax, job.params, job.lr_threshold,
                                     job.overlap, job.refine_window, clock)
    t0 = time.perf_counter()
    codes = np.bincount(mask.ravel(), minlength=len(MASK))[:len(MASK)].astype(np.int64)
    empty = np.empty(0)
    yy, xx = np.nonzero(np.isfinite(disp))
    if not yy.size:
        return _TilePoints(empty, empty, empty, empty, codes, np.nan, clock)
    xyz, gap = triangulate_grids(job.los, (yy + t.y0).astype(np.float64),
                                 (xx + t.x0).astype(np.float64),
                                 disp[yy, xx].astype(np.float64))
    east, north, h = (np.asarray(v) for v in to_utm.transform(xyz[:, 0], xyz[:, 1],
                                                               xyz[:, 2]))
    span = t.h_hi - t.h_lo
    ok = (np.isfinite(east) & np.isfinite(north) & np.isfinite(h)
          & (h > t.h_lo - span) & (h < t.h_hi + span))
    clock["triangulate"] = time.perf_counter() - t0
    if not ok.any():
        return _TilePoints(empty, empty, empty, empty, codes, np.nan, clock)
    return _TilePoints(east[ok], north[ok], h[ok].astype(np.float64),
                       colour[yy, xx][ok].astype(np.float64), codes,
                       float(np.median(gap[ok])), clock)


def _init_worker() -> None:
    """Worker processes match one tile at a time on one thread each."""
    import numba

    numba.set_num_threads(1)


def _run_tiles(job: _TileJob, tasks: list[_TileTask], workers: int
               ) -> Iterator[_TilePoints]:
    """Each tile's points, in order: in line, or on ``workers`` processes through Dask.

    Dask computes the tiles in batches of twice the workers (bounded memory: the
    points of a batch only), on a process pool of our own whose workers hold the pair
    (the views, grids and parameters are sent once per batch as one shared argument),
    one tile per submission (Dask's default chunks of 6 tasks would put a whole batch
    on one process).
    """
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield _tile_points(job, t)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import dask

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                             initializer=_init_worker) as pool:
        shared = dask.delayed(job, pure=True)
        batch = 2 * workers
        for b0 in range(0, len(tasks), batch):
            parts = [dask.delayed(_tile_points, pure=True)(shared, t)
                     for t in tasks[b0:b0 + batch]]
            yield from dask.compute(*parts, scheduler="processes", pool=pool,
                                    num_workers=workers, chunksize=1)


def _epipolar_tiles(shape: tuple[int, int], tile: int) -> list[tuple[int, int, int, int]]:
    ny, nx = shape
    return [(y0, min(y0 + tile, ny), x0, min(x0 + tile, nx))
            for y0 in range(0, ny, tile) for x0 in range(0, nx, tile)]


def _process_pair(cfg: DsmConfig, params: DsmParams, views: list[View], i: int, j: int,
                  bh: float, h_bounds: tuple[float, float, str], grid: _Grid,
                  report_progress: Callable[[float, str], None], span: tuple[float, float]
                  ) -> _PairResult:
    """Sparse matching, pointing correction, tiled dense matching and triangulation."""
    left, right = views[i], views[j]
    h0, h1, h_source = h_bounds
    name = f"{left.path.name} / {right.path.name}"
    p0, p1 = span

    def prog(f: float, msg: str) -> None:
        report_progress(p0 + (p1 - p0) * f, f"{name}: {msg}")

    clock: dict[str, float] = {}
    tick = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        clock[name] = clock.get(name, 0.0) + now - tick[0]
        tick[0] = now

    grids = epipolar_grids(left, right, h0, h1)
    d_lo, d_hi = disparity_range(left, right, grids, h0, h1)
    lap("epipolar_grids")
    prog(0.02, "sparse matches")
    sparse = sparse_matches(left, right, grids, d_lo, d_hi)
    lap("sparse_matches")
    pointing: dict = {"enabled": cfg.pointing_correction, "matches": len(sparse),
                      "applied": False}
    if cfg.pointing_correction:
        right, pointing = correct_pointing_sparse(left, right, sparse, h0, h1,
                                                  direction_model=cfg.pointing_direction)
        pointing["enabled"] = True
    lap("pointing_correction")
    heights = match_heights(left, right, sparse, h0, h1) if len(sparse) else np.empty(0)
    usable = int(np.isfinite(heights).sum())
    if h_source == "rpc" and usable < 12:
        raise InputError(f"{name}: only {usable} sparse matches: the images may not show "
                         "the same scene (or give height_min/height_max or a DEM)")
    if usable >= 12 and h_source == "rpc":
        # grids again, with the corrected right view, centred on the scene's heights
        g_lo, g_hi = np.nanpercentile(heights, [0.5, 99.5])
        pad = max(0.5 * (g_hi - g_lo), 20.0)
        grids = epipolar_grids(left, right, g_lo - pad, g_hi + pad)
    else:  # bounds given: the matches only narrow the search per tile
        grids = epipolar_grids(left, right, h0, h1)
    if cfg.pointing_correction and pointing.get("applied"):
        dy, n_tiles = pointing_offset(left, right, grids)
        pointing["dense_check_px"] = None if not np.isfinite(dy) else round(dy, 4)
        pointing["dense_check_tiles"] = n_tiles
    lap("epipolar_grids")
    cy = np.array([grids.shape[0] / 2.0] * 2)
    cx = np.array([grids.shape[1] / 2.0] * 2)
    _, _, hd, _ = triangulate(left, right, grids, cy, cx, np.array([0.0, 1.0]))
    m_per_px = float(abs(hd[1] - hd[0]))
    tiles = _epipolar_tiles(grids.shape, cfg.tile)
    if usable >= 12:
        ranges, summary = tile_height_ranges(sparse.epi, heights, tiles, m_per_px)
    else:
        ranges, summary = [(h0, h1, h_source)] * len(tiles), {"matches": usable}
    if h_source != "rpc":
        ranges = [(max(lo, h0), min(hi, h1), src) if hi > h0 and lo < h1 else (h0, h1, src)
                  for lo, hi, src in ranges]
    acc = grid.accumulator(cfg.raster_sigma, float(np.nanmedian(heights)) if usable
                           else 0.5 * (h0 + h1))
    codes = np.zeros(len(MASK), np.int64)
    n_points, gaps = 0, []
    widths, sources = [], {}
    tasks = []
    for (y0, y1, x0, x1), (lo, hi, src) in zip(tiles, ranges, strict=True):
        dl, dh = disparity_bounds(left, right, grids, y0, y1, x0, x1, lo, hi)
        if not (np.isfinite(dl) and np.isfinite(dh)):
            codes[MASK["nodata"]] += (y1 - y0) * (x1 - x0)
            continue
        dmin = int(np.floor(dl)) - params.disparity_margin
        dmax = int(np.ceil(dh)) + params.disparity_margin
        if dmax - dmin + 1 > 1024:
            raise InputError(f"{name}: the heights {lo:.0f}..{hi:.0f} m give "
                             f"{dmax - dmin + 1} disparities in one tile (max 1024): give "
                             "tighter height bounds or a DEM")
        widths.append(dmax - dmin + 1)
        sources[src] = sources.get(src, 0) + 1
        tasks.append(_TileTask(y0, y1, x0, x1, dmin, dmax, lo, hi))
    d_far = max([abs(v) for t in tasks for v in (t.dmin, t.dmax)], default=0)
    los = los_grids(left, right, grids, d_far + 2 * params.window)
    lap("tile_ranges")
    job = _TileJob(left, right, grids, params, cfg.lr_threshold, cfg.overlap,
                   params.refine_window, grid.epsg, los)
    in_tiles: dict[str, float] = {}
    pids: set[int] = set()
    splat = 0.0
    for k, res in enumerate(_run_tiles(job, tasks, cfg.workers)):
        codes += res.codes
        pids.add(int(res.clock.pop("pid", 0)))
        for name, sec in res.clock.items():
            in_tiles[name] = in_tiles.get(name, 0.0) + sec
        if res.east.size:
            n_points += int(res.east.size)
            gaps.append(res.gap)
            t_splat = time.perf_counter()
            acc.add(res.east, res.north, res.h, res.colour, grid.x0, grid.y0, grid.res)
            splat += time.perf_counter() - t_splat
        prog(0.1 + 0.9 * (k + 1) / max(len(tasks), 1), f"tile {k + 1} of {len(tasks)}")
    lap("tiles_wall")
    clock["tiles_splat"] = splat
    # seconds inside the tiles, summed over the tiles (on N workers: about N times the
    # wall time they took)
    clock.update({f"tiles_{k}_summed": v for k, v in in_tiles.items()})
    report = {
        "left": left.path.name, "right": right.path.name, "indices": [i, j],
        "bh": round(bh, 4), "rpc": [left.rpc_origin, right.rpc_origin],
        "epipolar": {"shape": list(grids.shape), "tiles": len(tiles),
                     "disparities_per_tile": {
                         "median": int(np.median(widths)) if widths else 0,
                         "max": int(max(widths)) if widths else 0},
                     "range_source": sources,
                     "worker_processes": len(pids),
                     "metres_per_pixel_of_disparity": round(m_per_px, 4)},
        "sparse": {"tiles": sparse.tiles, "matches": len(sparse), "usable": usable} | summary,
        "pointing": pointing,
        "seconds": {k: round(v, 2) for k, v in clock.items()},
    }
    return _PairResult(i, j, bh, acc, report, codes, n_points, gaps, m_per_px, left, right,
                       grids)


@dataclass
class _Grid:
    """The DSM grid: UTM zone, origin, cell size and shape."""

    epsg: int
    x0: float
    y0: float
    res: float
    rows: int
    cols: int
    to_utm: Transformer
    tmp: Path
    max_blocks: int = 96

    def accumulator(self, sigma: float, z_ref: float) -> BlockGrid:
        folder = Path(tempfile.mkdtemp(prefix="pair-", dir=self.tmp))
        return BlockGrid(self.rows, self.cols, folder, sigma, z_ref,
                         max_blocks=self.max_blocks)


def _check_scratch(folder: Path, pair_cells: int) -> None:
    """Refuse a grid whose blocks could not all fit on the temporary disk.

    Blocks evicted from memory go to ``folder``: at worst every cell of every pair's
    grid, :data:`_SUMS_BYTES_PER_CELL` bytes each (the views rarely cover the whole
    rectangle, so this over-estimates).
    """
    need = pair_cells * _SUMS_BYTES_PER_CELL
    free = shutil.disk_usage(folder).free
    if need > free:
        raise InputError(f"the DSM grid needs up to {need / 2**30:.1f} GiB of temporary "
                         f"disk in {folder.parent} and {free / 2**30:.1f} GiB are free: set "
                         "TMPDIR to a larger disk or choose a coarser resolution")


def run(cfg: DsmConfig, progress: Progress | None = None) -> DsmOutputs:
    """Run a DSM-OPT job and write its products into ``cfg.out``.

    Raises
    ------
    InputError
        On bad input (no RPC, no overlap, degenerate geometry, ...), before anything is
        published.

    """
    t_start = time.perf_counter()

    def report_progress(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), message)

    params = cfg.resolved()
    paths = [Path(p) for p in cfg.images]
    if len({p.resolve() for p in paths}) != len(paths):
        raise InputError("the same image is given twice")
    rpc_files = list(cfg.rpcs) if cfg.rpcs else [None] * len(paths)
    if len(rpc_files) != len(paths):
        raise InputError(f"{len(rpc_files)} RPC files for {len(paths)} images: give one per "
                         "image (or none)")
    views = [load_view(p, r) for p, r in zip(paths, rpc_files, strict=True)]
    h0, h1, h_source = height_bounds(cfg, views, params.height_margin)
    hm = 0.5 * (h0 + h1)

    # ground overlap of all views: the best over the height range (the ground may lie
    # anywhere in it, and crops of different views meet only at its height)
    best_share, common = -1.0, None
    for hh in np.linspace(h0, h1, 9):
        feet = [footprint(v, float(hh)) for v in views]
        inter = feet[0]
        for f in feet[1:]:
            inter = inter.intersection(f)
        share = 0.0 if inter.is_empty else inter.area / min(f.area for f in feet)
        if share > best_share:
            best_share, common, hm = share, inter, float(hh)
    if common is None or common.is_empty or best_share < _MIN_OVERLAP:
        raise InputError("the images do not overlap on the ground (common footprint "
                         f"{max(best_share, 0.0):.1%} of the smallest at best)")
    lon_c, lat_c = common.centroid.x, common.centroid.y
    i, j, bh, all_bh = select_pair(views, lon_c, lat_c, h0, h1, params.target_bh, cfg.min_bh)
    if len(views) == 3 and cfg.fusion:
        pairs = [(a, b, v) for (a, b), v in
                 ((tuple(int(t) for t in k.split("-")), v) for k, v in all_bh.items())
                 if v >= cfg.min_bh]
    else:
        pairs = [(i, j, bh)]
    report_progress(0.02, f"{len(pairs)} pair(s), B/H {', '.join(f'{p[2]:.2f}' for p in pairs)}")

    epsg = utm_epsg(lon_c, lat_c)
    crs = f"EPSG:{epsg}"
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    gsd = ground_sampling_distance(views[i], hm)
    resolution = cfg.resolution or max(round(gsd * 10) / 10, 0.1)
    # the DSM grid: where the views of some pair see the ground, over the height range
    seen = None
    for a, b, _ in pairs:
        for hh in (h0, h1):
            both = footprint(views[a], hh).intersection(footprint(views[b], hh))
            seen = both if seen is None else seen.union(both)
    assert seen is not None
    west, south, east_b, north_b = transform_bounds("EPSG:4326", crs, *seen.bounds,
                                                    densify_pts=21)
    x0 = np.floor(west / resolution) * resolution
    y0 = np.ceil(north_b / resolution) * resolution
    ncols = int(np.ceil((east_b - x0) / resolution)) + 1
    nrows = int(np.ceil((y0 - south) / resolution)) + 1
    if nrows * ncols > MAX_DSM_CELLS:
        raise InputError(f"a {ncols}x{nrows} DSM is too large (more than "
                         f"{MAX_DSM_CELLS:,} cells): choose a coarser resolution")
    with tempfile.TemporaryDirectory(prefix="gdm-dsm-") as tmp:
        _check_scratch(Path(tmp), nrows * ncols * len(pairs))
        grid = _Grid(epsg, float(x0), float(y0), float(resolution), nrows, ncols, to_utm,
                     Path(tmp), max_blocks=max(8, int(cfg.grid_memory_mb / len(pairs) / 5.3)))
        return _finish(cfg, params, views, pairs, all_bh, (h0, h1, h_source), grid,
                       report_progress, t_start)


def _finish(cfg: DsmConfig, params: DsmParams, views: list[View],
            pairs: list[tuple[int, int, float]], all_bh: dict[str, float],
            h_bounds: tuple[float, float, str], grid: _Grid,
            report_progress: Callable[[float, str], None], t_start: float) -> DsmOutputs:
    """Process the pairs on the grid and write the products."""
    h0, h1, h_source = h_bounds
    epsg, crs, resolution = grid.epsg, f"EPSG:{grid.epsg}", grid.res
    x0, y0, ncols, nrows = grid.x0, grid.y0, grid.cols, grid.rows
    results = []
    for k, (a, b, v) in enumerate(pairs):
        span = (0.05 + 0.8 * k / len(pairs), 0.05 + 0.8 * (k + 1) / len(pairs))
        results.append(_process_pair(cfg, params, views, a, b, v, h_bounds, grid,
                                     report_progress, span))
    n_points = sum(r.points for r in results)
    if n_points < 100:
        raise InputError("almost nothing matched: the images may not show the same scene")
    codes = np.sum([r.codes for r in results], axis=0)
    gaps = [g for r in results for g in r.gaps]
    best = min(results, key=lambda r: (abs(r.bh - params.target_bh), -r.bh))
    i, j, bh = best.i, best.j, best.bh
    left, right = best.left, best.right
    mask_stats = {name: float(codes[code] / max(codes.sum(), 1))
                  for name, code in MASK.items()}
    t_pairs = time.perf_counter()
    report_progress(0.85, f"rasterisation {ncols}x{nrows} at {resolution} m")
    transform = Affine(resolution, 0.0, x0, 0.0, -resolution, y0)
    dates = [v.date for v in (left, right) if v.date is not None]
    start = min(dates) if dates else dt.datetime.now(dt.UTC)
    end = max(dates) if dates else start

    with ProductDir(cfg.out) as stage:
        tags = {"HEIGHT_REFERENCE": "WGS84 ellipsoid",
                "PROCESS": "dsm-opt"}
        sigmas = [max(_SIGMA_DISPARITY * r.m_per_px, 0.05) for r in results]
        tols = [3.0 * max(sg, r.m_per_px / 3.0) for sg, r in zip(sigmas, results, strict=True)]
        offsets, alignment = None, {}
        if len(results) > 1 and cfg.fusion_align:
            ref = max(range(len(results)), key=lambda k: results[k].bh)
            aligned = align_pairs([r.acc for r in results], sigmas, ref)
            offsets = [a["coef"] for a in aligned]
            alignment = {"reference": f"{results[ref].i}-{results[ref].j}", "pairs": {
                f"{r.i}-{r.j}": {"samples": a["samples"],
                                 "median_difference_m": round(a["median_m"], 3),
                                 "plane_m": [round(float(v), 3) for v in a["coef"]],
                                 "nmad_after_m": round(a["nmad_m"], 3)}
                for r, a in zip(results, aligned, strict=True) if r is not results[ref]}}
        pstats = write_products([r.acc for r in results], sigmas, tols, stage, crs,
                                transform, NODATA,
                                cfg.fill_max_cells if cfg.fill_holes else None, tags,
                                lambda f: report_progress(0.85 + 0.1 * f, "products"),
                                offsets=offsets)
        t_products = time.perf_counter()
        dsm_p, ortho_p, count_p, unc_p = (stage / f"{n}.tif" for n in
                                          ("dsm", "ortho", "count", "uncertainty"))
        filled_p = stage / "filled.tif" if cfg.fill_holes else None
        with tempfile.TemporaryDirectory() as tmp:
            with rasterio.open(dsm_p) as ds:  # the hillshade of a decimated DSM
                scale = max(1.0, max(ds.width, ds.height) / 2048)
                shape = (max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
                small = ds.read(1, out_shape=shape, masked=True).astype(np.float32)
            small = np.ma.filled(small, np.nan)
            hs = hillshade(small, resolution * ds.width / shape[1])
            hs_tif = write_cog(Path(tmp) / "hillshade.tif", hs, crs,
                               transform * Affine.scale(ds.width / shape[1],
                                                        ds.height / shape[0]))
            look = quicklook(hs_tif, stage / "dsm_hillshade.png",
                             f"DSM hillshade, {start:%Y-%m-%d}", "", cmap="gray",
                             symmetric=False, vmin=0.0, vmax=1.0)
        fusion = {} if len(results) == 1 else {
            "cells_by_pairs": {str(k): v for k, v in sorted(pstats.by_pairs.items())},
            "rejected_pair_heights": pstats.rejected,
            "alignment": alignment,
            "cells_per_pair": {f"{r.i}-{r.j}": n for r, n in
                               zip(results, pstats.per_pair, strict=True)}}
        report = {
            "process": "dsm-opt",
            "parameters": json.loads(cfg.model_dump_json(exclude={"images", "out"})),
            "effective": {k: getattr(params, k) for k in params.__dataclass_fields__},
            "images": [str(v.path) for v in views],
            "pair": {"left": left.path.name, "right": right.path.name, "indices": [i, j],
                     "bh": round(bh, 4), "bh_all": all_bh},
            "pairs": [r.report for r in results],
            "fusion": fusion,
            "heights": {"min": h0, "max": h1, "source": h_source},
            "epipolar": best.report["epipolar"],
            "sparse": best.report["sparse"],
            "pointing": best.report["pointing"],
            "matching": mask_stats,
            "triangulation": {"points": n_points,
                              "median_gap_m": float(np.median(gaps))},
            "grid": {"epsg": epsg, "resolution_m": resolution, "width": ncols,
                     "height": nrows,
                     "valid_fraction": (pstats.valid - pstats.filled) / max(pstats.cells, 1),
                     "filled_fraction": pstats.filled / max(pstats.cells, 1),
                     "blocks_read_back": sum(r.acc.loads for r in results)},
            "seconds": round(time.perf_counter() - t_start, 2),
            "seconds_by_stage": {
                "pairs": round(t_pairs - t_start, 2),
                "products": round(t_products - t_pairs, 2),
                "quicklook": round(time.perf_counter() - t_products, 2)},
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        report_p = stage / "report.json"
        report_p.write_text(json.dumps(report, indent=2))
        assets = {
            "dsm": {"href": dsm_p.name, "title": "DSM (m above the WGS84 ellipsoid)",
                    "roles": ["data"], "type": _COG},
            "ortho": {"href": ortho_p.name, "title": "ortho-image", "roles": ["data"],
                      "type": _COG},
            "count": {"href": count_p.name, "title": "points per cell", "roles": ["data"],
                      "type": _COG},
            "uncertainty": {"href": unc_p.name, "title": "height 1-sigma (m)",
                            "roles": ["data"], "type": _COG},
            "quicklook": {"href": look.name, "title": "hillshade", "roles": ["overview"],
                          "type": "image/png"},
            "report": {"href": "report.json", "title": "job report", "roles": ["metadata"],
                       "type": "application/json"},
        }
        if filled_p is not None:
            assets["filled"] = {"href": filled_p.name, "title": "filled cells",
                                "roles": ["data"], "type": _COG}
        item_id = f"dsm-opt-{start:%Y%m%d}-{left.path.stem}-{right.path.stem}"
        item_p = write_item(stage / "item.json", item_id, crs, transform, ncols, nrows,
                            assets, start, end,
                            properties={"gdm:process": "dsm-opt", "gsd": resolution,
                                        "dsm:base_to_height": round(bh, 4),
                                        "dsm:pair": [left.path.name, right.path.name],
                                        "dsm:preset": cfg.preset})
    out = Path(cfg.out)

    def final(p: Path) -> Path:
        return out / p.relative_to(stage)

    outputs = DsmOutputs(out_dir=out, dsm=final(dsm_p), ortho=final(ortho_p),
                         count=final(count_p), uncertainty=final(unc_p),
                         quicklook=final(look), item=final(item_p), report=final(report_p),
                         filled=final(filled_p) if filled_p is not None else None,
                         pair=(i, j), bh=bh, epsg=epsg, quicklooks=[final(look)])
    if cfg.catalogue is not None:
        from dsm_opt.catalogue import add_item

        add_item(cfg.catalogue, outputs.item)
    report_progress(1.0, "done")
    return outputs
