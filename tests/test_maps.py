"""Map layers of job products (wps.maps) through Flask's test client: tiles cut from the
COGs by rio-tiler, limits, values under a point, pixel series by lon/lat with fits and CSV,
and the access rules of job files."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import rasterio
from flask import Flask
from matplotlib import colormaps
from PIL import Image
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform

from gdmio.cog import write_cog
from gdmio.quicklook import display_limits
from insar.products import layer as sar_layer
from workflows.jobstore import JobStore
from workflows.settings import get_settings
from wps.context import AppState
from wps.maps import bp as maps_bp
from wps.webform import bp as webform_bp
from wps.webform import velocity_fit

DATES = ["2023-01-15", "2023-03-16", "2023-05-15", "2023-07-14"]
T = from_origin(600_000, 4_900_000, 80, 80)  # UTM 31N, about 44.2 N 4.3 E


@pytest.fixture
def env(tmp_path):
    settings = get_settings({"GDM_HOME": str(tmp_path / "home")})
    settings.ensure_dirs()
    store = JobStore(settings.database_url)
    app = Flask("wps.app")
    app.extensions["gdm"] = AppState(settings=settings, store=store)
    app.register_blueprint(webform_bp)
    app.register_blueprint(maps_bp)
    return app, settings, store


def _sar_job(store, settings, owner="local", public=False, rows=40, cols=50):
    """A finished gdm-sar job: velocity (m/yr) with a bump, and a 4-date series."""
    job = store.create_job(owner, "gdm-sar", {"slcs": ["x"]}, "ondemand", public=public)
    root = settings.products_dir / job.id / "products"
    y, x = np.mgrid[0:rows, 0:cols]
    vel = (0.03 * np.exp(-((x - 30) ** 2 + (y - 15) ** 2) / 40.0)).astype(np.float32)
    vel[0:3, 0:3] = np.nan
    t = np.array([(np.datetime64(d) - np.datetime64(DATES[0])).astype(int) / 365.25
                  for d in DATES])
    series = (vel[None] * t[:, None, None]).astype(np.float32)
    series[2] += 0.002  # scatter about the line
    write_cog(root / "velocity.tif", vel, "EPSG:32631", T,
              tags=sar_layer("velocity").tags("20,10"),
              descriptions=sar_layer("velocity").descriptions())
    write_cog(root / "velocity_std.tif", np.full_like(vel, 0.0015), "EPSG:32631", T,
              tags=sar_layer("velocity_std").tags())
    write_cog(root / "timeseries.tif", series, "EPSG:32631", T,
              tags=sar_layer("timeseries").tags("20,10"), descriptions=DATES)
    store.claim(job.id, "w1", 60)
    return store.finish(job.id, {"velocity": "products/velocity.tif",
                                 "velocity_std": "products/velocity_std.tif",
                                 "timeseries": "products/timeseries.tif"}, "w1"), vel, series


def _tile_of(lon, lat, z):
    n = 2**z
    x = (lon + 180) / 360 * n
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int(x), int(y), (x % 1) * 256, (y % 1) * 256


def _lonlat(col, row):
    x, y = T * (col + 0.5, row + 0.5)
    lons, lats = warp_transform("EPSG:32631", "EPSG:4326", [x], [y])
    return lons[0], lats[0]


def test_layers_tiles_and_values_in_display_units(env):
    app, settings, store = env
    job, vel, series = _sar_job(store, settings)
    c = app.test_client()
    doc = c.get(f"/api/jobs/{job.id}/layers").get_json()
    by = {lay["name"]: lay for lay in doc["layers"]}
    assert set(by) == {"velocity", "velocity_std", "timeseries"}
    v = by["velocity"]
    assert v["units"] == "mm/yr" and v["scale"] == 1000 and v["signed"]
    assert v["cmap"] == "RdBu_r" and len(v["colors"]) == 11
    lo, hi = display_limits(vel * 1000.0, symmetric=True)
    assert (v["vmin"], v["vmax"]) == pytest.approx((lo, hi))
    assert v["vmax"] > 0.9 * 30  # the 30 mm/yr peak is inside the colour scale
    # bounds: the raster's corners in WGS84
    w, s = _lonlat(-0.5, 39.5)
    e, n = _lonlat(49.5, -0.5)
    assert v["bounds"] == pytest.approx([w, s, e, n], abs=2e-3)
    ts = by["timeseries"]
    assert ts["dates"] == DATES and ts["bands"] == 4 and ts["band"] == 4 and ts["units"] == "mm"

    # A tile at zoom 19 (~55 m): its colour at a point is that of the product's value there
    for col, row in ((30, 15), (10, 30), (45, 5)):
        lon, lat = _lonlat(col, row)
        tx, ty, px, py = _tile_of(lon, lat, 19)
        resp = c.get(f"/api/jobs/{job.id}/tiles/velocity/19/{tx}/{ty}.png")
        assert resp.status_code == 200 and resp.mimetype == "image/png"
        rgba = np.asarray(Image.open(io.BytesIO(resp.data)).convert("RGBA"))
        assert rgba.shape == (256, 256, 4)
        norm = (vel[row, col] * 1000 - v["vmin"]) / (v["vmax"] - v["vmin"])
        want = colormaps["RdBu_r"](np.clip(norm, 0, 1), bytes=True)[:3]
        got = rgba[int(py), int(px)]
        assert got[3] == 255 and np.abs(got[:3].astype(int) - want).max() <= 2, (got, want)
        val = c.get(f"/api/jobs/{job.id}/value/velocity?lon={lon}&lat={lat}").get_json()
        assert val["value"] == pytest.approx(vel[row, col] * 1000, rel=1e-5)
        assert val["units"] == "mm/yr"
    # nodata corner: transparent, and no value
    lon, lat = _lonlat(1, 1)
    tx, ty, px, py = _tile_of(lon, lat, 19)
    rgba = np.asarray(Image.open(io.BytesIO(
        c.get(f"/api/jobs/{job.id}/tiles/velocity/19/{tx}/{ty}.png").data)).convert("RGBA"))
    assert rgba[int(py), int(px), 3] == 0
    assert c.get(f"/api/jobs/{job.id}/value/velocity?lon={lon}&lat={lat}").get_json()[
        "value"] is None
    # far away: an empty tile, a null value
    empty = c.get(f"/api/jobs/{job.id}/tiles/velocity/5/0/0.png")
    assert empty.status_code == 200
    assert np.asarray(Image.open(io.BytesIO(empty.data)).convert("RGBA"))[..., 3].max() == 0
    # a date of the series
    lon, lat = _lonlat(30, 15)
    got = c.get(f"/api/jobs/{job.id}/value/timeseries?lon={lon}&lat={lat}&band=2").get_json()
    assert got["value"] == pytest.approx(series[1, 15, 30] * 1000, rel=1e-5)


@pytest.mark.parametrize("url, status", [
    ("/tiles/velocity/25/0/0.png", 400), ("/tiles/velocity/3/8/0.png", 400),
    ("/tiles/velocity/3/1/1.png?band=2", 400), ("/tiles/nothing/3/1/1.png", 404),
    ("/value/velocity?lon=500&lat=0", 400), ("/value/velocity?lon=x&lat=0", 400),
    ("/value/velocity?lat=0", 400), ("/value/timeseries?lon=0&lat=0&band=9", 400),
])
def test_bad_map_requests(env, url, status):
    app, settings, store = env
    job, _, _ = _sar_job(store, settings)
    resp = app.test_client().get(f"/api/jobs/{job.id}{url}")
    assert resp.status_code == status, resp.get_json()
    assert resp.get_json()["error"]


def test_map_routes_follow_job_access(env):
    app, settings, store = env
    _, ann = store.create_user("ann", "user")
    _, bob = store.create_user("bob", "user")
    private, _, _ = _sar_job(store, settings, owner="ann")
    public, _, _ = _sar_job(store, settings, owner="ann", public=True)
    c = app.test_client()
    # another user's private job is missing (404); without a token nothing is read (401)
    for token, job, status in ((ann, private, 200), (bob, private, 404), (None, private, 401),
                               (None, public, 401), (bob, public, 200)):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for url in ("/layers", "/tiles/velocity/10/520/370.png",
                    "/value/velocity?lon=4.3&lat=44.2", "/pixel?lon=4.3&lat=44.2"):
            got = c.get(f"/api/jobs/{job.id}{url}", headers=headers).status_code
            want = status if not (status == 200 and url.startswith("/pixel")) else 400
            assert got == want, (url, token == ann, job.public, got)


def test_pixel_by_lonlat_with_fit_product_velocity_and_csv(env):
    app, settings, store = env
    job, vel, series = _sar_job(store, settings)
    c = app.test_client()
    lon, lat = _lonlat(30, 15)
    doc = c.get(f"/api/jobs/{job.id}/pixel?lon={lon}&lat={lat}").get_json()
    assert (doc["col"], doc["row"]) == (30, 15)
    assert doc["lon"] == pytest.approx(lon, abs=1e-6) and doc["lat"] == pytest.approx(lat,
                                                                                    abs=1e-6)
    s = doc["series"][0]
    assert s["values"] == pytest.approx(series[:, 15, 30].tolist(), rel=1e-6)
    assert s["scale"] == 1000 and s["display_units"] == "mm" and s["units"] == "m"
    t = np.array([(np.datetime64(d) - np.datetime64(DATES[0])).astype(int) / 365.25
                  for d in DATES])
    slope, icpt = np.polyfit(t, series[:, 15, 30], 1)
    assert s["fit"]["velocity"] == pytest.approx(slope, rel=1e-6)
    assert s["fit"]["intercept"] == pytest.approx(icpt, abs=1e-9)
    resid = series[:, 15, 30] - (icpt + slope * t)
    sigma = math.sqrt(resid @ resid / 2 / np.sum((t - t.mean()) ** 2))
    assert s["fit"]["sigma"] == pytest.approx(sigma, rel=1e-5)
    assert s["product"]["velocity"] == pytest.approx(vel[15, 30], rel=1e-6)
    assert s["product"]["velocity_std"] == pytest.approx(0.0015, rel=1e-6)
    # the same pixel by fractions
    frac = c.get(f"/api/jobs/{job.id}/pixel?x={30.5 / 50}&y={15.5 / 40}").get_json()
    assert frac["series"][0]["values"] == s["values"]
    # CSV: header lines, one row per date
    csv = c.get(doc["csv"])
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    lines = csv.get_data(as_text=True).strip().splitlines()
    assert lines[0].startswith(f"# job {job.id}; pixel lon")
    assert any("fitted velocity" in ln and "m/yr" in ln for ln in lines)
    rows = [ln.split(",") for ln in lines if not ln.startswith("#")]
    assert rows[0] == ["date", "timeseries (m)"]
    assert [r[0] for r in rows[1:]] == DATES
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(series[:, 15, 30], rel=1e-5)
    # outside the product
    assert c.get(f"/api/jobs/{job.id}/pixel?lon=10&lat=10").status_code == 400


def test_velocity_fit_edge_cases():
    assert velocity_fit(["2023-01-01"], [1.0])["velocity"] is None
    two = velocity_fit(["2023-01-01", "2024-01-01"], [0.0, 0.5])
    assert two["velocity"] == pytest.approx(0.5 * 365.25 / 365) and two["sigma"] is None
    gaps = velocity_fit(["2023-01-01", None, "2024-01-01", "2025-01-01"],
                        [0.0, 9.0, None, 2.0])
    assert gaps["velocity"] == pytest.approx(2.0 / (731 / 365.25))


def test_radar_geometry_rasters_are_not_layers(env, tmp_path):
    app, settings, store = env
    job = store.create_job("local", "gdm-sar", {"slcs": ["x"]}, "ondemand")
    root = settings.products_dir / job.id / "products"
    root.mkdir(parents=True)
    with rasterio.open(root / "velocity.tif", "w", driver="GTiff", width=8, height=8,
                       count=1, dtype="float32") as ds:
        ds.write(np.zeros((1, 8, 8), np.float32))
    store.claim(job.id, "w1", 60)
    store.finish(job.id, {"velocity": "products/velocity.tif"}, "w1")
    c = app.test_client()
    assert c.get(f"/api/jobs/{job.id}/layers").get_json()["layers"] == []
    resp = c.get(f"/api/jobs/{job.id}/tiles/velocity/3/1/1.png")
    assert resp.status_code == 400 and "map projection" in resp.get_json()["error"]
