import datetime as dt

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds
from rasterio.windows import from_bounds
from shapely.geometry import box

from gdmcore import InputError
from gdmio.cache import SceneCache
from gdmio.download import RemoteError, RetryPolicy
from gdmio.providers import SceneQuery, parse_date
from gdmio.providers.stac import StacProvider
from tests.fakestac import TILE_ORIGIN, running_stac, tile_footprint, write_cog_tile

FAST = RetryPolicy(attempts=3, backoff=0.01, timeout=10)
SIZE = 5490  # 10 m pixels: a 54.9 km tile (a real one is 10980 px; see the slow test)
T = dt.datetime(2023, 4, 1, 10, 30, tzinfo=dt.UTC)


def aoi_5km(size=SIZE):
    """A 5 km x 5 km square (in UTM) in the middle of the tile, as a lon/lat box."""
    x0, y0 = TILE_ORIGIN
    cx, cy = x0 + size * 10 / 2 + 1234.0, y0 - size * 10 / 2 - 777.0
    b = transform_bounds("EPSG:32631", "EPSG:4326", cx - 2500, cy - 2500, cx + 2500, cy + 2500)
    return box(*b)


@pytest.fixture(scope="session")
def tile_bytes(tmp_path_factory):
    path = write_cog_tile(tmp_path_factory.mktemp("tile") / "B04.tif", SIZE)
    return path.read_bytes(), path


def _cog_asset(url, name, common):
    return {"href": url, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"], "gsd": 10, "eo:bands": [{"name": name, "common_name": common}]}


@pytest.fixture
def stac(tile_bytes):
    data, _ = tile_bytes
    with running_stac() as fake:
        fp = tile_footprint(SIZE)
        for cloud, day in [(5.0, 0), (60.0, 10), (12.0, 20)]:
            iid = f"S2B_31TGL_{(T + dt.timedelta(days=day)):%Y%m%d}_0_L2A"
            assets = {
                # Earth Search v1 style: assets named by common name
                "red": _cog_asset(fake.serve_file(f"/data/{iid}/B04.tif", data), "red", "red"),
                "nir": _cog_asset(fake.serve_file(f"/data/{iid}/B08.tif", data), "nir", "nir"),
                "red-jp2": {"href": f"{fake.url}/data/{iid}/B04.jp2", "type": "image/jp2",
                            "eo:bands": [{"name": "red", "common_name": "red"}]},
                "thumbnail": {"href": f"{fake.url}/data/{iid}/thumb.jpg", "type": "image/jpeg"},
            }
            fake.add_item(iid, "sentinel-2-l2a", T + dt.timedelta(days=day), fp, cloud, assets)
        # An L1C item with CDSE-style band keys, and one far away.
        l1c = "S2B_MSIL1C_20230401T103021_N0509_R108_T31TGL_20230401T110000"
        fake.add_item(l1c, "sentinel-2-l1c", T, fp, 5.0, {
            "B04_10m": _cog_asset(fake.serve_file(f"/data/{l1c}/B04_10m.tif", data), "B04", "red"),
            "B04_60m": _cog_asset(f"{fake.url}/data/{l1c}/B04_60m.tif", "B04", "red")})
        fake.add_item("S2B_33UUP_20230401_0_L2A", "sentinel-2-l2a", T,
                      {"type": "Polygon", "coordinates": [[[14, 52], [15, 52], [15, 53],
                                                           [14, 53], [14, 52]]]}, 1.0, {})
        yield fake


def _query(**kw):
    base = dict(aoi=aoi_5km(), start=parse_date("2023-03-25"),
                end=parse_date("2023-04-30", end=True))
    base.update(kw)
    return SceneQuery(**base)


def _prov(fake, **kw):
    kw.setdefault("policy", FAST)
    kw.setdefault("sleep", lambda s: None)
    return StacProvider(fake.url, **kw)


def test_search_by_area_dates_cloud_and_level(stac):
    prov = _prov(stac)
    scenes = prov.search(_query())
    assert [s.id for s in scenes] == ["S2B_31TGL_20230401_0_L2A", "S2B_31TGL_20230411_0_L2A",
                                      "S2B_31TGL_20230421_0_L2A"]  # paged by 2: next link used
    assert len(stac.searches) == 2
    scenes = prov.search(_query(max_cloud=20))
    assert [s.properties["eo:cloud_cover"] for s in scenes] == [5.0, 12.0]
    assert stac.searches[-1]["query"] == {"eo:cloud_cover": {"lte": 20}}
    scenes = prov.search(_query(end=parse_date("2023-04-05", end=True)))
    assert [s.id for s in scenes] == ["S2B_31TGL_20230401_0_L2A"]
    assert scenes[0].datetime == T
    assert scenes[0].properties["bands"] == {"B04": "red", "B08": "nir"}
    (l1c,) = prov.search(_query(product="L1C"))
    assert l1c.properties["bands"] == {"B04": "B04_10m"}  # finest resolution wins


def test_bad_search_input(stac):
    with pytest.raises(InputError, match="level"):
        _prov(stac).search(_query(product="L3"))
    with pytest.raises(InputError, match="cloud"):
        _prov(stac).search(_query(max_cloud=150))


def test_aoi_window_read_fetches_under_10_percent_of_the_tile(stac, tile_bytes, tmp_path):
    data, local = tile_bytes
    prov = _prov(stac)
    scene = prov.search(_query())[0]
    stac.archive.reset_counts()
    (path,) = prov.fetch(scene, SceneCache(tmp_path), bands=["B04"], aoi=aoi_5km())
    sent = stac.archive.bytes_sent[f"/data/{scene.id}/B04.tif"]
    fraction = sent / len(data)
    print(f"\nS2 AOI read: {sent} B of {len(data)} B = {100 * fraction:.2f} % "
          f"({len(stac.archive.ranges)} range requests)")
    assert 0 < fraction < 0.10
    assert stac.archive.bytes_sent.get(f"/data/{scene.id}/B08.tif", 0) == 0  # band not asked
    # The window holds exactly the tile's pixels over the AOI.
    with rasterio.open(path) as out, rasterio.open(local) as ref:
        assert out.crs == ref.crs and 500 <= out.width <= 560 and 500 <= out.height <= 560
        win = from_bounds(*out.bounds, ref.transform).round_offsets().round_lengths()
        assert np.array_equal(out.read(1), ref.read(1, window=win))
        assert out.tags()["ACQUISITION_DATE"] == "2023-04-01"
    assert path.name == f"{scene.id}_B04.tif"
    # Cached: a second fetch reads nothing.
    stac.archive.reset_counts()
    assert prov.fetch(scene, SceneCache(tmp_path), bands=["red"], aoi=aoi_5km()) == [path]
    assert sum(stac.archive.bytes_sent.values()) == 0


def test_fetch_two_bands_and_whole_asset(stac, tile_bytes, tmp_path):
    prov = _prov(stac)
    scene = prov.search(_query())[0]
    paths = prov.fetch(scene, SceneCache(tmp_path), bands=["B04", "nir"], aoi=aoi_5km())
    assert [p.name for p in paths] == [f"{scene.id}_B04.tif", f"{scene.id}_B08.tif"]
    (whole,) = prov.fetch(scene, SceneCache(tmp_path), bands=["B08"])
    assert whole.stat().st_size == len(tile_bytes[0])
    with pytest.raises(InputError, match="no band B11"):
        prov.fetch(scene, SceneCache(tmp_path), bands=["B11"])


def test_aoi_outside_scene_is_input_error(stac, tmp_path):
    scene = _prov(stac).search(_query())[0]
    with pytest.raises(InputError, match="does not overlap"):
        _prov(stac).fetch(scene, SceneCache(tmp_path), aoi=box(5.0, 40.0, 5.05, 40.05))


def test_search_errors_retry_then_fail_clearly(stac):
    waits = []
    prov = _prov(stac, sleep=waits.append)
    stac.search_faults[:] = [("status", 503), ("status", 502)]
    assert len(prov.search(_query())) == 3
    assert waits == pytest.approx([0.01, 0.02])
    stac.search_faults[:] = [("status", 401)]
    with pytest.raises(RemoteError, match=r"^Sentinel-2 search: not authorised"):
        prov.search(_query())
    stac.search_faults[:] = [("status", 500)] * 3
    with pytest.raises(RemoteError, match=r"giving up after 3 attempts \(HTTP 500\)"):
        prov.search(_query())


def test_asset_errors_name_scene_and_cause(stac, tmp_path):
    prov = _prov(stac)
    scene = prov.search(_query())[0]
    asset = f"/data/{scene.id}/B04.tif"
    stac.archive.files.pop(asset)
    with pytest.raises(RemoteError, match=rf"^{scene.id} B04: not found \(HTTP 404\)"):
        prov.fetch(scene, SceneCache(tmp_path), aoi=aoi_5km())


def test_transient_asset_error_is_retried(stac, tmp_path):
    prov = _prov(stac)
    scene = prov.search(_query())[1]
    asset = f"/data/{scene.id}/B04.tif"
    stac.archive.faults[asset] = [("status", 503)]
    (path,) = prov.fetch(scene, SceneCache(tmp_path), aoi=aoi_5km())
    assert path.exists() and stac.archive.requests[asset] >= 2


@pytest.mark.slow
def test_full_size_tile_fraction(tmp_path):
    """A real-size 10980 x 10980 tile: the 5 km AOI read is about 1-2 % of its bytes."""
    tile = write_cog_tile(tmp_path / "B04.tif", 10980).read_bytes()
    with running_stac() as fake:
        fake.add_item("S2B_31TGL_20230401_0_L2A", "sentinel-2-l2a", T, tile_footprint(10980),
                      1.0, {"red": _cog_asset(fake.serve_file("/big/B04.tif", tile), "red",
                                              "red")})
        prov = _prov(fake)
        scene = prov.search(_query(aoi=aoi_5km(10980)))[0]
        fake.archive.reset_counts()
        prov.fetch(scene, SceneCache(tmp_path / "c"), aoi=aoi_5km(10980))
        fraction = fake.archive.bytes_sent["/big/B04.tif"] / len(tile)
        print(f"\nfull-size tile: {100 * fraction:.2f} % of {len(tile)} B")
        assert fraction < 0.03
