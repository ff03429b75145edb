"""Maps in headless Chromium: base tiles from a 127.0.0.1 tile server, product overlays cut
from the COGs, legend, value under the cursor, click-a-pixel series with its fit and CSV,
AOI drawing and scene footprints on the form, the echo process kept off the form.

Debian's Chromium (``make browser``) driven by the playwright package, as in
tests/test_browser.py; screenshots go to the test's tmp folder.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests
from PIL import Image
from rasterio.warp import transform as warp_transform

from simulators.opt import SimulateConfig, simulate
from tests.test_browser import STAC_AOI, chromium, stac  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiles():
    from tests.faketiles import running_tiles

    with running_tiles() as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiles, stac):  # noqa: F811 - fixture
    from tests.serverutil import running_server

    home = tmp_path_factory.mktemp("gdm-home")
    with running_server({"GDM_HOME": str(home), "GDM_STAC_URL": stac.url,
                         "GDM_BASEMAP_URL": tiles.template,
                         "GDM_BASEMAP_ATTRIBUTION": "test tiles"}) as base:
        yield base  # a str with .home and .env


@pytest.fixture(scope="module")
def series_job(server, tmp_path_factory):
    """A finished 3-date GDM-OPT job (a landslide), submitted through the OGC API."""
    root = tmp_path_factory.mktemp("series")
    sim = simulate(SimulateConfig(case="landslide", size=128, dates=3, seed=12,
                                  start_date=dt.date(2022, 6, 1), amplitude_px=3.0),
                   root / "sim")
    names = []
    for img in sim.images:
        with open(img, "rb") as fh:
            got = requests.post(f"{server}/ogcapi/uploads", files={"file": (img.name, fh)},
                                timeout=60)
        assert got.status_code in (200, 201), got.text
        names.append(got.json()["name"])
    resp = requests.post(f"{server}/ogcapi/processes/gdm-opt/execution",
                         json={"inputs": {"images": names}},
                         headers={"Prefer": "respond-async"}, timeout=60)
    assert resp.status_code == 201, resp.text
    job_id = resp.json()["jobID"]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 240:
        status = requests.get(f"{server}/ogcapi/jobs/{job_id}", timeout=30).json()["status"]
        if status in ("successful", "failed", "dismissed"):
            break
        time.sleep(1)
    info = requests.get(f"{server}/api/jobs/{job_id}", timeout=30).json()
    assert status == "successful", info["message"]
    return job_id, info, sim


def _download(server, info, name, dest: Path) -> Path:
    href = next(f["href"] for f in info["files"] if f["name"] == name)
    dest.write_bytes(requests.get(server + href, timeout=30).content)
    return dest


def _new_page(chromium, requests_seen):  # noqa: F811 - fixture
    page = chromium.new_page(viewport={"width": 1400, "height": 1200})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfinished", lambda req: requests_seen.append(
        (req.url, req.response().status if req.response() else None)))
    return page, errors


def test_job_page_map_tiles_overlay_legend_value_and_series(chromium, server, tiles,  # noqa: F811
                                                            series_job, tmp_path):
    job_id, info, sim = series_job
    seen: list[tuple[str, int | None]] = []
    page, errors = _new_page(chromium, seen)
    tiles.requests.clear()
    logs: list[str] = []
    page.on("console", lambda msg: logs.append(msg.text))
    page.goto(f"{server}/jobs/{job_id}")
    try:
        page.wait_for_selector("#job-map[data-ready=yes]", timeout=30_000)
    except Exception:
        page.screenshot(path=str(tmp_path / "debug.png"), full_page=True)
        raise AssertionError(f"{logs} {errors} {seen[-20:]}") from None
    try:
        page.wait_for_selector("#job-map[data-overlay='east:1'][data-basemap=loaded]",
                               timeout=30_000)
    except Exception:
        page.screenshot(path=str(tmp_path / "debug.png"), full_page=True)
        html = page.inner_html("#job-map")[:3000]
        raise AssertionError(f"{logs} {errors} {seen[-20:]} {html}") from None
    # Base tiles: from the 127.0.0.1 tile server of the settings, nothing from elsewhere
    assert len(tiles.requests) >= 4
    hosts = {u.split("/")[2] for u, _ in seen if u.startswith("http")}
    assert hosts <= {server.split("/")[2], tiles.url.split("/")[2]}, hosts
    overlay = [(u, s) for u, s in seen if f"/api/jobs/{job_id}/tiles/" in u]
    assert overlay and all(s == 200 for _, s in overlay), overlay
    layer = page.get_attribute("#job-map", "data-layer")
    assert layer == "east"
    # some overlay tile has coloured (opaque) pixels
    opaque = 0.0
    for url, _ in overlay:
        img = np.asarray(Image.open(io.BytesIO(requests.get(url, timeout=30).content))
                         .convert("RGBA"))
        opaque = max(opaque, float((img[..., 3] > 0).mean()))
    assert opaque > 0.2, (overlay[:3], requests.get(overlay[0][0], timeout=30).headers)
    # Legend: colour bar, limits and units of the layer
    layers = requests.get(f"{server}/api/jobs/{job_id}/layers", timeout=30).json()["layers"]
    east = next(lay for lay in layers if lay["name"] == "east")
    assert page.inner_text("#job-map-legend .legend-units") == "m"
    bar = page.get_attribute("#job-map-legend .legend-bar", "style")
    assert "linear-gradient" in bar and bar.count("rgb") + bar.count("#") >= 11
    lo = float(page.inner_text("#job-map-legend .legend-min"))
    hi = float(page.inner_text("#job-map-legend .legend-max"))
    assert lo == pytest.approx(east["vmin"], rel=0.02) and hi == pytest.approx(east["vmax"],
                                                                                 rel=0.02)
    assert hi == -lo and hi > 0
    # Value under the cursor, against the product at the same place
    east_tif = _download(server, info, "east", tmp_path / "east.tif")
    with rasterio.open(east_tif) as ds:
        data = ds.read(1)
        row, col = np.unravel_index(np.nanargmax(np.abs(data)), data.shape)
        x, y = ds.xy(row, col)
        lons, lats = warp_transform(ds.crs, "EPSG:4326", [x], [y])
    point = page.evaluate("([lat, lon]) => { const m = GDM.maps['job-map']; "
                          "const p = m.latLngToContainerPoint([lat, lon]); "
                          "const r = m.getContainer().getBoundingClientRect(); "
                          "return [r.left + p.x, r.top + p.y]; }", [lats[0], lons[0]])
    page.mouse.move(point[0], point[1])
    page.wait_for_function("() => document.querySelector('#job-map-value').dataset.value",
                           timeout=30_000)
    shown = json.loads(page.get_attribute("#job-map-value", "data-value"))
    with rasterio.open(east_tif) as ds:
        xs, ys = warp_transform("EPSG:4326", ds.crs, [shown["lon"]], [shown["lat"]])
        r2, c2 = ds.index(xs[0], ys[0])
        want = float(ds.read(1)[r2, c2])
    assert shown["value"] == pytest.approx(want, rel=1e-5)
    assert "m at" in page.inner_text("#job-map-value")
    page.screenshot(path=str(tmp_path / "job-map.png"), full_page=True)
    # Click: the pixel's series, its fit and the CSV
    page.mouse.click(point[0], point[1])
    page.wait_for_selector("#ts-plot svg.plot line.fit", timeout=30_000)
    shown = json.loads(page.get_attribute("#ts-plot svg.plot", "data-series"))
    assert len(shown["series"]) == 2 and all(len(s["values"]) == 3 for s in shown["series"])
    assert page.locator(".ts-velocity").count() == 2
    assert "fitted" in page.inner_text(".ts-velocity >> nth=0")
    csv_href = page.get_attribute("#ts-csv", "href")
    csv = requests.get(server + csv_href, timeout=30).text.strip().splitlines()
    rows = [ln.split(",") for ln in csv if not ln.startswith("#")]
    assert rows[0] == ["date", "timeseries_east (m)", "timeseries_north (m)"]
    assert [r[0] for r in rows[1:]] == [d.isoformat() for d in sim.dates]
    for k, s in enumerate(shown["series"]):
        assert [float(r[k + 1]) for r in rows[1:]] == pytest.approx(s["values"], rel=1e-6)
    page.screenshot(path=str(tmp_path / "job-map-series.png"), full_page=True)
    # Another layer and another date
    page.select_option("#job-map-layer", label=next(
        f"{lay['title']} ({lay['units']})" for lay in layers if lay["name"] == "timeseries_east"))
    page.wait_for_function("() => document.querySelector('#job-map').dataset.layer === "
                           "'timeseries_east'", timeout=10_000)
    assert page.is_visible("#job-map-band")
    page.select_option("#job-map-band", "2")
    page.wait_for_selector("#job-map[data-overlay='timeseries_east:2']", timeout=30_000)
    assert page.locator("#job-map .product-overlay img[src*='band=2']").count() > 0
    assert errors == []
    print(f"\njob map: {len(tiles.requests)} base tiles, {len(overlay)} overlay tiles; "
          f"screenshots in {tmp_path}")


def test_form_aoi_map_footprints_preset_and_no_echo(chromium, server, tiles, tmp_path):  # noqa: F811
    seen: list[tuple[str, int | None]] = []
    page, errors = _new_page(chromium, seen)
    page.goto(server + "/")
    options = page.eval_on_selector_all("#process option", "os => os.map(o => o.value)")
    assert "echo" not in options and options[0] == "gdm-opt"
    assert requests.get(f"{server}/ogcapi/processes/echo", timeout=30).status_code == 200
    # the GDM-OPT preset is a first-level choice, not among the optional parameters
    assert page.is_visible("[data-input=preset] select")
    assert page.locator("details.advanced [data-input=preset]").count() == 0
    widget = "#fields .scene-widget"
    page.wait_for_selector(f"{widget} .scene-map .basemap img.leaflet-tile-loaded",
                           timeout=30_000)
    # typed area -> drawn shape
    page.fill(f"{widget} .scene-aoi", STAC_AOI)
    page.dispatch_event(f"{widget} .scene-aoi", "change")
    page.wait_for_selector(f"{widget} path.aoi-shape", timeout=10_000)
    # drawn rectangle -> area text
    page.click(f"{widget} .leaflet-pm-icon-rectangle")
    box = page.query_selector(f"{widget} .scene-map").bounding_box()
    x0, y0 = box["x"] + 0.3 * box["width"], box["y"] + 0.3 * box["height"]
    x1, y1 = box["x"] + 0.7 * box["width"], box["y"] + 0.75 * box["height"]
    page.mouse.click(x0, y0)
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2)
    page.mouse.click(x1, y1)
    expect = page.evaluate("([a, b, c, d]) => { const m = document.querySelector("
                           "'.scene-map').aoi.map; const r = m.getContainer()"
                           ".getBoundingClientRect(); const p = m.containerPointToLatLng("
                           "[a - r.left, b - r.top]); const q = m.containerPointToLatLng("
                           "[c - r.left, d - r.top]); return [p.lng, q.lat, q.lng, p.lat]; }",
                           [x0, y0, x1, y1])
    page.wait_for_function(f"() => document.querySelector('{widget} .scene-aoi').value !== "
                           f"'{STAC_AOI}'", timeout=10_000)
    drawn = [float(v) for v in page.input_value(f"{widget} .scene-aoi").split(",")]
    span = expect[2] - expect[0]
    assert drawn == pytest.approx(expect, abs=0.02 * span), (drawn, expect)
    assert page.locator(f"{widget} path.aoi-shape").count() == 1
    # back to the archive's area: Find scenes puts the footprints on the map
    page.fill(f"{widget} .scene-aoi", STAC_AOI)
    page.dispatch_event(f"{widget} .scene-aoi", "change")
    page.fill(f"{widget} .scene-start", "2023-03-30")
    page.fill(f"{widget} .scene-end", "2023-04-30")
    page.click(f"{widget} .scene-preview")
    page.wait_for_selector(f"{widget} table.scenes tbody tr", timeout=30_000)
    n_rows = page.locator(f"{widget} table.scenes tbody tr").count()
    page.wait_for_function(f"() => document.querySelectorAll('{widget} "
                           f"path.scene-footprint').length === {n_rows}", timeout=10_000)
    assert n_rows == 3
    page.screenshot(path=str(tmp_path / "form-map.png"), full_page=True)
    assert errors == []


def test_campaign_and_activation_pages_have_maps(chromium, server, tiles, tmp_path):  # noqa: F811
    import subprocess
    import sys

    import yaml

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "map", "start": "2023-01-01", "end": "2023-12-31",
        "frames": [{"id": "F1", "track": 5}, {"id": "F2", "track": 6}],
        "simulation": {"dates": 6, "size": 48, "seed": 1},
        "network": {"mode": "nearest", "neighbours": 2}, "memory_limit": "1GB"}))
    res = subprocess.run([sys.executable, "-m", "gdm.cli", "campaign", "start", str(spec),
                          "--local"], env=server.env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    cid = re.search(r"campaign (\S+?):", res.stdout).group(1)
    seen: list[tuple[str, int | None]] = []
    page, errors = _new_page(chromium, seen)
    page.goto(f"{server}/campaigns/{cid}")
    page.wait_for_selector("#campaign-map[data-ready='2']", timeout=30_000)
    assert page.locator("#campaign-map path.campaign-frame").count() == 2
    assert page.locator("#campaign-map path.frame-done").count() == 2
    assert page.locator("#c-eta").count() == 0  # finished: no ETA
    assert "ETA" not in page.inner_text("#summary")
    page.screenshot(path=str(tmp_path / "campaign-map.png"), full_page=True)
    # the activation form: the AOI drawn on its map fills the area field
    page.goto(f"{server}/activations")
    page.wait_for_selector("#activation-aoi-map .basemap img.leaflet-tile-loaded",
                           timeout=30_000)
    page.click("#activation-aoi-map .leaflet-pm-icon-rectangle")
    box = page.query_selector("#activation-aoi-map").bounding_box()
    page.mouse.click(box["x"] + 0.35 * box["width"], box["y"] + 0.35 * box["height"])
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"])
    page.mouse.click(box["x"] + 0.65 * box["width"], box["y"] + 0.7 * box["height"])
    page.wait_for_function("() => document.getElementById('aoi').value.split(',').length "
                           "=== 4", timeout=10_000)
    w, s, e, n = (float(v) for v in page.input_value("#aoi").split(","))
    assert w < e and s < n
    page.screenshot(path=str(tmp_path / "activation-form-map.png"), full_page=True)
    assert errors == []
