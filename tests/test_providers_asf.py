import datetime as dt
import hashlib
import logging
import threading

import pytest

from gdmcore import InputError
from gdmio.cache import SceneCache
from gdmio.download import RemoteError, RetryPolicy
from gdmio.providers import SceneQuery, parse_aoi, parse_date
from gdmio.providers.asf import AsfProvider
from tests.fakeasf import SEARCH_PATH, running_asf

FAST = RetryPolicy(attempts=4, backoff=0.01, timeout=5)
T0 = dt.datetime(2023, 1, 5, 5, 43, 21, tzinfo=dt.UTC)
AOI = parse_aoi("5.40,45.10,5.46,45.15")  # ~5 km near Grenoble
TOKEN = "edl-token-5ecr3t-abcdef0123456789"


def _query(**kw):
    base = dict(aoi=AOI, start=parse_date("2023-01-01"), end=parse_date("2023-02-28", end=True))
    base.update(kw)
    return SceneQuery(**base)


@pytest.fixture
def asf():
    with running_asf() as fake:
        fake.names = {}
        fp = (4.8, 44.6, 6.2, 45.9)
        fake.names["a1"], _ = fake.add_slc(T0, fp, "ASCENDING", 88)
        fake.names["a2"], _ = fake.add_slc(T0 + dt.timedelta(days=12), fp, "ASCENDING", 88)
        fake.names["d1"], _ = fake.add_slc(T0 + dt.timedelta(days=3), fp, "DESCENDING", 139)
        fake.names["far"], _ = fake.add_slc(T0, (10, 50, 11.4, 51.3), "ASCENDING", 88)
        fake.names["late"], _ = fake.add_slc(T0 + dt.timedelta(days=90), fp, "ASCENDING", 88)
        fake.names["burst"], _ = fake.add_burst(T0, (5.3, 45.0, 5.6, 45.2))
        yield fake


def _provider(fake, **kw):
    kw.setdefault("policy", FAST)
    kw.setdefault("sleep", lambda s: None)
    return AsfProvider(fake.url, **kw)


def test_search_filters_by_area_dates_direction_and_track(asf):
    prov = _provider(asf)
    scenes = prov.search(_query())
    assert [s.id for s in scenes] == [asf.names["a1"], asf.names["d1"], asf.names["a2"]]
    scenes = prov.search(_query(flight_direction="ascending", relative_orbit=88))
    assert [s.id for s in scenes] == [asf.names["a1"], asf.names["a2"]]
    s = scenes[0]
    assert s.datetime == T0 and s.provider == "s1"
    assert s.properties["flightDirection"] == "ASCENDING" and s.properties["pathNumber"] == 88
    assert s.assets["product"].size == 200_000
    assert s.assets["product"].checksum[0] == "md5"
    assert s.geometry["type"] == "Polygon"
    # asf-search spoke CMR's language to the server.
    form = asf.queries[-1]
    assert ("attribute[]", "string,ASCENDING_DESCENDING,ASCENDING") in form
    assert ("attribute[]", "int,PATH_NUMBER,88") in form
    assert any(k == "shortName" and v == "SENTINEL-1A_SLC" for k, v in form)


def test_search_bursts(asf):
    scenes = _provider(asf).search(_query(product="BURST"))
    assert [s.id for s in scenes] == [asf.names["burst"]]
    burst = scenes[0].properties["burst"]
    assert burst["relativeBurstID"] == 187654 and burst["subswath"] == "IW2"
    assert set(scenes[0].assets) == {"product", "metadata"}


def test_bad_filters_are_input_errors(asf):
    prov = _provider(asf)
    with pytest.raises(InputError, match="ASCENDING or DESCENDING"):
        prov.search(_query(flight_direction="north"))
    with pytest.raises(InputError, match="SLC or BURST"):
        prov.search(_query(product="GRD"))
    with pytest.raises(InputError, match="relative orbit"):
        prov.search(_query(relative_orbit=400))


def test_search_fetch_lands_in_cache_once(asf, tmp_path):
    prov = _provider(asf)
    cache = SceneCache(tmp_path / "cache")
    scene = prov.search(_query(relative_orbit=88))[0]
    (path,) = prov.fetch(scene, cache)
    assert path.name == f"{scene.id}.zip"
    assert path.parent == cache.folder(scene.cache_key)
    assert path.read_bytes() == asf.archive.files[f"/SLC/SA/{scene.id}.zip"]
    assert prov.fetch(scene, cache) == [path]
    assert asf.archive.requests[f"/SLC/SA/{scene.id}.zip"] == 1


def test_burst_fetch_gets_tiff_and_xml(asf, tmp_path):
    prov = _provider(asf)
    scene = prov.search(_query(product="BURST"))[0]
    paths = prov.fetch(scene, SceneCache(tmp_path))
    assert sorted(p.suffix for p in paths) == [".tiff", ".xml"]
    assert paths[0].stat().st_size == 50_000


def test_token_is_sent_as_header_and_never_logged(asf, tmp_path, caplog, monkeypatch):
    asf.required_auth = f"Bearer {TOKEN}"
    monkeypatch.setenv("GDM_EARTHDATA_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    prov = _provider(asf)
    assert TOKEN not in repr(prov.credentials)
    scene = prov.search(_query())[0]
    prov.fetch(scene, SceneCache(tmp_path / "ok"))
    assert asf.auth_seen == [f"Bearer {TOKEN}"]
    # A wrong token: refused at once with a message naming the scene, no secret in it.
    monkeypatch.setenv("GDM_EARTHDATA_TOKEN", "wrong-token-0123456789")
    with pytest.raises(RemoteError) as err:
        _provider(asf).fetch(scene, SceneCache(tmp_path / "bad"))
    assert str(err.value).startswith(scene.id) and "not authorised" in str(err.value)
    assert "wrong-token" not in str(err.value)
    assert caplog.records, "expected some log output to check"
    assert TOKEN not in caplog.text and "wrong-token" not in caplog.text


def test_netrc_credentials_are_sent_as_basic_auth(asf, tmp_path, monkeypatch):
    monkeypatch.delenv("GDM_EARTHDATA_TOKEN", raising=False)
    monkeypatch.delenv("EARTHDATA_TOKEN", raising=False)
    rc = tmp_path / "netrc"
    rc.write_text("machine urs.earthdata.nasa.gov login alice password s3cr3t-pw\n")
    rc.chmod(0o600)
    prov = _provider(asf, netrc_file=str(rc))
    assert prov.credentials.source == "netrc"
    prov.fetch(prov.search(_query())[0], SceneCache(tmp_path / "c"))
    assert asf.auth_seen == ["Basic YWxpY2U6czNjcjN0LXB3"]  # base64("alice:s3cr3t-pw")


def test_credentials_only_go_to_archive_hosts(asf):
    prov = _provider(asf, token=TOKEN)
    assert prov._auth_headers(asf.url + "/SLC/x.zip") == {"Authorization": f"Bearer {TOKEN}"}
    assert prov._auth_headers("https://datapool.asf.alaska.edu/SLC/SA/x.zip")
    assert prov._auth_headers("https://elsewhere.example.org/x.zip") == {}


def test_interrupted_download_resumes_and_corrupt_is_refetched(asf, tmp_path):
    prov = _provider(asf)
    a1, a2 = prov.search(_query(relative_orbit=88))
    p1 = f"/SLC/SA/{a1.id}.zip"
    asf.archive.faults[p1] = [("drop", 70_000)]
    (path,) = prov.fetch(a1, SceneCache(tmp_path))
    assert path.read_bytes() == asf.archive.files[p1]
    assert asf.archive.requests[p1] == 2 and asf.archive.ranges[0].startswith("bytes=")
    assert asf.archive.bytes_sent[p1] < 200_000 + 70_000  # second request sent only the rest
    p2 = f"/SLC/SA/{a2.id}.zip"
    asf.archive.faults[p2] = [("corrupt",)]
    (path,) = prov.fetch(a2, SceneCache(tmp_path))
    assert hashlib.md5(path.read_bytes()).hexdigest() == a2.assets["product"].checksum[1]
    assert asf.archive.requests[p2] == 2


@pytest.mark.parametrize("code,word", [(401, "not authorised"), (404, "not found")])
def test_permanent_errors_fail_at_once(asf, tmp_path, code, word):
    prov = _provider(asf)
    scene = prov.search(_query())[0]
    asf.archive.faults[f"/SLC/SA/{scene.id}.zip"] = [("status", code)] * 5
    with pytest.raises(RemoteError) as err:
        prov.fetch(scene, SceneCache(tmp_path))
    assert str(err.value).startswith(f"{scene.id}: {word}")
    assert str(err.value).endswith(f"(HTTP {code})") and err.value.status == code
    assert asf.archive.requests[f"/SLC/SA/{scene.id}.zip"] == 1
    assert not list(tmp_path.rglob("*.zip"))


def test_429_and_5xx_are_retried_with_backoff_then_named(asf, tmp_path):
    waits = []
    prov = _provider(asf, sleep=waits.append)
    scene = prov.search(_query())[0]
    path = f"/SLC/SA/{scene.id}.zip"
    asf.archive.faults[path] = [("status", 429, 3), ("status", 502), ("status", 503)]
    prov.fetch(scene, SceneCache(tmp_path / "a"))
    assert waits == pytest.approx([3.0, 0.02, 0.04])
    asf.archive.faults[path] = [("status", 500)] * 4
    with pytest.raises(RemoteError, match=rf"^{scene.id}: giving up after 4 attempts \(HTTP 500\)"):
        prov.fetch(scene, SceneCache(tmp_path / "b"))


def test_timeouts_are_retried_then_named(asf, tmp_path):
    prov = _provider(asf, policy=RetryPolicy(attempts=2, backoff=0.01, timeout=0.3))
    scene = prov.search(_query())[0]
    asf.archive.faults[f"/SLC/SA/{scene.id}.zip"] = [("delay", 1.0)] * 2
    with pytest.raises(RemoteError,
                       match=rf"^{scene.id}: giving up after 2 attempts \(timed out\)"):
        prov.fetch(scene, SceneCache(tmp_path))
    assert asf.archive.requests[f"/SLC/SA/{scene.id}.zip"] == 2


def test_search_errors_retry_then_fail_clearly(asf):
    waits = []
    prov = _provider(asf, sleep=waits.append)
    asf.search_faults[:] = [("status", 503), ("status", 429, 2)]
    assert len(prov.search(_query())) == 3
    assert waits == pytest.approx([0.01, 2.0])
    asf.search_faults[:] = [("status", 401)]
    with pytest.raises(RemoteError, match=r"^Sentinel-1 search: not authorised .*\(HTTP 401\)"):
        prov.search(_query())
    asf.search_faults[:] = [("status", 500)] * 4
    with pytest.raises(RemoteError, match=r"giving up after 4 attempts \(HTTP 500\)"):
        prov.search(_query())
    assert asf.archive.requests[SEARCH_PATH] == 3 + 1 + 4


def test_two_workers_fetching_one_scene_download_it_once(asf, tmp_path):
    prov = _provider(asf)
    scene = prov.search(_query())[0]
    path = f"/SLC/SA/{scene.id}.zip"
    asf.archive.faults[path] = [("delay", 0.3)]  # keep the first download in flight
    cache_root = tmp_path / "shared"
    results, errors = [], []

    def worker():
        try:
            results.append(_provider(asf).fetch(scene, SceneCache(cache_root)))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({tuple(r) for r in results}) == 1
    assert asf.archive.requests[path] == 1


def test_fetch_many_in_parallel(asf, tmp_path):
    prov = _provider(asf, workers=3)
    scenes = prov.search(_query())
    out = prov.fetch_many(scenes, SceneCache(tmp_path))
    assert [p[0].name for p in out] == [f"{s.id}.zip" for s in scenes]
    assert all(asf.archive.requests[f"/SLC/SA/{s.id}.zip"] == 1 for s in scenes)


CHILD = """
import sys, time, pathlib
from gdmio.cache import SceneCache
from gdmio.download import RetryPolicy
from gdmio.providers import SceneQuery, parse_aoi, parse_date
from gdmio.providers.asf import AsfProvider
url, root, me, other = sys.argv[1:5]
prov = AsfProvider(url, policy=RetryPolicy(attempts=2, backoff=0.01, timeout=20))
q = SceneQuery(parse_aoi("5.40,45.10,5.46,45.15"), parse_date("2023-01-01"),
               parse_date("2023-01-06", end=True))
scene = prov.search(q)[0]
pathlib.Path(me).touch()
while not pathlib.Path(other).exists():  # start fetching together
    time.sleep(0.01)
print(prov.fetch(scene, SceneCache(root))[0])
"""


@pytest.mark.integration
def test_two_worker_processes_download_a_scene_once(asf, tmp_path):
    import subprocess
    import sys

    scene = _provider(asf).search(_query(end=parse_date("2023-01-06", end=True)))[0]
    path = f"/SLC/SA/{scene.id}.zip"
    asf.archive.faults[path] = [("delay", 1.0)]  # the first download stays in flight
    a, b = tmp_path / "a.ready", tmp_path / "b.ready"
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, asf.url, str(tmp_path / "cache"),
                               str(me), str(other)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for me, other in ((a, b), (b, a))]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert outs[0][0] == outs[1][0] and outs[0][0].strip().endswith(f"{scene.id}.zip")
    assert asf.archive.requests[path] == 1
