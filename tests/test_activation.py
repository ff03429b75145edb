"""CIEST² activations: scene selection on the local providers, overrides, refusals,
job launching on ``rapid``, bulletin maps, API and CLI (no worker; see
``test_activation_e2e.py`` for real workers and the browser check).

The scenario (:func:`scenario`): an earthquake on 2023-03-01T10:00Z near Grenoble, with
Sentinel-2 items (fake STAC), Sentinel-1 SLCs (fake CMR/ASF) and Pléiades deliveries
(DIMAP written on disk and registered) chosen so that the closest scene is not always
the right one (clouds, another orbit, another tile, partial footprint, another track,
a single Pléiades view).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

from gdm.cli import main
from gdmio.download import RetryPolicy
from gdmio.providers import SceneQuery, parse_aoi
from gdmio.providers.asf import AsfProvider
from gdmio.providers.pleiades import PleiadesProvider
from gdmio.providers.stac import StacProvider
from tests.fakeasf import running_asf
from tests.fakedimap import write_view
from tests.fakestac import running_stac, write_cog_tile
from workflows.activation import (
    ActivationError,
    ActivationRequest,
    ActivationStore,
    PairOverride,
    activate,
    bulletin_dir,
    refresh_bulletin,
    search_and_select,
    select_s2,
)
from workflows.activation.bulletin import dsm_difference, nice_length
from workflows.jobstore import JobStore, User
from workflows.settings import get_settings

EVENT = "2023-03-01T10:00:00Z"
AOI = "5.560,45.090,5.590,45.112"  # inside the 512-px COG tile of tests.fakestac
FAST = RetryPolicy(attempts=2, backoff=0.01, timeout=10)
OPERATOR = User("op", "operator", 1000)
BIG = (5.0, 44.8, 6.2, 45.6)


def _t(day: str, hour: int = 10) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, minute=30, tzinfo=dt.UTC)


# S2 items: (id, date, cloud, tile, footprint, shift of the post image in pixels)
S2_ITEMS = [
    ("S2B_MSIL2A_20230215T103000_N0509_R108_T31TGL_20230215T120000", "2023-02-15", 5.0,
     "31TGL", BIG),                                      # expected pre
    ("S2A_MSIL2A_20230225T103000_N0509_R108_T31TGL_20230225T120000", "2023-02-25", 80.0,
     "31TGL", BIG),                                      # closer, but cloudy
    ("S2A_MSIL2A_20230220T104000_N0509_R051_T31TGL_20230220T120000", "2023-02-20", 2.0,
     "31TGL", BIG),                                      # clear, other orbit, no post
    ("S2B_MSIL2A_20230302T103000_N0509_R108_T31TGL_20230302T120000", "2023-03-02", 0.0,
     "31TGL", (5.575, 44.8, 6.2, 45.6)),                 # half the AOI only
    ("S2A_MSIL2A_20230304T103000_N0509_R108_T31TGK_20230304T120000", "2023-03-04", 0.0,
     "31TGK", BIG),                                      # other tile, no pre
    ("S2B_MSIL2A_20230307T103000_N0509_R108_T31TGL_20230307T120000", "2023-03-07", 10.0,
     "31TGL", BIG),                                      # expected post
    ("S2A_MSIL2A_20230317T103000_N0509_R108_T31TGL_20230317T120000", "2023-03-17", 0.0,
     "31TGL", BIG),                                      # later than needed
]
S2_PRE, S2_POST = S2_ITEMS[0][0], S2_ITEMS[5][0]

# S1 SLCs: (date, direction, track)
S1_SLCS = [("2023-02-19", "ASCENDING", 88), ("2023-02-25", "ASCENDING", 88),
           ("2023-03-03", "ASCENDING", 88), ("2023-03-09", "ASCENDING", 88),
           ("2023-02-27", "DESCENDING", 139), ("2023-03-11", "DESCENDING", 139),
           ("2023-03-02", "ASCENDING", 37)]


@dataclass
class Scenario:
    stac: object
    asf: object
    index: Path
    s1: dict[str, str]
    pleiades: dict[str, list[str]]

    def providers(self, sensor: str):
        if sensor == "s2":
            return StacProvider(self.stac.url, policy=FAST, sleep=lambda s: None)
        if sensor == "s1":
            return AsfProvider(self.asf.url, policy=FAST, sleep=lambda s: None)
        return PleiadesProvider(self.index)

    def env(self) -> dict[str, str]:
        return {"GDM_STAC_URL": self.stac.url, "GDM_ASF_URL": self.asf.url,
                "GDM_PLEIADES_INDEX": str(self.index)}


@contextlib.contextmanager
def scenario(root: Path, *, tile_px: int = 512, shift_px: int = 1) -> Iterator[Scenario]:
    """Fake STAC + ASF servers and a Pléiades index holding the event's scenes.

    Sentinel-2 B04 assets are COG tiles over the AOI; the post-event images show the
    ground moved ``shift_px`` pixels (10 m each) east.
    """
    root.mkdir(parents=True, exist_ok=True)
    with running_stac() as stac, running_asf() as asf:
        for item_id, day, cloud, tile, fp in S2_ITEMS:
            shift = shift_px if day > EVENT[:10] else 0
            cog = root / f"{item_id}_B04.tif"
            write_cog_tile(cog, tile_px, seed=7, shift_east_px=shift)
            href = stac.serve_file(f"/tiles/{day.replace('-', '')}/{cog.name}",
                                   cog.read_bytes())
            item = stac.add_item(item_id, "sentinel-2-l2a", _t(day), mapping(box(*fp)), cloud,
                                 {"B04": {"href": href, "type": "image/tiff; application="
                                          "geotiff; profile=cloud-optimized",
                                          "eo:bands": [{"name": "B04"}], "gsd": 10}})
            item["properties"]["s2:mgrs_tile"] = tile
        s1 = {}
        for day, direction, track in S1_SLCS:
            name, _ = asf.add_slc(_t(day, 5), (4.8, 44.6, 6.4, 45.9), direction, track,
                                  size=2000)
            s1[f"{day}/{track}"] = name
        index = root / "pleiades.sqlite"
        prov = PleiadesProvider(index)
        fp = (5.50, 45.05, 5.65, 45.15)
        pleiades: dict[str, list[str]] = {"pre": [], "post": [], "lone": []}
        for key, when in (("pre", _t("2023-02-10")), ("post", _t("2023-03-05"))):
            for k, (view, inc, along) in enumerate((("F", 12.0, -9.5), ("B", 13.5, 10.5))):
                name = f"PHR1A_{key.upper()}_{view}"
                write_view(root / "phr" / key / view, name, when + dt.timedelta(seconds=25 * k),
                           fp, inc, along)
                pleiades[key].append(f"DS_{name}")
            prov.register(root / "phr" / key)
        write_view(root / "phr" / "lone", "PHR1B_LONE", _t("2023-02-27"), fp, 15.0, 2.0, "1B")
        prov.register(root / "phr" / "lone")
        pleiades["lone"].append("DS_PHR1B_LONE")
        yield Scenario(stac, asf, index, s1, pleiades)


@pytest.fixture(scope="module")
def scn(tmp_path_factory):
    with scenario(tmp_path_factory.mktemp("scenes")) as s:
        yield s


@pytest.fixture
def home(tmp_path, monkeypatch, scn):
    for key in list(os.environ):
        if key.startswith("GDM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GDM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GDM_SCENE_CACHE", str(tmp_path / "cache"))
    for k, v in scn.env().items():
        monkeypatch.setenv(k, v)
    settings = get_settings()
    settings.ensure_dirs()
    return settings, JobStore(settings.database_url)


def _request(**kw) -> ActivationRequest:
    body = {"aoi": AOI, "event_date": EVENT, "hazard": "earthquake", **kw}
    return ActivationRequest.model_validate(body)


# ------------------------------------------------------------------ selection
def test_s2_selection_closest_clear_pair_same_tile_and_orbit(scn):
    sel = search_and_select(_request(sensors=["s2"]), providers=scn.providers)[0]
    assert sel.ok, sel.reason
    assert [s.id for s in sel.pre] == [S2_PRE] and [s.id for s in sel.post] == [S2_POST]
    assert sel.geometry == {"tile": "31TGL", "orbit": 108}
    span = (sel.post[0].datetime - sel.pre[0].datetime).days
    why = dict(sel.rejected)
    print(f"S2: {sel.found} scenes found, pair {sel.pre[0].datetime:%Y-%m-%d} -> "
          f"{sel.post[0].datetime:%Y-%m-%d} ({span} days), {len(why)} rejected: {why}")
    assert span == 20 and sel.found == len(S2_ITEMS)
    assert why[S2_ITEMS[1][0]] == "cloud cover 80% > 20%"
    assert "other" not in why[S2_ITEMS[2][0]] and "R051" in why[S2_ITEMS[2][0]]
    assert "covers only 50% of the AOI" in why[S2_ITEMS[3][0]]
    assert "tile 31TGK" in why[S2_ITEMS[4][0]]
    assert why[S2_ITEMS[6][0]] == "not the closest to the event"


def test_s2_cloud_limit_is_the_hazard_default_and_overridable(scn):
    lenient = search_and_select(_request(sensors=["s2"], max_cloud=90),
                                providers=scn.providers)[0]
    assert [s.id for s in lenient.pre] == [S2_ITEMS[1][0]]  # the cloudy, closer one
    volcano = ActivationRequest.model_validate({"aoi": AOI, "event_date": EVENT,
                                                "hazard": "volcano"}).effective()
    quake = _request().effective()
    print(f"defaults: earthquake {quake}, volcano {volcano}")
    assert quake["max_cloud"] == 20 and volcano["max_cloud"] == 30
    assert volcano["sensors"][0] == "s1" and quake["sensors"] == ["s2", "s1", "pleiades"]


def test_s1_selection_same_track_and_direction_closest_pair(scn):
    sel = search_and_select(_request(sensors=["s1"]), providers=scn.providers)[0]
    assert sel.ok, sel.reason
    assert [s.id for s in sel.pre] == [scn.s1["2023-02-25/88"]]
    assert [s.id for s in sel.post] == [scn.s1["2023-03-03/88"]]
    assert sel.geometry == {"track": 88, "direction": "ASCENDING"}
    days = (sel.post[0].datetime - sel.pre[0].datetime).days
    why = dict(sel.rejected)
    print(f"S1: pair on track 88 ascending, {days} days; rejected {why}")
    assert days == 6
    assert "track 139 descending" in why[scn.s1["2023-02-27/139"]]
    assert "track 37" in why[scn.s1["2023-03-02/37"]]


def test_pleiades_selection_stereo_acquisitions_around_the_event(scn):
    sel = search_and_select(_request(sensors=["pleiades"]), providers=scn.providers)[0]
    assert sel.ok, sel.reason
    assert sorted(s.id for s in sel.pre) == sorted(scn.pleiades["pre"])
    assert sorted(s.id for s in sel.post) == sorted(scn.pleiades["post"])
    why = dict(sel.rejected)
    print(f"Pléiades: {len(sel.pre)}+{len(sel.post)} views; rejected {why}")
    assert why["DS_PHR1B_LONE"].startswith("single view")


def test_date_only_event_refuses_scenes_of_that_day(scn):
    sel = search_and_select(_request(sensors=["s1"], event_date="2023-03-03"),
                            providers=scn.providers)[0]
    why = dict(sel.rejected)
    assert "event day 2023-03-03" in why[scn.s1["2023-03-03/88"]]
    # track 88 (02-25 -> 03-09) and track 139 (02-27 -> 03-11) both span 12 days now:
    # the tie goes to the pair whose pre-event scene is closer to the event
    assert [s.id for s in sel.pre] == [scn.s1["2023-02-27/139"]]
    assert [s.id for s in sel.post] == [scn.s1["2023-03-11/139"]]
    days = (sel.post[0].datetime - sel.pre[0].datetime).days
    print(f"date-only event: pair spans {days} days (event-day scene refused)")
    assert days == 12


def test_operator_override_and_bad_override(scn):
    over = {"s2": {"pre": S2_ITEMS[2][0], "post": S2_ITEMS[6][0]}}
    sel = search_and_select(_request(sensors=["s2"], overrides=over),
                            providers=scn.providers)[0]
    assert sel.override and [s.id for s in sel.pre] == [S2_ITEMS[2][0]]
    assert [s.id for s in sel.post] == [S2_ITEMS[6][0]]
    with pytest.raises(ActivationError) as err:
        search_and_select(_request(sensors=["s2"], overrides={"s2": {
            "pre": "S2X_NOPE", "post": S2_POST}}), providers=scn.providers)
    assert err.value.status == 400 and "S2X_NOPE" in err.value.message
    req = _request(sensors=["s2"])
    scenes = scn.providers("s2").search(SceneQuery(
        parse_aoi(AOI), req.event - dt.timedelta(days=90), req.event + dt.timedelta(days=30)))
    with pytest.raises(ActivationError) as err:
        select_s2(scenes, parse_aoi(AOI), req.event, max_cloud=20,
                  override=PairOverride(pre=[S2_POST], post=[S2_PRE]))
    assert err.value.status == 400
    assert f"{S2_POST} is not before the event" in err.value.message
    print(f"override: pre {sel.pre[0].id}; refused: {err.value.message}")


# ------------------------------------------------------------------ activation
def test_activation_launches_rapid_jobs_and_writes_the_bulletin(home, scn):
    settings, store = home
    act = activate({"aoi": AOI, "event_date": EVENT, "hazard": "earthquake",
                    "title": "Test quake"}, OPERATOR, store=store, settings=settings,
                   providers=scn.providers, enqueue=False)
    by_role = {j["role"]: j for j in act.jobs}
    opt = store.get(by_role["opt"]["job_id"])
    assert opt.queue == "rapid" and opt.process == "gdm-opt" and opt.owner == "op"
    images = opt.inputs["images"]
    assert [n[:11] for n in images] == ["S2_20230215", "S2_20230307"]
    uploads = settings.uploads_dir / "op"
    with rasterio.open(uploads / images[0]) as ds:
        shape = (ds.height, ds.width)
        assert ds.tags()["STAC_ITEM"] == S2_PRE
    assert 200 <= shape[0] <= 300 and 200 <= shape[1] <= 300  # AOI window, not the tile
    sar = store.get(by_role["sar"]["job_id"])  # the pair by area: ingested by the job
    assert sar.queue == "rapid" and sar.process == "gdm-sar"
    assert {k: sar.inputs["scenes"][k] for k in ("start", "relative_orbit")} == \
        {"start": "2023-02-25", "relative_orbit": 88}
    assert sar.inputs["scenes"]["end"] > "2023-02-25" and sar.inputs["neighbours"] == 1
    assert by_role["sar"]["scenes"]["pre"][0]["id"] == scn.s1["2023-02-25/88"]
    assert store.get(by_role["dsm-pre"]["job_id"]).queue == "rapid"
    folder = bulletin_dir(act.id, settings)
    html = (folder / "bulletin.html").read_text()
    pdf = (folder / "bulletin.pdf").read_bytes()
    print(f"activation {act.id}: jobs {[(j['role'], j['status']) for j in act.jobs]}; "
          f"window {shape}; bulletin {len(html)} B html, {len(pdf)} B pdf; "
          f"log {[(e['who'], e['action']) for e in act.log]}")
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    for text in (S2_PRE, S2_POST, scn.s1["2023-02-25/88"], "Test quake", "Activation log",
                 "preset=etq"):
        assert text in html, text
    actions = [(e["who"], e["action"]) for e in act.log]
    assert actions[0] == ("op", "activate") and ("op", "submit") in actions
    assert act.status == "running"


def test_cli_activation_with_asset_urls(home, scn):
    settings, store = home
    res = CliRunner().invoke(main, [
        "activate", "--aoi", AOI, "--event-date", EVENT, "--hazard", "landslide",
        "--s2-fetch", "url", "--s2-post", S2_ITEMS[6][0], "--s2-pre", S2_PRE, "--json"])
    assert res.exit_code == 0, res.output
    act = json.loads(res.output)
    opt = store.get(next(j["job_id"] for j in act["jobs"] if j["role"] == "opt"))
    print(f"CLI activation {act['id']} by {act['created_by']}: images {opt.inputs['images']}")
    assert act["created_by"] == "local" and opt.queue == "rapid"
    assert opt.inputs["preset"] == "slide"  # the landslide preset of GDM-OPT
    assert [u.startswith(scn.stac.url) for u in opt.inputs["images"]] == [True, True]
    assert "20230317" in opt.inputs["images"][1]  # the operator's post-event choice
    assert [s["sensor"] for s in act["selections"]] == ["s2", "pleiades"]  # landslide
    listed = CliRunner().invoke(main, ["activation", "list"])
    assert listed.exit_code == 0 and act["id"] in listed.output


def test_no_usable_scene_names_each_sensor_and_why(home, scn):
    settings, store = home
    with pytest.raises(ActivationError) as err:
        activate({"aoi": AOI, "event_date": "2023-03-01T10:00Z", "hazard": "landslide",
                  "max_cloud": 1, "pre_days": 10, "post_days": 3}, OPERATOR, store=store,
                 settings=settings, providers=scn.providers, enqueue=False)
    msg = err.value.message
    print(f"HTTP {err.value.status}: {msg}")
    assert err.value.status == 422
    assert "Sentinel-2: no usable scene before the event; no usable scene after" in msg
    assert "cloud cover 80% > 1%" in msg and "cloud cover 2% > 1%" in msg
    assert "covers only 50% of the AOI" in msg  # the only post-event scene
    assert "Pléiades: no stereo acquisition before the event" in msg
    act = ActivationStore(store).get(err.value.activation_id)
    assert act.status == "no usable scene" and act.log[-2]["action"] == "refused"


def test_non_operator_refused_by_api_and_cli(home, scn):
    settings, store = home
    _op, op_token = store.create_user("op", "operator")
    _bob, bob_token = store.create_user("bob", "user")
    from wps.app import create_app

    client = create_app(settings, store).test_client()
    body = {"aoi": AOI, "event_date": EVENT, "hazard": "earthquake", "sensors": ["s1"]}
    r_bob = client.post("/ogcapi/activations", json=body,
                        headers={"Authorization": f"Bearer {bob_token}"})
    r_anon = client.post("/ogcapi/activations", json=body)
    r_list = client.get("/ogcapi/activations", headers={"Authorization": f"Bearer {bob_token}"})
    r_page = client.get("/activations", headers={"Authorization": f"Bearer {bob_token}"})
    r_bad = client.post("/ogcapi/activations", json={**body, "hazard": "flood"},
                        headers={"Authorization": f"Bearer {op_token}"})
    r_ok = client.post("/ogcapi/activations", json=body,
                       headers={"Authorization": f"Bearer {op_token}"})
    runner = CliRunner()
    cli_bob = runner.invoke(main, ["activate", "--aoi", AOI, "--event-date", EVENT,
                                   "--hazard", "earthquake", "--token", bob_token])
    cli_none = runner.invoke(main, ["activate", "--aoi", AOI, "--event-date", EVENT,
                                    "--hazard", "volcano"])
    print(f"API: bob {r_bob.status_code}, anonymous {r_anon.status_code}, bob list "
          f"{r_list.status_code}, bob page {r_page.status_code}, bad hazard "
          f"{r_bad.status_code}, operator {r_ok.status_code}; CLI: bob exit "
          f"{cli_bob.exit_code}, no token exit {cli_none.exit_code}")
    assert r_bob.status_code == 403 and "operators" in r_bob.get_json()["detail"]
    assert r_anon.status_code == 401 and r_list.status_code == 403
    assert r_page.status_code == 403 and "operators" in r_page.get_data(as_text=True)
    assert r_bad.status_code == 400 and "hazard" in r_bad.get_json()["detail"]
    assert r_ok.status_code == 201, r_ok.get_data(as_text=True)
    aid = r_ok.get_json()["id"]
    assert r_ok.headers["Location"].endswith(f"/ogcapi/activations/{aid}")
    assert cli_bob.exit_code == 2 and "may not activate" in cli_bob.output
    assert cli_none.exit_code == 2 and "token" in cli_none.output
    assert ActivationStore(store).get(aid).created_by == "op"
    got = client.get(f"/ogcapi/activations/{aid}/bulletin",
                     headers={"Authorization": f"Bearer {op_token}"})
    assert got.status_code == 200 and scn.s1["2023-02-25/88"] in got.get_data(as_text=True)
    cli_show = runner.invoke(main, ["activation", "show", aid, "--json", "--token", op_token])
    assert cli_show.exit_code == 0 and json.loads(cli_show.output)["id"] == aid


# -------------------------------------------------------------------- bulletin
def _cog(path: Path, arr: np.ndarray, origin=(700000.0, 5000000.0), pixel=10.0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype="float32", crs="EPSG:32631", nodata=np.nan,
                       transform=from_origin(*origin, pixel, pixel)) as ds:
        ds.write(arr.astype("float32"), 1)
    return str(path)


def test_bulletin_draws_displacement_interferogram_and_dsm_difference(home):
    settings, store = home
    astore = ActivationStore(store)
    act = astore.create("op", _request(), "running")
    yy, xx = np.mgrid[:120, :160]
    jobs = []
    for role, process, files in (
            ("opt", "gdm-opt", {"east": np.where(xx > 80, 2.0, 0.0), "north": 0 * xx + 0.5}),
            ("sar", "gdm-sar", {"wrapped": np.angle(np.exp(1j * xx / 7.0))}),
            ("dsm-pre", "echo", {"dsm": 100.0 + 0 * xx}),
            ("dsm-post", "echo", {"dsm": np.where(yy > 60, 103.0, 100.0) + 0 * xx})):
        job = store.create_job("op", process, {}, "rapid")
        root = settings.products_dir / job.id
        outputs = {}
        for name, arr in files.items():
            rel = "products/interferograms/20230225_20230303/wrapped.tif" \
                if name == "wrapped" else f"products/{name}.tif"
            _cog(root / rel, arr)
            outputs[name] = rel
        store.claim(job.id, "w", 60)
        store.finish(job.id, outputs)
        scenes = {"pre": [{"id": f"{role}-a", "datetime": "2023-02-25T10:00:00Z",
                           "provider": "s1"}],
                  "post": [{"id": f"{role}-b", "datetime": "2023-03-03T10:00:00Z",
                            "provider": "s1"}]}
        jobs.append({"role": role, "sensor": "x", "process": process, "product": role,
                     "scenes": scenes, "parameters": {"k": 1}, "job_id": job.id,
                     "state": "submitted", "status": "accepted"})
    astore.update(act.id, jobs=jobs)
    done = refresh_bulletin(act.id, store=store, settings=settings)
    folder = bulletin_dir(act.id, settings)
    sizes = {}
    for name in ("map_displacement.png", "map_interferogram.png", "map_dsm_difference.png"):
        with rasterio.open(folder / name) as ds:
            sizes[name] = (ds.width, ds.height)
    diff, _, _ = dsm_difference(Path(settings.products_dir / jobs[2]["job_id"] /
                                     "products/dsm.tif"),
                                Path(settings.products_dir / jobs[3]["job_id"] /
                                     "products/dsm.tif"))
    html = (folder / "bulletin.html").read_text()
    print(f"maps {sizes}; DSM difference mean {np.nanmean(diff):.3f} m, max "
          f"{np.nanmax(diff):.2f} m; status {done.status}; html {len(html)} B")
    assert all(w >= 500 and h >= 400 for w, h in sizes.values())
    assert html.count('src="data:image/png;base64,') == 3
    assert np.nanmax(diff) == pytest.approx(3.0, abs=1e-3)
    assert np.nanmean(diff) == pytest.approx(3.0 * 59 / 120, abs=0.05)
    assert done.status == "complete"
    assert [e["action"] for e in done.log].count("job successful") == 4
    assert nice_length(1600.0) == 200.0 and nice_length(37_000.0) == 5000.0
    from workflows.activation.tasks import refresh_for_job

    other = store.create_job("op", "echo", {"message": "x"}, "batch")
    assert refresh_for_job(jobs[0]["job_id"], settings) == act.id
    assert refresh_for_job(other.id, settings) is None


def test_slcs_must_hold_the_selected_dates(home, scn):
    settings, store = home
    body = {"aoi": AOI, "event_date": EVENT, "hazard": "volcano", "sensors": ["s1"]}
    with pytest.raises(ActivationError) as err:
        activate({**body, "slcs": ["slc_20230225.tif", "slc_20230309.tif"]}, OPERATOR,
                 store=store, settings=settings, providers=scn.providers, enqueue=False)
    print(f"HTTP {err.value.status}: {err.value.message}")
    assert err.value.status == 400 and "2023-03-03" in err.value.message
    act = activate({**body, "slcs": ["slc_20230225.tif", "slc_20230303.tif"]}, OPERATOR,
                   store=store, settings=settings, providers=scn.providers, enqueue=False)
    sar = store.get(act.jobs[0]["job_id"])
    assert sar.process == "gdm-sar" and sar.queue == "rapid"
    assert sar.inputs["slcs"] == ["slc_20230225.tif", "slc_20230303.tif"]
    assert sar.inputs["neighbours"] == 1 and sar.inputs["dem_error"] is False


def test_pleiades_pairs_become_dsm_jobs(home, scn):
    settings, store = home
    act = activate({"aoi": AOI, "event_date": EVENT, "hazard": "landslide",
                    "sensors": ["pleiades"]}, OPERATOR, store=store, settings=settings,
                   providers=scn.providers, enqueue=False)
    by_role = {j["role"]: store.get(j["job_id"]) for j in act.jobs}
    names = {r: j.inputs["images"] for r, j in by_role.items()}
    print(f"DSM jobs: {names}")
    assert sorted(by_role) == ["dsm-post", "dsm-pre"]
    assert all(j.queue == "rapid" and j.process == "dsm-opt" for j in by_role.values())
    assert [n[:12] for n in names["dsm-pre"]] == ["PHR_20230210"] * 2
    assert [n[:12] for n in names["dsm-post"]] == ["PHR_20230305"] * 2
    for n in names["dsm-pre"] + names["dsm-post"]:
        with rasterio.open(settings.uploads_dir / "op" / n) as ds:
            assert ds.rpcs is not None  # the RPC model travels with the image
