"""WPS end to end: OWSLib against a real ``gdm serve`` and real Celery workers.

GetCapabilities, DescribeProcess and an asynchronous Execute of gdm-opt on simulated
images served over HTTP (127.0.0.1), monitored to success with ``checkStatus``; the
products are downloaded through their references, checked to be valid COGs and
compared with the simulator's truth. Also a synchronous echo and the WPS 2.0 GetStatus,
GetResult and Dismiss of the same jobs. Runs on the embedded default (SQLite broker,
local workers) and on Redis with a separately started worker.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid

import pytest
import requests
from lxml import etree
from owslib.wps import ASYNC, SYNC, ComplexDataInput, WebProcessingService

from gdm_opt.demo import accuracy_against_truth
from gdmio.cog import validate_cog
from simulators.opt import SimulateConfig, simulate
from workflows.jobstore import JobStore
from workflows.settings import get_settings
from workflows.worker import start_worker, stop_worker, wait_ready

from .serverutil import running_server, serve_files

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WPS2 = "{http://www.opengis.net/wps/2.0}"
REDIS = "redis://127.0.0.1:6379/9"  # its own database: test files run in parallel
RES = 10.0  # simulator's pixel size, m
OPT_OUTPUTS = ["east", "north", "magnitude", "score", "item", "report", "quicklooks"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    sim = simulate(SimulateConfig(case="fault", size=256, dates=2, seed=3),
                   tmp_path_factory.mktemp("wps-scenes") / "pair")
    base = serve_files(sim.images[0].parent)
    return sim, [f"{base}/{p.name}" for p in sim.images]


def monitor(execution, timeout: float = 300.0) -> list[tuple[str, int]]:
    """checkStatus until complete; returns the (status, percent) sequence seen."""
    seen = [(execution.status, execution.percentCompleted)]
    deadline = time.monotonic() + timeout
    while not execution.isComplete():
        assert time.monotonic() < deadline, f"job still {execution.status} after {timeout} s"
        execution.checkStatus(sleepSecs=0.3)
        if (execution.status, execution.percentCompleted) != seen[-1]:
            seen.append((execution.status, execution.percentCompleted))
    return seen


def job_id_of(status_location: str) -> str:
    path = urllib.parse.urlsplit(status_location).path
    return path.rsplit("/", 1)[1].removesuffix(".xml")


def wps2(base: str, op: str, job_id: str) -> etree._Element:
    resp = requests.get(f"{base}/wps", params={"service": "WPS", "version": "2.0.0",
                                               "request": op, "jobId": job_id}, timeout=30)
    assert resp.status_code == 200, resp.text
    return etree.fromstring(resp.content)


def owslib_flow(base: str, scenes, tmp_path) -> dict[str, float]:
    sim, hrefs = scenes
    timings = {}
    t0 = time.monotonic()
    wps = WebProcessingService(f"{base}/wps")
    timings["getcapabilities"] = time.monotonic() - t0
    assert {"gdm-opt", "echo"} <= {p.identifier for p in wps.processes}
    assert wps.getOperationByName("Execute").methods[0]["url"] == f"{base}/wps"

    t0 = time.monotonic()
    proc = wps.describeprocess("gdm-opt")
    timings["describeprocess"] = time.monotonic() - t0
    images = next(i for i in proc.dataInputs if i.identifier == "images")
    # images, or scenes by area and dates: each optional on its own
    assert images.dataType == "ComplexData" and (images.minOccurs, images.maxOccurs) == (0, 200)
    assert {"dsm-opt", "flatsim-campaign", "gdm-sar"} <= {p.identifier for p in wps.processes}

    t0 = time.monotonic()
    execution = wps.execute("gdm-opt", inputs=[("images", ComplexDataInput(h)) for h in hrefs]
                            + [("preset", "etq")], mode=ASYNC,
                            output=[(name, True) for name in OPT_OUTPUTS])
    timings["execute_answer"] = time.monotonic() - t0
    assert execution.status == "ProcessAccepted", execution.response
    assert execution.statusLocation.startswith(f"{base}/wps/status/")
    job_id = job_id_of(execution.statusLocation)
    seen = monitor(execution)
    timings["gdm_opt_job"] = time.monotonic() - t0
    assert execution.isSucceded(), (execution.status, [e.text for e in execution.errors])
    assert seen[-1] == ("ProcessSucceeded", 100)
    assert all(s in ("ProcessAccepted", "ProcessStarted", "ProcessSucceeded") for s, _ in seen)

    outputs = {o.identifier: o for o in execution.processOutputs}
    assert set(outputs) == set(OPT_OUTPUTS)
    t0 = time.monotonic()
    paths = {}
    for name in ("east", "north", "magnitude", "score"):
        ref = outputs[name].reference
        assert ref.startswith(f"{base}/ogcapi/jobs/{job_id}/download/"), ref
        assert outputs[name].mimeType.startswith("image/tiff")
        data = outputs[name].retrieveData()
        paths[name] = tmp_path / f"{name}.tif"
        paths[name].write_bytes(data)
        ok, errors, _ = validate_cog(paths[name])
        assert ok, (name, errors)
    looks = requests.get(outputs["quicklooks"].reference, timeout=30)
    assert looks.status_code == 200 and looks.json()["quicklooks"]
    timings["download"] = time.monotonic() - t0
    acc = accuracy_against_truth(paths["east"], paths["north"], sim.truth_east,
                                 sim.truth_north, band=2, resolution=RES)
    print(f"gdm-opt via WPS: RMSE {acc.rmse_px:.4f} px, valid {acc.valid_fraction:.3f}")
    assert acc.rmse_px <= 0.1 and acc.valid_fraction >= 0.8

    # WPS 2.0 on the same job
    info = wps2(base, "GetStatus", job_id)
    assert info.findtext(f"{WPS2}Status") == "Succeeded"
    result = wps2(base, "GetResult", job_id)
    refs = {o.get("id"): o.find(f"{WPS2}Reference") for o in result.findall(f"{WPS2}Output")}
    assert refs["east"].get("{http://www.w3.org/1999/xlink}href") == outputs["east"].reference

    # synchronous echo
    t0 = time.monotonic()
    echo = wps.execute("echo", inputs=[("message", "bonjour WPS")], mode=SYNC)
    timings["echo_sync"] = time.monotonic() - t0
    assert echo.isSucceded(), echo.response
    assert [(o.identifier, o.data) for o in echo.processOutputs] == \
        [("message", ["bonjour WPS"])]

    # dismiss a job through WPS 2.0: it never runs to success
    doomed = wps.execute("gdm-opt", inputs=[("images", ComplexDataInput(h)) for h in hrefs],
                         mode=ASYNC, output=[("east", True)])
    doomed_id = job_id_of(doomed.statusLocation)
    assert wps2(base, "Dismiss", doomed_id).findtext(f"{WPS2}Status") == "Dismissed"
    # (fails when the job store loses the dismissal to a worker's concurrent claim)
    assert wps2(base, "GetStatus", doomed_id).findtext(f"{WPS2}Status") == "Dismissed"
    raw = requests.get(doomed.statusLocation, timeout=30)
    assert raw.status_code == 200 and b"ProcessFailed" in raw.content, raw.text
    doomed.checkStatus(sleepSecs=0)
    assert doomed.isComplete() and not doomed.isSucceded(), (doomed.status, doomed.response)
    assert "dismissed" in doomed.errors[0].text
    missing = requests.get(f"{base}/wps", params={
        "service": "WPS", "version": "2.0.0", "request": "GetStatus",
        "jobId": str(uuid.uuid4())}, timeout=30)
    assert missing.status_code == 404 and b"NoSuchJob" in missing.content
    bad = requests.get(f"{base}/wps?" + urllib.parse.urlencode(
        {"service": "WPS", "version": "1.0.0", "request": "Execute", "identifier": "gdm-opt",
         "DataInputs": "window=abc"}), timeout=30)
    assert bad.status_code == 400 and b"ExceptionReport" in bad.content
    return timings


def accounts_flow(base) -> None:
    """Once accounts exist: tokens required, a user cannot follow another user's job."""
    store = JobStore(get_settings(base.env).database_url)
    _, alice = store.create_user("alice", "user")
    _, bob = store.create_user("bob", "user")
    anonymous = requests.get(f"{base}/wps?service=WPS&request=GetCapabilities", timeout=30)
    assert anonymous.status_code == 401 and b"ExceptionReport" in anonymous.content
    wps = WebProcessingService(f"{base}/wps", headers={"Authorization": f"Bearer {alice}"})
    execution = wps.execute("echo", inputs=[("message", "private")], mode=ASYNC,
                            output=[("message", False)])
    assert execution.status in ("ProcessAccepted", "ProcessStarted", "ProcessSucceeded")
    monitor(execution, timeout=60)
    assert execution.processOutputs[0].data == ["private"]
    job_id = job_id_of(execution.statusLocation)
    as_bob = {"Authorization": f"Bearer {bob}"}
    status = requests.get(execution.statusLocation, headers=as_bob, timeout=30)
    assert status.status_code == 404 and b"private" not in status.content
    result = requests.get(f"{base}/wps", headers=as_bob, timeout=30, params={
        "service": "WPS", "version": "2.0.0", "request": "GetResult", "jobId": job_id})
    assert result.status_code == 404 and b"NoSuchJob" in result.content
    assert store.get(job_id).owner == "alice"


def test_owslib_on_embedded_default(scenes, tmp_path):
    # the inputs are served from 127.0.0.1: allowed explicitly
    with running_server({"GDM_ALLOWED_HOSTS": "127.0.0.1"}) as base:
        timings = owslib_flow(base, scenes, tmp_path)
        accounts_flow(base)
    print("embedded:", {k: round(v, 2) for k, v in timings.items()})


def test_owslib_on_redis_with_external_worker(scenes, tmp_path):
    env = {"GDM_BROKER_URL": REDIS, "GDM_RESULT_BACKEND": REDIS,
           "GDM_QUEUE_PREFIX": f"wps{uuid.uuid4().hex[:8]}-", "GDM_ALLOWED_HOSTS": "127.0.0.1"}
    with running_server(env) as base:
        ready = base.home / "wps-worker.ready"
        worker = start_worker("rapid,ondemand,batch", env=base.env, ready_file=ready,
                              log_file=base.home / "wps-worker.log")
        try:
            wait_ready(ready, worker, timeout=90)
            timings = owslib_flow(base, scenes, tmp_path)
        finally:
            stop_worker(worker)
    print("redis:", {k: round(v, 2) for k, v in timings.items()})
