"""Accounts and access control of the OGC API: tokens, ownership, roles, quotas, paths.

Flask test client against the OGC API blueprint; the Celery ``enqueue`` is a recorder.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

import workflows.celery_app as celery_app
from gdmcore import user_uploads
from gdmio.process import JobContext, resolve_reference
from workflows.jobstore import JobStore
from workflows.settings import get_settings
from workflows.submit import job_dir

from .test_ogcapi import assert_problem, make_app

SECRET = b"secret products of alice"


@pytest.fixture
def acl(tmp_path, monkeypatch):
    settings = get_settings({"GDM_HOME": str(tmp_path / "home")})
    settings.ensure_dirs()
    store = JobStore(settings.database_url)
    monkeypatch.setattr(celery_app, "enqueue", lambda job, settings_=None: None)
    monkeypatch.setattr(celery_app, "revoke", lambda job, settings_=None: None)
    client = make_app(settings, store).test_client()
    tokens = {}
    for name, role, quota in (("alice", "user", 20), ("bob", "user", 2), ("olga", "operator", 20),
                              ("root", "admin", 20)):
        tokens[name] = store.create_user(name, role, quota)[1]

    def call(method: str, url: str, user: str | None, **kw):
        headers = kw.pop("headers", {})
        if user is not None:
            headers["Authorization"] = f"Bearer {tokens[user]}"
        return client.open(url, method=method, headers=headers, **kw)

    def finished_job(owner: str, public: bool = False):
        job = store.create_job(owner, "gdm-opt", {"images": ["a", "b"]}, "ondemand",
                               public=public)
        path = job_dir(job, settings) / "products" / "east.tif"
        path.parent.mkdir(parents=True)
        path.write_bytes(SECRET)
        store.claim(job.id, "w", 60)
        return store.finish(job.id, {"east": "products/east.tif",
                                     "quicklooks": ["products/east.tif"]}, "w")

    return SimpleNamespace(call=call, store=store, settings=settings, tokens=tokens,
                           finished_job=finished_job, client=client)


def _job_urls(job_id: str) -> list[tuple[str, str]]:
    base = f"/ogcapi/jobs/{job_id}"
    return [("GET", base), ("GET", base + "/results"), ("GET", base + "/quicklooks"),
            ("GET", base + "/download/products/east.tif"), ("DELETE", base)]


def test_every_request_needs_a_token_once_accounts_exist(acl):
    for method, url in [("GET", "/ogcapi/"), ("GET", "/ogcapi/conformance"),
                        ("GET", "/ogcapi/api"), ("GET", "/ogcapi/processes"),
                        ("GET", "/ogcapi/jobs"), ("POST", "/ogcapi/processes/echo/execution"),
                        ("POST", "/ogcapi/uploads"), ("GET", "/ogcapi/uploads")]:
        resp = acl.call(method, url, None)
        assert_problem(resp, 401, contains="token")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = acl.client.get("/ogcapi/jobs", headers={"Authorization": "Bearer wrong"})
    assert_problem(resp, 401)
    # a token in the URL is not read (URLs end up in logs and histories)
    assert acl.client.get("/ogcapi/jobs?token=" + acl.tokens["alice"]).status_code == 401
    acl.client.set_cookie("gdm_token", acl.tokens["alice"])
    assert acl.client.get("/ogcapi/jobs").status_code == 200


def test_jobs_are_owned_by_the_caller(acl):
    resp = acl.call("POST", "/ogcapi/processes/echo/execution", "alice",
                    json={"inputs": {"message": "x"}}, headers={"Prefer": "respond-async"})
    assert resp.status_code == 201
    job = acl.store.get(resp.get_json()["jobID"])
    assert job.owner == "alice" and resp.get_json()["owner"] == "alice"


def test_other_users_private_job_and_products_are_invisible(acl):
    job = acl.finished_job("alice")
    for method, url in _job_urls(job.id):
        ok = acl.call(method if method == "GET" else "GET", url, "alice")
        assert ok.status_code == 200, url
        ok.close()
        resp = acl.call(method, url, "bob")
        assert_problem(resp, 404, contains=job.id)  # not 403: ids cannot be probed
        assert SECRET not in resp.data
    assert acl.store.get(job.id).status == "successful"  # bob's DELETE did nothing
    assert [j["jobID"] for j in acl.call("GET", "/ogcapi/jobs", "bob").get_json()["jobs"]] == []
    mine = acl.call("GET", "/ogcapi/jobs", "alice").get_json()["jobs"]
    assert [j["jobID"] for j in mine] == [job.id]
    # admins see and may dismiss everything
    assert [j["jobID"] for j in acl.call("GET", "/ogcapi/jobs", "root").get_json()["jobs"]] \
        == [job.id]
    with acl.call("GET", f"/ogcapi/jobs/{job.id}/download/products/east.tif", "root") as r:
        assert r.data == SECRET


def test_public_job_is_readable_by_others_but_only_owner_dismisses(acl):
    job = acl.finished_job("alice", public=True)
    with acl.call("GET", f"/ogcapi/jobs/{job.id}/download/products/east.tif", "bob") as r:
        assert r.status_code == 200 and r.data == SECRET
    assert acl.call("GET", f"/ogcapi/jobs/{job.id}/results", "bob").status_code == 200
    assert job.id in [j["jobID"] for j in acl.call("GET", "/ogcapi/jobs", "bob").get_json()["jobs"]]
    running = acl.store.create_job("alice", "echo", {"message": "m"}, "ondemand", public=True)
    assert_problem(acl.call("DELETE", f"/ogcapi/jobs/{running.id}", "bob"), 403, contains="owner")
    assert acl.store.get(running.id).status == "accepted"
    resp = acl.call("DELETE", f"/ogcapi/jobs/{running.id}", "alice")
    assert resp.get_json()["status"] == "dismissed"


def test_rapid_queue_is_for_operators_and_admins(acl):
    body = {"inputs": {"message": "x"}, "queue": "rapid"}
    assert_problem(acl.call("POST", "/ogcapi/processes/echo/execution", "alice", json=body,
                            headers={"Prefer": "respond-async"}), 403, contains="rapid")
    for user in ("olga", "root"):
        resp = acl.call("POST", "/ogcapi/processes/echo/execution", user, json=body,
                        headers={"Prefer": "respond-async"})
        assert resp.status_code == 201 and resp.get_json()["queue"] == "rapid"


def test_quota_of_unfinished_jobs_is_429(acl):
    def post():
        return acl.call("POST", "/ogcapi/processes/echo/execution", "bob",
                        json={"inputs": {"message": "x"}}, headers={"Prefer": "respond-async"})

    first, second = post(), post()
    assert first.status_code == second.status_code == 201
    assert_problem(post(), 429, contains="quota 2")
    acl.store.dismiss(first.get_json()["jobID"])  # a finished job frees a slot
    assert post().status_code == 201


@pytest.mark.parametrize("relpath", [
    "../../jobs.sqlite", "..%2f..%2fjobs.sqlite", "%2e%2e/%2e%2e/jobs.sqlite",
    "products/../../../jobs.sqlite", "products/%2e%2e/%2e%2e/%2e%2e/jobs.sqlite",
    "%2fetc%2fpasswd", "/etc/passwd", "..\\..\\jobs.sqlite", "products/..%5c..%5c..%5cjobs.sqlite",
])
def test_dot_dot_is_refused_in_download_paths(acl, relpath):
    job = acl.finished_job("alice")
    assert (acl.settings.home / "jobs.sqlite").is_file()  # what a climb would reach
    resp = acl.call("GET", f"/ogcapi/jobs/{job.id}/download/{relpath}", "alice")
    assert resp.status_code in (400, 404), relpath
    assert resp.mimetype == "application/problem+json"
    assert b"SQLite format" not in resp.data and b"root:" not in resp.data


def test_dot_dot_is_refused_in_job_and_process_ids(acl):
    job = acl.finished_job("alice")
    for url in (f"/ogcapi/jobs/..%2f{job.id}", f"/ogcapi/jobs/%2e%2e/{job.id}/results",
                "/ogcapi/processes/..%2fecho", "/ogcapi/processes/%2e%2e/execution"):
        resp = acl.call("GET", url, "alice")
        assert resp.status_code in (400, 404, 405), url
        assert SECRET not in resp.data


def test_a_users_job_cannot_read_another_users_upload_via_sibling_path(acl):
    other = acl.finished_job("bob")
    # a job of alice's whose folder is a sibling: the download stays inside alice's job
    mine = acl.finished_job("alice")
    resp = acl.call("GET", f"/ogcapi/jobs/{mine.id}/download/../{other.id}/products/east.tif",
                    "alice")
    assert resp.status_code in (400, 404)


@pytest.mark.parametrize("name", ["../evil.tif", "..%2fevil.tif", "%2e%2e/evil.tif",
                                  "a/../../evil.tif", "/tmp/evil.tif", ".."])
def test_dot_dot_is_refused_in_upload_names(acl, name):
    raw = acl.call("POST", "/ogcapi/uploads", "alice", data=b"evil",
                   query_string={"name": name}, content_type="application/octet-stream")
    assert_problem(raw, 400)
    multipart = acl.call("POST", "/ogcapi/uploads", "alice", content_type="multipart/form-data",
                         data={"file": (io.BytesIO(b"evil"), name)})
    assert multipart.status_code == 400
    assert not list(acl.settings.home.rglob("evil.tif"))
    assert acl.call("DELETE", f"/ogcapi/uploads/{name}", "alice").status_code in (400, 404)


def test_uploads_are_per_user(acl):
    resp = acl.call("POST", "/ogcapi/uploads?name=scene.tif", "alice", data=b"alice's scene",
                    content_type="application/octet-stream")
    assert resp.status_code == 201
    assert (acl.settings.uploads_dir / "alice" / "scene.tif").read_bytes() == b"alice's scene"
    assert acl.call("GET", "/ogcapi/uploads", "bob").get_json()["uploads"] == []
    assert_problem(acl.call("DELETE", "/ogcapi/uploads/scene.tif", "bob"), 404)
    assert [u["name"] for u in acl.call("GET", "/ogcapi/uploads", "alice").get_json()["uploads"]] \
        == ["scene.tif"]
    # a job of bob's naming alice's upload finds nothing: jobs see their owner's folder
    job = acl.store.create_job("bob", "gdm-opt", {"images": ["scene.tif", "x.tif"]}, "ondemand")
    ctx = JobContext(job.id, job_dir(job, acl.settings),
                     user_uploads(acl.settings.uploads_dir, "bob"), lambda f, m: None)
    from gdmcore import InputError

    with pytest.raises(InputError, match="no uploaded file named 'scene.tif'"):
        resolve_reference("scene.tif", ctx)
    with pytest.raises(InputError, match="refused file name"):
        resolve_reference("../alice/scene.tif", ctx)


def test_user_names_unfit_for_a_folder_cannot_upload(acl):
    token = acl.store.create_user("../x", "user")[1]
    resp = acl.client.post("/ogcapi/uploads?name=a.tif", data=b"x",
                           content_type="application/octet-stream",
                           headers={"Authorization": f"Bearer {token}"})
    assert_problem(resp, 400, contains="uploads folder")
    assert not (acl.settings.uploads_dir.parent / "x").exists()
