"""Range-Doppler geometry of a zero-Doppler SAR (Sentinel-1): geolocation both ways.

Pure array functions: an orbit is given as polynomial coefficients (from
:meth:`gdmio.s1.orbit.Orbit.polynomial`: ``coef`` of shape ``(3, degree + 1)``, highest
power first, in ``u = (t - t_mid) / t_scale``), times in orbit seconds, ranges in metres,
Earth-fixed WGS84 coordinates.

- :func:`geo2rdr`: ground point -> (zero-Doppler azimuth time, slant range); Newton on
  ``f(t) = (X - S(t)) . V(t) = 0``.
- :func:`rdr2geo`: (azimuth time, slant range) -> ground point on a DEM, for a
  right-looking radar; the point is found on the range circle in the zero-Doppler plane
  by Newton on its height above the ellipsoid minus the DEM height there (bilinear DEM
  interpolation, ellipsoidal heights).
- :func:`llh_to_ecef`, :func:`ecef_to_llh`: WGS84 conversions.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

__all__ = ["WGS84_A", "WGS84_E2", "SPEED_OF_LIGHT", "llh_to_ecef", "ecef_to_llh",
           "geo2rdr", "rdr2geo", "DemGrid"]

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3
SPEED_OF_LIGHT = 299792458.0


class DemGrid:
    """A DEM on a regular lon/lat grid (degrees; heights above the ellipsoid, metres).

    ``lon0``/``lat0`` are the coordinates of the *centre* of pixel (0, 0); ``dlon`` and
    ``dlat`` the (signed) pixel steps. Queries outside the grid use the nearest edge.
    """

    def __init__(self, heights: np.ndarray, lon0: float, lat0: float, dlon: float,
                 dlat: float) -> None:
        h = np.asarray(heights, np.float64)
        if h.ndim != 2 or min(h.shape) < 2:
            raise ValueError(f"DEM must be 2-D and at least 2x2, got shape {h.shape}")
        if not np.all(np.isfinite(h)):
            raise ValueError("DEM holds non-finite heights (fill them first)")
        if dlon == 0 or dlat == 0:
            raise ValueError("DEM pixel steps must be non-zero")
        self.heights = np.ascontiguousarray(h)
        self.params = np.array([lon0, lat0, dlon, dlat], np.float64)

    @classmethod
    def flat(cls, height: float = 0.0) -> DemGrid:
        """A constant height everywhere."""
        return cls(np.full((2, 2), float(height)), -180.0, -90.0, 360.0, 180.0)

    def sample(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Bilinear heights at (lon, lat) degrees."""
        lon, lat = np.broadcast_arrays(np.asarray(lon, np.float64),
                                       np.asarray(lat, np.float64))
        out = np.empty(lon.size)
        _dem_loop(self.heights, self.params, np.ascontiguousarray(lon.ravel()),
                  np.ascontiguousarray(lat.ravel()), out)
        return out.reshape(lon.shape)


def llh_to_ecef(lat: np.ndarray | float, lon: np.ndarray | float, h: np.ndarray | float
                ) -> np.ndarray:
    """WGS84 (lat, lon in degrees, h in metres) -> Earth-fixed XYZ (..., 3)."""
    la, lo = np.radians(lat), np.radians(lon)
    h = np.asarray(h, float)
    n = WGS84_A / np.sqrt(1 - WGS84_E2 * np.sin(la) ** 2)
    return np.stack([(n + h) * np.cos(la) * np.cos(lo), (n + h) * np.cos(la) * np.sin(lo),
                     (n * (1 - WGS84_E2) + h) * np.sin(la)], axis=-1)


def ecef_to_llh(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Earth-fixed XYZ (..., 3) -> WGS84 (lat deg, lon deg, h m)."""
    xyz = np.asarray(xyz, np.float64)
    flat = np.ascontiguousarray(xyz.reshape(-1, 3))
    out = np.empty_like(flat)
    _ecef_to_llh_loop(flat, out)
    shape = xyz.shape[:-1]
    return (np.degrees(out[:, 0]).reshape(shape), np.degrees(out[:, 1]).reshape(shape),
            out[:, 2].reshape(shape))


def _check_orbit(coef: np.ndarray, t_mid: float, t_scale: float) -> np.ndarray:
    coef = np.ascontiguousarray(coef, np.float64)
    if coef.ndim != 2 or coef.shape[0] != 3:
        raise ValueError(f"orbit coef must have shape (3, degree + 1), got {coef.shape}")
    if not (np.isfinite(t_mid) and t_scale > 0):
        raise ValueError("orbit t_mid must be finite and t_scale positive")
    return coef


def geo2rdr(xyz: np.ndarray, coef: np.ndarray, t_mid: float, t_scale: float,
            t_guess: float | None = None, tol: float = 1e-9, max_iter: int = 30
            ) -> tuple[np.ndarray, np.ndarray]:
    """Zero-Doppler azimuth time (orbit seconds) and slant range (m) of ground points.

    Parameters
    ----------
    xyz : numpy.ndarray
        (..., 3) Earth-fixed positions (m).
    coef : numpy.ndarray
        Orbit polynomial coefficients (3, degree + 1).
    t_mid : float
        Orbit polynomial time origin (s).
    t_scale : float
        Orbit polynomial time scale (s).
    t_guess : float, optional
        First guess of the time (default ``t_mid``).
    tol : float
        Newton stops when the time step is below this (s).
    max_iter : int
        Newton iterations at most.

    Returns
    -------
    (t, r) with the shape of ``xyz[..., 0]``; NaN where Newton did not converge.

    """
    coef = _check_orbit(coef, t_mid, t_scale)
    xyz = np.asarray(xyz, np.float64)
    if xyz.shape[-1] != 3:
        raise ValueError(f"xyz must end with a 3-axis, got shape {xyz.shape}")
    flat = np.ascontiguousarray(xyz.reshape(-1, 3))
    t = np.empty(flat.shape[0])
    r = np.empty(flat.shape[0])
    _geo2rdr_loop(flat, coef, float(t_mid), float(t_scale),
                  float(t_mid if t_guess is None else t_guess), tol, max_iter, t, r)
    return t.reshape(xyz.shape[:-1]), r.reshape(xyz.shape[:-1])


def rdr2geo(t: np.ndarray, r: np.ndarray, coef: np.ndarray, t_mid: float, t_scale: float,
            dem: DemGrid | None = None, right_looking: bool = True, tol: float = 1e-4,
            max_iter: int = 50, height: np.ndarray | None = None) -> np.ndarray:
    """Earth-fixed ground points (..., 3) seen at azimuth times ``t`` and ranges ``r``.

    ``t`` and ``r`` broadcast together. Heights come from ``dem`` (default: the
    ellipsoid, h = 0), or, when ``height`` is given (broadcast with ``t``), are those
    heights above the ellipsoid. NaN where the range circle does not reach the surface.
    """
    coef = _check_orbit(coef, t_mid, t_scale)
    if height is None:
        t, r = np.broadcast_arrays(np.asarray(t, np.float64), np.asarray(r, np.float64))
        hq = np.zeros(t.size)
        use_h = False
    else:
        t, r, hb = np.broadcast_arrays(np.asarray(t, np.float64), np.asarray(r, np.float64),
                                       np.asarray(height, np.float64))
        hq = np.ascontiguousarray(hb.ravel())
        use_h = True
    if np.any(r[np.isfinite(r)] <= 0):
        raise ValueError("slant ranges must be positive")
    dem = dem or DemGrid.flat()
    tf = np.ascontiguousarray(t.ravel())
    rf = np.ascontiguousarray(r.ravel())
    out = np.empty((tf.size, 3))
    _rdr2geo_loop(tf, rf, coef, float(t_mid), float(t_scale), dem.heights, dem.params,
                  1.0 if right_looking else -1.0, tol, max_iter, hq, use_h, out)
    return out.reshape(t.shape + (3,))


# ---------------------------------------------------------------- compiled loops


@numba.njit(cache=True)
def _orbit_state(coef, t_mid, t_scale, t):  # pragma: no cover - compiled
    u = (t - t_mid) / t_scale
    deg = coef.shape[1] - 1
    p = np.zeros(3)
    v = np.zeros(3)
    a = np.zeros(3)
    for k in range(3):
        pk = 0.0
        for j in range(deg + 1):
            pk = pk * u + coef[k, j]
        vk = 0.0
        for j in range(deg):
            vk = vk * u + coef[k, j] * (deg - j)
        ak = 0.0
        for j in range(deg - 1):
            ak = ak * u + coef[k, j] * (deg - j) * (deg - j - 1)
        p[k] = pk
        v[k] = vk / t_scale
        a[k] = ak / (t_scale * t_scale)
    return p, v, a


@numba.njit(cache=True)
def _llh_one(x, y, z):  # pragma: no cover - compiled
    a = WGS84_A
    e2 = WGS84_E2
    p = math.sqrt(x * x + y * y)
    lon = math.atan2(y, x)
    lat = math.atan2(z, p * (1.0 - e2))
    h = 0.0
    for _ in range(6):
        s = math.sin(lat)
        n = a / math.sqrt(1.0 - e2 * s * s)
        c = math.cos(lat)
        if abs(c) > 1e-12:
            h = p / c - n
        else:
            h = abs(z) - n * (1.0 - e2)
        lat = math.atan2(z, p * (1.0 - e2 * n / (n + h)))
    return lat, lon, h


@numba.njit(cache=True)
def _ecef_to_llh_loop(xyz, out):  # pragma: no cover - compiled
    for i in range(xyz.shape[0]):
        la, lo, h = _llh_one(xyz[i, 0], xyz[i, 1], xyz[i, 2])
        out[i, 0] = la
        out[i, 1] = lo
        out[i, 2] = h


@numba.njit(cache=True)
def _dem_at(heights, params, lon, lat):  # pragma: no cover - compiled
    ny, nx = heights.shape
    fx = (lon - params[0]) / params[2]
    fy = (lat - params[1]) / params[3]
    fx = min(max(fx, 0.0), nx - 1.0)
    fy = min(max(fy, 0.0), ny - 1.0)
    ix = min(int(math.floor(fx)), nx - 2)
    iy = min(int(math.floor(fy)), ny - 2)
    wx = fx - ix
    wy = fy - iy
    return ((1 - wy) * ((1 - wx) * heights[iy, ix] + wx * heights[iy, ix + 1])
            + wy * ((1 - wx) * heights[iy + 1, ix] + wx * heights[iy + 1, ix + 1]))


@numba.njit(cache=True)
def _dem_loop(heights, params, lon, lat, out):  # pragma: no cover - compiled
    for i in range(lon.shape[0]):
        out[i] = _dem_at(heights, params, lon[i], lat[i])


@numba.njit(parallel=True, cache=True)
def _geo2rdr_loop(xyz, coef, t_mid, t_scale, t0, tol, max_iter, t_out, r_out
                  ):  # pragma: no cover - compiled
    for i in prange(xyz.shape[0]):
        t = t0
        ok = False
        for _ in range(max_iter):
            p, v, a = _orbit_state(coef, t_mid, t_scale, t)
            dx = xyz[i, 0] - p[0]
            dy = xyz[i, 1] - p[1]
            dz = xyz[i, 2] - p[2]
            f = dx * v[0] + dy * v[1] + dz * v[2]
            fp = -(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]) + dx * a[0] + dy * a[1] + dz * a[2]
            step = f / fp
            t -= step
            if abs(step) < tol:
                ok = True
                break
        if ok and math.isfinite(t):
            p, v, a = _orbit_state(coef, t_mid, t_scale, t)
            t_out[i] = t
            r_out[i] = math.sqrt((xyz[i, 0] - p[0]) ** 2 + (xyz[i, 1] - p[1]) ** 2
                                 + (xyz[i, 2] - p[2]) ** 2)
        else:
            t_out[i] = np.nan
            r_out[i] = np.nan


@numba.njit(cache=True)
def _point_at(s, nvec, side, r, alpha):  # pragma: no cover - compiled
    ca = math.cos(alpha)
    sa = math.sin(alpha)
    return (s[0] + r * (ca * nvec[0] + sa * side[0]),
            s[1] + r * (ca * nvec[1] + sa * side[1]),
            s[2] + r * (ca * nvec[2] + sa * side[2]))


_RDR2GEO_CHUNK = 256
"""Points a thread solves in a row: along a line, each starts from its neighbour's
solution, so the Newton iterations begin a few metres from the answer, not from the
sphere of the local radius."""


_WARM_MAX_M = 30_000.0
"""A solution started from the neighbour's is kept only this close (metres along the
range circle) to the sphere's guess; farther, the point is solved again from the sphere."""


@numba.njit(cache=True, inline="always")
def _dem_or_height(heights, params, hq_i, use_h, lat, lon):  # pragma: no cover - compiled
    if use_h:
        return hq_i
    return _dem_at(heights, params, math.degrees(lon), math.degrees(lat))


@numba.njit(cache=True, inline="always")
def _newton_alpha(s, nvec, side, r, alpha, heights, params, hq_i, use_h, tol,
                  max_iter):  # pragma: no cover - compiled
    """(alpha, converged): the look angle where the range circle meets the surface."""
    for _ in range(max_iter):
        x = _point_at(s, nvec, side, r, alpha)
        lat, lon, h = _llh_one(x[0], x[1], x[2])
        g = h - _dem_or_height(heights, params, hq_i, use_h, lat, lon)
        da = 1e-6
        x2 = _point_at(s, nvec, side, r, alpha + da)
        lat2, lon2, h2 = _llh_one(x2[0], x2[1], x2[2])
        dg = ((h2 - _dem_or_height(heights, params, hq_i, use_h, lat2, lon2)) - g) / da
        if dg <= 0.0:  # slope steeper than the look: the terrain-free slope
            dg = (h2 - h) / da
        alpha -= g / dg
        if abs(g) < tol:
            return alpha, True
    return alpha, False


@numba.njit(parallel=True, cache=True)
def _rdr2geo_loop(t, r, coef, t_mid, t_scale, heights, params, look, tol, max_iter, hq,
                  use_h, out):  # pragma: no cover - compiled
    n = t.shape[0]
    n_chunks = (n + _RDR2GEO_CHUNK - 1) // _RDR2GEO_CHUNK
    for c in prange(n_chunks):
        prev_t = np.nan  # the azimuth time of the orbit frame below, and the last solution
        prev_alpha = np.nan
        prev_sphere = np.nan
        s = np.zeros(3)
        nvec = np.zeros(3)
        side = np.zeros(3)
        sn = 0.0
        rad = 0.0
        for i in range(c * _RDR2GEO_CHUNK, min(n, (c + 1) * _RDR2GEO_CHUNK)):
            if not (math.isfinite(t[i]) and math.isfinite(r[i])):
                out[i, 0] = np.nan
                out[i, 1] = np.nan
                out[i, 2] = np.nan
                prev_alpha = np.nan
                continue
            if t[i] != prev_t:  # a new azimuth time: the orbit frame, no neighbour yet
                s, v, _ = _orbit_state(coef, t_mid, t_scale, t[i])
                vn = math.sqrt(v[0] ** 2 + v[1] ** 2 + v[2] ** 2)
                vh = v / vn
                sn = math.sqrt(s[0] ** 2 + s[1] ** 2 + s[2] ** 2)
                nad = -s / sn
                d = nad[0] * vh[0] + nad[1] * vh[1] + nad[2] * vh[2]
                nvec = nad - d * vh
                nvec /= math.sqrt(nvec[0] ** 2 + nvec[1] ** 2 + nvec[2] ** 2)
                # right of the velocity: nvec x vh (right-looking), its opposite for left
                side = np.empty(3)
                side[0] = look * (nvec[1] * vh[2] - nvec[2] * vh[1])
                side[1] = look * (nvec[2] * vh[0] - nvec[0] * vh[2])
                side[2] = look * (nvec[0] * vh[1] - nvec[1] * vh[0])
                _, _, h_sat = _llh_one(s[0], s[1], s[2])
                rad = sn - h_sat
                prev_t = t[i]
                prev_alpha = np.nan
            # first guess: a sphere of the local radius, moved by the neighbour's terrain
            ca = (r[i] * r[i] + sn * sn - rad * rad) / (2.0 * r[i] * sn)
            if ca > 1.0 or ca < -1.0:
                out[i, 0] = np.nan
                out[i, 1] = np.nan
                out[i, 2] = np.nan
                prev_alpha = np.nan
                continue
            sphere = math.acos(ca)
            ok = False
            if math.isfinite(prev_alpha):  # from the neighbour's solution
                guess = prev_alpha + (sphere - prev_sphere)
                alpha, ok = _newton_alpha(s, nvec, side, r[i], guess, heights, params, hq[i],
                                          use_h, tol, max_iter)
                # a far root is not this point's neighbourhood
                ok = ok and r[i] * abs(alpha - sphere) <= _WARM_MAX_M
            if not ok:  # no neighbour, or it failed (steep terrain): from the sphere
                alpha, ok = _newton_alpha(s, nvec, side, r[i], sphere, heights, params,
                                          hq[i], use_h, tol, max_iter)
            if ok:
                x = _point_at(s, nvec, side, r[i], alpha)
                out[i, 0] = x[0]
                out[i, 1] = x[1]
                out[i, 2] = x[2]
                prev_alpha = alpha
                prev_sphere = sphere
            else:
                out[i, 0] = np.nan
                out[i, 1] = np.nan
                out[i, 2] = np.nan
                prev_alpha = np.nan
