"""kernels/rpc.py: round trip on the simulator's RPCs, agreement with GDAL, fitting."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import RPCTransformer

from kernels.rpc import Rpc, fit_rpc
from simulators.dsm import SimulateDsmConfig, simulate


@pytest.fixture(scope="module")
def sim_rpcs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rpcsim")
    sim = simulate(SimulateDsmConfig(out=root / "sim", size=96, views=3, seed=7))
    out = []
    for p in sim.images:
        with rasterio.open(p) as ds:
            out.append((ds.rpcs, ds.height, ds.width))
    return out, sim.height_range


def _points(rows, cols, hr, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, rows - 1, n), rng.uniform(0, cols - 1, n),
            rng.uniform(hr[0] - 20, hr[1] + 20, n))


def test_round_trip_is_exact_on_simulated_rpcs(sim_rpcs):
    rpcs, hr = sim_rpcs
    worst = 0.0
    for raw, rows, cols in rpcs:
        rpc = Rpc.from_rasterio(raw)
        r, c, h = _points(rows, cols, hr)
        lon, lat = rpc.localise(r, c, h)
        assert np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))
        r2, c2 = rpc.project(lon, lat, h)
        worst = max(worst, float(np.max(np.hypot(r2 - r, c2 - c))))
    print(f"\nRPC round trip (project o localise), worst of 3x2000 points: {worst:.2e} px")
    assert worst < 1e-3


def test_projection_agrees_with_gdal(sim_rpcs):
    rpcs, hr = sim_rpcs
    raw, rows, cols = rpcs[0]
    rpc = Rpc.from_rasterio(raw)
    r, c, h = _points(rows, cols, hr, n=200, seed=1)
    lon, lat = rpc.localise(r, c, h)
    with RPCTransformer(raw) as t:
        gr, gc = t.rowcol(lon, lat, zs=h, op=lambda v: v)
    # GDAL's pixel/line has the pixel corner at 0: ours + 0.5
    assert np.max(np.abs(np.asarray(gr) - 0.5 - r)) < 1e-6
    assert np.max(np.abs(np.asarray(gc) - 0.5 - c)) < 1e-6


def test_rasterio_conversion_round_trips(sim_rpcs):
    raw = sim_rpcs[0][0][0]
    rpc = Rpc.from_rasterio(raw)
    again = Rpc.from_rasterio(rpc.to_rasterio())
    assert np.array_equal(again.line_num, rpc.line_num)
    assert again.height_off == rpc.height_off
    lo, hi = rpc.height_range
    assert hi - lo == pytest.approx(2 * abs(rpc.height_scale))


def test_rational_fit_recovers_a_rational_camera():
    rng = np.random.default_rng(2)
    lon = rng.uniform(5.0, 5.1, 600)
    lat = rng.uniform(45.0, 45.1, 600)
    h = rng.uniform(0, 1000, 600)
    # a mildly perspective camera: rational in the coordinates
    den = 1 + 0.02 * (lon - 5.05) / 0.05 + 0.01 * (h - 500) / 500
    row = (2000 * (45.1 - lat) / 0.1 + 3 * (h - 500) / 500) / den
    col = (2000 * (lon - 5.0) / 0.1 - 2 * (h - 500) / 500) / den
    fitted = fit_rpc(lon, lat, h, row, col, rational=True)
    r2, c2 = fitted.project(lon, lat, h)
    assert np.max(np.hypot(r2 - row, c2 - col)) < 1e-3
    ll, la = fitted.localise(row, col, h)
    assert np.max(np.abs(ll - lon)) < 1e-8 and np.max(np.abs(la - lat)) < 1e-8


def test_bad_models_and_points():
    with pytest.raises(ValueError, match="20"):
        Rpc(0, 0, 0, 0, 0, 1, 1, 1, 1, 1, np.zeros(19), np.ones(20), np.zeros(20),
            np.ones(20))
    with pytest.raises(ValueError, match="non-zero"):
        Rpc(0, 0, 0, 0, 0, 0, 1, 1, 1, 1, np.zeros(20), np.ones(20), np.zeros(20),
            np.ones(20))
    with pytest.raises(ValueError, match="at least"):
        fit_rpc(*(np.zeros(10),) * 5)
    rpc = Rpc(0, 0, 0, 0, 0, 1, 1, 1, 1, 1, np.eye(20)[2], np.eye(20)[0], np.eye(20)[1],
              np.eye(20)[0])
    r, c = rpc.project([0.5, np.nan], [0.25, 0.0], [0.0, 0.0])
    assert r[0] == pytest.approx(0.25) and c[0] == pytest.approx(0.5)
    assert np.isnan(r[1]) and np.isnan(c[1])
    lon, lat = rpc.localise([0.25, np.nan], [0.5, 0.0], 0.0)
    assert lon[0] == pytest.approx(0.5) and lat[0] == pytest.approx(0.25)
    assert np.isnan(lon[1])
