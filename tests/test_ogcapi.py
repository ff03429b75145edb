"""OGC API - Processes handlers, through the Flask test client (no server, no broker).

The Celery ``enqueue`` is replaced by a recorder, or by an inline executor that runs the
process in the test (``inline``), so every handler is exercised in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest
from flask import Flask

from gdmcore import user_uploads
from gdmio.process import JobContext
from tests.handlerutil import service
from workflows.processes import PROCESSES
from workflows.settings import get_settings
from workflows.submit import job_dir
from wps.context import LOCAL_USER, AppState
from wps.ogcapi import CONFORMANCE, OGC_EXC, OGC_REL, bp

PROBLEM = "application/problem+json"


def make_app(settings, store) -> Flask:
    app = Flask("test-ogcapi")
    app.extensions["gdm"] = AppState(settings=settings, store=store)
    app.register_blueprint(bp, url_prefix="/ogcapi")
    return app


@pytest.fixture
def svc(tmp_path, monkeypatch):
    return service(tmp_path, monkeypatch, make_app, sync_timeout=2.0)


def make_finished_job(svc, *, files=("products/east.tif", "products/east.png"),
                      owner="local", public=False):
    """A successful gdm-opt job whose product files exist (as the runner leaves them)."""
    job = svc.store.create_job(owner, "gdm-opt", {"images": ["a.tif", "b.tif"]}, "ondemand",
                               public=public)
    root = job_dir(job, svc.settings)
    for k, rel in enumerate(files):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(bytes([k]) * (100 + k))
    svc.store.claim(job.id, "w", 60)
    outputs = {"east": files[0], "quicklooks": [f for f in files if f.endswith(".png")]}
    return svc.store.finish(job.id, outputs, "w")


def assert_problem(resp, status: int, *, type_: str | None = None, contains: str = ""):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    doc = resp.get_json()
    assert doc["status"] == status and doc["title"] and isinstance(doc["detail"], str)
    if type_ is not None:
        assert doc["type"] == type_
    assert contains in doc["detail"], doc["detail"]
    return doc


# ------------------------------------------------------------ capabilities
def test_landing_page_links_and_conformance(svc):
    doc = svc.client.get("/ogcapi/").get_json()
    rels = {link["rel"]: link["href"] for link in doc["links"]}
    assert rels["service-desc"] == "http://localhost/ogcapi/api"
    assert rels[OGC_REL + "conformance"] == "http://localhost/ogcapi/conformance"
    assert rels[OGC_REL + "processes"] == "http://localhost/ogcapi/processes"
    assert rels[OGC_REL + "job-list"] == "http://localhost/ogcapi/jobs"
    conf = svc.client.get("/ogcapi/conformance").get_json()["conformsTo"]
    assert conf == CONFORMANCE and len(conf) == 7
    for cls in ("core", "ogc-process-description", "json", "job-list", "dismiss", "callback",
                "oas30"):
        assert f"http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/{cls}" in conf


def test_public_url_setting_is_used_in_links(svc, tmp_path):
    settings = get_settings({"GDM_HOME": str(tmp_path / "home"),
                             "GDM_PUBLIC_URL": "https://gdm.example.org/"})
    client = make_app(settings, svc.store).test_client()
    doc = client.get("/ogcapi/").get_json()
    assert doc["links"][0]["href"] == "https://gdm.example.org/ogcapi/"


def test_openapi_document_describes_every_process(svc):
    resp = svc.client.get("/ogcapi/api")
    assert resp.status_code == 200 and "openapi" in resp.mimetype
    doc = resp.get_json()
    assert doc["openapi"] == "3.0.3"
    assert doc["servers"] == [{"url": "http://localhost/ogcapi"}]
    for pid in PROCESSES:
        assert f"/processes/{pid}/execution" in doc["paths"]
        inputs = doc["components"]["schemas"][f"inputs-{pid}"]
        assert set(inputs["properties"]) == set(PROCESSES[pid].input_schemas())
    for path in ("/", "/conformance", "/processes", "/processes/{processID}", "/jobs",
                 "/jobs/{jobID}", "/jobs/{jobID}/results", "/uploads", "/scenes/search"):
        assert path in doc["paths"], path
    assert "delete" in doc["paths"]["/jobs/{jobID}"]
    # OpenAPI 3.0 dialect: no JSON-Schema-2020 numeric exclusive bounds, no type lists
    text = json.dumps(doc)
    assert '"type": "null"' not in text and '"const"' not in text
    schemathesis = pytest.importorskip("schemathesis")
    ops = list(schemathesis.openapi.from_dict(doc).get_all_operations())
    assert len(ops) == 17 + len(PROCESSES)  # + download-links, health
    assert all(op.ok() for op in ops)


def test_to_oas30_translates_pydantic_schemas():
    from wps.openapi import to_oas30

    got = to_oas30({"anyOf": [{"type": "number", "exclusiveMinimum": 0.0},
                              {"type": "null"}], "default": None, "x-required": False})
    assert got == {"type": "number", "minimum": 0.0, "exclusiveMinimum": True,
                   "nullable": True, "default": None}
    assert to_oas30({"const": "a", "type": ["string", "null"]}) == \
        {"enum": ["a"], "type": "string", "nullable": True}


def test_process_list_and_description(svc):
    doc = svc.client.get("/ogcapi/processes").get_json()
    assert [p["id"] for p in doc["processes"]] == list(PROCESSES)
    for p in doc["processes"]:
        assert p["jobControlOptions"] == ["sync-execute", "async-execute", "dismiss"]
        assert p["outputTransmission"] == ["value", "reference"]
        assert any(link["rel"] == OGC_REL + "execute" for link in p["links"])
    assert len(svc.client.get("/ogcapi/processes?limit=1").get_json()["processes"]) == 1
    echo = svc.client.get("/ogcapi/processes/echo").get_json()
    assert echo["inputs"]["message"]["minOccurs"] == 1
    assert echo["inputs"]["message"]["schema"]["type"] == "string"
    assert "x-required" not in echo["inputs"]["message"]["schema"]
    assert echo["outputs"]["message"]["schema"] == {"type": "string"}
    opt = svc.client.get("/ogcapi/processes/gdm-opt").get_json()
    images = opt["inputs"]["images"]
    assert images["minOccurs"] == 0  # images, or scenes by area and dates
    assert [s.get("minItems") for s in images["schema"]["anyOf"]] == [2, None]
    scenes = opt["inputs"]["scenes"]["schema"]["anyOf"][0]
    assert {"aoi", "start", "end"} <= set(scenes["required"])
    assert opt["inputs"]["scenes"]["schema"]["x-scene-search"] == "s2"
    assert opt["inputs"]["preset"]["minOccurs"] == 0
    assert opt["outputs"]["east"]["schema"]["contentMediaType"].startswith("image/tiff")
    assert opt["outputs"]["quicklooks"]["schema"]["type"] == "array"


def test_unknown_process_and_paths_are_problems(svc):
    assert_problem(svc.client.get("/ogcapi/processes/nope"), 404,
                   type_=OGC_EXC + "no-such-process", contains="nope")
    assert_problem(svc.client.post("/ogcapi/processes/nope/execution", json={"inputs": {}}),
                   404, type_=OGC_EXC + "no-such-process")
    assert_problem(svc.client.get("/ogcapi/no/such/thing"), 404)
    resp = svc.client.put("/ogcapi/processes")
    assert_problem(resp, 405)
    assert "GET" in resp.headers["Allow"]


# ---------------------------------------------------------------- execution
def test_async_execute_returns_201_location_and_status(svc):
    resp = svc.client.post("/ogcapi/processes/echo/execution", json={"inputs": {"message": "hi"}},
                           headers={"Prefer": "respond-async"})
    assert resp.status_code == 201
    doc = resp.get_json()
    assert resp.headers["Location"] == f"http://localhost/ogcapi/jobs/{doc['jobID']}"
    assert resp.headers["Preference-Applied"] == "respond-async"
    assert doc["status"] == "accepted" and doc["processID"] == "echo" and doc["type"] == "process"
    assert svc.sent == [doc["jobID"]]
    job = svc.store.get(doc["jobID"])
    assert job.inputs == {"message": "hi"} and job.owner == LOCAL_USER.name
    assert job.queue == "ondemand" and job.public is False
    again = svc.client.get(f"/ogcapi/jobs/{doc['jobID']}").get_json()
    assert again["jobID"] == doc["jobID"] and again["status"] == "accepted"
    assert again["created"].endswith("Z") and again["started"] is None


def test_sync_execute_waits_and_returns_results(svc):
    svc.mode["inline"] = True
    resp = svc.client.post("/ogcapi/processes/echo/execution",
                           json={"inputs": {"message": {"value": "héllo"}}})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"message": "héllo"}
    job_id = svc.sent[0]
    assert resp.headers["Link"] == f'<http://localhost/ogcapi/jobs/{job_id}>; rel="monitor"'
    raw = svc.client.post("/ogcapi/processes/echo/execution",
                          json={"inputs": {"message": "plain"}, "response": "raw"})
    assert raw.status_code == 200 and raw.mimetype == "text/plain"
    assert raw.get_data(as_text=True) == "plain"


def test_sync_execute_falls_back_to_async_when_the_job_outlives_the_wait(svc):
    svc.app.config["GDM_SYNC_TIMEOUT"] = 0.3
    resp = svc.client.post("/ogcapi/processes/echo/execution", json={"inputs": {"message": "x"}})
    assert resp.status_code == 201
    assert resp.headers["Location"].endswith("/ogcapi/jobs/" + resp.get_json()["jobID"])
    assert "Preference-Applied" not in resp.headers
    # Prefer: wait=N shortens the wait below the configured one
    svc.app.config["GDM_SYNC_TIMEOUT"] = 30
    resp = svc.client.post("/ogcapi/processes/echo/execution", json={"inputs": {"message": "x"}},
                           headers={"Prefer": "wait=0"})
    assert resp.status_code == 201


def test_sync_execute_of_a_failing_job_is_a_400_problem(svc):
    svc.mode["inline"] = True
    resp = svc.client.post("/ogcapi/processes/gdm-opt/execution",
                           json={"inputs": {"images": ["missing1.tif", "missing2.tif"]}})
    assert_problem(resp, 400, type_=OGC_EXC + "job-results-failed",
                   contains="no uploaded file named 'missing1.tif'")


@pytest.mark.parametrize("body, needle", [
    ({"inputs": {}}, "message"),
    ({"inputs": {"message": "a", "extra": 1}}, "extra"),
    ({"inputs": ["message"]}, "inputs must be an object"),
    ({"inputs": {"message": "a"}, "bogus": 1}, "bogus"),
    ({"inputs": {"message": "a"}, "queue": "fast"}, "unknown queue 'fast'"),
    ({"inputs": {"message": "a"}, "queue": 3}, "queue must be"),
    ({"inputs": {"message": "a"}, "public": "yes"}, "public must be"),
    ({"inputs": {"message": "a"}, "subscriber": {"successUri": "ftp://x"}}, "http(s)"),
    ({"inputs": {"message": "a"}, "subscriber": {"other": "http://x"}}, "other"),
    ({"inputs": {"message": "a"}, "outputs": {"nope": {}}}, "no output 'nope'"),
    ({"inputs": {"message": "a"}, "outputs": {"message": {"transmissionMode": "x"}}},
     "transmissionMode"),
    ({"inputs": {"message": "a"}, "response": "xml"}, "response must be"),
    ([1, 2], "JSON object"),
])
def test_bad_execute_requests_are_400_naming_the_problem(svc, body, needle):
    resp = svc.client.post("/ogcapi/processes/echo/execution", json=body,
                           headers={"Prefer": "respond-async"})
    assert_problem(resp, 400, contains=needle)
    assert svc.sent == []


def test_execute_body_that_is_not_json_is_400(svc):
    resp = svc.client.post("/ogcapi/processes/echo/execution", data=b"\xff{not json",
                           content_type="application/json")
    assert_problem(resp, 400, contains="JSON object")


def test_extensions_queue_public_and_subscriber_are_recorded(svc, monkeypatch):
    monkeypatch.setenv("GDM_ALLOWED_HOSTS", "127.0.0.1")  # else a loopback callback is refused
    resp = svc.client.post("/ogcapi/processes/echo/execution", headers={"Prefer": "respond-async"},
                           json={"inputs": {"message": "a"}, "queue": "batch", "public": True,
                                 "subscriber": {"successUri": "http://127.0.0.1:9/cb"}})
    assert resp.status_code == 201
    job = svc.store.get(resp.get_json()["jobID"])
    assert (job.queue, job.public) == ("batch", True)
    assert job.subscriber == {"successUri": "http://127.0.0.1:9/cb"}
    assert resp.get_json()["queue"] == "batch" and resp.get_json()["public"] is True


def test_href_inputs_are_unwrapped(svc):
    resp = svc.client.post(
        "/ogcapi/processes/gdm-opt/execution", headers={"Prefer": "respond-async"},
        json={"inputs": {"images": [{"href": "http://127.0.0.1:9/a.tif"},
                                    {"href": "http://127.0.0.1:9/b.tif"}], "preset": "ice"}})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    job = svc.store.get(resp.get_json()["jobID"])
    assert job.inputs["images"] == ["http://127.0.0.1:9/a.tif", "http://127.0.0.1:9/b.tif"]
    assert job.inputs["preset"] == "ice"


# --------------------------------------------------------------------- jobs
def _submit(svc, message="m", **extra):
    resp = svc.client.post("/ogcapi/processes/echo/execution", headers={"Prefer": "respond-async"},
                           json={"inputs": {"message": message}, **extra})
    assert resp.status_code == 201
    return resp.get_json()["jobID"]


def test_job_list_filters_and_paging(svc):
    ids = [_submit(svc, str(k)) for k in range(5)]
    svc.store.claim(ids[0], "w", 60)
    svc.store.finish(ids[0], {"message": "0"}, "w")
    svc.store.claim(ids[1], "w", 60)
    svc.store.fail(ids[2], "bad")
    svc.store.dismiss(ids[3])
    opt = make_finished_job(svc).id

    def listed(query: str) -> list[str]:
        resp = svc.client.get("/ogcapi/jobs" + query)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return [j["jobID"] for j in resp.get_json()["jobs"]]

    assert listed("?status=successful") == [opt, ids[0]]
    assert listed("?status=successful&processID=echo") == [ids[0]]
    assert listed("?status=running") == [ids[1]]
    assert set(listed("?status=failed&status=dismissed")) == {ids[2], ids[3]}
    assert set(listed("?status=failed,dismissed")) == {ids[2], ids[3]}
    assert listed("?status=accepted") == [ids[4]]
    assert listed("?processID=gdm-opt") == [opt]
    assert listed("?processID=no-such-process") == []
    assert listed("?type=process&limit=100") == [opt, *reversed(ids)]
    assert listed("?type=other") == []
    # paging: newest first, `next` link while a page is full
    first = svc.client.get("/ogcapi/jobs?limit=4").get_json()
    assert [j["jobID"] for j in first["jobs"]] == [opt, ids[4], ids[3], ids[2]]
    nxt = [link["href"] for link in first["links"] if link["rel"] == "next"]
    assert nxt and "offset=4" in nxt[0] and "limit=4" in nxt[0]
    assert listed("?limit=4&offset=4") == [ids[1], ids[0]]
    # the default page is 10 jobs (OGC default)
    for k in range(8):
        _submit(svc, f"more{k}")
    assert len(listed("")) == 10
    # datetime interval and durations
    now = dt.datetime.now(dt.UTC)
    future = (now + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    past = (now - dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert listed(f"?datetime={future}/..") == []
    assert len(listed(f"?datetime={past}/{future}&limit=100")) == 14
    assert len(listed(f"?datetime=../{future}&limit=3")) == 3
    assert listed("?minDuration=3600") == []
    assert set(listed("?maxDuration=3600&limit=100")) == {ids[0], ids[1], opt}


@pytest.mark.parametrize("query, needle", [
    ("?status=done", "unknown status 'done'"),
    ("?limit=0", "limit must be between"),
    ("?limit=x", "limit must be an integer"),
    ("?offset=-1", "offset"),
    ("?datetime=yesterday", "datetime"),
    ("?datetime=2024-02-01T00:00:00Z/2024-01-01T00:00:00Z", "ends before"),
    ("?minDuration=abc", "minDuration"),
])
def test_job_list_bad_parameters_are_400(svc, query, needle):
    assert_problem(svc.client.get("/ogcapi/jobs" + query), 400, contains=needle)


def test_unknown_job_is_404_no_such_job(svc):
    for url in ("/ogcapi/jobs/0b0e0f2a-0000-4000-8000-000000000000",
                "/ogcapi/jobs/not%00valid", "/ogcapi/jobs/" + "x" * 300,
                "/ogcapi/jobs/0b0e0f2a-0000-4000-8000-000000000000/results"):
        assert_problem(svc.client.get(url), 404, type_=OGC_EXC + "no-such-job")
    assert_problem(svc.client.delete("/ogcapi/jobs/0b0e0f2a-0000-4000-8000-000000000000"),
                   404, type_=OGC_EXC + "no-such-job")


def test_results_not_ready_failed_and_successful(svc):
    job_id = _submit(svc)
    assert_problem(svc.client.get(f"/ogcapi/jobs/{job_id}/results"), 404,
                   type_=OGC_EXC + "result-not-ready", contains="accepted")
    svc.store.fail(job_id, "no uploaded file named 'x.tif'")
    assert_problem(svc.client.get(f"/ogcapi/jobs/{job_id}/results"), 404,
                   type_=OGC_EXC + "job-results-failed", contains="no uploaded file named")
    job = make_finished_job(svc)
    status = svc.client.get(f"/ogcapi/jobs/{job.id}").get_json()
    assert status["status"] == "successful" and status["progress"] == 100
    rels = {link["rel"]: link["href"] for link in status["links"]}
    assert rels[OGC_REL + "results"] == f"http://localhost/ogcapi/jobs/{job.id}/results"
    assert rels["preview"] == f"http://localhost/ogcapi/jobs/{job.id}/quicklooks"
    assert rels["alternate"] == f"http://localhost/jobs/{job.id}"
    results = svc.client.get(f"/ogcapi/jobs/{job.id}/results").get_json()
    base = f"http://localhost/ogcapi/jobs/{job.id}/download/"
    assert results["east"]["href"] == base + "products/east.tif"
    assert results["east"]["type"].startswith("image/tiff")
    assert results["quicklooks"] == [{"href": base + "products/east.png", "type": "image/png",
                                      "title": "east"}]
    # every href downloads the file it names
    with svc.client.get(results["east"]["href"].replace("http://localhost", "")) as body:
        assert body.status_code == 200 and body.data == bytes([0]) * 100
    looks = svc.client.get(f"/ogcapi/jobs/{job.id}/quicklooks").get_json()["quicklooks"]
    with svc.client.get(looks[0]["href"].replace("http://localhost", "")) as png:
        assert png.status_code == 200 and png.mimetype == "image/png" and len(png.data) == 101


def test_results_of_unknown_output_names_find_files(svc):
    job = svc.store.create_job("local", "echo", {"message": "m"}, "ondemand")
    (job_dir(job, svc.settings) / "extra.json").parent.mkdir(parents=True)
    (job_dir(job, svc.settings) / "extra.json").write_text("{}")
    svc.store.claim(job.id, "w", 60)
    svc.store.finish(job.id, {"message": "m", "side": "extra.json", "n": 3}, "w")
    doc = svc.client.get(f"/ogcapi/jobs/{job.id}/results").get_json()
    assert doc["message"] == "m" and doc["n"] == 3
    assert doc["side"]["href"].endswith(f"/jobs/{job.id}/download/extra.json")
    assert doc["side"]["type"] == "application/json"


def test_dismiss_accepted_and_finished_jobs(svc):
    job_id = _submit(svc)
    resp = svc.client.delete(f"/ogcapi/jobs/{job_id}")
    assert resp.status_code == 200 and resp.get_json()["status"] == "dismissed"
    assert svc.store.get(job_id).status == "dismissed"
    assert svc.client.delete(f"/ogcapi/jobs/{job_id}").get_json()["status"] == "dismissed"
    assert_problem(svc.client.get(f"/ogcapi/jobs/{job_id}/results"), 404, contains="dismissed")
    done = make_finished_job(svc)
    assert svc.client.delete(f"/ogcapi/jobs/{done.id}").get_json()["status"] == "successful"


def test_download_missing_file_is_404(svc):
    job = make_finished_job(svc)
    assert_problem(svc.client.get(f"/ogcapi/jobs/{job.id}/download/products/none.tif"), 404)


# ------------------------------------------------------------------ uploads
def test_upload_multipart_and_raw_then_list_and_delete(svc):
    resp = svc.client.post("/ogcapi/uploads", content_type="multipart/form-data",
                           data={"file": (io.BytesIO(b"A" * 1000), "20230101_a.tif")})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.get_json()["name"] == "20230101_a.tif" and resp.get_json()["size"] == 1000
    folder = svc.settings.uploads_dir / LOCAL_USER.name
    assert (folder / "20230101_a.tif").read_bytes() == b"A" * 1000
    resp = svc.client.post("/ogcapi/uploads?name=20230201_b.tif", data=b"B" * 10,
                           content_type="application/octet-stream")
    assert resp.status_code == 201 and resp.get_json()["names"] == ["20230201_b.tif"]
    # a form or text body could come from a page of another site: refused, nothing kept
    for form_type in ("application/x-www-form-urlencoded", "text/plain", None):
        resp = svc.client.post("/ogcapi/uploads?name=e.tif", data=b"a=b&c",
                               content_type=form_type)
        assert_problem(resp, 415, contains="multipart/form-data")
        assert not (folder / "e.tif").exists()
    assert_problem(svc.client.post("/ogcapi/uploads", content_type="multipart/form-data",
                                   data={"field": "value"}), 400, contains="file field")
    # several files at once
    resp = svc.client.post("/ogcapi/uploads", content_type="multipart/form-data", data={
        "file": [(io.BytesIO(b"c"), "c.tif"), (io.BytesIO(b"dd"), "d.tif")]})
    assert resp.get_json()["names"] == ["c.tif", "d.tif"] and resp.get_json()["sizes"] == [1, 2]
    listed = svc.client.get("/ogcapi/uploads").get_json()["uploads"]
    assert [(u["name"], u["size"]) for u in listed] == [
        ("20230101_a.tif", 1000), ("20230201_b.tif", 10), ("c.tif", 1), ("d.tif", 2)]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp left
    assert svc.client.delete("/ogcapi/uploads/c.tif").status_code == 204
    assert not (folder / "c.tif").exists()
    assert_problem(svc.client.delete("/ogcapi/uploads/c.tif"), 404)


@pytest.mark.parametrize("name", ["", ".hidden", "a b.tif", "x" * 201, "..", "a..b",
                                  "ü.tif", "a;b"])
def test_upload_refuses_odd_names(svc, name):
    resp = svc.client.post("/ogcapi/uploads", data=b"x", query_string={"name": name},
                           content_type="application/octet-stream")
    assert_problem(resp, 400)
    assert not any(Path(svc.settings.home).rglob("*.tif")) or name == ""


def test_upload_refuses_empty_body(svc):
    assert_problem(svc.client.post("/ogcapi/uploads?name=a.tif", data=b"",
                                   content_type="application/octet-stream"), 400,
                   contains="empty")
    assert not (svc.settings.uploads_dir / LOCAL_USER.name / "a.tif").exists()


def test_uploaded_files_feed_a_job_of_their_owner(svc):
    svc.client.post("/ogcapi/uploads?name=a.tif", data=b"x",
                    content_type="application/octet-stream")
    job = svc.store.create_job("local", "gdm-opt", {"images": ["a.tif", "b.tif"]}, "ondemand")
    from gdmio.process import resolve_reference

    ctx = JobContext(job.id, job_dir(job, svc.settings),
                     user_uploads(svc.settings.uploads_dir, "local"), lambda f, m: None)
    assert resolve_reference("a.tif", ctx).read_bytes() == b"x"
    assert resolve_reference("upload:a.tif", ctx).read_bytes() == b"x"


def test_in_the_whole_app_only_ogcapi_errors_are_problems(svc):
    from wps.app import create_app

    client = create_app(svc.settings, svc.store).test_client()
    assert_problem(client.get("/ogcapi/no/such/thing"), 404)
    assert_problem(client.delete("/ogcapi/conformance"), 405)
    other = client.get("/no/such/page")
    assert other.status_code == 404 and other.mimetype != PROBLEM
    assert client.get("/ogcapi/processes").get_json()["processes"]
