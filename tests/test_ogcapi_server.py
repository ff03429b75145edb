"""OGC API - Processes against a real ``gdm serve`` (embedded default: SQLite broker and
two local Celery workers), with ``requests``: async execute -> 201, job list filtered by
status, results downloaded by reference, DELETE of a running job stops its work within
10 s, ``../`` refused on the wire, and accounts (tokens, ownership) end to end.
"""

from __future__ import annotations

import http.client
import io
import time
import urllib.parse

import numpy as np
import pytest
import rasterio
import requests

from simulators.opt import SimulateConfig, simulate
from workflows.jobstore import JobStore
from workflows.settings import get_settings

from .serverutil import running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FINAL = ("successful", "failed", "dismissed")


@pytest.fixture(scope="module")
def server():
    with running_server() as url:
        yield url


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    pair = simulate(SimulateConfig(case="fault", size=256, dates=2, seed=3), root / "pair")
    series = simulate(SimulateConfig(case="fault", size=512, dates=3, seed=4), root / "series")
    return {"pair": pair.images, "series": series.images}


def follow(location: str, *, until=FINAL, timeout: float = 240.0, headers=None,
           predicate=None) -> dict:
    """Poll a job's statusInfo until its status is in ``until`` (and ``predicate``)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = requests.get(location, headers=headers, timeout=30).json()
        if doc["status"] in until and (predicate is None or predicate(doc)):
            return doc
        if doc["status"] in FINAL or time.monotonic() > deadline:
            raise AssertionError(f"job ended or timed out as {doc}")
        time.sleep(0.2)


def execute(base: str, process: str, inputs: dict, *, asynchronous: bool = True,
            headers=None, **extra) -> requests.Response:
    h = {"Prefer": "respond-async"} if asynchronous else {}
    h.update(headers or {})
    return requests.post(f"{base}/ogcapi/processes/{process}/execution",
                         json={"inputs": inputs, **extra}, headers=h, timeout=330)


def upload(base: str, paths, headers=None) -> list[str]:
    names = []
    for p in paths:
        with open(p, "rb") as fh:
            resp = requests.post(f"{base}/ogcapi/uploads", files={"file": (p.name, fh)},
                                 headers=headers, timeout=60)
        if resp.status_code == 409:  # uploaded by an earlier test: never replaced
            names.append(p.name)
            continue
        assert resp.status_code == 201, resp.text
        names.append(resp.json()["name"])
    return names


def raw_get(base: str, path: str, headers=None) -> tuple[int, str, bytes]:
    """GET a path exactly as written (``requests`` would remove ``..`` segments)."""
    parsed = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


# -------------------------------------------------------------------- tests
def test_capabilities_over_http(server):
    landing = requests.get(server + "/ogcapi/", timeout=30)
    assert landing.status_code == 200
    hrefs = [link["href"] for link in landing.json()["links"]]
    assert server + "/ogcapi/api" in hrefs and server + "/ogcapi/jobs" in hrefs
    api = requests.get(server + "/ogcapi/api", timeout=30).json()
    assert api["servers"] == [{"url": server + "/ogcapi"}]
    assert requests.get(server + "/ogcapi/processes/echo", timeout=30).json()["id"] == "echo"
    missing = requests.get(server + "/ogcapi/processes/nope", timeout=30)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("application/problem+json")


def test_async_echo_then_list_filtered_by_status(server):
    resp = execute(server, "echo", {"message": "over the wire"})
    assert resp.status_code == 201, resp.text
    location = resp.headers["Location"]
    job_id = resp.json()["jobID"]
    assert location == f"{server}/ogcapi/jobs/{job_id}"
    done = follow(location, timeout=120)
    assert done["status"] == "successful", done
    assert done["progress"] == 100 and done["started"] and done["finished"]
    results = requests.get(location + "/results", timeout=30)
    assert results.status_code == 200 and results.json() == {"message": "over the wire"}
    successful = requests.get(server + "/ogcapi/jobs", timeout=30,
                              params={"status": "successful", "limit": 1000}).json()["jobs"]
    assert job_id in [j["jobID"] for j in successful]
    assert all(j["status"] == "successful" for j in successful)
    others = requests.get(server + "/ogcapi/jobs", timeout=30,
                          params={"status": ["accepted", "running", "failed"]}).json()["jobs"]
    assert job_id not in [j["jobID"] for j in others]


def test_sync_echo_returns_results(server):
    resp = execute(server, "echo", {"message": "sync"}, asynchronous=False)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"message": "sync"}
    assert resp.headers["Link"].startswith(f"<{server}/ogcapi/jobs/")


def test_gdm_opt_with_uploads_results_by_reference(server, scenes):
    names = upload(server, scenes["pair"])
    assert names == [p.name for p in scenes["pair"]]
    resp = execute(server, "gdm-opt", {"images": names, "preset": "etq"})
    assert resp.status_code == 201, resp.text
    done = follow(resp.headers["Location"])
    assert done["status"] == "successful", done["message"]
    results = requests.get(resp.headers["Location"] + "/results", timeout=30).json()
    for name in ("east", "north", "magnitude", "score"):
        link = results[name]
        assert link["href"].startswith(f"{server}/ogcapi/jobs/{done['jobID']}/download/")
        assert link["type"].startswith("image/tiff")
    body = requests.get(results["east"]["href"], timeout=60)
    assert body.status_code == 200 and len(body.content) > 500
    with rasterio.MemoryFile(io.BytesIO(body.content)) as mem, mem.open() as ds:
        east = ds.read(1)
        assert ds.dtypes[0] == "float32"
        assert np.isfinite(east).mean() > 0.5  # a displacement map, not an empty raster
    looks = requests.get(resp.headers["Location"] + "/quicklooks", timeout=30).json()
    assert len(looks["quicklooks"]) >= 4
    png = requests.get(looks["quicklooks"][0]["href"], timeout=30)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_delete_of_a_running_job_stops_the_work_within_10s(server, scenes):
    names = upload(server, scenes["series"])
    resp = execute(server, "gdm-opt", {"images": names, "preset": "etq", "step": 4})
    assert resp.status_code == 201, resp.text
    location = resp.headers["Location"]
    follow(location, until=("running",), timeout=180, predicate=lambda d: d["progress"] >= 5)
    t0 = time.monotonic()
    dismissed = requests.delete(location, timeout=30)
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    # the same worker (ondemand) runs the next job only once the dismissed work stopped
    nxt = execute(server, "echo", {"message": "after"})
    after = follow(nxt.headers["Location"], timeout=60)
    latency = time.monotonic() - t0
    print(f"DELETE -> ondemand worker free again: {latency:.2f} s")
    assert after["status"] == "successful"
    assert latency <= 10.0
    final = requests.get(location, timeout=30).json()
    assert final["status"] == "dismissed" and final["progress"] < 100
    gone = requests.get(location + "/results", timeout=30)
    assert gone.status_code == 404


def test_dot_dot_refused_on_the_wire(server):
    resp = execute(server, "echo", {"message": "x"})
    job_id = resp.json()["jobID"]
    follow(resp.headers["Location"], timeout=120)
    for path in (f"/ogcapi/jobs/{job_id}/download/../../jobs.sqlite",
                 f"/ogcapi/jobs/{job_id}/download/%2e%2e/%2e%2e/jobs.sqlite",
                 f"/ogcapi/jobs/{job_id}/download/..%2f..%2fjobs.sqlite",
                 f"/ogcapi/jobs/{job_id}/download/%2fetc%2fpasswd",
                 f"/ogcapi/jobs/{job_id}/download//etc/passwd",
                 f"/ogcapi/jobs/{job_id}/download/.job-outputs.json/../../../jobs.sqlite",
                 "/ogcapi/jobs/../../../etc/passwd",
                 "/ogcapi/jobs/%2e%2e/%2e%2e/jobs.sqlite",
                 "/ogcapi/../jobs.sqlite",
                 "/ogcapi/uploads/..%2f..%2fjobs.sqlite"):
        status, _ctype, body = raw_get(server, path)
        assert status in (400, 404, 405), (path, status)
        assert b"SQLite format" not in body and b"root:" not in body, path
    for name in ("../evil.tif", "%2e%2e/evil.tif", "..", "a/../../evil.tif"):
        resp = requests.post(f"{server}/ogcapi/uploads", params={"name": name}, data=b"evil",
                             headers={"Content-Type": "application/octet-stream"},
                             timeout=30)
        assert resp.status_code == 400, name
    assert not list(server.home.rglob("evil.tif"))


def test_accounts_end_to_end(server):
    """Runs last: once accounts exist, every request of the server needs a token."""
    store = JobStore(get_settings(server.env).database_url)
    alice = {"Authorization": "Bearer " + store.create_user("alice", "user")[1]}
    bob = {"Authorization": "Bearer " + store.create_user("bob", "user")[1]}
    anonymous = requests.get(server + "/ogcapi/jobs", timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"].startswith("application/problem+json")
    resp = execute(server, "echo", {"message": "alice's"}, headers=alice)
    assert resp.status_code == 201, resp.text
    location = resp.headers["Location"]
    assert follow(location, headers=alice, timeout=120)["status"] == "successful"
    assert requests.get(location, headers=bob, timeout=30).status_code == 404
    assert requests.get(location + "/results", headers=bob, timeout=30).status_code == 404
    assert requests.delete(location, headers=bob, timeout=30).status_code == 404
    listed = requests.get(server + "/ogcapi/jobs", headers=bob, timeout=30).json()["jobs"]
    assert listed == []
    mine = requests.get(server + "/ogcapi/jobs", headers=alice, timeout=30).json()["jobs"]
    assert [j["jobID"] for j in mine] == [resp.json()["jobID"]]
    assert requests.get(location + "/results", headers=alice, timeout=30).json() == \
        {"message": "alice's"}
