import datetime as dt

import pytest

from gdmcore import InputError
from gdmio.cache import SceneCache
from gdmio.download import RemoteError, RetryPolicy
from gdmio.providers.orbits import OrbitClient, parse_scene_name
from tests.fakes3 import running_bucket

FAST = RetryPolicy(attempts=3, backoff=0.01, timeout=5)
SCENE = "S1A_IW_SLC__1SDV_20230105T054321_20230105T054348_046655_0597AB_1A2B"
RECENT = "S1A_IW_SLC__1SDV_20230320T054321_20230320T054348_047705_05B9AB_3C4D"


def _poe(plat, produced, start, stop):
    f = "%Y%m%dT%H%M%S"
    return (f"AUX_POEORB/{plat}_OPER_AUX_POEORB_OPOD_{produced:{f}}_V{start:{f}}_"
            f"{stop:{f}}.EOF")


def _res(plat, produced, start, stop):
    return _poe(plat, produced, start, stop).replace("POEORB", "RESORB")


@pytest.fixture
def bucket():
    with running_bucket() as b:
        b.page_size = 3  # exercise continuation tokens
        day = dt.datetime(2022, 12, 20, 22, 59, 42, tzinfo=dt.UTC)
        for i in range(25):  # one precise orbit per day, produced ~20 days later
            v0 = day + dt.timedelta(days=i)
            b.put(_poe("S1A", v0 + dt.timedelta(days=21, hours=9), v0, v0 +
                       dt.timedelta(hours=26)), f"POE {i}".encode())
            b.put(_poe("S1B", v0 + dt.timedelta(days=21, hours=9), v0, v0 +
                       dt.timedelta(hours=26)), b"wrong platform")
        # A reprocessed precise orbit for our scene (newer production wins).
        v0 = dt.datetime(2023, 1, 4, 22, 59, 42, tzinfo=dt.UTC)
        b.put(_poe("S1A", dt.datetime(2023, 3, 1, tzinfo=dt.UTC), v0,
                   v0 + dt.timedelta(hours=26)), b"POE reprocessed")
        # Only restituted orbits around the recent scene.
        t = dt.datetime(2023, 3, 20, 3, 0, tzinfo=dt.UTC)
        for h in (0, 1, 3):  # 1 is the newest that covers 05:43-05:44
            s = t + dt.timedelta(hours=h)
            b.put(_res("S1A", s + dt.timedelta(hours=4), s, s + dt.timedelta(hours=3, minutes=30)),
                  f"RES {h}".encode())
        yield b


def test_parse_scene_name():
    plat, start, stop = parse_scene_name(SCENE + ".zip")
    assert plat == "S1A" and start == dt.datetime(2023, 1, 5, 5, 43, 21, tzinfo=dt.UTC)
    assert (stop - start).total_seconds() == 27
    with pytest.raises(InputError, match="not a Sentinel-1 product name"):
        parse_scene_name("S2A_MSIL1C_20230105T103021")


def test_precise_orbit_newest_covering_is_chosen_and_cached(bucket, tmp_path):
    client = OrbitClient(bucket.url, policy=FAST, sleep=lambda s: None)
    orbit = client.find(SCENE)
    assert orbit.kind == "POEORB" and orbit.produced == dt.datetime(2023, 3, 1, tzinfo=dt.UTC)
    assert orbit.valid_from < dt.datetime(2023, 1, 5, 5, 43, tzinfo=dt.UTC) < orbit.valid_to
    assert len(bucket.listings) > 1  # followed continuation tokens
    assert all(p["start-after"] > "AUX_POEORB/S1A_OPER_AUX_POEORB_OPOD_20230103"
               for p in bucket.listings)  # older productions never listed
    cache = SceneCache(tmp_path)
    path = client.fetch(SCENE, cache)
    assert path.read_bytes() == b"POE reprocessed"
    assert client.fetch(SCENE, cache) == path
    assert bucket.archive.requests["/" + orbit.key] == 1


def test_restituted_when_no_precise_orbit(bucket, tmp_path):
    client = OrbitClient(bucket.url, policy=FAST, sleep=lambda s: None)
    orbit = client.find(RECENT)
    assert orbit.kind == "RESORB"
    assert client.fetch(RECENT, SceneCache(tmp_path)).read_bytes() == b"RES 1"


def test_no_orbit_and_archive_errors(bucket):
    waits = []
    client = OrbitClient(bucket.url, policy=FAST, sleep=waits.append)
    with pytest.raises(RemoteError, match="no precise or restituted orbit covers"):
        client.find("S1A_IW_SLC__1SDV_20240105T054321_20240105T054348_051000_062000_0000")
    bucket.list_faults[:] = [("status", 503), ("status", 429, 4)]
    assert client.find(SCENE).kind == "POEORB"
    assert waits == pytest.approx([0.01, 4.0])
    bucket.list_faults[:] = [("status", 403)]
    with pytest.raises(RemoteError, match=rf"^{SCENE} orbit: forbidden"):
        client.find(SCENE)
