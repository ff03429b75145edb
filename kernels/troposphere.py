"""Tropospheric delay from a weather model on pressure levels, and its interpolation.

The zenith delay at height ``h`` is ``1e-6 * integral_h^top N dz`` with the refractivity
``N = k1 Rd rho + k2' e / T + k3 e / T^2`` (Smith and Weintraub constants, as PyAPS
and RAiDER use them; ``k2' = k2 - k1 Rd / Rv``):

- hydrostatic part: ``1e-6 k1 Rd P(h) / g_m`` exactly (hydrostatic equilibrium), with
  ``g_m`` the gravity at the column's centroid (Saastamoinen:
  ``9.784 (1 - 0.00266 cos 2 lat - 0.00028 h_km)``);
- wet part: the integral of ``k2' e / T + k3 e / T^2`` from ``h`` to the model top,
  by the trapezoidal rule on a fine height grid.

Each column of the model (one latitude/longitude node) gives ``P``, ``T`` and the water
vapour pressure ``e`` on its pressure levels at heights converted from geopotential
(latitude-dependent gravity and Earth radius); they are interpolated on the fine height
grid (``log P``, ``T`` and ``log e`` linear in height, extrapolated linearly below the
lowest level). :func:`delay_profiles` returns, per node, the hydrostatic and wet zenith
delays tabulated on heights; :func:`interpolate_delay` evaluates them at pixels
(linear in height at each of the four surrounding nodes, then bilinear in
latitude/longitude). Units: Pa, K, m, degrees.
"""

from __future__ import annotations

import numpy as np

__all__ = ["K1", "K2", "K3", "RD", "RV", "G0", "geometric_height", "geopotential_height",
           "vapour_pressure_q", "vapour_pressure_rh", "delay_profiles", "interpolate_delay",
           "saastamoinen_zhd", "TABLE_HEIGHTS"]

K1 = 0.776          # K/Pa
K2 = 0.716          # K/Pa
K3 = 3750.0         # K^2/Pa
RD = 287.05         # J/kg/K, dry air
RV = 461.495        # J/kg/K, water vapour
G0 = 9.80665        # m/s^2, standard gravity (geopotential height)
_K2P = K2 - K1 * RD / RV
_EPS = RD / RV

TABLE_HEIGHTS = np.arange(-500.0, 9000.0 + 1e-9, 10.0)
"""Heights (m) at which :func:`delay_profiles` tabulates the delays by default."""
_TOP_STEP = 100.0


def _gravity_radius(lat_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal gravity at the surface (WGS84, Somigliana) and the effective Earth radius."""
    s2 = np.sin(np.radians(lat_deg)) ** 2
    g = 9.7803253359 * (1 + 0.00193185265241 * s2) / np.sqrt(1 - 0.00669437999013 * s2)
    a, b = 6378137.0, 6356752.3142
    re = 1.0 / np.sqrt(np.cos(np.radians(lat_deg)) ** 2 / a**2 + s2 / b**2)
    return g, re


def geometric_height(geopotential_h: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    """Geometric height (m) of a geopotential height ``Phi / g0`` (m) at a latitude."""
    g, re = _gravity_radius(np.asarray(lat_deg, np.float64))
    hgp = np.asarray(geopotential_h, np.float64)
    return hgp * re / (g / G0 * re - hgp)


def geopotential_height(h: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    """Inverse of :func:`geometric_height`."""
    g, re = _gravity_radius(np.asarray(lat_deg, np.float64))
    h = np.asarray(h, np.float64)
    return g / G0 * re * h / (re + h)


def vapour_pressure_q(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Water vapour pressure (Pa) from specific humidity (kg/kg) and pressure (Pa)."""
    q = np.clip(np.asarray(q, np.float64), 0.0, None)
    return q * p / (_EPS + (1 - _EPS) * q)


def vapour_pressure_rh(rh_percent: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Water vapour pressure (Pa) from relative humidity (%) and temperature (K).

    Saturation over water above 0 C, over ice below -23 C, mixed in between (as the
    ECMWF IFS does); Magnus-Tetens coefficients of the IFS documentation.
    """
    t = np.asarray(t, np.float64)
    tc = t - 273.16
    ew = 611.21 * np.exp(17.502 * tc / (t - 32.19))
    ei = 611.21 * np.exp(22.587 * tc / (t + 0.7))
    a = np.clip(((t - 250.16) / (273.16 - 250.16)) ** 2, 0.0, 1.0)
    a = np.where(t >= 273.16, 1.0, np.where(t <= 250.16, 0.0, a))
    es = a * ew + (1 - a) * ei
    return np.clip(np.asarray(rh_percent, np.float64), 0.0, 110.0) / 100.0 * es


def saastamoinen_zhd(p_pa: np.ndarray, lat_deg: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Saastamoinen zenith hydrostatic delay (m) from surface pressure (Pa)."""
    gm = 9.784 * (1 - 0.00266 * np.cos(2 * np.radians(lat_deg)) - 0.00028 * np.asarray(h)
                  / 1000.0)
    return 1e-6 * K1 * RD * np.asarray(p_pa) / gm


def delay_profiles(levels_pa: np.ndarray, geopotential: np.ndarray, temperature: np.ndarray,
                   vapour: np.ndarray, lat_deg: np.ndarray,
                   heights: np.ndarray = TABLE_HEIGHTS) -> tuple[np.ndarray, np.ndarray]:
    """Hydrostatic and wet zenith delays (m) of every model column at ``heights``.

    Parameters
    ----------
    levels_pa
        (L,) pressure levels in Pa (any order).
    geopotential, temperature, vapour
        (L, ny, nx) geopotential (m^2/s^2), temperature (K) and water vapour pressure
        (Pa) of each column.
    lat_deg
        (ny,) latitude of each row of columns.
    heights
        Increasing heights (m) of the table.

    Returns
    -------
    tuple
        ``(hydrostatic, wet)``, each (ny, nx, len(heights)).

    """
    p = np.asarray(levels_pa, np.float64)
    z = np.asarray(geopotential, np.float64)
    t = np.asarray(temperature, np.float64)
    e = np.asarray(vapour, np.float64)
    if p.ndim != 1 or z.ndim != 3 or z.shape != t.shape or z.shape != e.shape \
            or z.shape[0] != p.size:
        raise ValueError("levels (L,) and geopotential, temperature, vapour (L, ny, nx) "
                         "must agree")
    if p.size < 3:
        raise ValueError("at least 3 pressure levels are needed")
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(t)) and np.all(np.isfinite(e))):
        raise ValueError("the weather model has non-finite values")
    if np.any(t <= 100) or np.any(p <= 0):
        raise ValueError("temperatures (K) and pressures (Pa) must be positive")
    heights = np.asarray(heights, np.float64)
    if heights.ndim != 1 or heights.size < 2 or np.any(np.diff(heights) <= 0):
        raise ValueError("heights must increase")
    lat = np.asarray(lat_deg, np.float64)
    if lat.shape != (z.shape[1],):
        raise ValueError("one latitude per row of columns")
    order = np.argsort(-p)  # from the surface up
    p, z, t, e = p[order], z[order], t[order], e[order]
    ny, nx = z.shape[1:]
    hgt = geometric_height(z / G0, lat[None, :, None])  # (L, ny, nx)
    top = float(hgt.max())
    fine = np.concatenate([heights, np.arange(heights[-1] + _TOP_STEP, top + _TOP_STEP,
                                              _TOP_STEP)])
    hyd = np.empty((ny, nx, heights.size))
    wet = np.empty((ny, nx, heights.size))
    logp, loge = np.log(p), np.log(np.maximum(e, 1e-6))
    for r in range(ny):
        gm = 9.784 * (1 - 0.00266 * np.cos(2 * np.radians(lat[r])) - 0.00028 * heights / 1e3)
        for c in range(nx):
            h = hgt[:, r, c]
            if np.any(np.diff(h) <= 0):
                raise ValueError("geopotential must grow as pressure falls")
            pf = np.exp(_interp_extrap(fine, h, logp))
            tf = _interp_extrap(fine, h, t[:, r, c])
            ef = np.exp(_interp_extrap(fine, h, loge[:, r, c]))
            above = fine > h[-1]
            tf[above] = t[-1, r, c]
            ef[above] = 0.0
            tf = np.maximum(tf, 150.0)
            nw = _K2P * ef / tf + K3 * ef / (tf * tf)
            # cumulative integral from the top down
            seg = 0.5 * (nw[1:] + nw[:-1]) * np.diff(fine)
            cum = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
            wet[r, c] = 1e-6 * cum[:heights.size]
            hyd[r, c] = 1e-6 * K1 * RD * pf[:heights.size] / gm
    return hyd, wet


def _interp_extrap(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Linear interpolation, extrapolated linearly below the first and above the last."""
    out = np.interp(x, xp, fp)
    lo = x < xp[0]
    if lo.any():
        s = (fp[1] - fp[0]) / (xp[1] - xp[0])
        out[lo] = fp[0] + s * (x[lo] - xp[0])
    hi = x > xp[-1]
    if hi.any():
        s = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
        out[hi] = fp[-1] + s * (x[hi] - xp[-1])
    return out


def interpolate_delay(table: np.ndarray, node_lat: np.ndarray, node_lon: np.ndarray,
                      lat: np.ndarray, lon: np.ndarray, h: np.ndarray,
                      heights: np.ndarray = TABLE_HEIGHTS) -> np.ndarray:
    """Delay (m) at pixels from a table ``(n_lat, n_lon, n_heights)`` on nodes.

    ``node_lat`` and ``node_lon`` are the (monotonic, evenly spaced or not) node
    coordinates; pixels outside the nodes are clamped to the border nodes; heights
    outside the table are extrapolated linearly from its last two heights.
    """
    table = np.asarray(table, np.float64)
    nla, nlo = np.asarray(node_lat, np.float64), np.asarray(node_lon, np.float64)
    if table.shape[:2] != (nla.size, nlo.size) or table.shape[2] != heights.size:
        raise ValueError("the table must be (n_lat, n_lon, n_heights)")
    lat, lon, h = (np.asarray(a, np.float64) for a in (lat, lon, h))
    if not (lat.shape == lon.shape == h.shape):
        raise ValueError("lat, lon and h must have one shape")

    def axis(nodes: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if nodes.size == 1:
            return np.zeros(v.shape, np.int64), np.zeros(v.shape)
        flip = nodes[0] > nodes[-1]
        ns = nodes[::-1] if flip else nodes
        i = np.clip(np.searchsorted(ns, v) - 1, 0, ns.size - 2)
        f = np.clip((v - ns[i]) / (ns[i + 1] - ns[i]), 0.0, 1.0)
        if flip:
            i, f = ns.size - 2 - i, 1.0 - f
        return i, f

    iy, fy = axis(nla, lat)
    ix, fx = axis(nlo, lon)
    iy1 = np.minimum(iy + 1, nla.size - 1)
    ix1 = np.minimum(ix + 1, nlo.size - 1)
    dh = heights[1] - heights[0]
    pos = (h - heights[0]) / dh
    k = np.clip(np.floor(pos).astype(np.int64), 0, heights.size - 2)
    fk = pos - k  # may fall outside [0, 1]: linear extrapolation

    def at(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return table[a, b, k] * (1 - fk) + table[a, b, k + 1] * fk

    return ((1 - fy) * ((1 - fx) * at(iy, ix) + fx * at(iy, ix1))
            + fy * ((1 - fx) * at(iy1, ix) + fx * at(iy1, ix1)))
