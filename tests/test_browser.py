"""Headless Chromium drives the web form of a real server: upload, submit, follow, look.

Debian's Chromium (``make browser`` installs it) is driven by the playwright package with
``executable_path``; no browser is downloaded. The server is ``gdm serve`` started by
:func:`tests.serverutil.running_server` (embedded default: SQLite broker, one worker).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests
from rasterio.warp import transform as warp_transform

from simulators.opt import SimulateConfig, simulate
from workflows.jobstore import JobStore
from workflows.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
JOB_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run `make browser`")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    pair = simulate(SimulateConfig(case="landslide", size=128, dates=2, seed=11), root / "pair")
    series = simulate(SimulateConfig(case="landslide", size=128, dates=3, seed=12,
                                     start_date=dt.date(2022, 6, 1), amplitude_px=3.0),
                      root / "series")
    return pair, series


STAC_SIZE = 1098
STAC_AOI = "5.60,45.06,5.625,45.08"  # ~2 km inside the fake Sentinel-2 tile
STAC_T0 = dt.datetime(2023, 4, 1, 10, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def stac(tmp_path_factory):
    """A local STAC archive: one tile on three dates (the last too cloudy)."""
    from tests.fakestac import running_stac, tile_footprint, write_cog_tile

    root = tmp_path_factory.mktemp("stac")
    with running_stac() as fake:
        for day, cloud, shift in ((0, 4.0, 0), (10, 7.0, 1), (20, 95.0, 2)):
            iid = f"S2B_31TGL_{STAC_T0 + dt.timedelta(days=day):%Y%m%d}_0_L2A"
            data = write_cog_tile(root / f"{day}.tif", STAC_SIZE,
                                  shift_east_px=shift).read_bytes()
            href = fake.serve_file(f"/d/{iid}/B04.tif", data)
            fake.add_item(iid, "sentinel-2-l2a", STAC_T0 + dt.timedelta(days=day),
                          tile_footprint(STAC_SIZE), cloud,
                          {"red": {"href": href, "type": "image/tiff; profile=cloud-optimized",
                                   "eo:bands": [{"name": "red", "common_name": "red"}]}})
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory, stac):
    from tests.serverutil import running_server

    home = tmp_path_factory.mktemp("gdm-home")
    with running_server({"GDM_HOME": str(home), "GDM_STAC_URL": stac.url}) as base:
        yield base.rstrip("/")


def submit_through_form(page, base: str, images: list[Path]) -> str:
    """Fill the gdm-opt form with uploads, submit; returns the job id the page reports."""
    page.goto(base + "/")
    page.select_option("#process", "gdm-opt")
    page.set_input_files("#fields input[type=file]", [str(p) for p in images])
    return click_submit(page)


def click_submit(page) -> str:
    page.click("#submit")
    try:
        link = page.wait_for_selector("#submit-status a.job-link", timeout=60_000)
    except Exception:
        raise AssertionError("no job: " + page.inner_text("#submit-status")) from None
    job_id = link.get_attribute("href").rstrip("/").split("/")[-1]
    assert len(job_id) >= 8, job_id
    return job_id


def wait_in_list(page, job_id: str) -> str:
    """Wait until the job list shows the job final; returns its status."""
    row = f'#jobs tr[data-job="{job_id}"]'
    page.wait_for_function(
        """sel => { const r = document.querySelector(sel);
                    return r && ["successful", "failed", "dismissed"]
                        .includes(r.dataset.status); }""",
        arg=row, timeout=JOB_TIMEOUT_MS, polling=500)
    return page.get_attribute(row, "data-status")


def image_loaded(page, selector: str, timeout: float = 30_000) -> int:
    page.wait_for_function(
        "sel => { const i = document.querySelector(sel); return i && i.complete && "
        "i.naturalWidth > 0; }", arg=selector, timeout=timeout)
    return page.eval_on_selector(selector, "i => i.naturalWidth")


def test_submit_follow_and_open_quicklook(chromium, server, scenes, tmp_path):
    pair, _ = scenes
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    t0 = time.monotonic()
    job_id = submit_through_form(page, server, pair.images)
    status = wait_in_list(page, job_id)
    elapsed = time.monotonic() - t0
    info = requests.get(f"{server}/api/jobs/{job_id}", timeout=30).json()
    assert status == "successful", info["message"]
    row = f'#jobs tr[data-job="{job_id}"]'
    assert page.inner_text(f"{row} .badge") == "successful"
    # The list shows a thumbnail of the first quicklook, loaded.
    assert image_loaded(page, f"{row} img.thumb") > 100
    page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
    # The job page shows every quicklook, each loaded, and the downloads.
    page.click(f"{row} td a")
    page.wait_for_url(f"**/jobs/{job_id}")
    looks = page.query_selector_all("img.quicklook")
    assert len(looks) == len(info["quicklooks"]) >= 4
    for k in range(len(looks)):
        assert image_loaded(page, f"#quicklooks figure:nth-child({k + 1}) img") > 100
    names = page.eval_on_selector_all("#downloads a", "as => as.map(a => a.textContent)")
    assert {"east", "north", "magnitude", "score"} <= set(names)
    href = page.get_attribute("#downloads a", "href")
    got = requests.get(server + href, timeout=30)
    assert got.status_code == 200 and len(got.content) > 1000
    # a click downloads through a one-time link (the only credential read from a URL)
    with page.expect_download(timeout=30_000) as caught:
        page.click("#downloads a")
    download = caught.value
    assert "?key=" in download.url
    assert Path(download.path()).stat().st_size == len(got.content)
    assert requests.get(download.url, timeout=30).status_code == 403  # used: gone
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)
    assert errors == []
    print(f"2-date job through the form: {elapsed:.1f} s to successful")


def test_click_a_pixel_of_a_time_series(chromium, server, scenes, tmp_path):
    _, series = scenes
    page = chromium.new_page(viewport={"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    job_id = submit_through_form(page, server, series.images)
    status = wait_in_list(page, job_id)
    info = requests.get(f"{server}/api/jobs/{job_id}", timeout=30).json()
    assert status == "successful", info["message"]

    # The products, to know where to click and what the plot must show.
    files = {f["name"]: f["href"] for f in info["files"]}
    cubes, local = {}, {}
    for name in ("timeseries_east", "timeseries_north"):
        local[name] = tmp_path / f"{name}.tif"
        local[name].write_bytes(requests.get(server + files[name], timeout=30).content)
        with rasterio.open(local[name]) as ds:
            cubes[name] = ds.read(masked=True).filled(np.nan)
            assert list(ds.descriptions) == [d.isoformat() for d in series.dates]
    mag = np.hypot(cubes["timeseries_east"][-1], cubes["timeseries_north"][-1])
    row, col = np.unravel_index(np.nanargmax(mag), mag.shape)

    page.goto(f"{server}/jobs/{job_id}")
    page.wait_for_selector("#job-map[data-ready=yes]", timeout=30_000)
    assert page.is_visible("#ts-help")
    with rasterio.open(local["timeseries_east"]) as ds:
        x, y = ds.xy(row, col)
        lons, lats = warp_transform(ds.crs, "EPSG:4326", [x], [y])
    point = page.evaluate("([lat, lon]) => { const m = GDM.maps['job-map']; "
                          "const p = m.latLngToContainerPoint([lat, lon]); "
                          "const r = m.getContainer().getBoundingClientRect(); "
                          "return [r.left + p.x, r.top + p.y]; }", [lats[0], lons[0]])
    page.mouse.click(point[0], point[1])
    page.wait_for_selector("#ts-plot svg.plot path.line", timeout=30_000)
    shown = json.loads(page.get_attribute("#ts-plot svg.plot", "data-series"))
    assert (shown["col"], shown["row"]) == (col, row)
    assert len(page.query_selector_all("#ts-plot svg.plot circle")) == 2 * len(series.dates)
    page.screenshot(path=str(tmp_path / "timeseries.png"), full_page=True)
    assert errors == []

    for s in shown["series"]:
        # The plotted values are those of the product at the clicked pixel ...
        np.testing.assert_allclose(s["values"], cubes[s["name"]][:, row, col], rtol=0, atol=1e-6)
        assert s["dates"] == [d.isoformat() for d in series.dates]
        # ... and they follow the simulated truth there (first date is the reference).
        truth_path = series.truth_east if s["name"].endswith("east") else series.truth_north
        with rasterio.open(local[s["name"]]) as ds, rasterio.open(truth_path) as tr:
            trow, tcol = tr.index(*ds.xy(row, col))
            truth = tr.read()[:, trow, tcol]
        err = np.abs(np.asarray(s["values"]) - truth)
        print(f"{s['name']} at ({col}, {row}): shown {np.round(s['values'], 3)}, "
              f"truth {np.round(truth, 3)}, |error| max {err.max():.3f} m")
        assert s["values"][0] == pytest.approx(0.0, abs=1e-6)
        # 32-px correlation windows average the peaked landslide: measured 6 % low at
        # its crest (1.56 m of 24.5 m); a wrong pixel, component or sign is far off.
        assert np.all(err <= 0.10 * np.abs(truth) + 0.2)


def test_sign_in_with_a_token(chromium, scenes):
    from tests.serverutil import running_server

    with running_server() as base:
        store = JobStore(get_settings(base.env).database_url)
        _, token = store.create_user("ann", "user")
        page = chromium.new_page(viewport={"width": 1200, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        # Accounts exist: the job list is refused until the user signs in.
        page.wait_for_selector("#jobs-error:not([hidden])", timeout=30_000)
        page.fill("#token", token)
        page.click("#login button[type=submit]")
        page.wait_for_selector("#user-name", timeout=30_000)
        assert page.inner_text("#user-name") == "ann"
        assert "echo" not in page.eval_on_selector_all("#process option",
                                                       "os => os.map(o => o.value)")
        page.select_option("#process", "gdm-opt")
        page.set_input_files("#fields input[type=file]", [str(p) for p in scenes[0].images])
        job_id = click_submit(page)
        assert store.get(job_id).owner == "ann"  # the cookie carried the token
        assert wait_in_list(page, job_id) == "successful"
        page.click("#logout")
        page.wait_for_selector("#login", timeout=30_000)
        assert errors == []


def test_scene_search_preview_then_job_by_area(chromium, server, tmp_path):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/")
    page.select_option("#process", "gdm-opt")
    widget = "#fields .scene-widget"
    page.fill(f"{widget} .scene-aoi", STAC_AOI)
    page.fill(f"{widget} .scene-start", "2023-03-30")
    page.fill(f"{widget} .scene-end", "2023-04-30")
    page.fill(f"{widget} .scene-cloud", "20")
    page.click(f"{widget} .scene-preview")
    page.wait_for_selector(f"{widget} table.scenes tbody tr")
    rows = page.eval_on_selector_all(
        f"{widget} table.scenes tbody tr",
        "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    # the 95 %-cloud scene is filtered out; oldest first, with the cloud cover shown
    assert [r[0] for r in rows] == ["2023-04-01", "2023-04-11"], rows
    assert rows[0][1] == "S2B_31TGL_20230401_0_L2A" and rows[0][2] == "4 % cloud"
    assert page.inner_text(f"{widget} .scene-status") == "2 scene(s)"
    page.screenshot(path=str(tmp_path / "scene-preview.png"), full_page=True)
    # A bad area gets the server's message, not a stack trace.
    page.fill(f"{widget} .scene-aoi", "somewhere nice")
    page.click(f"{widget} .scene-preview")
    page.wait_for_function(
        "s => document.querySelector(s).textContent.includes('neither WKT')",
        arg=f"{widget} .scene-status", timeout=30_000)
    # The same request, submitted, runs gdm-opt on the archive's scenes.
    page.fill(f"{widget} .scene-aoi", STAC_AOI)
    job_id = click_submit(page)
    status = wait_in_list(page, job_id)
    info = requests.get(f"{server}/api/jobs/{job_id}", timeout=30).json()
    assert status == "successful", info["message"]
    href = next(f["href"] for f in info["files"] if f["name"] == "east")
    east = requests.get(server + href, timeout=30)
    assert east.status_code == 200
    path = tmp_path / "east.tif"
    path.write_bytes(east.content)
    with rasterio.open(path) as ds:
        median = float(np.ma.median(ds.read(1, masked=True)))
    assert abs(median - 10.0) < 0.5, median  # the tile moved 1 px (10 m) east
    assert errors == []
