"""Jobs by area and dates: SceneRequest -> resolve_scenes -> local files; `gdm scenes`."""

import datetime as dt
import json

import pytest
import rasterio
from click.testing import CliRunner
from pydantic import ValidationError

from gdm.cli import main
from gdmcore import InputError
from gdmio.cache import SceneCache
from gdmio.download import RetryPolicy
from gdmio.providers.asf import AsfProvider
from gdmio.providers.resolve import SceneRequest, resolve_scenes
from gdmio.providers.stac import StacProvider
from gdmio.raster import date_from_name, open_info
from tests.fakeasf import running_asf
from tests.fakedimap import write_stereo_delivery
from tests.fakestac import TILE_ORIGIN, running_stac, tile_footprint, write_cog_tile

FAST = RetryPolicy(attempts=2, backoff=0.01, timeout=5)
SIZE = 1098
T = dt.datetime(2023, 4, 1, 10, 30, tzinfo=dt.UTC)
# ~2 km box inside the small tile (lon/lat)
AOI = "5.60,45.06,5.625,45.08"


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    return write_cog_tile(tmp_path_factory.mktemp("t") / "B04.tif", SIZE).read_bytes()


@pytest.fixture
def stac(tile):
    with running_stac() as fake:
        for day, cloud in [(0, 3.0), (10, 8.0), (20, 90.0)]:
            iid = f"S2A_31TGL_{T + dt.timedelta(days=day):%Y%m%d}_0_L2A"
            href = fake.serve_file(f"/d/{iid}/B04.tif", tile)
            fake.add_item(iid, "sentinel-2-l2a", T + dt.timedelta(days=day),
                          tile_footprint(SIZE), cloud,
                          {"red": {"href": href, "type": "image/tiff; profile=cloud-optimized",
                                   "eo:bands": [{"name": "red", "common_name": "red"}]}})
        yield fake


def test_tile_covers_the_test_aoi():
    from shapely.geometry import shape

    from gdmio.providers import parse_aoi
    assert shape(tile_footprint(SIZE)).contains(parse_aoi(AOI)), TILE_ORIGIN


def test_resolve_s2_gives_dated_band_windows_for_gdm_opt(stac, tmp_path):
    req = {"provider": "s2", "aoi": AOI, "start": "2023-03-30", "end": "2023-04-30",
           "max_cloud": 50, "bands": ["B04"]}
    progress = []
    paths = resolve_scenes(req, SceneCache(tmp_path), provider=StacProvider(
        stac.url, policy=FAST), progress=lambda f, m: progress.append(f))
    assert [date_from_name(p.name) for p in paths] == [dt.date(2023, 4, 1),
                                                       dt.date(2023, 4, 11)]
    info = open_info(paths[0])  # what gdm-opt reads
    assert info.date == dt.date(2023, 4, 1)
    with rasterio.open(paths[0]) as ds:
        assert 150 <= ds.width <= 300 and 150 <= ds.height <= 300  # ~2 km at 10 m
    assert progress[0] == 0 and progress[-1] == 1.0
    with pytest.raises(InputError, match=r"2 s2 scene\(s\) over the AOI .* 3 needed"):
        resolve_scenes(req, SceneCache(tmp_path), provider=StacProvider(stac.url, policy=FAST),
                       min_scenes=3)


def test_resolve_s1_and_pleiades(tmp_path):
    with running_asf() as asf:
        fp = (5.0, 44.5, 6.5, 45.8)
        names = [asf.add_slc(T + dt.timedelta(days=12 * i), fp)[0] for i in range(3)]
        paths = resolve_scenes(
            SceneRequest(provider="s1", aoi="POINT(5.7 45.2)", start="2023-04-01",
                         end="2023-04-30", flight_direction="ascending", relative_orbit=88),
            SceneCache(tmp_path / "c"), provider=AsfProvider(asf.url, policy=FAST))
        assert [p.name for p in paths] == [f"{n}.zip" for n in names]
    write_stereo_delivery(tmp_path / "dlv", T, (5.70, 45.10, 5.85, 45.22))
    cache = SceneCache(tmp_path / "c")
    runner = CliRunner()
    r = runner.invoke(main, ["scenes", "register", str(tmp_path / "dlv"), "--cache",
                             str(cache.root)])
    assert r.exit_code == 0, r.output
    dims = resolve_scenes({"provider": "pleiades", "aoi": "5.75,45.15,5.76,45.16",
                           "start": "2023-04-01", "end": "2023-04-01"}, cache, min_scenes=2)
    assert [p.name for p in dims] == ["DIM_PHR1A_P_F.XML", "DIM_PHR1A_P_B.XML"]


def test_scene_request_validation():
    with pytest.raises(ValidationError):
        SceneRequest(provider="s2", aoi=AOI, start="2023-01-01", end="2023-02-01", colour=1)
    with pytest.raises(ValidationError):
        SceneRequest(provider="s9", aoi=AOI, start="2023-01-01", end="2023-02-01")
    with pytest.raises(ValidationError):
        SceneRequest(provider="s2", aoi=AOI, start="2023-01-01", end="2023-02-01",
                     max_cloud=120)
    with pytest.raises(InputError, match="before start"):
        SceneRequest(provider="s2", aoi=AOI, start="2023-03-01", end="2023-02-01").query()
    with pytest.raises(InputError, match="AOI"):
        SceneRequest(provider="s2", aoi="POLYGON((0 0, 1", start="2023-01-01",
                     end="2023-02-01").query()
    with pytest.raises(InputError, match="bbox"):
        SceneRequest(provider="s2", aoi="6,45,5,46", start="2023-01-01",
                     end="2023-02-01").query()


def test_cli_search_and_fetch(stac, tmp_path, monkeypatch):
    monkeypatch.setenv("GDM_STAC_URL", stac.url)
    runner = CliRunner()
    args = ["--provider", "s2", "--aoi", AOI, "--start", "2023-03-30", "--end", "2023-04-30"]
    r = runner.invoke(main, ["scenes", "search", *args, "--max-cloud", "50"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "2 scene(s)"
    assert "S2A_31TGL_20230411_0_L2A" in r.output and "cloud   8.0 %" in r.output
    r = runner.invoke(main, ["scenes", "search", *args, "--json"])
    assert [s["id"][10:18] for s in json.loads(r.stdout)] == ["20230401", "20230411",
                                                              "20230421"]
    r = runner.invoke(main, ["scenes", "fetch", *args, "--max", "1", "--cache",
                             str(tmp_path / "c"), "--json"])
    assert r.exit_code == 0, r.output
    (path,) = json.loads(r.stdout)
    assert path.endswith("S2A_31TGL_20230421_0_L2A_B04.tif")  # --max 1: the most recent
    assert str(tmp_path / "c") in path


def test_cli_errors_exit_codes(stac, tmp_path, monkeypatch):
    monkeypatch.setenv("GDM_SCENE_CACHE", str(tmp_path / "c"))
    runner = CliRunner()
    base = ["scenes", "search", "--provider", "s2", "--url", stac.url, "--start", "2023-03-30",
            "--end", "2023-04-30"]
    r = runner.invoke(main, [*base, "--aoi", "not an aoi"])
    assert r.exit_code == 2 and "error: AOI" in r.stderr
    stac.search_faults[:] = [("status", 401)]
    r = runner.invoke(main, [*base, "--aoi", AOI])
    assert r.exit_code == 1
    assert r.stderr.strip() == ("error: Sentinel-2 search: not authorised (check the "
                                "credentials) (HTTP 401)")
