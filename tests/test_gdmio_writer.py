import datetime as dt

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from gdmio.cog import validate_cog
from gdmio.writer import ProductWriter

DATES = [dt.date(2020, 1, 1), dt.date(2020, 1, 13), dt.date(2020, 2, 6)]


def _write(folder, crs, transform, fail=False):
    rng = np.random.default_rng(0)
    series = rng.normal(size=(3, 40, 50)).astype(np.float32)
    series[0] = 0
    vel = rng.normal(size=(40, 50)).astype(np.float32)
    vel[3, 4] = np.nan
    with ProductWriter(folder, crs, transform, 50, 40, dates=DATES,
                       attrs={"title": "test series"}) as pw:
        ts = pw.layer("timeseries", "displacement", units="m", dates=True,
                      long_name="LOS displacement")
        v = pw.layer("velocity", "velocity", units="m/yr", long_name="LOS velocity")
        pw.layer("mask", None, dtype="uint8", nodata=None)  # COG only
        for r0 in (0, 16, 32):
            h = min(16, 40 - r0)
            w = Window(0, r0, 50, h)
            ts.write(series[:, r0:r0 + h], w)
            v.write(vel[r0:r0 + h], w)
            if fail and r0 == 16:
                raise RuntimeError("boom")
    return series, vel


@pytest.mark.parametrize("crs,transform", [
    ("EPSG:32631", Affine(30.0, 0, 500000.0, 0, -30.0, 4500000.0)),
    ("EPSG:4326", Affine(0.001, 0, 5.0, 0, -0.001, 45.0)),
])
def test_netcdf_reads_in_xarray_and_rioxarray(tmp_path, crs, transform):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    series, vel = _write(tmp_path, crs, transform)
    ds = xr.open_dataset(tmp_path / "timeseries.nc", decode_coords="all")
    try:
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert ds["displacement"].dims == ("time", "y", "x")
        assert ds["velocity"].dims == ("y", "x")
        np.testing.assert_array_equal(ds["displacement"].values, series)
        np.testing.assert_array_equal(ds["velocity"].values, vel)
        assert [np.datetime64(d, "ns") for d in DATES] == list(ds["time"].values)
        assert ds["displacement"].attrs["units"] == "m"
        assert ds["velocity"].rio.crs == rasterio.crs.CRS.from_user_input(crs)
        # pixel centres, north-up
        assert float(ds["x"][0]) == pytest.approx(transform.c + transform.a / 2)
        assert float(ds["y"][0]) == pytest.approx(transform.f + transform.e / 2)
        gt = ds["velocity"].rio.transform()
        np.testing.assert_allclose(gt[:6], transform[:6], rtol=1e-12)
    finally:
        ds.close()
    # the COGs carry the same numbers
    with rasterio.open(tmp_path / "timeseries.tif") as src:
        assert src.descriptions == tuple(d.isoformat() for d in DATES)
        np.testing.assert_array_equal(src.read(), series)
    assert validate_cog(tmp_path / "velocity.tif")[0]
    assert (tmp_path / "mask.tif").exists()


def test_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        _write(tmp_path, "EPSG:32631", Affine(30.0, 0, 500000.0, 0, -30.0, 4500000.0),
               fail=True)
    assert list(tmp_path.iterdir()) == []


def test_without_crs(tmp_path):
    xr = pytest.importorskip("xarray")
    _write(tmp_path, None, Affine.identity())
    with xr.open_dataset(tmp_path / "timeseries.nc") as ds:
        assert "grid_mapping" not in ds["velocity"].attrs
        assert ds["x"].values[0] == 0.5
