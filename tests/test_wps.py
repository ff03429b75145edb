"""WPS 1.0.0 / 2.0 handlers through the Flask test client, documents parsed by OWSLib.

No server and no broker: Celery's ``enqueue`` is replaced by a recorder, or by an inline
executor that runs the process in the test, as the worker would.
"""

from __future__ import annotations

import urllib.parse

import pytest
from flask import Flask
from lxml import etree
from owslib.wps import (
    ASYNC,
    SYNC,
    ComplexDataInput,
    WebProcessingService,
    WPSExecution,
)
from pydantic import BaseModel, ConfigDict, Field

from gdmio.process import OutputSpec, ProcessSpec
from tests.handlerutil import service
from workflows.processes import PROCESSES
from workflows.settings import get_settings
from workflows.submit import job_dir
from wps.context import AppState
from wps.wps1 import (
    OWS2_NS,
    OWS_NS,
    WPS2_NS,
    WPS_NS,
    bp,
    input_kinds,
    pywps_process,
    request_inputs,
)

NS = {"wps": WPS_NS, "ows": OWS_NS, "wps2": WPS2_NS, "ows2": OWS2_NS}


def make_app(settings, store) -> Flask:
    app = Flask("test-wps")
    app.extensions["gdm"] = AppState(settings=settings, store=store)
    app.register_blueprint(bp, url_prefix="/wps")
    return app


@pytest.fixture
def svc(tmp_path, monkeypatch):
    return service(tmp_path, monkeypatch, make_app, sync_timeout=1.0)


def xml(resp):
    return etree.fromstring(resp.get_data())


def exception(resp, status: int, code: str, locator: str | None = None, ows=OWS_NS):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "text/xml"
    root = xml(resp)
    assert root.tag == f"{{{ows}}}ExceptionReport"
    exc = root.find(f"{{{ows}}}Exception")
    assert exc.get("exceptionCode") == code, resp.get_data(as_text=True)
    if locator is not None:
        assert exc.get("locator") == locator
    text = exc.find(f"{{{ows}}}ExceptionText").text
    assert text
    return text


def local_path(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    assert parsed.netloc == "localhost"
    return parsed.path + (f"?{parsed.query}" if parsed.query else "")


def owslib_execute_xml(identifier, inputs, mode=ASYNC, output=None) -> bytes:
    return etree.tostring(WPSExecution().buildRequest(identifier, inputs, output, mode=mode))


def parse_execution(resp) -> WPSExecution:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    ex = WPSExecution()
    ex.checkStatus(response=resp.get_data(), sleepSecs=0)
    return ex


def finished_opt_job(svc, owner="local"):
    job = svc.store.create_job(owner, "gdm-opt", {"images": ["a.tif", "b.tif"]}, "ondemand")
    root = job_dir(job, svc.settings)
    for rel in ("products/east.tif", "products/east.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * 10)
    svc.store.claim(job.id, "w", 60)
    return svc.store.finish(job.id, {"east": "products/east.tif",
                                     "quicklooks": ["products/east.png"]}, "w")


# ------------------------------------------------------------ descriptions
def test_getcapabilities_lists_every_process_for_owslib(svc):
    resp = svc.client.get("/wps?service=WPS&request=GetCapabilities")
    assert resp.status_code == 200 and resp.mimetype == "text/xml"
    wps = WebProcessingService("http://localhost/wps", skip_caps=True)
    wps.getcapabilities(xml=resp.get_data())
    assert sorted(p.identifier for p in wps.processes) == sorted(PROCESSES)
    assert {op.name for op in wps.operations} >= {"GetCapabilities", "DescribeProcess",
                                                   "Execute"}
    assert wps.identification.title.startswith("Ground deformation")
    execute = wps.getOperationByName("Execute")
    assert execute.methods[0]["url"] == "http://localhost/wps"


def test_getcapabilities_post_and_trailing_slash(svc):
    body = (b'<wps:GetCapabilities xmlns:wps="http://www.opengis.net/wps/1.0.0" '
            b'xmlns:ows="http://www.opengis.net/ows/1.1" service="WPS"><ows:AcceptVersions>'
            b'<ows:Version>1.0.0</ows:Version></ows:AcceptVersions></wps:GetCapabilities>')
    resp = svc.client.post("/wps/", data=body, content_type="text/xml")
    assert resp.status_code == 200
    assert xml(resp).tag == f"{{{WPS_NS}}}Capabilities"


def test_public_url_is_used_in_capabilities(svc, tmp_path):
    settings = get_settings({"GDM_HOME": str(tmp_path / "h2"),
                             "GDM_PUBLIC_URL": "https://gdm.example.org/"})
    client = make_app(settings, svc.store).test_client()
    resp = client.get("/wps?service=WPS&request=GetCapabilities")
    wps = WebProcessingService("http://x/wps", skip_caps=True)
    wps.getcapabilities(xml=resp.get_data())
    assert wps.getOperationByName("Execute").methods[0]["url"] == \
        "https://gdm.example.org/wps"


def test_describeprocess_gdm_opt_inputs_from_model(svc):
    resp = svc.client.get("/wps?service=WPS&version=1.0.0&request=DescribeProcess"
                          "&identifier=gdm-opt")
    wps = WebProcessingService("http://localhost/wps", skip_caps=True)
    proc = wps.describeprocess("gdm-opt", xml=resp.get_data())
    ins = {i.identifier: i for i in proc.dataInputs}
    assert set(ins) == set(PROCESSES["gdm-opt"].input_schemas())
    images = ins["images"]
    assert images.dataType == "ComplexData"
    # images or scenes (area + dates): each is optional on its own
    assert (images.minOccurs, images.maxOccurs) == (0, 200)
    assert "image/tiff" in [f.mimeType for f in images.supportedValues]
    scenes = ins["scenes"]
    assert scenes.dataType == "ComplexData" and scenes.minOccurs == 0
    assert "application/json" in [f.mimeType for f in scenes.supportedValues]
    preset = ins["preset"]
    assert preset.minOccurs == 0 and preset.defaultValue == "etq"
    assert sorted(preset.allowedValues) == ["etq", "ice", "slide"]
    assert ins["window"].dataType == "integer" and ins["min_score"].dataType == "float"
    assert ins["neighbours"].defaultValue == 2
    outs = {o.identifier: o for o in proc.processOutputs}
    assert set(outs) == set(PROCESSES["gdm-opt"].outputs) | {"quicklooks"}
    assert outs["east"].dataType == "ComplexData"
    assert proc.storeSupported in (True, "true") and proc.statusSupported in (True, "true")


def test_describeprocess_echo_and_all(svc):
    resp = svc.client.get("/wps?service=WPS&version=1.0.0&request=DescribeProcess"
                          "&identifier=all")
    wps = WebProcessingService("http://localhost/wps", skip_caps=True)
    procs = wps.describeprocess("all", xml=resp.get_data())
    assert sorted(p.identifier for p in procs) == sorted(PROCESSES)
    echo = next(p for p in procs if p.identifier == "echo")
    assert [(i.identifier, i.dataType, i.minOccurs) for i in echo.dataInputs] == \
        [("message", "string", 1)]
    assert [(o.identifier, o.dataType) for o in echo.processOutputs] == [("message", "string")]


class _Odd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flag: bool = Field(False, description="A switch.")
    sizes: list[int] = Field(default_factory=list, description="Sizes.", max_length=5)
    options: dict[str, float] = Field(default_factory=dict, description="Free options.")
    mask: str | None = Field(None, description="URL of a mask raster.")
    ratio: float = Field(0.5, gt=0, le=1, description="A ratio.")


ODD = ProcessSpec(id="odd", title="Odd", description="d", version="0.1", inputs_model=_Odd,
                  outputs={"n": OutputSpec("N", "literal", "text/plain", {"type": "integer"})},
                  execute=lambda i, c: {"n": 1})


def test_input_kinds_cover_every_schema_shape():
    kinds = input_kinds(ODD)
    assert (kinds["flag"].kind, kinds["flag"].data_type, kinds["flag"].min_occurs) == \
        ("literal", "boolean", 0)
    assert (kinds["sizes"].kind, kinds["sizes"].array, kinds["sizes"].max_occurs) == \
        ("literal", True, 5)
    assert kinds["options"].kind == "json"
    assert kinds["mask"].kind == "reference" and not kinds["mask"].array
    assert kinds["ratio"].data_type == "float"
    opt = input_kinds(PROCESSES["gdm-opt"])
    assert (opt["images"].kind, opt["images"].min_occurs, opt["images"].max_occurs) == \
        ("reference", 0, 200)
    assert opt["stable"].kind == "literal"  # "path of a mask raster" is not a URL input
    proc = pywps_process(ODD)
    ratio = next(i for i in proc.inputs if i.identifier == "ratio")
    assert ratio.allowed_values[0].range_closure == "open-closed"
    assert [i.identifier for i in proc.inputs] == ["flag", "sizes", "options", "mask", "ratio"]


def test_describeprocess_renders_every_input_shape(svc, monkeypatch):
    monkeypatch.setitem(PROCESSES, "odd", ODD)
    resp = svc.client.get("/wps?service=WPS&version=1.0.0&request=DescribeProcess"
                          "&identifier=odd")
    wps = WebProcessingService("http://localhost/wps", skip_caps=True)
    proc = wps.describeprocess("odd", xml=resp.get_data())
    got = {i.identifier: (i.dataType, i.minOccurs, i.maxOccurs) for i in proc.dataInputs}
    assert got == {"flag": ("boolean", 0, 1), "sizes": ("integer", 0, 5),
                   "options": ("ComplexData", 0, 1), "mask": ("ComplexData", 0, 1),
                   "ratio": ("float", 0, 1)}
    ratio = next(i for i in proc.dataInputs if i.identifier == "ratio")
    assert ratio.defaultValue == 0.5
    root = xml(resp)
    rng = root.find(".//ows:Range", namespaces=NS)
    assert rng.get(f"{{{OWS_NS}}}rangeClosure") == "open-closed"
    assert [rng.findtext(f"ows:{k}", namespaces=NS) for k in ("MinimumValue", "MaximumValue")] \
        == ["0", "1"]
    assert [o.identifier for o in proc.processOutputs] == ["n"]


def test_request_inputs_conversion_and_errors():
    raw = {"flag": [{"data": "true"}], "sizes": [{"data": "3"}, {"data": "4"}],
           "options": [{"data": '{"a": 1.5}'}], "mask": [{"href": "http://h/m.tif"}],
           "ratio": [{"data": " 0.25 "}]}
    assert request_inputs(ODD, raw) == {"flag": True, "sizes": [3, 4], "options": {"a": 1.5},
                                        "mask": "http://h/m.tif", "ratio": 0.25}
    with pytest.raises(Exception) as empty:  # an empty literal is no value: refused
        request_inputs(ODD, {"ratio": [{"data": ""}]})
    assert (empty.value.code, empty.value.locator) == ("MissingParameterValue", "ratio")
    assert request_inputs(ODD, {"mask": [{"data": " upload:m.tif\n"}]}) == {"mask": "upload:m.tif"}
    assert request_inputs(ODD, {"mask": [{"data": "m.tif"}]}) == {"mask": "m.tif"}
    for bad, locator in (({"flag": [{"data": "maybe"}]}, "flag"),
                         ({"ratio": [{"data": "1/2"}]}, "ratio"),
                         ({"sizes": [{"data": "2.5"}]}, "sizes"),
                         ({"options": [{"data": "{"}]}, "options"),
                         ({"mask": [{"href": "file:///etc/passwd"}]}, "mask"),
                         ({"mask": [{"href": "upload:m.tif"}]}, "mask"),
                         ({"mask": [{"data": "ftp://h/m.tif"}]}, "mask"),
                         ({"ratio": [{"data": "1"}, {"data": "2"}]}, "ratio"),
                         ({"nope": [{"data": "1"}]}, "nope")):
        with pytest.raises(Exception) as info:
            request_inputs(ODD, bad)
        assert (info.value.code, info.value.locator) == ("InvalidParameterValue", locator)


# ----------------------------------------------------------------- execute
OPT_OUTPUTS = [(name, True) for name in [*PROCESSES["gdm-opt"].outputs, "quicklooks"]]


def test_async_execute_gdm_opt_follows_the_job(svc, monkeypatch):
    import wps.wps1

    def no_wait(*args, **kwargs):
        raise AssertionError("an asynchronous execute must not wait for its job")

    monkeypatch.setattr(wps.wps1, "wait", no_wait)
    hrefs = ["http://127.0.0.1:9/a_20200101.tif", "http://127.0.0.1:9/b_20200201.tif"]
    body = owslib_execute_xml("gdm-opt", [("images", ComplexDataInput(h)) for h in hrefs]
                              + [("window", "32"), ("preset", "slide")], output=OPT_OUTPUTS)
    assert b'storeExecuteResponse="true"' in body
    resp = svc.client.post("/wps", data=body, content_type="text/xml")
    ex = parse_execution(resp)
    assert ex.status == "ProcessAccepted" and not ex.isComplete()
    assert len(svc.sent) == 1
    job_id = svc.sent[0]
    assert ex.statusLocation == f"http://localhost/wps/status/{job_id}.xml"
    job = svc.store.get(job_id)
    assert job.process == "gdm-opt" and job.inputs["images"] == hrefs
    assert job.inputs["window"] == 32 and job.inputs["preset"] == "slide"

    status_url = local_path(ex.statusLocation)
    svc.store.claim(job_id, "w", 60)
    svc.store.report(job_id, 42, "correlating pair 1/1", "w", 60)
    ex.checkStatus(response=svc.client.get(status_url).get_data(), sleepSecs=0)
    assert ex.status == "ProcessStarted" and ex.percentCompleted == 42
    assert ex.statusMessage == "correlating pair 1/1"

    root = job_dir(job, svc.settings)
    (root / "products").mkdir(parents=True)
    (root / "products" / "east.tif").write_bytes(b"tif")
    (root / "products" / "east.png").write_bytes(b"png")
    svc.store.finish(job_id, {"east": "products/east.tif", "quicklooks": ["products/east.png"]},
                     "w")
    ex.checkStatus(response=svc.client.get(status_url).get_data(), sleepSecs=0)
    assert ex.status == "ProcessSucceeded" and ex.isSucceded() and ex.percentCompleted == 100
    outs = {o.identifier: o for o in ex.processOutputs}
    assert set(outs) == {"east", "quicklooks"}
    assert outs["east"].reference == \
        f"http://localhost/ogcapi/jobs/{job_id}/download/products/east.tif"
    assert outs["east"].mimeType.startswith("image/tiff")
    assert outs["quicklooks"].reference == f"http://localhost/ogcapi/jobs/{job_id}/quicklooks"
    # the outputs asked for are kept by the status location
    body = owslib_execute_xml("gdm-opt", [("images", ComplexDataInput(h)) for h in hrefs],
                              output=[("east", True)])
    ex = parse_execution(svc.client.post("/wps", data=body, content_type="text/xml"))
    assert ex.statusLocation.endswith(".xml?outputs=east")
    svc.store.claim(svc.sent[-1], "w", 60)
    svc.store.finish(svc.sent[-1], {"east": "products/east.tif", "north": "products/n.tif"},
                     "w")
    ex.checkStatus(response=svc.client.get(local_path(ex.statusLocation)).get_data(),
                   sleepSecs=0)
    assert [o.identifier for o in ex.processOutputs] == ["east"]


def test_failed_and_dismissed_jobs_report_process_failed(svc):
    job = svc.store.create_job("local", "echo", {"message": "m"}, "ondemand")
    svc.store.claim(job.id, "w", 60)
    svc.store.fail(job.id, "input images do not overlap", "w")
    resp = svc.client.get(f"/wps/status/{job.id}.xml")
    status = xml(resp).find("wps:Status", namespaces=NS)
    assert [etree.QName(e).localname for e in status] == ["ProcessFailed"]
    ex = parse_execution(resp)
    # OWSLib reads the ows:ExceptionReport inside ProcessFailed as status "Exception"
    assert ex.status == "Exception" and ex.isComplete() and not ex.isSucceded()
    assert [e.text for e in ex.errors] == ["input images do not overlap"]
    assert ex.errors[0].code == "NoApplicableCode"
    other = svc.store.create_job("local", "echo", {"message": "m"}, "ondemand")
    svc.store.dismiss(other.id)
    ex = parse_execution(svc.client.get(f"/wps/status/{other.id}.xml"))
    assert ex.isComplete() and "dismissed" in ex.errors[0].text


def test_sync_execute_echo_returns_literal(svc):
    svc.mode["inline"] = True
    body = owslib_execute_xml("echo", [("message", "héllo <wps> & co")], mode=SYNC)
    ex = parse_execution(svc.client.post("/wps", data=body, content_type="text/xml"))
    assert ex.status == "ProcessSucceeded"
    assert ex.statusLocation is None
    (out,) = ex.processOutputs
    assert (out.identifier, out.data) == ("message", ["héllo <wps> & co"])
    job = svc.store.get(svc.sent[0])
    assert job.status == "successful" and job.inputs == {"message": "héllo <wps> & co"}


def test_sync_execute_kvp_and_raw_output(svc):
    svc.mode["inline"] = True
    resp = svc.client.get("/wps?service=WPS&version=1.0.0&request=Execute&identifier=echo"
                          "&DataInputs=message=bonjour")
    ex = parse_execution(resp)
    assert ex.processOutputs[0].data == ["bonjour"]
    raw = svc.client.get("/wps?service=WPS&version=1.0.0&request=Execute&identifier=echo"
                         "&DataInputs=message=brut&RawDataOutput=message")
    assert raw.status_code == 200 and raw.get_data(as_text=True) == "brut"
    assert raw.mimetype == "text/plain"


def test_sync_execute_of_a_long_job_answers_its_status_location(svc):
    # OWSLib sends no ResponseForm without outputs: that is a synchronous request
    body = owslib_execute_xml("echo", [("message", "slow")], mode=ASYNC)
    assert b"ResponseForm" not in body
    ex = parse_execution(svc.client.post("/wps", data=body, content_type="text/xml"))
    assert ex.status == "ProcessAccepted"
    assert ex.statusLocation.endswith(f"/wps/status/{svc.sent[0]}.xml")


def test_execute_picks_the_queue_and_checks_the_role(svc):
    body = owslib_execute_xml("echo", [("message", "x")], output=[("message", False)])
    parse_execution(svc.client.post("/wps?queue=batch", data=body, content_type="text/xml"))
    assert svc.store.get(svc.sent[-1]).queue == "batch"
    svc.store.create_user("alice", "user")
    _, token = svc.store.create_user("bob", "user")
    resp = svc.client.post("/wps?queue=rapid", data=body, content_type="text/xml",
                           headers={"Authorization": f"Bearer {token}"})
    assert "rapid" in exception(resp, 403, "NoApplicableCode")


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("query, status, code, locator", [
    ("", 400, "MissingParameterValue", "service"),
    ("service=WFS&request=GetCapabilities", 400, "InvalidParameterValue", "service"),
    ("service=WPS&request=Frobnicate", 400, "OperationNotSupported", None),
    ("service=WPS&version=1.0.0&request=DescribeProcess", 400, "MissingParameterValue",
     "identifier"),
    ("service=WPS&version=1.0.0&request=DescribeProcess&identifier=nope", 400,
     "InvalidParameterValue", "identifier"),
    ("service=WPS&version=3.0.0&request=DescribeProcess&identifier=echo", 400,
     "VersionNegotiationFailed", "version"),
    ("service=WPS&version=1.0.0&request=Execute&identifier=nope&DataInputs=a=1", 400,
     "InvalidParameterValue", "Identifier"),
    ("service=WPS&version=1.0.0&request=Execute&identifier=echo", 400,
     "MissingParameterValue", "message"),
    ("service=WPS&version=1.0.0&request=Execute&identifier=echo&DataInputs=msg=1", 400,
     "InvalidParameterValue", "msg"),
    ("service=WPS&version=1.0.0&request=Execute&identifier=gdm-opt"
     "&DataInputs=images=@xlink:href=http://h/a.tif", 400, "InvalidParameterValue", None),
        ("service=WPS&version=1.0.0&request=Execute&identifier=gdm-opt&DataInputs=window=9",
         400, "InvalidParameterValue", None),
    ("service=WPS&version=1.0.0&request=Execute&identifier=gdm-opt&DataInputs="
     "images=@xlink:href=http://h/a.tif;images=@xlink:href=http://h/b.tif;window=abc", 400,
     "InvalidParameterValue", "window"),
    ("service=WPS&version=1.0.0&request=Execute&identifier=echo&DataInputs=message=1"
     "&status=true", 400, "InvalidParameterValue", "status"),
    ("service=WPS&version=1.0.0&request=Execute&identifier=echo&DataInputs=message=1"
     "&ResponseDocument=nope", 400, "InvalidParameterValue", "nope"),
    ("service=WPS&version=1.0.0&request=Execute&identifier=echo&DataInputs=message=1"
     "&queue=express", 400, "InvalidParameterValue", None),
])
def test_bad_kvp_requests_are_ows_exceptions(svc, query, status, code, locator):
    exception(svc.client.get("/wps?" + query), status, code, locator)
    assert svc.sent == []


def test_model_validation_errors_name_the_input(svc):
    q = ("service=WPS&version=1.0.0&request=Execute&identifier=gdm-opt&DataInputs="
         "images=@xlink:href=http://h/a.tif;images=@xlink:href=http://h/b.tif;window=3")
    text = exception(svc.client.get("/wps?" + q), 400, "InvalidParameterValue")
    assert "window" in text and "8" in text
    assert svc.sent == []


@pytest.mark.parametrize("body, code", [
    (b"", "MissingParameterValue"),
    (b"<wps:Execute", "NoApplicableCode"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
     b'<x>&e;</x>', None),
    (b'<wps:Execute xmlns:wps="http://www.opengis.net/wps/1.0.0" service="WPS" '
     b'version="1.0.0"/>', "MissingParameterValue"),
    (b'<foo xmlns="urn:x"/>', None),
])
def test_bad_xml_posts_are_client_errors(svc, body, code):
    resp = svc.client.post("/wps", data=body, content_type="text/xml")
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert b"passwd" not in resp.get_data() or b"root:" not in resp.get_data()
    exception(resp, 400, code or xml(resp)[0].get("exceptionCode"))


W1 = ('xmlns:wps="http://www.opengis.net/wps/1.0.0" xmlns:ows="http://www.opengis.net/ows/1.1" '
      'service="WPS" version="1.0.0"')


@pytest.mark.parametrize("body, code, locator", [
    (f"<wps:Execute {W1}><ows:Identifier>echo</ows:Identifier><wps:DataInputs><wps:Input>"
     "<wps:Data><wps:LiteralData>x</wps:LiteralData></wps:Data></wps:Input></wps:DataInputs>"
     "</wps:Execute>", "InvalidParameterValue", "request"),
    (f"<wps:Execute {W1}><ows:Identifier>echo</ows:Identifier><wps:ResponseForm>"
     "<wps:ResponseDocument><wps:Output/></wps:ResponseDocument></wps:ResponseForm>"
     "</wps:Execute>", "InvalidParameterValue", "request"),
    (f"<wps:DescribeProcess {W1}/>", "MissingParameterValue", "identifier"),
    (f'<wps:Execute xmlns:wps="{WPS2_NS}"/>', "VersionNegotiationFailed", "version"),
    ('<wps:Execute xmlns:wps="http://www.opengis.net/wps/1.0.0"/>', "MissingParameterValue",
     "Identifier"),
])
def test_structurally_wrong_documents_are_client_errors(svc, body, code, locator):
    resp = svc.client.post("/wps", data=body, content_type="text/xml")
    exception(resp, 400, code, locator)
    assert svc.sent == []


def test_capabilities_version_negotiation(svc):
    both = svc.client.get("/wps?service=WPS&request=GetCapabilities&AcceptVersions=1.0.0,2.0.0")
    assert both.status_code == 200 and xml(both).get("version") == "1.0.0"
    exception(svc.client.get("/wps?service=WPS&request=GetCapabilities&AcceptVersions=2.0.0"),
              400, "VersionNegotiationFailed", "AcceptVersions")


def test_random_kvp_requests_never_answer_5xx(svc):
    import random

    keys = ["service", "request", "version", "identifier", "DataInputs", "ResponseDocument",
            "RawDataOutput", "storeExecuteResponse", "status", "language", "AcceptVersions",
            "jobId", "queue"]
    values = ["WPS", "", "GetCapabilities", "DescribeProcess", "Execute", "GetStatus",
              "GetResult", "Dismiss", "1.0.0", "2.0.0", "echo", "gdm-opt", "all",
              "message=hi", "images=@xlink:href=http://h/a;images=b", "true", "message",
              "east", "fr", "a=b@c", "@@;;==", "%00", "../x", "rapid", "window=9;window=9"]
    rng = random.Random(5)
    statuses = set()
    for _ in range(400):
        query = {k: rng.choice(values) for k in rng.sample(keys, rng.randint(0, 6))}
        resp = svc.client.get("/wps", query_string=query)
        assert resp.status_code < 500, (query, resp.get_data(as_text=True))
        statuses.add(resp.status_code)
    assert 400 in statuses and statuses <= {200, 400, 404}


def test_json_and_oversized_posts_are_refused(svc):
    exception(svc.client.post("/wps", json={"identifier": "echo"}), 400,
              "InvalidParameterValue", "request")
    big = b"<a>" + b"x" * (11 * 1024 * 1024) + b"</a>"
    exception(svc.client.post("/wps", data=big, content_type="text/xml"), 400,
              "FileSizeExceeded")


def test_tokens_are_required_once_accounts_exist(svc):
    svc.store.create_user("alice", "user")
    resp = svc.client.get("/wps?service=WPS&request=GetCapabilities")
    exception(resp, 401, "NoApplicableCode")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


# ----------------------------------------------------------------- WPS 2.0
def wps2_get(svc, op, job_id, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return svc.client.get(f"/wps?service=WPS&version=2.0.0&request={op}&jobId={job_id}",
                          headers=headers)


def wps2_post(svc, op, job_id, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = (f'<wps:{op} xmlns:wps="{WPS2_NS}" service="WPS" version="2.0.0">'
            f"<wps:JobID>{job_id}</wps:JobID></wps:{op}>")
    return svc.client.post("/wps", data=body, content_type="text/xml", headers=headers)


@pytest.mark.parametrize("send", [wps2_get, wps2_post])
def test_wps2_getstatus_getresult_dismiss(svc, send):
    job = svc.store.create_job("local", "echo", {"message": "m"}, "ondemand")
    root = xml(send(svc, "GetStatus", job.id))
    assert root.tag == f"{{{WPS2_NS}}}StatusInfo"
    assert root.findtext("wps2:JobID", namespaces=NS) == job.id
    assert root.findtext("wps2:Status", namespaces=NS) == "Accepted"
    assert root.findtext("wps2:ExpirationDate", namespaces=NS).endswith("Z")
    exception(send(svc, "GetResult", job.id), 400, "ResultNotReady", "jobId", OWS2_NS)

    svc.store.claim(job.id, "w", 60)
    svc.store.report(job.id, 70, "half", "w", 60)
    root = xml(send(svc, "GetStatus", job.id))
    assert root.findtext("wps2:Status", namespaces=NS) == "Running"
    assert root.findtext("wps2:PercentCompleted", namespaces=NS) == "70"
    svc.store.finish(job.id, {"message": "m"}, "w")
    res = xml(send(svc, "GetResult", job.id))
    assert res.tag == f"{{{WPS2_NS}}}Result"
    (out,) = res.findall("wps2:Output", namespaces=NS)
    assert out.get("id") == "message" and out.findtext("wps2:Data", namespaces=NS) == "m"

    fin = finished_opt_job(svc)
    res = xml(send(svc, "GetResult", fin.id))
    refs = {o.get("id"): o.find("wps2:Reference", namespaces=NS)
            for o in res.findall("wps2:Output", namespaces=NS)}
    assert refs["east"].get("{http://www.w3.org/1999/xlink}href") == \
        f"http://localhost/ogcapi/jobs/{fin.id}/download/products/east.tif"

    running = svc.store.create_job("local", "echo", {"message": "m"}, "ondemand")
    svc.store.claim(running.id, "w", 60)
    root = xml(send(svc, "Dismiss", running.id))
    assert root.findtext("wps2:Status", namespaces=NS) == "Dismissed"
    assert svc.store.get(running.id).status == "dismissed"
    exception(send(svc, "GetResult", running.id), 400, "NoApplicableCode", "jobId", OWS2_NS)


def test_wps2_no_such_job_and_ownership(svc):
    exception(wps2_get(svc, "GetStatus", "0000-nope"), 404, "NoSuchJob", "jobId", OWS2_NS)
    exception(wps2_get(svc, "GetStatus", "../etc"), 404, "NoSuchJob", "jobId", OWS2_NS)
    exception(svc.client.get("/wps?service=WPS&version=2.0.0&request=GetStatus"), 400,
              "MissingParameterValue", "jobId", OWS2_NS)
    exception(svc.client.get("/wps?service=WPS&version=1.0.0&request=GetStatus&jobId=x"), 400,
              "VersionNegotiationFailed", "version", OWS2_NS)
    _, alice = svc.store.create_user("alice", "user")
    _, bob = svc.store.create_user("bob", "user")
    job = svc.store.create_job("alice", "echo", {"message": "secret"}, "ondemand")
    svc.store.claim(job.id, "w", 60)
    svc.store.finish(job.id, {"message": "secret"}, "w")
    for op in ("GetStatus", "GetResult", "Dismiss"):
        for send in (wps2_get, wps2_post):
            text = exception(send(svc, op, job.id, bob), 404, "NoSuchJob", "jobId", OWS2_NS)
            assert "secret" not in text
    resp = svc.client.get(f"/wps/status/{job.id}.xml", headers={"Authorization": f"Bearer {bob}"})
    assert resp.status_code == 404 and b"secret" not in resp.get_data()
    assert wps2_get(svc, "GetStatus", job.id, alice).status_code == 200
    assert svc.store.get(job.id).status == "successful"
    assert b"secret" in wps2_get(svc, "GetResult", job.id, alice).get_data()


def test_status_document_refuses_odd_ids(svc):
    for bad in ("x%2F..%2Fy", "a b", "é"):
        resp = svc.client.get(f"/wps/status/{bad}.xml")
        assert resp.status_code == 404
