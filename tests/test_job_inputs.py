"""Job inputs keep every check of the services' config models, and say so with a 400.

The job-input model of each process derives from its service's config model: the three
cases below used to be accepted (201) and fail later in the worker.
"""

from __future__ import annotations

import pytest
from lxml import etree

from dsm_opt.config import DsmConfig
from dsm_opt.process import DsmJobInputs
from flatsim.process import FlatsimJobInputs
from flatsim.spec import CampaignSpec
from gdm_opt.config import OptConfig
from gdm_opt.process import OptJobInputs
from gdm_sar.config import SarConfig
from gdm_sar.process import SarJobInputs
from tests.handlerutil import service
from wps.app import create_app
from wps.wps1 import OWS_NS

OPT_FILES = {"images": ["a_20230101.tif", "b_20230301.tif"]}
SAR_FILES = {"slcs": ["s_20230101.tif", "s_20230113.tif", "s_20230125.tif"]}

# (process, inputs, the validator's message)
CASES = [
    ("gdm-opt", {**OPT_FILES, "window": 33}, "window must be even, got 33"),
    ("gdm-opt", {**OPT_FILES, "pairs": "span"}, "pairs='span' needs max_span_days"),
    ("gdm-sar", {**SAR_FILES, "network": "span"}, "network 'span' needs max_days"),
]


@pytest.fixture
def svc(tmp_path, monkeypatch):
    return service(tmp_path, monkeypatch, create_app, sync_timeout=1.0)


def _function(f):
    return getattr(f, "__func__", f)


@pytest.mark.parametrize(("config", "job"), [
    (OptConfig, OptJobInputs), (SarConfig, SarJobInputs), (DsmConfig, DsmJobInputs),
    (CampaignSpec, FlatsimJobInputs)])
def test_job_inputs_derive_from_the_config_and_keep_every_validator(config, job):
    assert issubclass(job, config)
    mine, theirs = job.__pydantic_decorators__, config.__pydantic_decorators__
    for kind in ("validators", "field_validators", "model_validators", "root_validators"):
        kept = getattr(mine, kind)
        for name, dec in getattr(theirs, kind).items():
            assert name in kept, (job.__name__, name)
            assert _function(kept[name].func) is _function(dec.func), (job.__name__, name)


@pytest.mark.parametrize(("pid", "inputs", "message"), CASES)
def test_ogcapi_answers_400_with_the_validators_message(svc, pid, inputs, message):
    resp = svc.client.post(f"/ogcapi/processes/{pid}/execution", json={"inputs": inputs})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    assert message in resp.get_json()["detail"]
    assert svc.sent == [] and svc.store.list() == []


def _data_inputs(inputs: dict) -> str:
    parts = []
    for name, value in inputs.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append(f"{name}=@xlink:href=http://127.0.0.1/{v}" if isinstance(value, list)
                         else f"{name}={v}")
    return ";".join(parts)


@pytest.mark.parametrize(("pid", "inputs", "message"), CASES)
def test_wps_answers_400_with_the_validators_message(svc, pid, inputs, message):
    resp = svc.client.get(f"/wps?service=WPS&version=1.0.0&request=Execute&identifier={pid}"
                          f"&DataInputs={_data_inputs(inputs)}")
    assert resp.status_code == 400, resp.get_data(as_text=True)
    exc = etree.fromstring(resp.get_data()).find(f"{{{OWS_NS}}}Exception")
    assert exc.get("exceptionCode") == "InvalidParameterValue"
    assert message in exc.find(f"{{{OWS_NS}}}ExceptionText").text
    assert svc.sent == [] and svc.store.list() == []


@pytest.mark.parametrize(("pid", "inputs", "message"), [
    ("gdm-opt", {**OPT_FILES, "out": "/etc"}, "out: set by the service"),
    ("gdm-sar", {**SAR_FILES, "block_mb": 8000}, "block_mb: set by the service"),
    ("dsm-opt", {"images": ["a.tif", "b.tif"], "workers": 64}, "workers: set by the service"),
    ("dsm-opt", {"images": ["a.tif", "b.tif"], "height_min": 10},
     "give both height_min and height_max"),
])
def test_server_fields_and_other_checks_are_refused_too(svc, pid, inputs, message):
    resp = svc.client.post(f"/ogcapi/processes/{pid}/execution", json={"inputs": inputs})
    assert resp.status_code == 400 and message in resp.get_json()["detail"]
    described = svc.client.get(f"/ogcapi/processes/{pid}").get_json()["inputs"]
    assert not {"out", "block_mb", "workers", "stack", "catalogue"} & set(described)


def test_a_good_request_is_still_accepted(svc):
    resp = svc.client.post("/ogcapi/processes/gdm-opt/execution",
                           json={"inputs": {**OPT_FILES, "window": 32, "pairs": "span",
                                            "max_span_days": 90}})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    job = svc.store.get(svc.sent[0])
    assert job.inputs["window"] == 32 and job.inputs["max_span_days"] == 90


@pytest.mark.parametrize(("command", "config", "fields"), [
    (("opt", "run"), OptConfig, ("preset", "window", "step", "search", "method", "min_score",
                                 "stable", "pairs", "max_span_days", "band", "resolution",
                                 "crs")),
    (("sar", "run"), SarConfig, ("network", "neighbours", "max_days", "max_bperp",
                                 "filter_alpha", "unwrapper", "min_coherence", "block_mb")),
])
def test_cli_options_come_from_the_config_models(command, config, fields):
    from gdm.cli import main

    cmd = main
    for name in command:
        cmd = cmd.commands[name]
    params = {p.name: p for p in cmd.params}
    for name in fields:
        field, param = config.model_fields[name], params[name]
        if field.default is None:
            assert not isinstance(param.default, int | float | str), name
        else:
            assert param.default == field.default, name
        enum = config.model_json_schema()["properties"][name].get("enum")
        if enum:
            assert param.metavar == "[" + "|".join(enum) + "]", name
        assert name in ("window", "step") or param.help == field.description, name
