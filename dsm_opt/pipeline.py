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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds

from dsm_opt.config import DsmConfig
from dsm_opt.geometry import (
    View,
    correct_pointing,
    disparity_range,
    epipolar_grids,
    footprint,
    ground_sampling_distance,
    load_view,
    pointing_offset,
    resample,
    select_pair,
    triangulate,
    utm_epsg,
)
from gdmcore import InputError, Progress
from gdmio.cog import write_cog
from gdmio.products import ProductDir
from gdmio.quicklook import quicklook
from gdmio.stac import write_item
from kernels.rasterize import fill_from_neighbours, fill_holes, rasterize_points
from kernels.stereo import MASK, match

__all__ = ["DsmOutputs", "NODATA", "run", "hillshade", "height_bounds"]

_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_MIN_OVERLAP = 0.05  # of the smaller footprint
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


class _Accumulator:
    """The DSM grid filled band by band.

    Each band's points are rasterised (median per cell) on the part of the grid they
    cover; a cell that receives points from two bands (their seam) gets the
    count-weighted mean of the two medians.
    """

    def __init__(self, rows: int, cols: int) -> None:
        self.value = np.full((rows, cols), np.nan, np.float32)
        self.unc = np.full((rows, cols), np.nan, np.float32)
        self.colour = np.full((rows, cols), np.nan, np.float32)
        self.count = np.zeros((rows, cols), np.int32)

    def add(self, east: np.ndarray, north: np.ndarray, h: np.ndarray, colour: np.ndarray,
            x0: float, y0: float, res: float, sigma: float) -> None:
        rows, cols = self.count.shape
        i0 = max(int(np.floor((y0 - north.max()) / res)), 0)
        i1 = min(int(np.floor((y0 - north.min()) / res)) + 1, rows)
        j0 = max(int(np.floor((east.min() - x0) / res)), 0)
        j1 = min(int(np.floor((east.max() - x0) / res)) + 1, cols)
        if i1 <= i0 or j1 <= j0:
            return
        sub = rasterize_points(east, north, h, x0 + j0 * res, y0 - i0 * res, res,
                               (i1 - i0, j1 - j0), colour=colour, sigma=sigma, radius=0)
        win = (slice(i0, i1), slice(j0, j1))
        n_old = self.count[win]
        n_new = sub.count.astype(np.int32)
        fresh = (n_new > 0) & (n_old == 0)
        seam = (n_new > 0) & (n_old > 0)
        for layer, new in ((self.value, sub.value), (self.unc, sub.uncertainty),
                           (self.colour, sub.colour)):
            view = layer[win]
            view[fresh] = new[fresh]
            if seam.any():
                w_old, w_new = n_old[seam], n_new[seam]
                view[seam] = (view[seam] * w_old + new[seam] * w_new) / (w_old + w_new)
        self.count[win] = n_old + n_new


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
    views = [load_view(p) for p in paths]
    h0, h1, h_source = height_bounds(cfg, views, params.height_margin)
    hm = 0.5 * (h0 + h1)

    # ground overlap of all views at the mean height
    feet = [footprint(v, hm) for v in views]
    common = feet[0]
    for f in feet[1:]:
        common = common.intersection(f)
    smallest = min(f.area for f in feet)
    if common.is_empty or common.area < _MIN_OVERLAP * smallest:
        raise InputError("the images do not overlap on the ground (common footprint "
                         f"{0 if common.is_empty else common.area / smallest:.1%} of the "
                         "smallest)")
    lon_c, lat_c = common.centroid.x, common.centroid.y
    i, j, bh, all_bh = select_pair(views, lon_c, lat_c, h0, h1, params.target_bh, cfg.min_bh)
    left, right = views[i], views[j]
    report_progress(0.05, f"pair {left.path.name} / {right.path.name}, B/H {bh:.3f}")

    grids = epipolar_grids(left, right, h0, h1)
    pointing: dict = {"enabled": cfg.pointing_correction, "applied_px": 0.0}
    if cfg.pointing_correction:
        report_progress(0.07, "relative pointing correction")
        for _ in range(_POINTING_ROUNDS):
            dy, tiles = pointing_offset(left, right, grids)
            pointing.update(measured_px=None if not np.isfinite(dy) else round(dy, 4),
                            tiles=tiles)
            if not np.isfinite(dy) or abs(dy) < _POINTING_TOLERANCE_PX:
                break
            right = correct_pointing(right, grids, dy)
            grids = epipolar_grids(left, right, h0, h1)
            pointing["applied_px"] = round(pointing["applied_px"] + dy, 4)
    d_lo, d_hi = disparity_range(left, right, grids, h0, h1)
    dmin = int(np.floor(d_lo)) - params.disparity_margin
    dmax = int(np.ceil(d_hi)) + params.disparity_margin
    if dmax - dmin + 1 > 1024:
        raise InputError(f"the height range {h0:.0f}..{h1:.0f} m gives {dmax - dmin + 1} "
                         "disparities (max 1024): give tighter height bounds or a DEM")
    report_progress(0.1, f"epipolar {grids.shape[1]}x{grids.shape[0]}, disparities "
                    f"{dmin}..{dmax}")
    epsg = utm_epsg(lon_c, lat_c)
    crs = f"EPSG:{epsg}"
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    resolution = cfg.resolution or round(max(ground_sampling_distance(left, hm), 0.1), 2)
    # the DSM grid: where both views see the ground, over the whole height range
    seen = None
    for hh in (h0, h1):
        both = footprint(left, hh).intersection(footprint(right, hh))
        seen = both if seen is None else seen.union(both)
    assert seen is not None
    west, south, east_b, north_b = transform_bounds("EPSG:4326", crs, *seen.bounds,
                                                    densify_pts=21)
    x0 = np.floor(west / resolution) * resolution
    y0 = np.ceil(north_b / resolution) * resolution
    ncols = int(np.ceil((east_b - x0) / resolution)) + 1
    nrows = int(np.ceil((y0 - south) / resolution)) + 1
    if nrows * ncols > 400_000_000:
        raise InputError(f"a {ncols}x{nrows} DSM is too large: choose a coarser resolution")
    acc = _Accumulator(nrows, ncols)
    # metres of height per pixel of disparity (for the prior uncertainty)
    cy, cx = np.array([grids.shape[0] / 2.0] * 2), np.array([grids.shape[1] / 2.0] * 2)
    _, _, hd, _ = triangulate(left, right, grids, cy, cx, np.array([0.0, 1.0]))
    m_per_px = float(abs(hd[1] - hd[0]))

    # epipolar row bands: only one band of both images is in memory at a time
    ny = grids.shape[0]
    margin = cfg.overlap + params.window
    codes = np.zeros(len(MASK), np.int64)
    n_points, gaps, overlapping = 0, [], False
    for b0 in range(0, ny, cfg.band_rows):
        b1 = min(b0 + cfg.band_rows, ny)
        a0, a1 = max(b0 - margin, 0), min(b1 + margin, ny)
        core = slice(b0 - a0, b1 - a0)
        epi_l = resample(left, grids, "left", slice(a0, a1))
        epi_r = resample(right, grids, "right", slice(a0, a1))
        if not (np.isfinite(epi_l[core]).any() and np.isfinite(epi_r).any()):
            codes[MASK["nodata"]] += epi_l[core].size
            continue
        overlapping = True
        res = match(epi_l, epi_r, dmin, dmax, cost=params.cost, window=params.window,
                    p1=params.p1, p2=params.p2, subpixel=params.subpixel,
                    lr_threshold=cfg.lr_threshold, speckle_size=params.speckle_size,
                    tile=cfg.tile, overlap=cfg.overlap)
        disp, mask = res.disparity[core], res.mask[core]
        codes += np.bincount(mask.ravel(), minlength=len(MASK))[:len(MASK)]
        yy, xx = np.nonzero(np.isfinite(disp))
        if yy.size:
            lon, lat, h, gap = triangulate(left, right, grids, (yy + b0).astype(np.float64),
                                           xx.astype(np.float64),
                                           disp[yy, xx].astype(np.float64))
            east, north = (np.asarray(v) for v in to_utm.transform(lon, lat))
            ok = (np.isfinite(east) & np.isfinite(north) & np.isfinite(h)
                  & (h > h0 - 0.5 * (h1 - h0)) & (h < h1 + 0.5 * (h1 - h0)))
            if ok.any():
                n_points += int(ok.sum())
                gaps.append(float(np.median(gap[ok])))
                acc.add(east[ok], north[ok], h[ok], epi_l[core][yy, xx][ok], x0, y0,
                        resolution, _SIGMA_DISPARITY * m_per_px)
        report_progress(0.15 + 0.7 * b1 / ny, f"epipolar rows {b0}..{b1} of {ny}")
    if not overlapping:
        raise InputError("the images do not overlap in epipolar geometry")
    if n_points < 100:
        raise InputError("almost nothing matched: the images may not show the same scene")
    mask_stats = {name: float(codes[code] / max(codes.sum(), 1))
                  for name, code in MASK.items()}
    report_progress(0.85, f"rasterisation {ncols}x{nrows} at {resolution} m")
    dsm, unc, ortho = fill_from_neighbours(acc.value, acc.unc, acc.colour, 2)
    count = np.minimum(acc.count, 65535).astype(np.uint16)
    filled = None
    if cfg.fill_holes:
        dsm, filled = fill_holes(dsm, cfg.fill_max_cells)
    transform = Affine(resolution, 0.0, x0, 0.0, -resolution, y0)
    dates = [v.date for v in (left, right) if v.date is not None]
    start = min(dates) if dates else dt.datetime.now(dt.UTC)
    end = max(dates) if dates else start

    with ProductDir(cfg.out) as stage:
        tags = {"UNITS": "metre", "HEIGHT_REFERENCE": "WGS84 ellipsoid",
                "PROCESS": "dsm-opt"}
        dsm_p = write_cog(stage / "dsm.tif",
                          np.where(np.isfinite(dsm), dsm, NODATA).astype(np.float32), crs,
                          transform, nodata=NODATA,
                          descriptions=["height (m, WGS84 ellipsoid)"], tags=tags)
        ortho_p = write_cog(stage / "ortho.tif", ortho, crs, transform,
                            descriptions=["left image radiometry"])
        count_p = write_cog(stage / "count.tif", count, crs, transform, nodata=None,
                            dtype="uint16", descriptions=["points per cell"])
        unc_p = write_cog(stage / "uncertainty.tif", unc, crs, transform,
                          descriptions=["height 1-sigma (m)"])
        filled_p = None
        if filled is not None:
            filled_p = write_cog(stage / "filled.tif", filled.astype(np.uint8), crs,
                                 transform, nodata=None, dtype="uint8",
                                 descriptions=["1 = cell filled by interpolation"])
        with tempfile.TemporaryDirectory() as tmp:
            hs = hillshade(dsm, resolution)
            hs_tif = write_cog(Path(tmp) / "hillshade.tif", hs, crs, transform)
            look = quicklook(hs_tif, stage / "dsm_hillshade.png",
                             f"DSM hillshade, {start:%Y-%m-%d}", "", cmap="gray",
                             symmetric=False, vmin=0.0, vmax=1.0)
        valid = np.isfinite(dsm) if filled is None else np.isfinite(dsm) & ~filled
        report = {
            "process": "dsm-opt",
            "parameters": json.loads(cfg.model_dump_json(exclude={"images", "out"})),
            "effective": {k: getattr(params, k) for k in params.__dataclass_fields__},
            "images": [str(v.path) for v in views],
            "pair": {"left": left.path.name, "right": right.path.name, "indices": [i, j],
                     "bh": round(bh, 4), "bh_all": all_bh},
            "heights": {"min": h0, "max": h1, "source": h_source},
            "epipolar": {"shape": list(grids.shape), "disparity_range": [dmin, dmax],
                         "metres_per_pixel_of_disparity": m_per_px},
            "pointing": pointing,
            "matching": mask_stats,
            "triangulation": {"points": n_points,
                              "median_gap_m": float(np.median(gaps))},
            "grid": {"epsg": epsg, "resolution_m": resolution, "width": ncols,
                     "height": nrows, "valid_fraction": float(valid.mean()),
                     "filled_fraction": float(filled.mean()) if filled is not None else 0.0},
            "seconds": round(time.perf_counter() - t_start, 2),
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
