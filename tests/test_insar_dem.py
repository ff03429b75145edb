"""EGM2008 geoid heights (insar.dem): the grid nodes, the interpolation, DEM conversion."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from insar.dem import geoid_grid_path, geoid_undulation, load_dem, to_ellipsoid


def _node(row: int, col: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(f"netcdf:{geoid_grid_path()}:geoid_h") as ds:
            return float(ds.read(1, window=((row, row + 1), (col, col + 1)))[0, 0])


def test_grid_nodes_are_returned_exactly_and_known_values_hold():
    step = 2.5 / 60
    for row, col in ((1080, 2208), (2160, 0), (500, 7000)):
        lat, lon = 90 - row * step, col * step
        assert geoid_undulation(np.array([lon]), np.array([lat]))[0] == pytest.approx(
            _node(row, col), abs=1e-6)
    # published EGM2008 undulations: (0, 0) 17.23 m; poles -30.15 m / 14.90 m
    n = geoid_undulation(np.array([0.0, 0.0, 0.0]), np.array([0.0, -90.0, 90.0]))
    assert n == pytest.approx([17.23, -30.15, 14.90], abs=0.05)
    # no constant: tens of metres of variation across Europe, continuous at 0/360
    alps, gibraltar = geoid_undulation(np.array([6.0, -5.6]), np.array([45.3, 36.1]))
    assert 45 < alps < 55 and abs(alps - gibraltar) > 5
    e, w = geoid_undulation(np.array([1e-6, -1e-6]), np.array([51.5, 51.5]))
    assert abs(e - w) < 1e-3


def test_bilinear_between_nodes_and_dem_conversion(tmp_path):
    lon = np.linspace(5.0, 7.0, 41)
    lat = np.full_like(lon, 45.0 + 1.25 / 60)
    n = geoid_undulation(lon, lat)
    assert np.all(np.abs(np.diff(n)) < 0.5)  # smooth at 3 km steps
    # a geoid-referenced DEM (as the DEM provider writes) comes back ellipsoidal
    h = np.full((120, 150), 500.0, np.float32)
    tr = Affine(0.002, 0, 5.9, 0, -0.002, 45.5)
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=150, height=120, count=1,
                       dtype="float32", crs=CRS.from_epsg(4326), transform=tr) as ds:
        ds.write(h, 1)
        ds.update_tags(VERTICAL_DATUM="EGM2008")
    dem, flat = load_dem(path)
    assert not flat
    rows, cols = np.array([0, 60, 119]), np.array([0, 75, 149])
    lon_c, lat_c = 5.9 + (cols + 0.5) * 0.002, 45.5 - (rows + 0.5) * 0.002
    expected = 500.0 + geoid_undulation(lon_c, lat_c)
    assert dem.heights[rows, cols] == pytest.approx(expected, abs=0.01)
    # untagged heights are taken as ellipsoidal
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(VERTICAL_DATUM="ellipsoid")
    assert np.all(load_dem(path)[0].heights == 500.0)
    # the coarse-then-interpolated conversion equals node-by-node evaluation within 1 cm
    z = to_ellipsoid(np.zeros((300, 300)), 5.0, 46.0, 0.001, -0.001)
    direct = geoid_undulation(5.0 + np.arange(300) * 0.001, np.full(300, 46.0 - 0.150))
    assert z[150] == pytest.approx(direct, abs=0.01)
