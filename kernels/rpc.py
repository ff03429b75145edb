"""Rational polynomial camera models (RPC00B): projection, localisation, fitting.

Conventions
-----------
- Ground coordinates are WGS84 longitude and latitude in degrees and the height above
  the ellipsoid in metres.
- Image coordinates are ``(row, col)`` with integer values at pixel centres (the RPC
  convention; the NumPy index of a pixel). GDAL's corner-based pixel/line coordinates
  are these plus 0.5.
- The twenty terms of each cubic polynomial follow the RPC00B order used by GDAL and the
  NITF specification: ``1, L, P, H, LP, LH, PH, L², P², H², PLH, L³, LP², LH², L²P, P³,
  PH², L²H, P²H, H³`` with L = longitude, P = latitude, H = height, all normalised by
  their offsets and scales.

:meth:`Rpc.project` evaluates the model, :meth:`Rpc.localise` inverts it at a given height
by Newton iterations on the normalised longitude and latitude, :func:`fit_rpc` fits a model
to a set of ground/image correspondences (the simulator uses it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

__all__ = ["Rpc", "CorrectedRpc", "fit_rpc", "grid_interp", "intersect_los_grids"]

_N_TERMS = 20


def _terms(lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The twenty RPC00B monomials of normalised coordinates, shape (20, n)."""
    L, P, H = lon, lat, h
    one = np.ones_like(L)
    return np.stack([one, L, P, H, L * P, L * H, P * H, L * L, P * P, H * H, P * L * H,
                     L ** 3, L * P * P, L * H * H, L * L * P, P ** 3, P * H * H, L * L * H,
                     P * P * H, H ** 3])


@numba.njit(cache=True, inline="always")
def _poly_grad(c, L, P, H):  # pragma: no cover - compiled
    """Value of an RPC00B polynomial and its derivatives in L and P."""
    v = (c[0] + c[1] * L + c[2] * P + c[3] * H + c[4] * L * P + c[5] * L * H + c[6] * P * H
         + c[7] * L * L + c[8] * P * P + c[9] * H * H + c[10] * P * L * H + c[11] * L ** 3
         + c[12] * L * P * P + c[13] * L * H * H + c[14] * L * L * P + c[15] * P ** 3
         + c[16] * P * H * H + c[17] * L * L * H + c[18] * P * P * H + c[19] * H ** 3)
    dl = (c[1] + c[4] * P + c[5] * H + 2 * c[7] * L + c[10] * P * H + 3 * c[11] * L * L
          + c[12] * P * P + c[13] * H * H + 2 * c[14] * L * P + 2 * c[17] * L * H)
    dp = (c[2] + c[4] * L + c[6] * H + 2 * c[8] * P + c[10] * L * H + 2 * c[12] * L * P
          + c[14] * L * L + 3 * c[15] * P * P + c[16] * H * H + 2 * c[18] * P * H)
    return v, dl, dp


@numba.njit(cache=True)
def _localise_loop(rn, cn, hn, ln, ld, sn, sd, tol, max_iter, lon, lat):  # pragma: no cover
    for i in range(rn.shape[0]):
        lon[i] = np.nan
        lat[i] = np.nan
        r, c, H = rn[i], cn[i], hn[i]
        if not (np.isfinite(r) and np.isfinite(c) and np.isfinite(H)):
            continue
        L = 0.0
        P = 0.0
        for _ in range(max_iter):
            a_n, a_nl, a_np = _poly_grad(ln, L, P, H)
            a_d, a_dl, a_dp = _poly_grad(ld, L, P, H)
            b_n, b_nl, b_np = _poly_grad(sn, L, P, H)
            b_d, b_dl, b_dp = _poly_grad(sd, L, P, H)
            if a_d == 0.0 or b_d == 0.0:
                break
            fr = a_n / a_d - r
            fc = b_n / b_d - c
            if abs(fr) < tol and abs(fc) < tol:
                lon[i] = L
                lat[i] = P
                break
            ja = (a_nl * a_d - a_n * a_dl) / (a_d * a_d)
            jb = (a_np * a_d - a_n * a_dp) / (a_d * a_d)
            jc = (b_nl * b_d - b_n * b_dl) / (b_d * b_d)
            jd = (b_np * b_d - b_n * b_dp) / (b_d * b_d)
            det = ja * jd - jb * jc
            if det == 0.0 or not np.isfinite(det):
                break
            L -= (jd * fr - jb * fc) / det
            P -= (-jc * fr + ja * fc) / det
            if not (np.isfinite(L) and np.isfinite(P)):
                break


def _coeffs(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.shape != (_N_TERMS,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must hold {_N_TERMS} finite coefficients, got {arr.shape}")
    return arr


@dataclass(frozen=True)
class Rpc:
    """An RPC00B camera model.

    Attributes
    ----------
    line_off, samp_off, lat_off, long_off, height_off : float
        Offsets of row, column, latitude (deg), longitude (deg) and height (m).
    line_scale, samp_scale, lat_scale, long_scale, height_scale : float
        Their scales (non-zero).
    line_num, line_den, samp_num, samp_den : numpy.ndarray
        The four sets of twenty coefficients.

    """

    line_off: float
    samp_off: float
    lat_off: float
    long_off: float
    height_off: float
    line_scale: float
    samp_scale: float
    lat_scale: float
    long_scale: float
    height_scale: float
    line_num: np.ndarray = field(repr=False)
    line_den: np.ndarray = field(repr=False)
    samp_num: np.ndarray = field(repr=False)
    samp_den: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("line_num", "line_den", "samp_num", "samp_den"):
            object.__setattr__(self, name, _coeffs(name, getattr(self, name)))
        for name in ("line_scale", "samp_scale", "lat_scale", "long_scale", "height_scale"):
            v = float(getattr(self, name))
            if not np.isfinite(v) or v == 0.0:
                raise ValueError(f"{name} must be finite and non-zero, got {v}")
        for name in ("line_off", "samp_off", "lat_off", "long_off", "height_off"):
            if not np.isfinite(float(getattr(self, name))):
                raise ValueError(f"{name} must be finite")

    # ------------------------------------------------------------- conversions
    @classmethod
    def from_rasterio(cls, rpc: Any) -> Rpc:
        """From a :class:`rasterio.rpc.RPC` (``dataset.rpcs``)."""
        return cls(line_off=rpc.line_off, samp_off=rpc.samp_off, lat_off=rpc.lat_off,
                   long_off=rpc.long_off, height_off=rpc.height_off,
                   line_scale=rpc.line_scale, samp_scale=rpc.samp_scale,
                   lat_scale=rpc.lat_scale, long_scale=rpc.long_scale,
                   height_scale=rpc.height_scale, line_num=rpc.line_num_coeff,
                   line_den=rpc.line_den_coeff, samp_num=rpc.samp_num_coeff,
                   samp_den=rpc.samp_den_coeff)

    def to_rasterio(self) -> Any:
        """As a :class:`rasterio.rpc.RPC` (to write with ``rasterio.open(..., rpcs=)``)."""
        from rasterio.rpc import RPC

        return RPC(height_off=self.height_off, height_scale=self.height_scale,
                   lat_off=self.lat_off, lat_scale=self.lat_scale,
                   line_den_coeff=self.line_den.tolist(), line_num_coeff=self.line_num.tolist(),
                   line_off=self.line_off, line_scale=self.line_scale,
                   long_off=self.long_off, long_scale=self.long_scale,
                   samp_den_coeff=self.samp_den.tolist(), samp_num_coeff=self.samp_num.tolist(),
                   samp_off=self.samp_off, samp_scale=self.samp_scale)

    @property
    def height_range(self) -> tuple[float, float]:
        """The height interval the model is normalised on (offset ± scale), metres."""
        s = abs(self.height_scale)
        return self.height_off - s, self.height_off + s

    # --------------------------------------------------------------- evaluation
    def project(self, lon: Any, lat: Any, h: Any) -> tuple[np.ndarray, np.ndarray]:
        """Image position ``(row, col)`` of ground points.

        Parameters
        ----------
        lon, lat : array_like
            Longitude and latitude (degrees), broadcast together with ``h``.
        h : array_like
            Height above the ellipsoid (m).

        Returns
        -------
        row, col : numpy.ndarray
            float64 arrays of the broadcast shape (NaN where an input is NaN or a
            denominator vanishes).

        """
        lon_, lat_, h_ = np.broadcast_arrays(np.asarray(lon, np.float64),
                                             np.asarray(lat, np.float64),
                                             np.asarray(h, np.float64))
        shape = lon_.shape
        L = (lon_.ravel() - self.long_off) / self.long_scale
        P = (lat_.ravel() - self.lat_off) / self.lat_scale
        H = (h_.ravel() - self.height_off) / self.height_scale
        t = _terms(L, P, H)
        with np.errstate(divide="ignore", invalid="ignore"):
            rn = (self.line_num @ t) / (self.line_den @ t)
            cn = (self.samp_num @ t) / (self.samp_den @ t)
        row = rn * self.line_scale + self.line_off
        col = cn * self.samp_scale + self.samp_off
        row[~np.isfinite(row)] = np.nan
        col[~np.isfinite(col)] = np.nan
        return row.reshape(shape), col.reshape(shape)

    def localise(self, row: Any, col: Any, h: Any, tol: float = 1e-12,
                 max_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """Ground position ``(lon, lat)`` of image points at given heights (inverse model).

        Newton iterations on the normalised longitude and latitude, started at the model
        centre, with the analytic Jacobian of the rational functions (a compiled loop
        over the points).

        Parameters
        ----------
        row, col : array_like
            Image positions (pixel centres at integers).
        h : array_like
            Height above the ellipsoid (m), broadcast with ``row`` and ``col``.
        tol : float
            Convergence threshold on the normalised image residual (1e-12 of the scale,
            far below 1e-6 pixel for any real image).
        max_iter : int
            Iteration limit; points that have not converged are returned as NaN.

        Returns
        -------
        lon, lat : numpy.ndarray
            float64 degrees, broadcast shape.

        """
        r_, c_, h_ = np.broadcast_arrays(np.asarray(row, np.float64),
                                         np.asarray(col, np.float64),
                                         np.asarray(h, np.float64))
        shape = r_.shape
        rn = (r_.ravel() - self.line_off) / self.line_scale
        cn = (c_.ravel() - self.samp_off) / self.samp_scale
        H = (h_.ravel() - self.height_off) / self.height_scale
        lon_n = np.empty(rn.size)
        lat_n = np.empty(rn.size)
        _localise_loop(rn, cn, H, self.line_num, self.line_den, self.samp_num, self.samp_den,
                       float(tol), int(max_iter), lon_n, lat_n)
        lon = lon_n * self.long_scale + self.long_off
        lat = lat_n * self.lat_scale + self.lat_off
        return lon.reshape(shape), lat.reshape(shape)


def fit_rpc(lon: np.ndarray, lat: np.ndarray, h: np.ndarray, row: np.ndarray,
            col: np.ndarray, rational: bool = False) -> Rpc:
    """Fit an RPC00B model to ground/image correspondences by linear least squares.

    Parameters
    ----------
    lon, lat, h : numpy.ndarray
        Ground points (degrees, metres), at least 39 spread in three dimensions.
    row, col : numpy.ndarray
        Their image positions.
    rational : bool
        Fit the denominators too (the linearised problem of Tao & Hu, one pass); by
        default the denominators are 1 (a cubic polynomial), which is exact for the
        smooth, near-affine pushbroom geometries of the simulator and always stable.

    Returns
    -------
    Rpc
        The model, normalised on the extent of the points.

    """
    arrs = [np.asarray(a, np.float64).ravel() for a in (lon, lat, h, row, col)]
    n = arrs[0].size
    if any(a.size != n for a in arrs):
        raise ValueError("lon, lat, h, row and col must have the same size")
    if n < 2 * _N_TERMS - 1:
        raise ValueError(f"need at least {2 * _N_TERMS - 1} points, got {n}")
    if not all(np.all(np.isfinite(a)) for a in arrs):
        raise ValueError("correspondences must be finite")

    def norm(a: np.ndarray) -> tuple[float, float]:
        off = 0.5 * (a.max() + a.min())
        scale = 0.5 * (a.max() - a.min())
        return float(off), float(scale if scale > 0 else 1.0)

    (lo, ls), (ao, as_), (ho, hs), (ro, rs), (co, cs) = (norm(a) for a in arrs)
    L = (arrs[0] - lo) / ls
    P = (arrs[1] - ao) / as_
    H = (arrs[2] - ho) / hs
    t = _terms(L, P, H).T  # (n, 20)

    def solve(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        den = np.zeros(_N_TERMS)
        den[0] = 1.0
        if not rational:
            num = np.linalg.lstsq(t, target, rcond=None)[0]
            return num, den
        a = np.hstack([t, -target[:, None] * t[:, 1:]])
        sol = np.linalg.lstsq(a, target, rcond=None)[0]
        den[1:] = sol[_N_TERMS:]
        return sol[:_N_TERMS], den

    ln, ld = solve((arrs[3] - ro) / rs)
    sn, sd = solve((arrs[4] - co) / cs)
    return Rpc(line_off=ro, samp_off=co, lat_off=ao, long_off=lo, height_off=ho,
               line_scale=rs, samp_scale=cs, lat_scale=as_, long_scale=ls,
               height_scale=hs, line_num=ln, line_den=ld, samp_num=sn, samp_den=sd)


@dataclass(frozen=True)
class CorrectedRpc:
    """An RPC model followed by an affine correction of its image coordinates.

    ``project`` returns ``q + A @ (1, q_row, q_col)`` where ``q`` is the RPC's image
    position: the bias compensation of RPC refinement (Grodecki & Dial 2003: an offset,
    and a drift with row and column). ``localise`` inverts the correction exactly (it is
    affine) before localising. Offsets, scales and the height range are the RPC's.

    Attributes
    ----------
    rpc : Rpc
        The model being corrected.
    matrix : numpy.ndarray
        (2, 3) float64: rows (d_row, d_col), columns (1, row, col).

    """

    rpc: Rpc
    matrix: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, np.float64)
        if m.shape != (2, 3) or not np.all(np.isfinite(m)):
            raise ValueError(f"matrix must be a finite (2, 3) array, got {m.shape}")
        lin = np.eye(2) + m[:, 1:]
        if abs(np.linalg.det(lin)) < 1e-6:
            raise ValueError("the correction is not invertible")
        object.__setattr__(self, "matrix", m)

    def __getattr__(self, name: str) -> Any:
        # offsets, scales, coefficients and height_range come from the RPC
        if name in ("rpc", "matrix"):
            raise AttributeError(name)
        return getattr(self.rpc, name)

    @property
    def height_range(self) -> tuple[float, float]:
        """The RPC's height interval."""
        return self.rpc.height_range

    def compose(self, matrix: np.ndarray) -> CorrectedRpc:
        """The model with a further correction ``matrix`` of its corrected coordinates.

        ``q2 = q1 + B (1, q1)`` with ``q1 = q + A (1, q)`` is again affine in ``q``.
        """
        a, b = self.matrix, np.asarray(matrix, np.float64)
        lin_a = np.eye(2) + a[:, 1:]
        lin_b = np.eye(2) + b[:, 1:]
        lin = lin_b @ lin_a
        off = lin_b @ a[:, 0] + b[:, 0]
        return CorrectedRpc(self.rpc, np.column_stack([off, lin - np.eye(2)]))

    def project(self, lon: Any, lat: Any, h: Any) -> tuple[np.ndarray, np.ndarray]:
        """Corrected image position ``(row, col)`` of ground points."""
        r, c = self.rpc.project(lon, lat, h)
        m = self.matrix
        return (r + m[0, 0] + m[0, 1] * r + m[0, 2] * c,
                c + m[1, 0] + m[1, 1] * r + m[1, 2] * c)

    def localise(self, row: Any, col: Any, h: Any, tol: float = 1e-12,
                 max_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """Ground position of corrected image points at given heights."""
        m = self.matrix
        inv = np.linalg.inv(np.eye(2) + m[:, 1:])
        r = np.asarray(row, np.float64) - m[0, 0]
        c = np.asarray(col, np.float64) - m[1, 0]
        q_r = inv[0, 0] * r + inv[0, 1] * c
        q_c = inv[1, 0] * r + inv[1, 1] * c
        return self.rpc.localise(q_r, q_c, h, tol=tol, max_iter=max_iter)


# ------------------------------------------------- node grids and lines of sight
@numba.njit(cache=True, nogil=True)
def _grid_interp_loop(g, y, x, out):  # pragma: no cover - compiled
    k, nv, nu = g.shape
    for p in range(y.shape[0]):
        yy, xx = y[p], x[p]
        i = int(np.floor(yy)) if np.isfinite(yy) else 0
        j = int(np.floor(xx)) if np.isfinite(xx) else 0
        i = min(max(i, 0), nv - 2)
        j = min(max(j, 0), nu - 2)
        ty, tx = yy - i, xx - j
        for q in range(k):
            out[q, p] = ((1 - ty) * ((1 - tx) * g[q, i, j] + tx * g[q, i, j + 1])
                         + ty * ((1 - tx) * g[q, i + 1, j] + tx * g[q, i + 1, j + 1]))


def grid_interp(grid: np.ndarray, y: Any, x: Any) -> np.ndarray:
    """Bilinear interpolation of node grids, extrapolated linearly past their edges.

    Parameters
    ----------
    grid : numpy.ndarray
        (k, nv, nu) values at the nodes (nv, nu >= 2).
    y, x : array_like
        Positions in node units (row, column), broadcast together.

    Returns
    -------
    numpy.ndarray
        float64 (k, *shape): the k interpolated layers (NaN where a position is NaN).

    """
    g = np.ascontiguousarray(grid, np.float64)
    if g.ndim != 3 or g.shape[1] < 2 or g.shape[2] < 2:
        raise ValueError(f"grid must be (k, nv >= 2, nu >= 2), got {g.shape}")
    y_, x_ = np.broadcast_arrays(np.asarray(y, np.float64), np.asarray(x, np.float64))
    shape = y_.shape
    out = np.empty((g.shape[0], y_.size))
    _grid_interp_loop(g, np.ascontiguousarray(y_).ravel(), np.ascontiguousarray(x_).ravel(),
                      out)
    return out.reshape((g.shape[0], *shape))


@numba.njit(cache=True, nogil=True)
def _intersect_loop(a, b, ya, xa, yb, xb, mid, gap):  # pragma: no cover - compiled
    _, nv, nu = a.shape
    _, mv, mu = b.shape
    pa = np.empty(6)
    pb = np.empty(6)
    for p in range(ya.shape[0]):
        for which in range(2):
            g = a if which == 0 else b
            yy = ya[p] if which == 0 else yb[p]
            xx = xa[p] if which == 0 else xb[p]
            n_v = nv if which == 0 else mv
            n_u = nu if which == 0 else mu
            i = min(max(int(np.floor(yy)), 0), n_v - 2)
            j = min(max(int(np.floor(xx)), 0), n_u - 2)
            ty, tx = yy - i, xx - j
            w00 = (1 - ty) * (1 - tx)
            w01 = (1 - ty) * tx
            w10 = ty * (1 - tx)
            w11 = ty * tx
            for q in range(6):
                v = (w00 * g[q, i, j] + w01 * g[q, i, j + 1] + w10 * g[q, i + 1, j]
                     + w11 * g[q, i + 1, j + 1])
                if which == 0:
                    pa[q] = v
                else:
                    pb[q] = v
        # lines a0 + s u and b0 + t v: closest points
        ux, uy, uz = pa[3] - pa[0], pa[4] - pa[1], pa[5] - pa[2]
        vx, vy, vz = pb[3] - pb[0], pb[4] - pb[1], pb[5] - pb[2]
        wx, wy, wz = pa[0] - pb[0], pa[1] - pb[1], pa[2] - pb[2]
        uu = ux * ux + uy * uy + uz * uz
        uv = ux * vx + uy * vy + uz * vz
        vv = vx * vx + vy * vy + vz * vz
        uw = ux * wx + uy * wy + uz * wz
        vw = vx * wx + vy * wy + vz * wz
        den = uu * vv - uv * uv
        if not (den != 0.0) or not np.isfinite(den):
            mid[p, 0] = np.nan
            mid[p, 1] = np.nan
            mid[p, 2] = np.nan
            gap[p] = np.nan
            continue
        s = (uv * vw - vv * uw) / den
        t = (uu * vw - uv * uw) / den
        ax, ay, az = pa[0] + s * ux, pa[1] + s * uy, pa[2] + s * uz
        bx, by, bz = pb[0] + t * vx, pb[1] + t * vy, pb[2] + t * vz
        mid[p, 0] = 0.5 * (ax + bx)
        mid[p, 1] = 0.5 * (ay + by)
        mid[p, 2] = 0.5 * (az + bz)
        gap[p] = np.sqrt((ax - bx) ** 2 + (ay - by) ** 2 + (az - bz) ** 2)


def intersect_los_grids(a: np.ndarray, b: np.ndarray, ya: Any, xa: Any, yb: Any, xb: Any
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Closest points of two lines of sight interpolated from node grids.

    Parameters
    ----------
    a, b : numpy.ndarray
        (6, nv, nu) node grids of the two views: two points of each node's line of sight
        (x0, y0, z0, x1, y1, z1, Cartesian metres, best centred on the scene).
    ya, xa, yb, xb : array_like
        Positions in node units of each point in grid ``a`` and grid ``b`` (same size).

    Returns
    -------
    mid : numpy.ndarray
        (n, 3) midpoints of the shortest segments between the lines (NaN if parallel).
    gap : numpy.ndarray
        (n,) their lengths.

    """
    ga = np.ascontiguousarray(a, np.float64)
    gb = np.ascontiguousarray(b, np.float64)
    for g in (ga, gb):
        if g.ndim != 3 or g.shape[0] != 6 or g.shape[1] < 2 or g.shape[2] < 2:
            raise ValueError(f"grids must be (6, nv >= 2, nu >= 2), got {g.shape}")
    arrs = [np.ascontiguousarray(v, np.float64).ravel() for v in (ya, xa, yb, xb)]
    n = arrs[0].size
    if any(v.size != n for v in arrs):
        raise ValueError("ya, xa, yb and xb must have the same size")
    mid = np.empty((n, 3))
    gap = np.empty(n)
    _intersect_loop(ga, gb, arrs[0], arrs[1], arrs[2], arrs[3], mid, gap)
    return mid, gap
