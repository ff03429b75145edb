"""The web form's pages and JSON helpers, through Flask's test client (no server, no browser)."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from flask import Flask
from PIL import Image
from rasterio.transform import from_origin

from workflows.jobstore import JobStore
from workflows.processes import PROCESSES
from workflows.settings import get_settings
from wps.context import AppState
from wps.webform import bp, pixel_series

DATES = ["2023-01-15", "2023-03-16", "2023-05-15"]


@pytest.fixture
def env(tmp_path):
    settings = get_settings({"GDM_HOME": str(tmp_path / "home")})
    settings.ensure_dirs()
    store = JobStore(settings.database_url)
    # The web form's blueprint alone: these tests do not depend on the other faces.
    app = Flask("wps.app")
    app.extensions["gdm"] = AppState(settings=settings, store=store)
    app.register_blueprint(bp)
    return app, settings, store


def _write_series(path: Path, cube: np.ndarray, dates=DATES, nodata=np.nan) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bands, rows, cols = cube.shape
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=bands,
                       dtype="float32", crs="EPSG:32631", nodata=nodata,
                       transform=from_origin(600000, 4900000, 80, 80)) as ds:
        ds.write(cube.astype(np.float32))
        for b, d in enumerate(dates, start=1):
            ds.set_band_description(b, d)


def _finished_job(store, settings, owner="local", outputs=None, cube=None, public=False):
    job = store.create_job(owner, "gdm-opt", {"images": ["a.tif", "b.tif", "c.tif"]},
                           "ondemand", public=public)
    root = settings.products_dir / job.id
    if cube is not None:
        _write_series(root / "products" / "timeseries_east.tif", cube)
        _write_series(root / "products" / "timeseries_north.tif", -2 * cube)
        (root / "products" / "east.png").write_bytes(_png(5, 4))
    store.claim(job.id, "w1", 60)
    outs = outputs if outputs is not None else {
        "timeseries_east": "products/timeseries_east.tif",
        "timeseries_north": "products/timeseries_north.tif",
        "quicklooks": ["products/east.png"],
    }
    return store.finish(job.id, outs, "w1")


def _png(w, h) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _cube(rows=6, cols=9, seed=3):
    rng = np.random.default_rng(seed)
    cube = rng.normal(0, 0.5, (3, rows, cols)).astype(np.float32)
    cube[0] = 0.0
    cube[:, 2, 5] = np.nan  # nodata at column 5, row 2
    return cube


# ------------------------------------------------------------------------------ pages
def test_index_lists_every_process_with_its_schema(env):
    app, _, _ = env
    resp = app.test_client().get("/")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    offered = set(PROCESSES) - {"echo"}  # echo: the APIs only, not the form
    for pid in offered:
        assert f'<option value="{pid}">' in html
    assert '<option value="echo">' not in html
    assert html.index('<option value="gdm-opt">') < html.index('<option value="gdm-sar">')
    data = re.search(r'<script type="application/json" id="processes-data">(.*?)</script>',
                     html, re.S)
    assert data is not None
    procs = {p["id"]: p for p in json.loads(data.group(1))}
    assert set(procs) == offered
    order = [i["name"] for i in procs["gdm-opt"]["inputs"]]
    assert order == list(PROCESSES["gdm-opt"].input_schemas())  # model order, not sorted
    assert order[:3] == ["images", "scenes", "preset"]
    opt = {i["name"]: i["schema"] for i in procs["gdm-opt"]["inputs"]}
    assert opt["images"]["anyOf"][0]["minItems"] == 2 and opt["images"]["x-required"] is False
    assert opt["scenes"]["x-scene-search"] == "s2" and opt["scenes"]["x-required"] is False
    assert opt["preset"]["enum"] == ["slide", "etq", "ice"]
    assert "local mode" in html  # no accounts: no login box
    # Everything the page loads comes from the app itself (no CDN).
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not src.startswith(("http://", "https://", "//")), src


def test_static_assets_are_served(env):
    app, _, _ = env
    client = app.test_client()
    js = client.get("/assets/gdm.js")
    css = client.get("/assets/gdm.css")
    assert js.status_code == 200 and "javascript" in js.content_type
    assert css.status_code == 200 and "css" in css.content_type
    body = js.get_data(as_text=True)
    assert "/ogcapi/uploads" in body and "respond-async" in body and "/ogcapi/jobs" in body
    js.close()
    css.close()


def test_javascript_parses():
    node = Path(__import__("playwright").__file__).parent / "driver" / "node"
    if not node.exists():
        pytest.skip("no node binary in the playwright package")
    js = Path(__file__).parents[1] / "wps" / "static" / "gdm.js"
    proc = subprocess.run([str(node), "--check", str(js)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_login_box_once_accounts_exist(env):
    app, _, store = env
    _, token = store.create_user("ann", "user")
    client = app.test_client()
    html = client.get("/").get_data(as_text=True)
    assert 'id="login"' in html and "signed in" not in html
    client.set_cookie("gdm_token", "not-a-token")
    html = client.get("/").get_data(as_text=True)
    assert "the stored token is not valid" in html
    client.set_cookie("gdm_token", token)
    html = client.get("/").get_data(as_text=True)
    assert 'id="login"' not in html
    assert '<b id="user-name">ann</b> (user)' in html


def test_job_page_and_summary(env):
    app, settings, store = env
    job = _finished_job(store, settings, cube=_cube())
    client = app.test_client()
    page = client.get(f"/jobs/{job.id}")
    assert page.status_code == 200
    assert job.id in page.get_data(as_text=True)
    s = client.get(f"/api/jobs/{job.id}").get_json()
    assert s["status"] == "successful" and s["progress"] == 100
    hrefs = {f["name"]: f["href"] for f in s["files"]}
    assert hrefs == {
        "timeseries_east": f"/ogcapi/jobs/{job.id}/download/products/timeseries_east.tif",
        "timeseries_north": f"/ogcapi/jobs/{job.id}/download/products/timeseries_north.tif",
    }
    assert [q["href"] for q in s["quicklooks"]] == \
        [f"/ogcapi/jobs/{job.id}/download/products/east.png"]
    assert [t["name"] for t in s["timeseries"]] == ["timeseries_east", "timeseries_north"]


def test_literal_outputs_are_not_links(env):
    app, settings, store = env
    job = _finished_job(store, settings, outputs={"message": "hello / world.txt"})
    s = app.test_client().get(f"/api/jobs/{job.id}").get_json()
    assert s["files"] == [] and s["literals"] == {"message": "hello / world.txt"}
    assert s["timeseries"] == []


def test_unknown_job_is_404(env):
    app, _, _ = env
    client = app.test_client()
    assert client.get("/jobs/nope").status_code == 404
    r = client.get("/api/jobs/nope")
    assert r.status_code == 404 and "nope" in r.get_json()["error"]
    assert client.get("/api/jobs/nope/pixel?x=0.5&y=0.5").status_code == 404


def test_other_users_job_is_invisible(env):
    app, settings, store = env
    _, tok_a = store.create_user("ann", "user")
    _, tok_b = store.create_user("bob", "user")
    job = _finished_job(store, settings, owner="ann", cube=_cube())
    for token, code in ((tok_a, 200), (tok_b, 404), (None, 401)):
        client = app.test_client()
        if token:
            client.set_cookie("gdm_token", token)
        for url in (f"/jobs/{job.id}", f"/api/jobs/{job.id}",
                    f"/api/jobs/{job.id}/pixel?x=0.1&y=0.1", f"/api/jobs/{job.id}/map.png"):
            assert client.get(url).status_code == code, (url, token)
    # Bearer header works as well as the cookie.
    r = app.test_client().get(f"/api/jobs/{job.id}", headers={"Authorization": f"Bearer {tok_a}"})
    assert r.status_code == 200
    # A public job is readable by anyone.
    pub = _finished_job(store, settings, owner="ann", cube=_cube(), public=True)
    client = app.test_client()
    client.set_cookie("gdm_token", tok_b)
    assert client.get(f"/api/jobs/{pub.id}/pixel?x=0&y=0").status_code == 200
    # ... with a token, as on /ogcapi/jobs/ID: without one, 401 on every face
    anonymous = app.test_client()
    assert anonymous.get(f"/api/jobs/{pub.id}").status_code == 401
    assert anonymous.get(f"/jobs/{pub.id}").status_code == 401


# ------------------------------------------------------------------------ pixel values
def test_pixel_values_by_fraction_and_index(env):
    app, settings, store = env
    cube = _cube(rows=6, cols=9)
    job = _finished_job(store, settings, cube=cube)
    client = app.test_client()
    # Fraction (0.5, 0.25) of 9 x 6 -> column 4, row 1.
    d = client.get(f"/api/jobs/{job.id}/pixel?x=0.5&y=0.25").get_json()
    assert (d["col"], d["row"], d["width"], d["height"]) == (4, 1, 9, 6)
    assert d["dates"] == DATES
    east, north = d["series"]
    assert east["name"] == "timeseries_east" and north["name"] == "timeseries_north"
    np.testing.assert_allclose(east["values"], cube[:, 1, 4], rtol=0, atol=1e-7)
    np.testing.assert_allclose(north["values"], -2 * cube[:, 1, 4], rtol=0, atol=1e-7)
    assert east["units"] == "m"
    # Pixel centre coordinates on the 80 m grid.
    assert d["x"] == pytest.approx(600000 + 4.5 * 80)
    assert d["y"] == pytest.approx(4900000 - 1.5 * 80)
    assert d["crs"] == "EPSG:32631"
    # Pixel indices; the last pixel by fraction 1.0; nodata -> null.
    d = client.get(f"/api/jobs/{job.id}/pixel?x=8&y=5&unit=pixel&output=timeseries_east").get_json()
    assert [s["name"] for s in d["series"]] == ["timeseries_east"]
    np.testing.assert_allclose(d["series"][0]["values"], cube[:, 5, 8], atol=1e-7)
    d1 = client.get(f"/api/jobs/{job.id}/pixel?x=1&y=1").get_json()
    assert (d1["col"], d1["row"]) == (8, 5)
    d = client.get(f"/api/jobs/{job.id}/pixel?x=5&y=2&unit=pixel").get_json()
    assert d["series"][0]["values"] == [None, None, None]


@pytest.mark.parametrize("query, code, words", [
    ("x=0.5", 400, ["'y'"]),
    ("x=a&y=0.5", 400, ["numbers"]),
    ("x=1.5&y=0.5", 400, ["fractions"]),
    ("x=9&y=0&unit=pixel", 400, ["outside"]),
    ("x=1.5&y=0&unit=pixel", 400, ["outside"]),
    ("x=0&y=0&unit=metre", 400, ["unit"]),
    ("x=nan&y=0", 400, ["finite"]),
    ("x=0&y=0&output=east", 404, ["no time-series output 'east'"]),
])
def test_pixel_bad_requests(env, query, code, words):
    app, settings, store = env
    job = _finished_job(store, settings, cube=_cube())
    r = app.test_client().get(f"/api/jobs/{job.id}/pixel?{query}")
    assert r.status_code == code
    msg = r.get_json()["error"]
    for w in words:
        assert w in msg, msg


def test_pixel_refuses_paths_leaving_the_job(env):
    app, settings, store = env
    job = _finished_job(store, settings, outputs={"timeseries_east": "../other/ts.tif"})
    r = app.test_client().get(f"/api/jobs/{job.id}/pixel?x=0&y=0")
    assert r.status_code == 400 and "refused path" in r.get_json()["error"]


def test_pixel_on_job_without_time_series(env):
    app, settings, store = env
    job = store.create_job("local", "gdm-opt", {"images": ["a", "b"]}, "ondemand")
    r = app.test_client().get(f"/api/jobs/{job.id}/pixel?x=0&y=0")
    assert r.status_code == 404 and "accepted" in r.get_json()["error"]


def test_pixel_series_reads_dates_from_tags(tmp_path):
    path = tmp_path / "ts.tif"
    cube = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    _write_series(path, cube, dates=["", ""], nodata=-9999)
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(1, DATE="2020-02-03")
    d = pixel_series(path, 3, 2, unit="pixel")
    assert d["dates"] == ["2020-02-03", None]
    assert d["values"] == [float(cube[0, 2, 3]), float(cube[1, 2, 3])]


# ------------------------------------------------------------------------------- map
def test_map_png_is_the_raster_band(env):
    app, settings, store = env
    cube = _cube(rows=6, cols=9)
    job = _finished_job(store, settings, cube=cube)
    client = app.test_client()
    r = client.get(f"/api/jobs/{job.id}/map.png")
    assert r.status_code == 200 and r.content_type == "image/png"
    img = np.asarray(Image.open(io.BytesIO(r.data)).convert("RGBA"))
    assert img.shape == (6, 9, 4)
    assert tuple(img[2, 5, :3]) == (0xC8, 0xC8, 0xC8)  # nodata is grey
    last = cube[-1]
    hi = np.unravel_index(np.nanargmax(last), last.shape)
    lo = np.unravel_index(np.nanargmin(last), last.shape)
    assert img[hi][0] > img[hi][2]  # largest value is red (RdBu_r)
    assert img[lo][2] > img[lo][0]  # smallest is blue
    r1 = client.get(f"/api/jobs/{job.id}/map.png?band=1")
    flat = np.asarray(Image.open(io.BytesIO(r1.data)).convert("RGB"))
    finite = np.isfinite(cube[0])
    assert len({tuple(p) for p in flat[finite]}) == 1  # band 1 is all zero: one colour
    assert client.get(f"/api/jobs/{job.id}/map.png?band=4").status_code == 400
    assert client.get(f"/api/jobs/{job.id}/map.png?band=x").status_code == 400
    assert client.get(f"/api/jobs/{job.id}/map.png?output=nope").status_code == 404
