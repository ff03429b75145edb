"""The OpenAPI 3.0 document of the OGC API - Processes face (served at ``/ogcapi/api``).

Generated from :data:`workflows.processes.PROCESSES`: each process gets its own
execution path whose request body carries the JSON schema of the process's inputs
model, translated from the JSON Schema 2020-12 that pydantic writes to the OpenAPI 3.0
dialect (``nullable``, boolean ``exclusiveMinimum``, no ``const``).
"""

from __future__ import annotations

from typing import Any

from gdmio.process import ProcessSpec
from gdmio.providers.resolve import SceneRequest
from workflows.jobstore import STATUSES
from workflows.processes import PROCESSES
from workflows.settings import QUEUES
from wps.web import output_descriptions

__all__ = ["build_openapi", "to_oas30"]

_PROBLEM = "application/problem+json"
_REF = "#/components/schemas/"


def to_oas30(schema: Any) -> Any:
    """A JSON schema (2020-12, as pydantic writes it) in the OpenAPI 3.0 dialect."""
    if isinstance(schema, list):
        return [to_oas30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-") or key in ("$schema", "$defs", "$id"):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "examples" and isinstance(value, list):
            if value:
                out["example"] = value[0]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) < len(value):
                out["nullable"] = True
            if len(types) == 1:
                out["type"] = types[0]
            elif types:
                out["anyOf"] = [{"type": t} for t in types]
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            options = [s for s in value if s != {"type": "null"}]
            if len(options) < len(value):
                out["nullable"] = True
            if len(options) == 1 and key == "anyOf":
                for k, v in to_oas30(options[0]).items():
                    out.setdefault(k, v)
            else:
                out[key] = to_oas30(options)
        elif key in ("properties", "patternProperties"):
            out[key] = {k: to_oas30(v) for k, v in value.items()}
        elif isinstance(value, dict | list) and key not in ("enum", "default", "example"):
            out[key] = to_oas30(value)
        else:
            out[key] = value
    if out.get("nullable") and "default" in out and out["default"] is None \
            and "type" not in out and "anyOf" not in out and "oneOf" not in out:
        out.pop("nullable")
    return out


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": _REF + schema_ref}}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {_PROBLEM: {"schema": {"$ref": _REF + "exception"}}}}


_UNAUTHORIZED = _problem("No valid API token (once accounts exist, every request needs one).")


_CHANGE_REFUSED = ("Refused: a cross-site request, a cookie as the only credential "
                   "(send Authorization: Bearer TOKEN), or a missing CSRF token of the web "
                   "form; or another reason given in the detail.")


def _responses(ok: dict[str, Any], *errors: tuple[str, str], change: bool = False
               ) -> dict[str, Any]:
    """Responses of an operation; ``change``: it changes something (403, 415 possible)."""
    out = dict(ok)
    out["401"] = _UNAUTHORIZED
    out["400"] = _problem("Invalid request (the detail says what).")
    if change:
        out["403"] = _problem(_CHANGE_REFUSED)
    for code, text in errors:
        if code == "403" and change:
            text = f"{text} {_CHANGE_REFUSED}"
        out[code] = _problem(text)
    return out


def _schemas() -> dict[str, Any]:
    link = {"type": "object", "required": ["href"], "properties": {
        "href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"},
        "title": {"type": "string"}}}
    links = {"type": "array", "items": {"$ref": _REF + "link"}}
    status_info = {
        "type": "object", "required": ["jobID", "status", "type"],
        "properties": {
            "jobID": {"type": "string"}, "processID": {"type": "string"},
            "type": {"type": "string", "enum": ["process"]},
            "status": {"type": "string", "enum": list(STATUSES)},
            "message": {"type": "string"},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "created": {"type": "string", "format": "date-time", "nullable": True},
            "started": {"type": "string", "format": "date-time", "nullable": True},
            "finished": {"type": "string", "format": "date-time", "nullable": True},
            "updated": {"type": "string", "format": "date-time", "nullable": True},
            "queue": {"type": "string", "enum": list(QUEUES),
                      "description": "Extension: the Celery queue of the job."},
            "public": {"type": "boolean",
                       "description": "Extension: anyone may read the job and its results."},
            "owner": {"type": "string", "description": "Extension: the job's owner."},
            "links": links}}
    summary = {
        "type": "object", "required": ["id", "version"],
        "properties": {
            "id": {"type": "string"}, "title": {"type": "string"},
            "description": {"type": "string"}, "version": {"type": "string"},
            "keywords": {"type": "array", "items": {"type": "string"}},
            "jobControlOptions": {"type": "array", "items": {
                "type": "string", "enum": ["sync-execute", "async-execute", "dismiss"]}},
            "outputTransmission": {"type": "array", "items": {
                "type": "string", "enum": ["value", "reference"]}},
            "links": links}}
    description = {"allOf": [{"$ref": _REF + "processSummary"}, {
        "type": "object", "properties": {
            "inputs": {"type": "object", "additionalProperties": {"type": "object"}},
            "outputs": {"type": "object", "additionalProperties": {"type": "object"}}}}]}
    return {
        "link": link,
        "exception": {"type": "object", "required": ["type"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"}}},
        "landingPage": {"type": "object", "required": ["links"], "properties": {
            "title": {"type": "string"}, "description": {"type": "string"},
            "links": links}},
        "confClasses": {"type": "object", "required": ["conformsTo"], "properties": {
            "conformsTo": {"type": "array", "items": {"type": "string"}}}},
        "processSummary": summary,
        "processList": {"type": "object", "required": ["processes", "links"], "properties": {
            "processes": {"type": "array", "items": {"$ref": _REF + "processSummary"}},
            "links": links}},
        "process": description,
        "statusInfo": status_info,
        "jobList": {"type": "object", "required": ["jobs", "links"], "properties": {
            "jobs": {"type": "array", "items": {"$ref": _REF + "statusInfo"}},
            "links": links}},
        "results": {"type": "object", "description": "Output name: value, or a link "
                    "{href, type} for files, or a list of links (quicklooks).",
                    "additionalProperties": {}},
        "quicklooks": {"type": "object", "properties": {
            "jobID": {"type": "string"}, "quicklooks": links, "links": links}},
        "uploaded": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "names": {"type": "array", "items": {"type": "string"}},
            "size": {"type": "integer"}, "sizes": {"type": "array", "items": {"type": "integer"}}}},
        "uploadList": {"type": "object", "properties": {"uploads": {"type": "array", "items": {
            "type": "object", "properties": {"name": {"type": "string"},
                                             "size": {"type": "integer"}}}}}},
        "sceneList": {"type": "object", "required": ["provider", "numberMatched", "scenes"],
                      "properties": {
                          "provider": {"type": "string"}, "numberMatched": {"type": "integer"},
                          "start": {"type": "string"}, "end": {"type": "string"},
                          "scenes": {"type": "array", "items": {
                              "type": "object", "required": ["id", "datetime"],
                              "properties": {"id": {"type": "string"},
                                             "datetime": {"type": "string"}}}}}},
        "subscriber": {"type": "object", "additionalProperties": False, "properties": {
            "successUri": {"type": "string", "format": "uri"},
            "failedUri": {"type": "string", "format": "uri"},
            "inProgressUri": {"type": "string", "format": "uri"}}},
        "outputOptions": {"type": "object", "properties": {
            "transmissionMode": {"type": "string", "enum": ["value", "reference"]},
            "format": {"type": "object"}}},
    }


def _inputs_schema(spec: ProcessSpec) -> dict[str, Any]:
    props = spec.input_schemas()
    required = [name for name, prop in props.items() if prop.get("x-required")]
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False,
                              "properties": {n: to_oas30(p) for n, p in props.items()}}
    if required:
        schema["required"] = required
    return schema


def _execute_schema(spec: ProcessSpec, outputs: list[str]) -> dict[str, Any]:
    return {
        "type": "object", "required": ["inputs"], "additionalProperties": False,
        "properties": {
            "inputs": {"$ref": f"{_REF}inputs-{spec.id}"},
            "outputs": {"type": "object", "description": "Outputs to return (default: all).",
                        "properties": {o: {"$ref": _REF + "outputOptions"} for o in outputs},
                        "additionalProperties": False},
            "response": {"type": "string", "enum": ["document", "raw"], "default": "document",
                         "description": "raw: the one selected output's content."},
            "subscriber": {"$ref": _REF + "subscriber"},
            "queue": {"type": "string", "enum": list(QUEUES),
                      "description": "Extension: queue of the job (default: the process's); "
                      "rapid is for operators and admins."},
            "public": {"type": "boolean", "default": False,
                       "description": "Extension: let anyone read the job and its results."},
        }}


def _execution_path(spec: ProcessSpec, outputs: list[str]) -> dict[str, Any]:
    return {"post": {
        "operationId": f"execute-{spec.id}",
        "summary": f"Execute {spec.id}: {spec.title}",
        "description": "With `Prefer: respond-async`: 201, Location of the job and its "
        "statusInfo. Otherwise the request waits for the job (at most GDM_SYNC_TIMEOUT "
        "seconds, default 300; `Prefer: wait=N` shortens it) and answers 200 with the "
        "results, or 201 as if asynchronous when the job outlives the wait.",
        "tags": ["Processes"],
        "parameters": [{"name": "Prefer", "in": "header", "required": False,
                        "schema": {"type": "string", "example": "respond-async"}}],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"{_REF}execute-{spec.id}"}}}},
        "callbacks": {"jobCompleted": {"{$request.body#/subscriber/successUri}": {"post": {
            "requestBody": {"content": {"application/json": {
                "schema": {"$ref": _REF + "statusInfo"}}}},
            "responses": {"200": {"description": "received"}}}}}},
        "responses": _responses(
            {"200": {"description": "Results (synchronous execution).",
                     "content": {"application/json": {"schema": {"$ref": _REF + "results"}},
                                 "*/*": {"schema": {"type": "string", "format": "binary"}}}},
             "201": {**_json("statusInfo", "Job accepted (asynchronous execution)."),
                     "headers": {"Location": {"schema": {"type": "string"},
                                              "description": "URL of the job"}}}},
            ("400", "Invalid inputs, or the job failed on them."),
            ("403", "Queue not allowed for the caller's role."),
            ("404", "No such process."),
            ("410", "The job was dismissed during a synchronous execution."),
            ("413", "Request body too large."),
            ("415", "The body is not application/json."),
            ("429", "Quota of unfinished jobs reached."),
            ("500", "The job failed on an internal error."), change=True),
    }}


def build_openapi(base_url: str) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document, with ``base_url`` (ending in ``/ogcapi``) as server."""
    schemas = _schemas()
    paths: dict[str, Any] = {}
    job_id = {"name": "jobID", "in": "path", "required": True, "schema": {"type": "string"}}

    def get(op: str, summary: str, ok: dict[str, Any], *errors: tuple[str, str],
            params: list | None = None, tag: str = "Capabilities") -> dict[str, Any]:
        return {"get": {"operationId": op, "summary": summary, "tags": [tag],
                        "parameters": params or [], "responses": _responses(ok, *errors)}}

    paths["/"] = get("getLandingPage", "Landing page", {"200": _json("landingPage", "Links.")})
    paths["/conformance"] = get("getConformanceClasses", "Conformance classes",
                                {"200": _json("confClasses", "Conformance classes.")})
    paths["/api"] = get("getAPI", "This OpenAPI document", {"200": {
        "description": "The OpenAPI 3.0 document.",
        "content": {"application/vnd.oai.openapi+json": {"schema": {"type": "object"}}}}})
    paths["/processes"] = get(
        "getProcesses", "Process summaries", {"200": _json("processList", "Processes.")},
        ("400", "Invalid parameter."), tag="Processes",
        params=[{"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}])
    paths["/processes/{processID}"] = get(
        "getProcessDescription", "Process description (inputs as JSON schemas)",
        {"200": _json("process", "The process.")}, ("404", "No such process."),
        tag="Processes",
        params=[{"name": "processID", "in": "path", "required": True,
                 "schema": {"type": "string", "enum": list(PROCESSES)}}])
    for spec in PROCESSES.values():
        outputs = list(output_descriptions(spec))
        schemas[f"inputs-{spec.id}"] = _inputs_schema(spec)
        schemas[f"execute-{spec.id}"] = _execute_schema(spec, outputs)
        paths[f"/processes/{spec.id}/execution"] = _execution_path(spec, outputs)

    paths["/jobs"] = get(
        "getJobs", "Jobs the caller may see (own, public; admins: all), newest first",
        {"200": _json("jobList", "Jobs.")}, ("400", "Invalid parameter."), tag="Jobs",
        params=[
            {"name": "status", "in": "query", "required": False, "style": "form",
             "explode": True, "schema": {"type": "array", "items": {
                 "type": "string", "enum": list(STATUSES)}}},
            {"name": "processID", "in": "query", "required": False, "style": "form",
             "explode": True, "schema": {"type": "array", "items": {"type": "string"}}},
            {"name": "type", "in": "query", "required": False, "style": "form",
             "explode": True, "schema": {"type": "array", "items": {
                 "type": "string", "enum": ["process"]}}},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10}},
            {"name": "offset", "in": "query", "required": False,
             "description": "Extension: jobs skipped (paging).",
             "schema": {"type": "integer", "minimum": 0, "default": 0}},
            {"name": "datetime", "in": "query", "required": False,
             "description": "Creation time: an RFC 3339 instant or interval start/end "
             "(`..` open).", "schema": {"type": "string"}},
            {"name": "minDuration", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0}},
            {"name": "maxDuration", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0}},
        ])
    paths["/jobs/{jobID}"] = {
        **get("getStatus", "A job's statusInfo", {"200": _json("statusInfo", "The job.")},
              ("404", "No such job (or not yours)."), params=[job_id], tag="Jobs"),
        "delete": {"operationId": "dismiss", "summary": "Dismiss a job (stops its work)",
                   "tags": ["Jobs"], "parameters": [job_id],
                   "responses": _responses({"200": _json("statusInfo", "The job.")},
                                           ("403", "Only the owner or an admin may dismiss."),
                                           ("404", "No such job (or not yours)."),
                                           change=True)}}
    paths["/jobs/{jobID}/results"] = get(
        "getResult", "Results of a successful job (files by reference)",
        {"200": _json("results", "Output name: value or link.")},
        ("404", "No such job, job not finished (result-not-ready) or failed."),
        params=[job_id], tag="Jobs")
    paths["/jobs/{jobID}/quicklooks"] = get(
        "getQuicklooks", "Extension: links to a job's quicklook images",
        {"200": _json("quicklooks", "Quicklook links.")}, ("404", "No such job."),
        params=[job_id], tag="Jobs")
    paths["/jobs/{jobID}/download/{path}"] = get(
        "download", "Extension: a file of a job (the href of file results)",
        {"200": {"description": "The file.", "content": {"*/*": {
            "schema": {"type": "string", "format": "binary"}}}}},
        ("400", "Refused path (`..`, absolute)."), ("404", "No such job or file."),
        ("403", "The one-time download key was used, expired, or is for another file."),
        params=[job_id, {"name": "path", "in": "path", "required": True,
                         "schema": {"type": "string"}},
                {"name": "key", "in": "query", "required": False,
                 "description": "A one-time key from POST /jobs/{jobID}/download-links, "
                 "instead of a token.", "schema": {"type": "string"}}], tag="Jobs")
    paths["/jobs/{jobID}/download-links"] = {"post": {
        "operationId": "downloadLink", "tags": ["Jobs"],
        "summary": "Extension: a one-time link (5 minutes, one use) to one file of a job",
        "parameters": [job_id],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["path"],
            "properties": {"path": {"type": "string"}}}}}},
        "responses": _responses(
            {"201": {"description": "The link.", "content": {"application/json": {
                "schema": {"type": "object", "required": ["href", "expires"],
                           "properties": {"href": {"type": "string"},
                                          "expires": {"type": "string"},
                                          "uses": {"type": "integer"}}}}}}},
            ("404", "No such job or file (or not yours)."),
            ("415", "The body is not application/json."), change=True)}}
    paths["/health"] = {"get": {
        "operationId": "health", "tags": ["Service"],
        "summary": "Extension: which queues have a live worker (no token needed)",
        "responses": {"200": {"description": "ok, or degraded with the problems.",
                              "content": {"application/json": {"schema": {
                                  "type": "object", "required": ["status", "queues"],
                                  "properties": {
                                      "status": {"type": "string",
                                                 "enum": ["ok", "degraded"]},
                                      "queues": {"type": "object"},
                                      "problems": {"type": "array",
                                                   "items": {"type": "string"}}}}}}}}}}
    upload_name = {"name": "name", "in": "query", "required": False,
                   "description": "File name, for a raw (octet-stream) body.",
                   "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._+@-]*$",
                              "maxLength": 200}}
    paths["/uploads"] = {
        **get("getUploads", "Extension: the caller's uploaded files",
              {"200": _json("uploadList", "Uploads.")}, tag="Uploads"),
        "post": {
            "operationId": "upload", "tags": ["Uploads"],
            "summary": "Extension: upload an input file; reference it by its name in inputs",
            "parameters": [upload_name],
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                   "properties": {"file": {
                                                       "type": "string",
                                                       "format": "binary"}}}},
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}},
            "responses": _responses({"201": _json("uploaded", "Stored.")},
                                    ("400", "Missing, refused or empty file name or body."),
                                    ("409", "An upload of that name exists (never replaced)."),
                                    ("413", "Too large, or over the caller's disk quota."),
                                    ("415", "A form or text body (send multipart/form-data "
                                     "or the file's own type)."), change=True)}}
    schemas["sceneRequest"] = to_oas30(SceneRequest.model_json_schema())
    paths["/scenes/search"] = {"post": {
        "operationId": "searchScenes", "tags": ["Scenes"],
        "summary": "Extension: the scenes a {provider, aoi, start, end} request selects "
                   "(the 'scenes' input of gdm-opt and gdm-sar); nothing is downloaded",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": _REF + "sceneRequest"}}}},
        "responses": _responses({"200": _json("sceneList", "The scenes, oldest first.")},
                                ("400", "Invalid request (AOI, dates, filters)."),
                                ("415", "The body is not application/json."),
                                ("502", "The archive failed after retries."), change=True)}}
    paths["/uploads/{name}"] = {"delete": {
        "operationId": "deleteUpload", "summary": "Extension: delete an uploaded file",
        "tags": ["Uploads"],
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": _responses({"204": {"description": "Deleted."}},
                                ("400", "Refused name."), ("404", "No such upload."),
                                change=True)}}

    return {
        "openapi": "3.0.3",
        "info": {"title": "Ground-deformation processing service - OGC API - Processes",
                 "version": "1.0.0",
                 "description": "OGC API - Processes - Part 1: Core (1.0) for the "
                 "ground-deformation services, with extensions: the `queue` and `public` "
                 "members of execute requests, job downloads and quicklooks, and uploads "
                 "of input files. Once accounts exist, every request needs "
                 "`Authorization: Bearer TOKEN`."},
        "servers": [{"url": base_url}],
        "tags": [{"name": n} for n in ("Capabilities", "Processes", "Jobs", "Uploads",
                                        "Scenes", "Service")],
        "security": [{}, {"bearerAuth": []}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer"}}},
    }
