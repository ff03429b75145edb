import io

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

from gdmio.cache import SceneCache
from gdmio.download import RemoteError, RetryPolicy
from gdmio.providers.dem import DemClient, tile_name, tiles_for_bounds
from tests.fakes3 import running_bucket

FAST = RetryPolicy(attempts=3, backoff=0.01, timeout=5)
N = 120  # pixels per degree in the fake tiles (real GLO-30: 3600)


def height(lon, lat):
    return 1000.0 + 100.0 * lon + 10.0 * lat


def _tile_bytes(lat, lon):
    px = 1.0 / N
    cols = lon + (np.arange(N) + 0.5) * px
    rows = lat + 1 - (np.arange(N) + 0.5) * px
    data = height(cols[None, :], rows[:, None]).astype(np.float32)
    buf = io.BytesIO()
    with rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=N, height=N, count=1, dtype="float32",
                      crs="EPSG:4326", transform=from_origin(lon, lat + 1, px, px),
                      tiled=True, blockxsize=64, blockysize=64, compress="DEFLATE") as ds:
            ds.write(data, 1)
        buf.write(mem.read())
    return buf.getvalue()


def test_tile_names():
    assert tile_name(45, 5) == "Copernicus_DSM_COG_10_N45_00_E005_00_DEM"
    assert tile_name(-1, -1) == "Copernicus_DSM_COG_10_S01_00_W001_00_DEM"
    assert tiles_for_bounds(5.9, 45.2, 6.1, 45.3) == [tile_name(45, 5), tile_name(45, 6)]
    assert tiles_for_bounds(-0.5, -0.5, 0.5, 0.5) == [tile_name(-1, -1), tile_name(-1, 0),
                                                      tile_name(0, -1), tile_name(0, 0)]
    assert tiles_for_bounds(5.2, 45.2, 6.0, 46.0) == [tile_name(45, 5)]


@pytest.fixture
def bucket():
    with running_bucket() as b:
        for lat, lon in [(45, 5), (45, 6), (44, 5)]:  # (44, 6) is "sea": absent
            name = tile_name(lat, lon)
            b.put(f"{name}/{name}.tif", _tile_bytes(lat, lon))
        yield b


def test_mosaic_cropped_to_aoi_across_tiles(bucket, tmp_path):
    client = DemClient(bucket.url, policy=FAST, sleep=lambda s: None)
    cache = SceneCache(tmp_path)
    aoi = box(5.90, 45.20, 6.10, 45.30)
    path = client.fetch(aoi, cache, margin=0.0)
    with rasterio.open(path) as ds:
        w, s, e, n = ds.bounds
        assert (w, s, e, n) == pytest.approx((5.9, 45.2, 6.1, 45.3), abs=1.0 / N)
        data = ds.read(1)
        rows, cols = np.mgrid[0:ds.height, 0:ds.width]
        lon, lat = ds.xy(rows.ravel(), cols.ravel())
        truth = height(np.array(lon), np.array(lat)).reshape(data.shape)
        assert np.nanmax(np.abs(data - truth)) < 1e-3  # continuous across the seam
        assert ds.tags()["MISSING_TILES"] == "none" and not np.isnan(data).any()
    # Cached: the crop and the tiles are reused.
    assert client.fetch(aoi, cache, margin=0.0) == path
    name = tile_name(45, 6)
    assert bucket.archive.requests[f"/{name}/{name}.tif"] == 1


def test_missing_sea_tile_is_sea_level_and_no_tile_is_an_error(bucket, tmp_path):
    client = DemClient(bucket.url, policy=FAST, sleep=lambda s: None)
    path = client.fetch(box(5.95, 44.95, 6.05, 45.05), SceneCache(tmp_path), margin=0.0)
    with rasterio.open(path) as ds:
        assert ds.tags()["MISSING_TILES"] == tile_name(44, 6)
        lon_sea, lat_sea = 6.03, 44.97
        r, c = ds.index(lon_sea, lat_sea)
        assert ds.read(1)[r, c] == 0.0
        r, c = ds.index(5.97, 44.97)
        assert ds.read(1)[r, c] == pytest.approx(height(5.97, 44.97), abs=2.0)
    with pytest.raises(RemoteError, match="no GLO-30 tile covers"):
        client.fetch(box(20.1, 30.1, 20.2, 30.2), SceneCache(tmp_path))


def test_tile_download_errors_are_named(bucket, tmp_path):
    name = tile_name(45, 5)
    bucket.archive.faults[f"/{name}/{name}.tif"] = [("status", 500)] * 3
    client = DemClient(bucket.url, policy=FAST, sleep=lambda s: None)
    with pytest.raises(RemoteError, match=rf"^{name}: giving up after 3 attempts \(HTTP 500\)"):
        client.fetch(box(5.2, 45.2, 5.3, 45.3), SceneCache(tmp_path))
