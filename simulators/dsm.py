"""Simulated stereo acquisitions of a known DSM, with exact truth.

The scene is a DSM on a UTM grid (smooth terrain plus box buildings, or flat ground)
carrying a textured albedo. Each view is a parallel projection (a satellite at 700 km
sees a small scene along nearly parallel rays): a ground point ``(E, N, h)`` is imaged
where the point ``(E, N) + h t`` of the zero-height plane is, ``t`` being the view's
horizontal offset per metre of height (the tangent of its off-nadir angle), and the
zero-height plane maps to the image by a per-view affine transform (GSD, small rotation).
Pixels are rendered by casting each pixel's ray into the DSM (so walls hide what is
behind them), 2×2 supersampled, with sensor noise, as uint16 GeoTIFFs whose only geometry
is an RPC model fitted to the camera (no geotransform, like a Pléiades primary product).

Truth: ``truth/dsm.tif`` (float32, metres above the ellipsoid, on the UTM grid),
``truth/visible.tif`` (uint8, one band per view: 1 where the ground cell is seen by
that view) and ``truth/meta.json`` (views, B/H, RPC fit residuals).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numba
import numpy as np
import rasterio
from affine import Affine
from pydantic import BaseModel, ConfigDict, Field
from pyproj import Transformer
from scipy.ndimage import gaussian_filter

from gdmio.cog import write_cog
from kernels.rpc import fit_rpc

__all__ = ["SimulateDsmConfig", "SimulatedDsm", "simulate"]


class SimulateDsmConfig(BaseModel):
    """Parameters of a simulated stereo acquisition."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Folder for the images (out/images) and truth (out/truth).")
    size: int = Field(400, ge=64, le=4000, description="Image side in pixels.")
    gsd: float = Field(0.5, gt=0.05, le=10, description="Ground sampling distance (m).")
    views: int = Field(2, ge=2, le=3, description="2 (a pair) or 3 (forward, nadir, "
                       "backward triplet).")
    bh: float = Field(0.3, ge=0.0, le=1.0, description="Base-to-height ratio between the "
                      "two outermost views.")
    scene: Literal["urban", "mountain", "flat"] = Field(
        "urban", description="'urban': gentle terrain and box buildings; 'mountain': "
        "steeper terrain, few buildings; 'flat': a horizontal plane (no relief).")
    base_height: float = Field(250.0, ge=-100, le=5000, description="Mean ground height "
                               "above the ellipsoid (m).")
    lon: float = Field(5.72, ge=-180, le=180, description="Scene centre longitude (deg).")
    lat: float = Field(45.19, ge=-80, le=84, description="Scene centre latitude (deg).")
    noise: float = Field(0.01, ge=0, le=0.5, description="Sensor noise, fraction of the "
                         "texture's standard deviation.")
    seed: int = Field(0, description="Random seed.")


@dataclass
class SimulatedDsm:
    """Paths and facts of a simulated acquisition."""

    images: list[Path]
    truth_dsm: Path
    truth_visible: Path
    epsg: int
    bh: float
    height_range: tuple[float, float]


def _utm_epsg(lon: float, lat: float) -> int:
    zone = int((lon + 180) // 6) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def _scene_dsm(cfg: SimulateDsmConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Truth heights on an n×n grid of cfg.gsd cells."""
    z = np.full((n, n), cfg.base_height, np.float64)
    if cfg.scene == "flat":
        return z
    yy, xx = np.mgrid[0:n, 0:n] * cfg.gsd
    side = n * cfg.gsd
    amp = 8.0 if cfg.scene == "urban" else 40.0
    for _ in range(4):
        cx, cy = rng.uniform(0, side, 2)
        s = rng.uniform(0.25, 0.6) * side
        z += amp * rng.uniform(-1, 1) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    z += amp * 0.3 * (xx / side - 0.5)  # a regional slope
    n_build = 0 if cfg.scene == "flat" else (int(side * side / 900) if cfg.scene == "urban"
                                             else int(side * side / 6000))
    for _ in range(n_build):
        w, h = rng.uniform(8, 25, 2)
        cx, cy = rng.uniform(0, side, 2)
        height = rng.uniform(4, 18)
        inside = (np.abs(xx - cx) < w / 2) & (np.abs(yy - cy) < h / 2)
        if inside.any():
            z[inside] = np.max(z[inside]) + height  # flat roof
    return z


def _texture(n: int, rng: np.random.Generator) -> np.ndarray:
    """Multi-scale albedo in [0.05, 0.95] (on a grid twice as fine as the DSM)."""
    t = np.zeros((n, n))
    for sigma, w in ((0.7, 1.0), (2.0, 0.8), (6.0, 0.6), (20.0, 0.4)):
        f = gaussian_filter(rng.standard_normal((n, n)), sigma)
        t += w * f / f.std()
    t = (t - t.mean()) / t.std()
    return np.clip(0.5 + 0.15 * t, 0.05, 0.95)


@numba.njit(cache=True)
def _bilinear(a, y, x):  # pragma: no cover - compiled
    rows, cols = a.shape
    if not (0.0 <= y <= rows - 1 and 0.0 <= x <= cols - 1):
        return np.nan
    i = min(int(y), rows - 2)
    j = min(int(x), cols - 2)
    fy = y - i
    fx = x - j
    return ((1 - fy) * ((1 - fx) * a[i, j] + fx * a[i, j + 1])
            + fy * ((1 - fx) * a[i + 1, j] + fx * a[i + 1, j + 1]))


@numba.njit(cache=True, parallel=True)
def _render(dsm, tex, gsd, m, o, t, hmin, hmax, sub, out):  # pragma: no cover - compiled
    # Ray-cast each image pixel into the DSM (grid coordinates: x = E / gsd,
    # y = -N / gsd relative to the DSM's upper-left cell centre), average sub x sub samples.
    rows, cols = out.shape
    step_h = 0.2 * gsd / max(np.sqrt(t[0] ** 2 + t[1] ** 2), 1e-3)
    step_h = min(step_h, 2.0)
    for r in numba.prange(rows):
        for c in range(cols):
            acc = 0.0
            nacc = 0
            for si in range(sub):
                for sj in range(sub):
                    rr = r - 0.5 + (si + 0.5) / sub
                    cc = c - 0.5 + (sj + 0.5) / sub
                    e0 = m[0, 0] * cc + m[0, 1] * rr + o[0]
                    n0 = m[1, 0] * cc + m[1, 1] * rr + o[1]
                    # march down from hmax: the first height where the surface is above
                    h_prev = hmax
                    hit = np.nan
                    h = hmax
                    while h >= hmin - step_h:
                        e = e0 - h * t[0]
                        nn = n0 - h * t[1]
                        z = _bilinear(dsm, -nn / gsd, e / gsd)
                        if np.isfinite(z) and z >= h:
                            lo, hi = h, h_prev
                            for _ in range(30):
                                mid = 0.5 * (lo + hi)
                                zm = _bilinear(dsm, -(n0 - mid * t[1]) / gsd,
                                               (e0 - mid * t[0]) / gsd)
                                if np.isfinite(zm) and zm >= mid:
                                    lo = mid
                                else:
                                    hi = mid
                            hit = lo
                            break
                        h_prev = h
                        h -= step_h
                    if np.isfinite(hit):
                        e = e0 - hit * t[0]
                        nn = n0 - hit * t[1]
                        v = _bilinear(tex, -2.0 * nn / gsd, 2.0 * e / gsd)
                        if np.isfinite(v):
                            acc += v
                            nacc += 1
            out[r, c] = acc / nacc if nacc == sub * sub else np.nan


@numba.njit(cache=True)
def _visibility(dsm, gsd, t, hmax, vis):  # pragma: no cover - compiled
    rows, cols = dsm.shape
    tn = np.sqrt(t[0] ** 2 + t[1] ** 2)
    step = 0.25 * gsd / max(tn, 1e-6)
    for i in range(rows):
        for j in range(cols):
            z0 = dsm[i, j]
            e0 = j * gsd
            n0 = -i * gsd
            seen = True
            if tn > 1e-9:
                s = step
                while z0 + s <= hmax:
                    # towards the satellite: the ray rises by s while moving by -s t
                    z = _bilinear(dsm, -(n0 - s * t[1]) / gsd, (e0 - s * t[0]) / gsd)
                    if np.isfinite(z) and z > z0 + s + 0.05:
                        seen = False
                        break
                    s += step
            vis[i, j] = 1 if seen else 0


def simulate(cfg: SimulateDsmConfig) -> SimulatedDsm:
    """Write the simulated images (``out/images``) and truth (``out/truth``)."""
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)
    gsd = cfg.gsd
    half = 0.5 * cfg.bh
    if cfg.views == 2:
        tans = [(0.02, half), (-0.02, -half)]
    else:
        tans = [(0.02, half), (0.0, 0.0), (-0.02, -half)]
    # terrain first (its range sets the margin), then a grid large enough for every ray
    probe = _scene_dsm(cfg, cfg.size, np.random.default_rng(cfg.seed))
    relief = float(probe.max() - probe.min()) + 40.0
    margin = int(np.ceil(max(np.hypot(*t) for t in tans) * relief / gsd)) + 8
    n = cfg.size + 2 * margin
    dsm = _scene_dsm(cfg, n, rng)
    tex = _texture(2 * n, rng)
    hmin, hmax = float(dsm.min()), float(dsm.max())

    epsg = _utm_epsg(cfg.lon, cfg.lat)
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    to_geo = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    e_c, n_c = to_utm.transform(cfg.lon, cfg.lat)
    # DSM grid: cell (i, j) centre at (E0 + j gsd, N0 - i gsd); snap to multiples of gsd
    e0 = np.floor((e_c - n * gsd / 2) / gsd) * gsd
    n0 = np.floor((n_c + n * gsd / 2) / gsd) * gsd
    dsm_transform = Affine(gsd, 0, e0 - gsd / 2, 0, -gsd, n0 + gsd / 2)

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    images: list[Path] = []
    fit_res: list[float] = []
    date = dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)
    vis = np.zeros((len(tans), n, n), np.uint8)
    for k, t in enumerate(tans):
        rot = np.deg2rad(rng.uniform(-3, 3))
        scale = gsd * rng.uniform(0.98, 1.02)
        # image (col, row) -> zero-height plane (E, N) relative to the DSM's first cell
        m = scale * np.array([[np.cos(rot), np.sin(rot)], [np.sin(rot), -np.cos(rot)]])
        centre_img = np.array([(cfg.size - 1) / 2, (cfg.size - 1) / 2])
        centre_grid = np.array([(n - 1) / 2 * gsd, -(n - 1) / 2 * gsd])
        # the image centre sees the grid centre at the mean height
        hm = 0.5 * (hmin + hmax)
        o = centre_grid + hm * np.asarray(t) - m @ centre_img
        img = np.empty((cfg.size, cfg.size))
        _render(dsm, tex, gsd, m, o, np.asarray(t, np.float64), hmin, hmax, 2, img)
        if np.isnan(img).any():
            raise RuntimeError("simulation grid too small for the rays (internal error)")
        noise = cfg.noise * 0.15 * rng.standard_normal(img.shape)
        dn = np.clip(np.round((img + noise) * 4000.0), 1, 65535).astype(np.uint16)
        _visibility(dsm, gsd, np.asarray(t, np.float64), hmax + 1.0, vis[k])
        # mark ground cells outside this image as unseen
        jj, ii = np.meshgrid(np.arange(n), np.arange(n))
        pe = jj * gsd + dsm * t[0] - o[0]
        pn = -ii * gsd + dsm * t[1] - o[1]
        inv = np.linalg.inv(m)
        cc = inv[0, 0] * pe + inv[0, 1] * pn
        rr = inv[1, 0] * pe + inv[1, 1] * pn
        inside = (cc >= 3) & (cc <= cfg.size - 4) & (rr >= 3) & (rr <= cfg.size - 4)
        vis[k] &= inside.astype(np.uint8)

        # RPC fitted on a 3-D grid of ground points covering the image and heights
        g = np.linspace(-0.05, 1.05, 15) * (cfg.size - 1)
        hh = np.linspace(hmin - 30, hmax + 30, 7)
        G_c, G_r, G_h = np.meshgrid(g, g, hh, indexing="ij")
        pe = m[0, 0] * G_c + m[0, 1] * G_r + o[0] - G_h * t[0]
        pn = m[1, 0] * G_c + m[1, 1] * G_r + o[1] - G_h * t[1]
        lon, lat = to_geo.transform(e0 + pe, n0 + pn)
        rpc = fit_rpc(lon, lat, G_h, G_r, G_c)
        pr, pc = rpc.project(lon, lat, G_h)
        fit_res.append(float(np.max(np.hypot(pr - G_r, pc - G_c))))

        name = f"view{k + 1}_{date:%Y%m%d}.tif"
        path = out / "images" / name
        with rasterio.open(path, "w", driver="GTiff", width=cfg.size, height=cfg.size,
                           count=1, dtype="uint16", nodata=0, rpcs=rpc.to_rasterio(),
                           tiled=True, blockxsize=256, blockysize=256,
                           compress="DEFLATE") as ds:
            ds.write(dn, 1)
            ds.update_tags(TIFFTAG_DATETIME=f"{date:%Y:%m:%d %H:%M:%S}")
        images.append(path)

    truth_dsm = write_cog(out / "truth" / "dsm.tif", dsm.astype(np.float32),
                          f"EPSG:{epsg}", dsm_transform)
    truth_vis = write_cog(out / "truth" / "visible.tif", vis, f"EPSG:{epsg}", dsm_transform,
                          nodata=None, dtype="uint8",
                          descriptions=[f"view{k + 1}" for k in range(len(tans))])
    bh = float(abs(tans[0][1] - tans[-1][1]))
    meta = {"epsg": epsg, "gsd": gsd, "views": [p.name for p in images],
            "view_tangents": [list(t) for t in tans], "bh_outer": bh,
            "height_range": [hmin, hmax], "rpc_fit_max_residual_px": fit_res,
            "scene": cfg.scene, "seed": cfg.seed}
    (out / "truth" / "meta.json").write_text(json.dumps(meta, indent=2))
    return SimulatedDsm(images=images, truth_dsm=truth_dsm, truth_visible=truth_vis,
                        epsg=epsg, bh=bh, height_range=(hmin, hmax))
