"""Range-Doppler geometry kernels against naive references and round trips."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from gdmio.s1.orbit import Orbit
from kernels.geometry import DemGrid, ecef_to_llh, geo2rdr, llh_to_ecef, rdr2geo
from simulators.sar_safe import _Kepler
from tests.naive_tops import naive_geo2rdr, naive_orbit

KEPLER = _Kepler(6378137.0 + 693_000.0, np.radians(98.18), np.radians(-177.4),
                 np.pi - np.arcsin(np.sin(np.radians(45.3)) / np.sin(np.radians(98.18))))


@pytest.fixture(scope="module")
def poly():
    t = np.arange(-60.0, 61.0, 10.0)
    pos, vel = KEPLER.state(t)
    return Orbit(dt.datetime(2023, 1, 1), t, pos, vel, "kepler").polynomial(-20, 20)


def test_llh_ecef_round_trip():
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-89, 89, 500), rng.uniform(-180, 180, 500)
    h = rng.uniform(-400, 9000, 500)
    la2, lo2, h2 = ecef_to_llh(llh_to_ecef(lat, lon, h))
    assert np.abs(la2 - lat).max() < 1e-9 and np.abs(h2 - h).max() < 1e-5
    assert np.abs(((lo2 - lon + 180) % 360) - 180).max() < 1e-9


def test_geo2rdr_matches_bracketing_solver(poly):
    rng = np.random.default_rng(1)
    t0 = rng.uniform(-10, 10, 8)
    r0 = rng.uniform(800e3, 880e3, 8)
    pts = rdr2geo(t0, r0, poly.coef, poly.t_mid, poly.t_scale, DemGrid.flat(300.0))
    t, r = geo2rdr(pts, poly.coef, poly.t_mid, poly.t_scale)
    for k in range(8):
        tn, rn = naive_geo2rdr(pts[k], poly.coef, poly.t_mid, poly.t_scale, -19, 19)
        assert abs(t[k] - tn) < 1e-8 and abs(r[k] - rn) < 1e-4
    # and they are the radar coordinates the points were made from
    assert np.abs(t - t0).max() < 1e-8, np.abs(t - t0).max()
    assert np.abs(r - r0).max() < 1e-4


def test_rdr2geo_lands_on_the_dem_at_zero_doppler_right_of_track(poly):
    lon = np.linspace(-10, 20, 301)
    lat = np.linspace(60, 30, 301)
    hh = 500 + 400 * np.sin(np.radians(lon[None, :] * 20)) * np.cos(np.radians(lat[:, None] * 25))
    dem = DemGrid(hh, lon[0], lat[0], lon[1] - lon[0], lat[1] - lat[0])
    t = np.linspace(-15, 15, 20)[:, None]
    r = np.linspace(800e3, 870e3, 15)[None, :]
    pts = rdr2geo(t, r, poly.coef, poly.t_mid, poly.t_scale, dem)
    la, lo, h = ecef_to_llh(pts)
    dz = np.abs(h - dem.sample(lo, la)).max()
    assert dz < 1e-3, f"{dz} m off the DEM"
    for i in (0, 10, 19):
        p, v = naive_orbit(poly.coef, poly.t_mid, poly.t_scale, float(t[i, 0]))
        look = pts[i] - p
        doppler = np.abs(look @ v / np.linalg.norm(look, axis=1) / np.linalg.norm(v)).max()
        assert doppler < 1e-9, doppler
        assert np.abs(np.linalg.norm(look, axis=1) - r[0]).max() < 1e-4
        right = np.cross(v, p)  # velocity x up = right
        assert np.all(look @ right > 0), "not right-looking"


def test_rdr2geo_lines_start_from_neighbours_safely(poly):
    """Along a line each point starts from its neighbour's solution. Without layover the
    result is the one each point gets alone (from the sphere guess); on terrain steeper
    than the look, every point is still on the DEM near its flat-Earth position, and no
    point fails that converges alone (alone, the sphere start can even land on a far
    root)."""
    t = np.repeat(np.linspace(-5, 5, 3), 600).reshape(3, 600)
    r = np.broadcast_to(np.linspace(800e3, 880e3, 600), (3, 600))
    flat = rdr2geo(t, r, poly.coef, poly.t_mid, poly.t_scale)
    la, lo, _ = ecef_to_llh(flat)
    step = 0.002  # ~150-200 m cells
    lon = np.arange(np.nanmin(lo) - 0.1, np.nanmax(lo) + 0.1, step)
    lat = np.arange(np.nanmax(la) + 0.1, np.nanmin(la) - 0.1, -step)
    relief = 1500 + 1200 * np.sin(np.radians(lon[None, :] * 900)) * np.cos(
        np.radians(lat[:, None] * 700))  # slopes up to ~25 %
    noise = np.random.default_rng(3).normal(0, 150, relief.shape)  # facets over 100 %

    def solve(hh):
        dem = DemGrid(hh, lon[0], lat[0], step, -step)
        lines = rdr2geo(t, r, poly.coef, poly.t_mid, poly.t_scale, dem)
        alone = np.array([[rdr2geo(t[i, j:j + 1], r[i, j:j + 1], poly.coef, poly.t_mid,
                                   poly.t_scale, dem)[0] for j in range(600)]
                          for i in range(3)])
        return dem, lines, alone

    _, lines, alone = solve(relief)
    assert np.isfinite(alone).all() and np.isfinite(lines).all()
    assert np.abs(lines - alone).max() < 0.01  # metres (tolerance 0.1 mm in height)

    dem, lines, alone = solve(relief + noise)
    ok = np.isfinite(lines).all(-1)
    assert not (np.isfinite(alone).all(-1) & ~ok).any(), "fails in its line, not alone"
    assert ok.mean() > 0.97
    la2, lo2, h2 = ecef_to_llh(lines[ok])
    assert np.abs(h2 - dem.sample(lo2, la2)).max() < 1e-3
    assert np.linalg.norm(lines[ok] - flat[ok], axis=-1).max() < 10e3


def test_bad_inputs_are_rejected(poly):
    with pytest.raises(ValueError, match="shape"):
        geo2rdr(np.zeros((2, 3)), np.zeros((2, 5)), 0.0, 1.0)
    with pytest.raises(ValueError, match="positive"):
        rdr2geo(np.zeros(2), np.array([-1.0, 1.0]), poly.coef, poly.t_mid, poly.t_scale)
    with pytest.raises(ValueError, match="non-finite"):
        DemGrid(np.array([[0.0, np.nan], [1, 2]]), 0, 0, 1, 1)
    out = rdr2geo(np.array([np.nan, 0.0]), np.array([850e3, 10.0]), poly.coef, poly.t_mid,
                  poly.t_scale)
    assert np.isnan(out).all(), "NaN time and a range shorter than the altitude give NaN"
