"""Stereo geometry from RPC models: views, pair selection, epipolar grids, triangulation.

Epipolar rectification follows the grid approach of OTB/CARS: the epipolar geometry of a
pair is described by two coarse grids (one per image) giving, every ``step`` epipolar
pixels, the position in the raw image. They are built from the RPCs only, by localising
image points at two heights (the lines of sight) and projecting them into the other
image:

- the epipolar direction at a left point ``p`` is the direction of the curve traced in
  the left image by the line of sight of its conjugate point (heights ``h0`` → ``h1``);
- each grid row is walked from its first node along that local direction (second-order
  steps), the first nodes lying on the perpendicular through the grid origin;
- the right grid node is the projection into the right image of the left node's ground
  point at the mean height, so a surface at that height has zero disparity and a
  ground point keeps its row in both epipolar images.

A disparity ``d`` (epipolar right column minus left column) is triangulated by
intersecting the two lines of sight (closest point of two 3-D lines in ECEF).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.errors import RasterioIOError
from shapely.geometry import Polygon

from gdmcore import InputError
from kernels.rpc import Rpc, grid_interp, intersect_los_grids

__all__ = ["View", "EpipolarGrids", "load_view", "footprint", "base_to_height",
           "select_pair", "epipolar_grids", "resample", "disparity_range", "triangulate",
           "utm_epsg", "ground_sampling_distance", "LosGrids", "los_grids",
           "triangulate_grids"]

_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
_GEODETIC = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


@dataclass
class View:
    """One image of the acquisition: its raster, camera model and date.

    ``path`` is what the user named (an image or a DIMAP ``DIM_*.XML``); ``source`` is
    what GDAL opens (the image, or the VRT mosaic of a tiled delivery).
    """

    path: Path
    rpc: Rpc
    rows: int
    cols: int
    date: dt.datetime | None
    nodata: float | None
    source: str = ""
    rpc_origin: str = ""

    def read(self, rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None
             ) -> np.ndarray:
        """Band 1 (or a window of it) as float32 with no-data as NaN."""
        from rasterio.windows import Window

        r0, r1 = rows or (0, self.rows)
        c0, c1 = cols or (0, self.cols)
        with rasterio.open(self.source or self.path) as ds:
            a = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)).astype(np.float32)
        if self.nodata is not None:
            a[a == self.nodata] = np.nan
        return a


def _date_of(path: Path, tags: dict[str, str]) -> dt.datetime | None:
    text = tags.get("ACQUISITION_DATE") or tags.get("TIFFTAG_DATETIME")
    if text:
        for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
            try:
                return dt.datetime.strptime(text.strip()[:19], fmt).replace(tzinfo=dt.UTC)
            except ValueError:
                continue
    m = re.search(r"(19|20)\d{6}", path.name)
    if m:
        try:
            return dt.datetime.strptime(m.group(0), "%Y%m%d").replace(tzinfo=dt.UTC)
        except ValueError:
            return None
    return None


def load_view(path: str | Path, rpc_file: str | Path | None = None) -> View:
    """Open a stereo image and its RPC model.

    Accepts a GeoTIFF/JP2 (RPC from ``rpc_file``, else what GDAL reads: RPC tag,
    ``_RPC.TXT`` or ``RPC_*.XML`` side-car, else an OSSIM ``.geom`` beside it; see
    :func:`dsm_opt.rpc_sources.image_rpc`) or a DIMAP ``DIM_*.XML`` (its tiles
    R1C1, R1C2, ... read as one image; RPC from its ``RPC_*.XML``).

    Raises
    ------
    InputError
        When the file cannot be read, has no RPC model or is not a single image.

    """
    from dsm_opt.rpc_sources import image_rpc

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if rpc_file is not None and not Path(rpc_file).is_file():
        raise InputError(f"RPC file {rpc_file}: no such file")
    date = None
    source = str(p)
    dimap_rpc = None
    if p.suffix.lower() == ".xml":
        from gdmio.providers.pleiades import dimap_raster, parse_dimap

        scene = parse_dimap(p)
        date = scene.datetime
        source, n_tiles = dimap_raster(p)
        rpc_asset = scene.assets.get("rpc")
        if rpc_asset is not None and Path(rpc_asset.href).is_file():
            dimap_rpc = Path(rpc_asset.href)
        if n_tiles > 1 and rpc_file is None:  # tiles carry no usable RPC of the mosaic
            if dimap_rpc is None:
                raise InputError(f"{p.name}: tiled DIMAP without its RPC_*.XML")
            rpc_file = dimap_rpc
    try:
        with rasterio.open(source) as ds:
            rpcs = ds.rpcs
            rows, cols = ds.height, ds.width
            nodata = ds.nodata
            tags = ds.tags()
            transform, crs, count = ds.transform, ds.crs, ds.count
    except RasterioIOError as exc:
        raise InputError(f"{p.name}: not a readable image ({str(exc).splitlines()[0]})") \
            from None
    if count < 1:
        raise InputError(f"{p.name}: no band to read")
    if rpcs is None and rpc_file is None and dimap_rpc is not None:
        rpc_file = dimap_rpc
    rpc, origin = image_rpc(p, rpcs, transform, crs, rpc_file)
    if rows < 32 or cols < 32:
        raise InputError(f"{p.name}: image of {cols}x{rows} pixels is too small")
    return View(path=p, rpc=rpc, rows=rows, cols=cols, date=date or _date_of(p, tags),
                nodata=nodata, source=source, rpc_origin=origin)


def footprint(view: View, h: float) -> Polygon:
    """The image outline on the ground at height ``h`` (lon/lat polygon, 8 points/edge)."""
    t = np.linspace(0, 1, 8, endpoint=False)
    r1, c1 = view.rows - 1, view.cols - 1
    rows = np.concatenate([0 * t, t * r1, r1 + 0 * t, r1 - t * r1])
    cols = np.concatenate([t * c1, c1 + 0 * t, c1 - t * c1, 0 * t])
    lon, lat = view.rpc.localise(rows, cols, h)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if ok.sum() < 4:
        raise InputError(f"{view.path.name}: the RPC model cannot be inverted at "
                         f"{h:.0f} m")
    return Polygon(np.column_stack([lon[ok], lat[ok]]))


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone of a point (WGS84)."""
    zone = int((lon + 180) // 6) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def _ecef(lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> np.ndarray:
    x, y, z = _ECEF.transform(lon, lat, h)
    return np.stack([np.asarray(x), np.asarray(y), np.asarray(z)], axis=-1)


def _los(view: View, row: np.ndarray, col: np.ndarray, h0: float, h1: float
         ) -> tuple[np.ndarray, np.ndarray]:
    """Two ECEF points of the line of sight of each pixel (heights h0 and h1)."""
    lon0, lat0 = view.rpc.localise(row, col, h0)
    lon1, lat1 = view.rpc.localise(row, col, h1)
    return (_ecef(lon0, lat0, np.full_like(lon0, h0)),
            _ecef(lon1, lat1, np.full_like(lon1, h1)))


def base_to_height(a: View, b: View, lon: float, lat: float, h0: float, h1: float) -> float:
    """Base-to-height ratio of two views at a ground point.

    The norm of the difference of the two lines of sight's horizontal offsets per metre
    of height (the tangents of their off-nadir angles, as vectors).
    """
    offs = []
    for v in (a, b):
        r, c = v.rpc.project(lon, lat, 0.5 * (h0 + h1))
        p0, p1 = _los(v, np.atleast_1d(r), np.atleast_1d(c), h0, h1)
        d = (p1 - p0)[0]
        up = _ecef(np.array([lon]), np.array([lat]), np.array([1.0]))[0] - \
            _ecef(np.array([lon]), np.array([lat]), np.array([0.0]))[0]
        vert = float(d @ up)
        if not np.isfinite(vert) or abs(vert) < 1e-9:
            raise InputError(f"{v.path.name}: degenerate line of sight")
        offs.append((d - vert * up) / vert)
    return float(np.linalg.norm(offs[0] - offs[1]))


def select_pair(views: list[View], lon: float, lat: float, h0: float, h1: float,
                target_bh: float, min_bh: float) -> tuple[int, int, float, dict[str, float]]:
    """The pair of views whose base-to-height ratio is closest to ``target_bh``.

    Returns
    -------
    i, j : int
        Indices of the left and right views (in the order given).
    bh : float
        Their B/H.
    all_bh : dict
        ``"i-j" -> B/H`` of every pair.

    Raises
    ------
    InputError
        When no pair reaches ``min_bh`` (views too similar to measure heights).

    """
    ratios: dict[tuple[int, int], float] = {}
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            ratios[(i, j)] = base_to_height(views[i], views[j], lon, lat, h0, h1)
    usable = {k: v for k, v in ratios.items() if v >= min_bh}
    if not usable:
        best = max(ratios.values())
        raise InputError(f"degenerate stereo geometry: the largest base-to-height ratio is "
                         f"{best:.3f} (< {min_bh}); the views are too similar to measure "
                         "heights")
    (i, j), bh = min(usable.items(), key=lambda kv: (abs(kv[1] - target_bh), -kv[1]))
    return i, j, bh, {f"{a}-{b}": round(v, 4) for (a, b), v in ratios.items()}


def ground_sampling_distance(view: View, h: float) -> float:
    """Mean ground size of a pixel at the image centre (m)."""
    r, c = (view.rows - 1) / 2, (view.cols - 1) / 2
    lon, lat = view.rpc.localise(np.array([r, r + 1, r]), np.array([c, c, c + 1]), h)
    p = _ecef(lon, lat, np.full(3, h))
    return float(0.5 * (np.linalg.norm(p[1] - p[0]) + np.linalg.norm(p[2] - p[0])))


# ------------------------------------------------------------------ epipolar grids
@dataclass
class EpipolarGrids:
    """Coarse epipolar grids of a pair.

    Attributes
    ----------
    left, right : numpy.ndarray
        float64 (2, nv, nu): raw (row, col) of each node in the left / right image.
    step : int
        Epipolar pixels between nodes.
    shape : tuple of int
        (rows, cols) of the epipolar images.
    h0, h1 : float
        Heights used for the lines of sight; ``hm`` the zero-disparity height.

    """

    left: np.ndarray
    right: np.ndarray
    step: int
    shape: tuple[int, int]
    h0: float
    h1: float
    hm: float

    def raw_position(self, which: str, y: np.ndarray, x: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Raw image (row, col) of epipolar positions (bilinear in the grid)."""
        g = self.left if which == "left" else self.right
        out = grid_interp(g, np.asarray(y, np.float64) / self.step,
                          np.asarray(x, np.float64) / self.step)
        return out[0], out[1]


def _to_right(left: View, right: View, r: np.ndarray, c: np.ndarray, h: float
              ) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = left.rpc.localise(r, c, h)
    return right.rpc.project(lon, lat, h)


def _left_direction(left: View, right: View, r: np.ndarray, c: np.ndarray,
                    g: tuple[float, float, float]) -> np.ndarray:
    """Unit epipolar direction (drow, dcol) in the left image at (r, c)."""
    h0, h1, hm = g
    rr, cr = _to_right(left, right, r, c, hm)
    lon0, lat0 = right.rpc.localise(rr, cr, h0)
    lon1, lat1 = right.rpc.localise(rr, cr, h1)
    a_r, a_c = left.rpc.project(lon0, lat0, h0)
    b_r, b_c = left.rpc.project(lon1, lat1, h1)
    d = np.stack([b_r - a_r, b_c - a_c])
    n = np.hypot(d[0], d[1])
    if not np.all(np.isfinite(n)) or np.any(n < 1e-9):
        raise InputError("degenerate stereo geometry: the epipolar direction is undefined "
                         "(views too similar or heights out of the RPC range)")
    return d / n


def epipolar_grids(left: View, right: View, h0: float, h1: float, step: int = 32
                   ) -> EpipolarGrids:
    """Epipolar grids covering the left image (see the module notes)."""
    hm = 0.5 * (h0 + h1)
    g = (h0, h1, hm)
    centre = np.array([(left.rows - 1) / 2, (left.cols - 1) / 2])
    e = _left_direction(left, right, centre[:1], centre[1:], g)[:, 0]
    n = np.array([e[1], -e[0]])  # perpendicular, rows of the epipolar image
    corners = np.array([[0, 0], [0, left.cols - 1], [left.rows - 1, 0],
                        [left.rows - 1, left.cols - 1]], float) - centre
    u = corners @ e
    v = corners @ n
    nu = int(np.ceil((u.max() - u.min()) / step)) + 2
    nv = int(np.ceil((v.max() - v.min()) / step)) + 2
    origin = centre + u.min() * e + v.min() * n
    grid = np.empty((2, nv, nu))
    grid[:, :, 0] = origin[:, None] + step * np.arange(nv)[None, :] * n[:, None]
    for j in range(1, nu):
        r, c = grid[0, :, j - 1], grid[1, :, j - 1]
        d1 = _left_direction(left, right, r, c, g)
        mid_r, mid_c = r + 0.5 * step * d1[0], c + 0.5 * step * d1[1]
        d2 = _left_direction(left, right, mid_r, mid_c, g)
        grid[0, :, j] = r + step * d2[0]
        grid[1, :, j] = c + step * d2[1]
    rr, cr = _to_right(left, right, grid[0], grid[1], hm)
    if not (np.all(np.isfinite(rr)) and np.all(np.isfinite(cr))):
        raise InputError("the epipolar grid leaves the domain of the RPC models")
    shape = ((nv - 1) * step + 1, (nu - 1) * step + 1)
    return EpipolarGrids(left=grid, right=np.stack([rr, cr]), step=step, shape=shape,
                         h0=h0, h1=h1, hm=hm)


def resample(image: np.ndarray | View, grids: EpipolarGrids, which: str,
             rows: slice | None = None, cols: slice | None = None) -> np.ndarray:
    """Resample a raw image into epipolar geometry (bicubic; NaN outside the image).

    Parameters
    ----------
    image : numpy.ndarray or View
        float32 raw image (NaN = no data), or a view: then only the window of the raw
        image that the requested epipolar rows need is read.
    grids : EpipolarGrids
        The pair's grids.
    which : {"left", "right"}
        Which grid to use.
    rows, cols : slice, optional
        Window of epipolar rows and columns to produce (default: all). Columns may lie
        outside the grid (they extrapolate the grid linearly at its edge).

    """
    ny, nx = grids.shape
    sl = rows or slice(0, ny)
    sc = cols or slice(0, nx)
    y = np.arange(sl.start, sl.stop, dtype=np.float64)
    x = np.arange(sc.start, sc.stop, dtype=np.float64)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    r, c = grids.raw_position(which, yy, xx)
    if isinstance(image, View):
        inside = (r > -3) & (r < image.rows + 2) & (c > -3) & (c < image.cols + 2)
        if not inside.any():
            return np.full(r.shape, np.nan, np.float32)
        r0 = max(int(np.floor(r[inside].min())) - 3, 0)
        r1 = min(int(np.ceil(r[inside].max())) + 4, image.rows)
        c0 = max(int(np.floor(c[inside].min())) - 3, 0)
        c1 = min(int(np.ceil(c[inside].max())) + 4, image.cols)
        full_rows, full_cols = image.rows, image.cols
        image = image.read((r0, r1), (c0, c1))
        r_all, c_all = r, c
        r, c = r - r0, c - c0
    else:
        full_rows, full_cols = image.shape
        r_all, c_all = r, c
    src = np.nan_to_num(image, nan=0.0).astype(np.float32)
    out = cv2.remap(src, c.astype(np.float32), r.astype(np.float32), cv2.INTER_CUBIC,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    # no data: outside the raw image or next to a NaN of it
    bad = ~np.isfinite(image)
    if bad.any():
        badr = cv2.remap(bad.astype(np.float32), c.astype(np.float32), r.astype(np.float32),
                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
        out[badr > 0] = np.nan
    outside = (r_all < 0) | (r_all > full_rows - 1) | (c_all < 0) | (c_all > full_cols - 1)
    out[outside] = np.nan
    return out


def disparity_range(left: View, right: View, grids: EpipolarGrids, hmin: float,
                    hmax: float) -> tuple[float, float]:
    """Extreme disparities of heights hmin and hmax over the grid nodes.

    Disparity: epipolar right column minus left column, found by a local inversion of
    the right grid.
    """
    gl, gr = grids.left, grids.right
    nv, nu = gl.shape[1:]
    iv, ju = np.meshgrid(np.arange(nv - 1), np.arange(nu - 1), indexing="ij")
    iv, ju = iv.ravel(), ju.ravel()
    r, c = gl[0, iv, ju], gl[1, iv, ju]
    # local Jacobian of the right grid (raw pixels per epipolar pixel)
    du = (gr[:, iv, ju + 1] - gr[:, iv, ju]) / grids.step
    dv = (gr[:, iv + 1, ju] - gr[:, iv, ju]) / grids.step
    ds = []
    for h in (hmin, hmax):
        qr, qc = _to_right(left, right, r, c, h)
        dq = np.stack([qr - gr[0, iv, ju], qc - gr[1, iv, ju]])
        det = du[0] * dv[1] - du[1] * dv[0]
        x = (dq[0] * dv[1] - dq[1] * dv[0]) / det
        ds.append(x)
    d = np.concatenate(ds)
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise InputError("cannot bound the disparities: heights out of the RPC range")
    return float(d.min()), float(d.max())


def triangulate(left: View, right: View, grids: EpipolarGrids, y: np.ndarray,
                x: np.ndarray, disparity: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ground points of matched epipolar pixels by intersecting the lines of sight.

    Parameters
    ----------
    left, right : View
        The pair.
    grids : EpipolarGrids
        Its epipolar grids.
    y, x : numpy.ndarray
        Left epipolar positions.
    disparity : numpy.ndarray
        Their disparities.

    Returns
    -------
    lon, lat, h : numpy.ndarray
        WGS84 degrees and ellipsoidal height (m) of the midpoint of the shortest segment
        between the two lines of sight.
    gap : numpy.ndarray
        Length of that segment (m): the intersection error.

    """
    rl, cl = grids.raw_position("left", y, x)
    rr, cr = grids.raw_position("right", y, x + disparity)
    a0, a1 = _los(left, rl, cl, grids.h0, grids.h1)
    b0, b1 = _los(right, rr, cr, grids.h0, grids.h1)
    # closest points of lines a0 + s u and b0 + t v (centred for precision)
    ref = a0.mean(axis=0) if a0.size else np.zeros(3)
    a0, b0 = a0 - ref, b0 - ref
    u, v = a1 - ref - a0, b1 - ref - b0
    w = a0 - b0
    uu = np.einsum("ij,ij->i", u, u)
    uv = np.einsum("ij,ij->i", u, v)
    vv = np.einsum("ij,ij->i", v, v)
    uw = np.einsum("ij,ij->i", u, w)
    vw = np.einsum("ij,ij->i", v, w)
    den = uu * vv - uv * uv
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (uv * vw - vv * uw) / den
        t = (uu * vw - uv * uw) / den
    pa = a0 + s[:, None] * u
    pb = b0 + t[:, None] * v
    mid = 0.5 * (pa + pb) + ref
    gap = np.linalg.norm(pa - pb, axis=1)
    lon, lat, h = _GEODETIC.transform(mid[:, 0], mid[:, 1], mid[:, 2])
    return np.asarray(lon), np.asarray(lat), np.asarray(h), gap


@dataclass
class LosGrids:
    """Lines of sight of a pair's epipolar grid nodes, for fast triangulation.

    At every node of the left grid, and of the right grid extended by ``margin`` nodes on
    each side along the rows (disparities reach beyond it), two Cartesian (ECEF) points
    of the node's line of sight (heights ``h0`` and ``h1`` of the grids), relative to
    ``ref``: (6, nv, nu) arrays. A pixel's line of sight is the bilinear interpolation of
    its cell's nodes: localisation is smooth on the scale of a grid cell (32 px), so
    this departs from the exact lines by far less than a millimetre (see
    ``tests/test_dsm_grid.py``) at a fraction of the cost (no RPC inversion per pixel).
    """

    ref: np.ndarray
    left: np.ndarray
    right: np.ndarray
    step: int
    margin: int


def los_grids(left: View, right: View, grids: EpipolarGrids, d_max: float) -> LosGrids:
    """Node lines of sight of a pair, the right ones ``d_max`` pixels beyond the grid."""
    nv, nu = grids.left.shape[1:]
    margin = int(np.ceil(max(abs(d_max), 1.0) / grids.step)) + 1
    pts = []
    for which, view, m in (("left", left, 0), ("right", right, margin)):
        yy, xx = np.meshgrid(np.arange(nv, dtype=np.float64) * grids.step,
                             np.arange(-m, nu + m, dtype=np.float64) * grids.step,
                             indexing="ij")
        r, c = grids.raw_position(which, yy, xx)
        p0, p1 = _los(view, r.ravel(), c.ravel(), grids.h0, grids.h1)
        pts.append((p0, p1, yy.shape))
    ref = np.nanmean(pts[0][0], axis=0)
    out = []
    for p0, p1, shape in pts:
        g = np.concatenate([p0 - ref, p1 - ref], axis=1).T.reshape(6, *shape)
        out.append(np.ascontiguousarray(g))
    return LosGrids(ref=ref, left=out[0], right=out[1], step=grids.step, margin=margin)


def triangulate_grids(los: LosGrids, y: np.ndarray, x: np.ndarray, disparity: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """ECEF points (n, 3) and intersection gaps (m) of matched epipolar pixels.

    As :func:`triangulate` (closest point of the two lines of sight), with the lines of
    sight interpolated from the node grids of :func:`los_grids`.
    """
    s = float(los.step)
    y = np.asarray(y, np.float64)
    mid, gap = intersect_los_grids(los.left, los.right, y / s, np.asarray(x, np.float64) / s,
                                   y / s, (np.asarray(x, np.float64)
                                           + np.asarray(disparity, np.float64)) / s
                                   + los.margin)
    return mid + los.ref, gap


# ------------------------------------------------------- relative pointing error
def _phase_peak(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Shift (dy, dx) of ``b`` relative to ``a`` by phase correlation, and peak sharpness.

    ``b(y, x) = a(y - dy, x - dx)`` gives ``(dy, dx)``; sub-pixel by a parabola on each
    axis; the sharpness is the peak over the mean of the correlation surface.
    """
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    cross = fb * np.conj(fa)
    cross /= np.maximum(np.abs(cross), 1e-12)
    surf = np.fft.fftshift(np.real(np.fft.ifft2(cross)))
    py, px = np.unravel_index(int(np.argmax(surf)), surf.shape)
    if not (0 < py < surf.shape[0] - 1 and 0 < px < surf.shape[1] - 1):
        return np.nan, np.nan, 0.0

    def vertex(m: float, c: float, p: float) -> float:
        den = m - 2 * c + p
        return 0.0 if den == 0 else 0.5 * (m - p) / den

    dy = py + vertex(surf[py - 1, px], surf[py, px], surf[py + 1, px]) - surf.shape[0] // 2
    dx = px + vertex(surf[py, px - 1], surf[py, px], surf[py, px + 1]) - surf.shape[1] // 2
    sharp = float(surf[py, px] / (np.abs(surf).mean() + 1e-12))
    return float(dy), float(dx), sharp


def pointing_offset(left: View, right: View, grids: EpipolarGrids, tile: int = 64,
                    bands: int = 6, min_tiles: int = 4) -> tuple[float, int]:
    """Across-epipolar misalignment of the right view (epipolar rows), from the images.

    RPCs of two views are rarely consistent to better than a pixel; what is left shows
    as a vertical offset between the rectified images. It is measured by phase
    correlation of ``tile``-pixel tiles in up to ``bands`` row bands (the horizontal
    offset, the disparity, varies from tile to tile and is ignored) and returned as the
    median over the tiles with a clear peak, with the number of tiles used (NaN, 0 when
    too few).
    """
    ny, nx = grids.shape
    if ny < tile or nx < tile:
        return np.nan, 0
    starts = np.unique(np.linspace(0, ny - tile, min(bands, max(ny // tile, 1))).astype(int))
    found = []
    for y0 in starts:
        rows = slice(int(y0), int(y0) + tile)
        el = resample(left, grids, "left", rows)
        er = resample(right, grids, "right", rows)
        for x0 in range(0, nx - tile + 1, tile):
            a, b = el[:, x0:x0 + tile].astype(np.float64), er[:, x0:x0 + tile].astype(np.float64)
            fa, fb = np.isfinite(a), np.isfinite(b)
            if fa.mean() < 0.98 or fb.mean() < 0.98:
                continue
            a[~fa], b[~fb] = np.nanmean(a), np.nanmean(b)
            if a.std() == 0 or b.std() == 0:
                continue
            dy, _, sharp = _phase_peak(a, b)
            if np.isfinite(dy) and sharp > 20.0 and abs(dy) < tile / 4:
                found.append(dy)
    if len(found) < min_tiles:
        return np.nan, len(found)
    return float(np.median(found)), len(found)
