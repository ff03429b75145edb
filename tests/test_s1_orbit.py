"""Orbits: Hermite interpolation against an analytic orbit, EOF files, orbit search."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from gdmcore import InputError
from gdmio.s1.orbit import Orbit, find_orbit_file, parse_eof, write_eof
from simulators.sar_safe import _Kepler

KEPLER = _Kepler(6378137.0 + 693_000.0, np.radians(98.18), np.radians(-177.4), 2.3)
EPOCH = dt.datetime(2023, 3, 2, 5, 26)


def _orbit(step=10.0):
    t = np.arange(-120.0, 121.0, step)
    pos, vel = KEPLER.state(t)
    return Orbit(EPOCH, t, pos, vel, "kepler")


def test_hermite_interpolation_matches_the_analytic_orbit():
    orbit = _orbit()
    tq = np.random.default_rng(0).uniform(-100, 100, 300)
    pos, vel = orbit.interpolate(tq)
    p_true, v_true = KEPLER.state(tq)
    ep = np.linalg.norm(pos - p_true, axis=1).max()
    ev = np.linalg.norm(vel - v_true, axis=1).max()
    assert ep < 1e-3, f"position error {ep * 1000:.3f} mm"
    assert ev < 1e-5, f"velocity error {ev:.2e} m/s"


def test_polynomial_fit_is_submillimetre_over_a_scene():
    poly = _orbit().polynomial(-30, 30)
    tq = np.linspace(-30, 30, 101)
    err = np.linalg.norm(poly.position(tq) - KEPLER.state(tq)[0], axis=1).max()
    assert poly.fit_error_m < 1e-3 and err < 2e-3, (poly.fit_error_m, err)
    verr = np.linalg.norm(poly.velocity(tq) - KEPLER.state(tq)[1], axis=1).max()
    assert verr < 1e-4, verr


def test_eof_round_trip_and_search(tmp_path):
    orbit = _orbit()
    times = [EPOCH + dt.timedelta(seconds=float(s)) for s in orbit.t]
    name = "S1A_OPER_AUX_{}_OPOD_{}_V20230302T030000_20230302T080000.EOF"
    old = write_eof(tmp_path / name.format("POEORB", "20230320T000000"), times, orbit.pos,
                    orbit.vel)
    new = write_eof(tmp_path / name.format("POEORB", "20230322T000000"), times, orbit.pos,
                    orbit.vel)
    write_eof(tmp_path / name.format("RESORB", "20230303T000000"), times, orbit.pos, orbit.vel,
              kind="RESORB")
    start, stop = EPOCH, EPOCH + dt.timedelta(seconds=30)
    assert find_orbit_file(tmp_path, "S1A", start, stop) == new
    assert old != new
    assert find_orbit_file(tmp_path, "S1B", start, stop) is None
    assert find_orbit_file(tmp_path, "S1A", start + dt.timedelta(days=1),
                           stop + dt.timedelta(days=1)) is None
    back = parse_eof(new).rebase(EPOCH)
    assert np.abs(back.t - orbit.t).max() < 1e-6
    assert np.abs(back.pos - orbit.pos).max() < 1e-5


def test_annotation_vectors_interpolate_to_centimetres():
    """Leave-one-out on the real S1B annotation orbit (10 s vectors, 20 s gap)."""
    from gdmio.s1.safe import open_safe
    from tests.datafiles import DATA

    safe = next((DATA / "s1_safe_xarray_sentinel").glob("S1B*.SAFE"))
    orbit = open_safe(safe).swath("IW1", "VV").orbit()
    errs = []
    for i in range(3, len(orbit.t) - 3):
        keep = np.arange(len(orbit.t)) != i
        o = Orbit(orbit.epoch, orbit.t[keep], orbit.pos[keep], orbit.vel[keep], "loo")
        p, _ = o.interpolate(orbit.t[i])
        errs.append(np.linalg.norm(p - orbit.pos[i]))
    assert max(errs) < 0.05, f"leave-one-out error {max(errs):.3f} m"


def test_bad_orbits_are_input_errors(tmp_path):
    orbit = _orbit()
    with pytest.raises(InputError, match="outside|covers"):
        orbit.interpolate(500.0)
    with pytest.raises(InputError, match="at least 4"):
        Orbit(EPOCH, orbit.t[:3], orbit.pos[:3], orbit.vel[:3], "short")
    with pytest.raises(InputError, match="increasing"):
        Orbit(EPOCH, orbit.t[::-1], orbit.pos, orbit.vel, "reversed")
    bad = tmp_path / "bad.EOF"
    bad.write_text("<Earth_Explorer_File><Data_Block/></Earth_Explorer_File>")
    with pytest.raises(InputError, match="no OSV"):
        parse_eof(bad)
    bad.write_text("not xml")
    with pytest.raises(InputError, match="cannot be read"):
        parse_eof(bad)
