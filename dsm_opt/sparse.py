"""Sparse matches of a pair: relative pointing correction and the heights to search.

As s2p and CARS do before dense matching:

1. SIFT keypoints (OpenCV) are matched between the rectified images, tile by tile
   (Lowe's ratio test, mutual uniqueness, a loose epipolar gate); each match is kept as
   raw image positions in both views.
2. Relative pointing correction: for each match, the across-epipolar residual is the
   distance, perpendicular to the epipolar curve, between where the right view sees it
   and where the RPCs put the left view's line of sight. An affine field of these
   residuals (constant, plus a drift in row and column when the matches are spread
   enough) is fitted robustly and removed by an affine correction of the right view's
   image coordinates composed with its RPC (:class:`kernels.rpc.CorrectedRpc`), a few
   rounds; parts below their noise (or 0.02 px) are left alone. Only the
   across-epipolar part of a pointing error shows in the images; the part along the
   epipolar lines is a height offset. By default (``auto``) a gross error (3 px or
   more across the epipolar lines: a pointing error, not the usual sub-pixel to
   pixel inconsistency of two RPCs) is applied as a shift along the second view's
   image lines (the in-track direction, where gross relative pointing errors of
   pushbroom satellites lie: timing and pitch), which recovers a line-offset error
   entirely, when the lines cross the epipolar direction at |sin| >= 0.15; a smaller
   one, and the drift, across the epipolar curve (the smallest correction, as CARS and
   s2p do). ``lines`` and ``across`` force one direction.
3. Each match's height (where its left line of sight meets the right view's epipolar
   curve) gives the height range of each matching tile: robust percentiles of the
   matches around the tile plus a margin, turned into disparities at the tile's nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from dsm_opt.geometry import EpipolarGrids, View, resample
from kernels.rpc import CorrectedRpc

_MIN_SHIFT_PX = 0.02  # smaller pointing errors are left alone
_GROSS_PX = 3.0  # an across-epipolar error this large is taken as an in-track error

__all__ = ["SparseMatches", "sparse_matches", "across_residuals", "correct_pointing_sparse",
           "tile_height_ranges", "disparity_bounds", "match_heights"]


@dataclass
class SparseMatches:
    """Matched points of a pair.

    Attributes
    ----------
    left, right : numpy.ndarray
        (n, 2) float64 raw (row, col) in each view.
    epi : numpy.ndarray
        (n, 2) left epipolar (y, x) where they were found.
    tiles : int
        Epipolar tiles searched.

    """

    left: np.ndarray
    right: np.ndarray
    epi: np.ndarray
    tiles: int = 0
    heights: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __len__(self) -> int:
        return int(self.left.shape[0])

    def subset(self, keep: np.ndarray) -> SparseMatches:
        """The matches where ``keep`` is True."""
        h = self.heights[keep] if self.heights.size == len(self) else self.heights
        return SparseMatches(self.left[keep], self.right[keep], self.epi[keep], self.tiles, h)


def _to_uint8(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(a)
    if ok.sum() < 100:
        return np.zeros(a.shape, np.uint8), ok.astype(np.uint8)
    lo, hi = np.percentile(a[ok], [0.5, 99.5])
    scale = 255.0 / max(hi - lo, 1e-6)
    out = np.clip((np.where(ok, a, lo) - lo) * scale, 0, 255).astype(np.uint8)
    mask = cv2.erode(ok.astype(np.uint8), np.ones((9, 9), np.uint8))
    return out, mask


def _tile_list(ny: int, nx: int, tile: int, max_tiles: int) -> list[tuple[int, int]]:
    ys = list(range(0, max(ny - tile // 4, 1), tile))
    xs = list(range(0, max(nx - tile // 4, 1), tile))
    tiles = [(y, x) for y in ys for x in xs]
    if len(tiles) <= max_tiles:
        return tiles
    # an even spread over the scene: every k-th tile in each direction
    k = int(np.ceil(np.sqrt(len(tiles) / max_tiles)))
    return [(y, x) for i, y in enumerate(ys) for j, x in enumerate(xs)
            if i % k == (k // 2) % len(ys) and j % k == (k // 2) % len(xs)] or tiles[:1]


def sparse_matches(left: View, right: View, grids: EpipolarGrids, d_lo: float, d_hi: float,
                   tile: int = 1024, max_tiles: int = 36, features: int = 4000,
                   ratio: float = 0.75, max_dy: float = 48.0) -> SparseMatches:
    """SIFT matches between the rectified images (see the module notes).

    Parameters
    ----------
    left, right : View
        The pair.
    grids : EpipolarGrids
        Its epipolar grids.
    d_lo, d_hi : float
        Widest disparities to consider (e.g. from the RPC height range).
    tile : int
        Side of the epipolar tiles searched.
    max_tiles : int
        Most tiles searched (spread evenly over the scene beyond that).
    features : int
        Most keypoints per tile and image.
    ratio : float
        Lowe's ratio test threshold.
    max_dy : float
        Largest across-epipolar offset of a match (pixels): pointing errors up to this
        are found and corrected.

    """
    ny, nx = grids.shape
    sift = cv2.SIFT_create(nfeatures=features)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    found: list[np.ndarray] = []
    tiles = _tile_list(ny, nx, tile, max_tiles)
    pad = 16
    for y0, x0 in tiles:
        rows = slice(y0, min(y0 + tile, ny))
        cols = slice(x0, min(x0 + tile, nx))
        el = resample(left, grids, "left", rows, cols)
        if np.isfinite(el).mean() < 0.05:
            continue
        rc0 = x0 + int(np.floor(d_lo)) - pad
        rc1 = cols.stop + int(np.ceil(d_hi)) + pad
        er = resample(right, grids, "right", rows, slice(rc0, rc1))
        if np.isfinite(er).mean() < 0.02:
            continue
        a, ma = _to_uint8(el)
        b, mb = _to_uint8(er)
        ka, da = sift.detectAndCompute(a, ma)
        kb, db = sift.detectAndCompute(b, mb)
        if da is None or db is None or len(ka) < 8 or len(kb) < 8:
            continue
        pairs = matcher.knnMatch(da, db, k=2)
        good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < ratio * m[1].distance]
        if not good:
            continue
        qi = np.array([m.queryIdx for m in good])
        ti = np.array([m.trainIdx for m in good])
        # a right keypoint claimed by two left ones is ambiguous: drop both
        uniq, counts = np.unique(ti, return_counts=True)
        once = np.isin(ti, uniq[counts == 1])
        qi, ti = qi[once], ti[once]
        pa = np.array([ka[i].pt for i in qi], np.float64).reshape(-1, 2)  # (x, y)
        pb = np.array([kb[i].pt for i in ti], np.float64).reshape(-1, 2)
        yl, xl = pa[:, 1] + y0, pa[:, 0] + x0
        yr, xr = pb[:, 1] + y0, pb[:, 0] + rc0
        d = xr - xl
        keep = (np.abs(yr - yl) <= max_dy) & (d >= d_lo - pad) & (d <= d_hi + pad)
        if keep.any():
            found.append(np.column_stack([yl, xl, yr, xr])[keep])
    if not found:
        empty = np.empty((0, 2))
        return SparseMatches(empty, empty, empty, len(tiles))
    m = np.concatenate(found)
    rl, cl = grids.raw_position("left", m[:, 0], m[:, 1])
    rr, cr = grids.raw_position("right", m[:, 2], m[:, 3])
    return SparseMatches(np.column_stack([rl, cl]), np.column_stack([rr, cr]),
                         m[:, :2].copy(), len(tiles))


def across_residuals(left: View, right: View, matches: SparseMatches, h_lo: float,
                     h_hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Across-epipolar residual of each match in the right image (pixels), its height.

    Returns
    -------
    rho : numpy.ndarray
        Signed distance from the right observation to the epipolar curve of the left
        point, along the unit normal ``n``.
    normal : numpy.ndarray
        (n, 2) unit normals (row, col) of the epipolar curves at the observations.
    height : numpy.ndarray
        Height (m) of the curve's point nearest to the observation: the match's height.

    """
    rl, cl = matches.left[:, 0], matches.left[:, 1]
    obs = matches.right

    def curve(h: np.ndarray | float) -> np.ndarray:
        lon, lat = left.rpc.localise(rl, cl, h)
        r, c = right.rpc.project(lon, lat, h)
        return np.column_stack([r, c])

    span = h_hi - h_lo
    pa, pb = curve(h_lo), curve(h_hi)
    e = pb - pa
    t = np.einsum("ij,ij->i", obs - pa, e) / np.maximum(np.einsum("ij,ij->i", e, e), 1e-12)
    h = np.clip(h_lo + t * span, h_lo - 2 * span, h_hi + 2 * span)
    for _ in range(2):  # local tangent at the match's height (the curve bends a little)
        step = max(0.02 * span, 5.0)
        pa, pb = curve(h - step), curve(h + step)
        e = pb - pa
        ee = np.maximum(np.einsum("ij,ij->i", e, e), 1e-12)
        mid = 0.5 * (pa + pb)
        t = np.einsum("ij,ij->i", obs - mid, e) / ee
        h = h + 2 * step * t
    p = curve(h)
    e = e / np.sqrt(ee)[:, None]
    normal = np.column_stack([-e[:, 1], e[:, 0]])
    rho = np.einsum("ij,ij->i", obs - p, normal)
    return rho, normal, h


def _robust_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, floor: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of y on the columns of x, trimming outliers (3.5 NMAD)."""
    keep = np.isfinite(y)
    beta = np.zeros(x.shape[1])
    for _ in range(5):
        if keep.sum() < x.shape[1] + 2:
            break
        sw = np.sqrt(w[keep])
        beta = np.linalg.lstsq(x[keep] * sw[:, None], y[keep] * sw, rcond=None)[0]
        res = (y - x @ beta) * np.sqrt(w)
        nmad = 1.4826 * np.median(np.abs(res[keep] - np.median(res[keep])))
        new = np.isfinite(res) & (np.abs(res) <= max(3.5 * nmad, floor))
        if np.array_equal(new, keep):
            break
        keep = new
    return beta, keep


def correct_pointing_sparse(left: View, right: View, matches: SparseMatches, h_lo: float,
                            h_hi: float, rounds: int = 4, min_matches: int = 8,
                            direction_model: str = "auto") -> tuple[View, dict]:
    """The right view with its pointing corrected from the matches, and a report.

    See the module notes. The report holds the number of matches and inliers, the model
    (``constant`` or ``affine``), the direction of the shift, the shift applied at the
    centre of the right image (pixels, row and column), the across-epipolar residuals
    before and after (median and NMAD of the inliers, pixels) and ``systematic_px``: the
    RMS over the inliers of the affine across-epipolar field refitted after the
    correction (what is left of the pointing error; the rest is matching noise).
    Fewer than ``min_matches`` matches: nothing is changed (``applied: False``).
    """
    report: dict = {"method": "sparse", "matches": len(matches), "applied": False}
    if len(matches) < min_matches:
        return right, report
    cam = right.rpc if isinstance(right.rpc, CorrectedRpc) else CorrectedRpc(
        right.rpc, np.zeros((2, 3)))
    cur = replace(right, rpc=cam)
    rho0, normal, h = across_residuals(left, cur, matches, h_lo, h_hi)
    line_dir = np.array([1.0, 0.0])
    sin_line = float(np.median(np.abs(normal @ line_dir)))
    gross = abs(float(np.median(rho0))) >= _GROSS_PX
    if sin_line >= 0.15 and (direction_model == "lines" or (direction_model == "auto"
                                                              and gross)):
        u, direction = line_dir, "image lines (in-track)"
    else:
        u = np.median(normal, axis=0)
        u, direction = u / np.linalg.norm(u), "across the epipolar lines"
    rr, cc = matches.right[:, 0], matches.right[:, 1]
    r_c, c_c = (right.rows - 1) / 2.0, (right.cols - 1) / 2.0
    scale = float(max(right.rows, right.cols))
    spread = min(np.ptp(rr), np.ptp(cc)) / scale if len(matches) else 0.0
    affine = len(matches) >= 30 and spread >= 0.2
    x = np.column_stack([np.ones(len(matches)), (rr - r_c) / scale, (cc - c_c) / scale])
    if not affine:
        x = x[:, :1]
    _, keep0 = _robust_fit(x, rho0, np.ones_like(rho0), 0.5)
    applied = False
    n_mean = np.median(normal, axis=0)
    n_mean /= np.linalg.norm(n_mean)
    k_mean = float(n_mean @ u)
    for _ in range(rounds):
        rho, normal, h = across_residuals(left, cur, matches, h_lo, h_hi)
        beta, keep = _robust_fit(x, rho, np.ones_like(rho), 0.5)
        if keep.sum() < min_matches:
            return right, report | {"reason": "too few consistent matches"}
        res = rho[keep] - x[keep] @ beta
        sigma = 1.4826 * float(np.median(np.abs(res - np.median(res))))
        b = np.zeros(3)
        b[:beta.size] = beta
        # only what the matches show beyond their noise is corrected
        if abs(b[0]) < max(_MIN_SHIFT_PX, 3.0 * sigma / np.sqrt(keep.sum())):
            b[0] = 0.0
        if np.abs(b[1:]).sum() * 0.5 < _MIN_SHIFT_PX:
            b[1:] = 0.0
        if not b.any():
            break
        # across-epipolar field rho(q) = b0 + b1 (r - r_c)/S + b2 (c - c_c)/S: its
        # constant part moves the view along u (rho = shift . n), its drift across
        drift = np.array([-b[1] * r_c / scale - b[2] * c_c / scale, b[1] / scale,
                          b[2] / scale])
        step = np.outer(u * (b[0] / k_mean), [1.0, 0.0, 0.0]) + np.outer(n_mean, drift)
        cam = cam.compose(step)
        cur = replace(right, rpc=cam)
        applied = True
    rho, normal, h = across_residuals(left, cur, matches, h_lo, h_hi)
    beta_after, keep_after = _robust_fit(x, rho, np.ones_like(rho), 0.5)
    systematic = float(np.sqrt(np.mean((x[keep_after] @ beta_after) ** 2)))
    centre = cam.matrix @ np.array([1.0, r_c, c_c])

    def stats(v: np.ndarray, m: np.ndarray) -> dict:
        med = float(np.median(v[m]))
        return {"median_px": round(med, 4),
                "nmad_px": round(float(1.4826 * np.median(np.abs(v[m] - med))), 4)}

    matches.heights = h
    report.update(applied=applied, inliers=int(keep_after.sum()),
                  model="affine" if affine else "constant", direction=direction,
                  shift_at_centre_px=[round(float(centre[0]), 3), round(float(centre[1]), 3)],
                  before=stats(rho0, keep0), after=stats(rho, keep_after),
                  systematic_px=round(systematic, 4))
    return cur, report


def match_heights(left: View, right: View, matches: SparseMatches, h_lo: float, h_hi: float
                  ) -> np.ndarray:
    """Height of each match (m) under the current models, NaN for gross outliers.

    An outlier is a match off its epipolar curve by more than 3.5 NMAD (at least 1 px)
    of the residuals, or whose height is more than 6 NMAD from the median height beyond
    the 1-99 % span.
    """
    rho, _, h = across_residuals(left, right, matches, h_lo, h_hi)
    med = np.median(rho)
    nmad = 1.4826 * np.median(np.abs(rho - med))
    bad = np.abs(rho - med) > max(3.5 * nmad, 1.0)
    ok = ~bad & np.isfinite(h)
    if ok.sum() >= 10:
        p1, p50, p99 = np.percentile(h[ok], [1, 50, 99])
        hn = 1.4826 * np.median(np.abs(h[ok] - p50))
        bad |= (h < p1 - 6 * hn) | (h > p99 + 6 * hn)
    out = h.astype(np.float64).copy()
    out[bad | ~np.isfinite(h)] = np.nan
    return out


def tile_height_ranges(epi: np.ndarray, heights: np.ndarray,
                       tiles: list[tuple[int, int, int, int]], m_per_px: float,
                       min_matches: int = 12) -> tuple[list[tuple[float, float, str]], dict]:
    """Height interval of each matching tile from the matches around it.

    Each tile (y0, y1, x0, x1) takes the 1st to 99th percentiles of the heights of the
    matches in the tile widened by half its size on each side (widened further, up to
    the whole scene, until ``min_matches`` are found), plus a margin of 10 % of the
    scene's span and 6 pixels of disparity.

    Returns
    -------
    ranges : list of (h_lo, h_hi, source)
        One per tile; source "tile", "neighbours" or "scene".
    summary : dict
        The scene's percentiles and the margin.

    """
    ok = np.isfinite(heights)
    y, x, h = epi[ok, 0], epi[ok, 1], heights[ok]
    if h.size < min_matches:
        raise ValueError(f"only {h.size} usable sparse matches (need {min_matches})")
    g_lo, g_hi = np.percentile(h, [0.5, 99.5])
    margin = 0.1 * (g_hi - g_lo) + 6.0 * m_per_px
    out = []
    for y0, y1, x0, x1 in tiles:
        hy, hx = 0.5 * (y1 - y0), 0.5 * (x1 - x0)
        source = "tile"
        for grow in (1.0, 2.0, 4.0, 8.0):
            sel = ((y >= y0 - grow * hy) & (y < y1 + grow * hy) & (x >= x0 - grow * hx)
                   & (x < x1 + grow * hx))
            if sel.sum() >= min_matches:
                lo, hi = np.percentile(h[sel], [1, 99])
                break
            source = "neighbours"
        else:
            lo, hi, source = g_lo, g_hi, "scene"
        out.append((float(lo - margin), float(hi + margin), source))
    summary = {"matches": int(h.size), "p0.5_m": round(float(g_lo), 2),
               "p99.5_m": round(float(g_hi), 2), "margin_m": round(float(margin), 2)}
    return out, summary


def disparity_bounds(left: View, right: View, grids: EpipolarGrids, y0: int, y1: int,
                     x0: int, x1: int, h_lo: float, h_hi: float, n: int = 5
                     ) -> tuple[float, float]:
    """Smallest and largest disparity of heights h_lo..h_hi over an epipolar tile.

    The right epipolar column of a ground point is found by Newton steps on the right
    grid (its local Jacobian by finite differences), at n×n points of the tile.
    """
    yy, xx = np.meshgrid(np.linspace(y0, max(y1 - 1, y0), n),
                         np.linspace(x0, max(x1 - 1, x0), n), indexing="ij")
    yy, xx = yy.ravel(), xx.ravel()
    rl, cl = grids.raw_position("left", yy, xx)
    ds = []
    for h in (h_lo, h_hi):
        lon, lat = left.rpc.localise(rl, cl, h)
        qr, qc = right.rpc.project(lon, lat, h)
        ey, ex = yy.copy(), xx.copy()
        for _ in range(4):
            r0, c0 = grids.raw_position("right", ey, ex)
            ry, cy = grids.raw_position("right", ey + 1.0, ex)
            rx, cx = grids.raw_position("right", ey, ex + 1.0)
            j11, j12, j21, j22 = rx - r0, ry - r0, cx - c0, cy - c0
            det = j11 * j22 - j12 * j21
            dr, dc = qr - r0, qc - c0
            ex = ex + (j22 * dr - j12 * dc) / det
            ey = ey + (-j21 * dr + j11 * dc) / det
        ds.append(ex - xx)
    d = np.concatenate(ds)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return np.nan, np.nan
    return float(d.min()), float(d.max())
