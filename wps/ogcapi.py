"""OGC API - Processes - Part 1 (1.0) face of the job service, rooted at ``/ogcapi``.

Resources (JSON; errors are ``application/problem+json`` with ``type``, ``title``,
``status`` and ``detail``):

- ``GET /`` landing page, ``GET /conformance``, ``GET /api`` (the OpenAPI 3.0 document,
  generated from :data:`workflows.processes.PROCESSES` by :mod:`wps.openapi`);
- ``GET /processes``, ``GET /processes/{id}`` (inputs described by the JSON schemas of
  the process's inputs model);
- ``POST /processes/{id}/execution``: body ``{"inputs": {...}, "outputs": {...},
  "response": "document"|"raw", "subscriber": {...}}`` plus two extensions of this
  service: ``"queue"`` (``rapid``, ``ondemand`` or ``batch``; ``rapid`` for operators
  and admins only) and ``"public"`` (anyone may read the job and its results).
  With ``Prefer: respond-async`` the answer is ``201 Created`` with ``Location:
  /ogcapi/jobs/{id}`` and the job's ``statusInfo``. Otherwise the request waits for the
  job (at most ``GDM_SYNC_TIMEOUT`` seconds, default 300, or less with ``Prefer:
  wait=N``) and answers ``200`` with the results; a job that outlives the wait is
  answered like an asynchronous request (``201`` + ``Location``), so a synchronous
  client is never left hanging on a long job;
- ``GET /jobs`` (filters ``status``, ``processID``, ``type``, ``datetime``,
  ``minDuration``, ``maxDuration``, paging ``limit`` and ``offset``), ``GET /jobs/{id}``,
  ``GET /jobs/{id}/results`` (files by reference), ``DELETE /jobs/{id}`` (dismiss: the
  worker stops the work);
- extensions: ``GET /jobs/{id}/download/{path}`` (a file of a job, ownership checked;
  the ``href`` of every file result), ``GET /jobs/{id}/quicklooks``, and
  ``POST /uploads`` / ``GET /uploads`` / ``DELETE /uploads/{name}`` (input files, kept
  per user in ``GDM_UPLOADS_DIR/<user>/``, referenced by name in process inputs), and
  ``GET /health`` (which queues have a live worker; no token needed).

Once an account exists every request needs a token (``Authorization: Bearer TOKEN``);
a user sees their own jobs and public ones, admins see all.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import os
import re
import tempfile
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from gdmcore import InputError, check_file_name, user_uploads
from gdmio.process import ProcessSpec
from workflows.jobstore import STATUSES, Job, User
from workflows.processes import PROCESSES, get_process
from workflows.scenes import preview_scenes
from workflows.submit import SubmitError, dismiss, job_file, submit, visible_job, wait
from wps import web
from wps.context import LOCAL_USER, state
from wps.openapi import build_openapi

__all__ = ["bp", "CONFORMANCE", "status_info", "results_document",
           "OGC_EXC", "OGC_REL"]

bp = Blueprint("ogcapi", __name__)

_CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
CONFORMANCE = [_CONF + c for c in ("core", "ogc-process-description", "json", "job-list",
                                   "dismiss", "callback", "oas30")]
"""Conformance classes declared at ``/ogcapi/conformance``."""

OGC_EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
"""Prefix of the OGC exception types used in problem documents."""

OGC_REL = "http://www.opengis.net/def/rel/ogc/1.0/"
"""Prefix of the OGC link relations."""

PROBLEM = "application/problem+json"
OPENAPI_TYPE = "application/vnd.oai.openapi+json;version=3.0"
JOBS_LIMIT_DEFAULT, JOBS_LIMIT_MAX = 10, 10000

_JOB_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_QUALIFIED_KEYS = {"value", "mediaType", "encoding", "schema"}
_EXECUTE_KEYS = {"inputs", "outputs", "response", "subscriber", "queue", "public", "mode"}


# -------------------------------------------------------------------- problems
class Problem(Exception):
    """An error answered as ``application/problem+json``."""

    def __init__(self, status: int, detail: str, type_: str | None = None,
                 title: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type_ or "about:blank"
        self.title = title


def problem(status: int, detail: str, type_: str | None = None,
            title: str | None = None) -> Response:
    """An RFC 7807 problem response."""
    try:
        default_title = HTTPStatus(status).phrase
    except ValueError:
        default_title = "Error"
    resp = jsonify({"type": type_ or "about:blank", "title": title or default_title,
                    "status": status, "detail": detail})
    resp.status_code = status
    resp.mimetype = PROBLEM
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="gdm"'
    return resp


def _submit_problem(exc: SubmitError) -> Response:
    message = exc.message
    kind = None
    if exc.status == 404:
        if message.startswith("unknown process"):
            kind = OGC_EXC + "no-such-process"
        elif message.startswith("no job"):
            kind = OGC_EXC + "no-such-job"
    return problem(exc.status, message, kind)


@bp.errorhandler(Problem)
def _on_problem(exc: Problem) -> Response:
    return problem(exc.status, exc.detail, exc.type, exc.title)


@bp.errorhandler(SubmitError)
def _on_submit_error(exc: SubmitError) -> Response:
    return _submit_problem(exc)


def _in_ogcapi() -> bool:
    return request.blueprint == "ogcapi" or request.path.startswith("/ogcapi/") \
        or request.path == "/ogcapi"


@bp.app_errorhandler(HTTPException)
def _on_http_error(exc: HTTPException) -> Any:
    """HTTP errors under ``/ogcapi`` (unknown path, wrong method, ...) as problems."""
    if not _in_ogcapi():
        return exc
    resp = problem(exc.code or 500, exc.description or exc.name)
    if exc.code == 405 and exc.get_headers():
        for key, value in exc.get_headers():
            if key.lower() == "allow":
                resp.headers["Allow"] = value
    return resp


# ----------------------------------------------------------------- utilities
_OPEN_ENDPOINTS = {"ogcapi.health"}
"""Answered without a token (they reveal nothing of anyone's jobs)."""


@bp.before_request
def _authenticate() -> Response | None:
    if request.endpoint in _OPEN_ENDPOINTS:
        return None
    if request.endpoint == "ogcapi.job_download" and "key" in request.args:
        return _redeem_download_key()
    if web.caller() is None:
        return problem(401, web.TOKEN_REQUIRED)
    return None


def _redeem_download_key() -> Response | None:
    """A one-time download key stands for its user, for this one file of this job."""
    args = request.view_args or {}
    job_id, relpath = str(args.get("job_id", "")), str(args.get("relpath", ""))
    keys = request.args.getlist("key")
    name = state().store.redeem_download_key(keys[0], job_id, relpath) \
        if len(keys) == 1 else None
    user = state().store.get_user(name) if name else None
    if user is None and name == LOCAL_USER.name:
        user = LOCAL_USER
    if user is None:
        return problem(403, "this download link is not valid: it was used already, has "
                       "expired, or is for another file; ask the job page for a new one")
    g.gdm_user = g.gdm_auth_user = user
    g.gdm_auth = "key"
    return None


def _need_json() -> None:
    """Refuse a body that is not declared JSON (a form of another site cannot be)."""
    mt = request.mimetype or ""
    if mt != "application/json" and not mt.endswith("+json"):
        raise Problem(415, f"send this request as application/json (got {mt or 'no type'!r})")


def _user() -> User:
    return web.user(lambda message: Problem(401, message))


def _link(href: str, rel: str, type_: str = "application/json", title: str | None = None
          ) -> dict[str, str]:
    link = {"href": href, "rel": rel, "type": type_}
    if title:
        link["title"] = title
    return link


def _visible(job_id: str) -> Job:
    if not _JOB_ID.match(job_id):
        raise Problem(404, f"no job {job_id!r}", OGC_EXC + "no-such-job")
    return visible_job(job_id, _user(), store=state().store)


def _process(process_id: str) -> ProcessSpec:
    try:
        return get_process(process_id)
    except KeyError as exc:
        raise Problem(404, str(exc.args[0]), OGC_EXC + "no-such-process") from None


# -------------------------------------------------------------- descriptions
def _process_links(spec: ProcessSpec) -> list[dict[str, str]]:
    base = web.ogcapi_root()
    return [_link(f"{base}/processes/{spec.id}", "self", title="process description"),
            _link(f"{base}/processes/{spec.id}/execution", OGC_REL + "execute",
                  title="execute the process")]


def _summary(spec: ProcessSpec) -> dict[str, Any]:
    return {"id": spec.id, "title": spec.title, "description": spec.description,
            "version": spec.version, "keywords": list(spec.keywords),
            "jobControlOptions": ["sync-execute", "async-execute", "dismiss"],
            "outputTransmission": ["value", "reference"],
            "links": _process_links(spec)}


@bp.get("/")
def landing() -> Response:
    """Landing page: links to the API document, conformance, processes and jobs."""
    base = web.ogcapi_root()
    return jsonify({
        "title": "Ground-deformation processing service",
        "description": "OGC API - Processes: on-demand optical correlation (GDM-OPT), "
        "InSAR (GDM-SAR), stereo DSMs and FLATSIM campaigns.",
        "links": [
            _link(f"{base}/", "self", title="this document"),
            _link(f"{base}/api", "service-desc", OPENAPI_TYPE, "the API definition"),
            _link(f"{web.site_root()}/", "service-doc", "text/html", "the web form"),
            _link(f"{base}/conformance", OGC_REL + "conformance", title="conformance"),
            _link(f"{base}/processes", OGC_REL + "processes", title="processes"),
            _link(f"{base}/jobs", OGC_REL + "job-list", title="jobs"),
        ]})


@bp.get("/health")
def health() -> Response:
    """Extension: whether every queue has a live worker (no token needed).

    ``{"status": "ok" | "degraded", "queues": {"rapid": {"workers": 1}, ...},
    "problems": [...]}``: a queue with no worker (all dead, or none started) is
    ``degraded``; jobs sent to it wait until a worker consumes it again.
    """
    counts = queue_health()
    problems = queue_problems(counts)
    resp = jsonify({"status": "degraded" if problems else "ok",
                    "queues": {q: {"workers": n} for q, n in counts.items()},
                    "problems": problems})
    resp.headers["Cache-Control"] = "no-store"
    return resp


_HEALTH_CACHE: dict[str, tuple[float, dict[str, int]]] = {}
_HEALTH_TTL_S = 1.0


def queue_problems(counts: dict[str, int] | None = None) -> list[str]:
    """One line per queue that no live worker consumes."""
    counts = queue_health() if counts is None else counts
    return [f"no worker consumes the {q} queue: jobs sent to it wait"
            for q, n in counts.items() if n == 0]


def queue_health() -> dict[str, int]:
    """Live workers per queue (read from the job store at most once a second)."""
    import time

    from workflows.worker import queue_consumers

    store = state().store
    now = time.monotonic()
    cached = _HEALTH_CACHE.get(store.url)
    if cached is None or now - cached[0] > _HEALTH_TTL_S:
        cached = (now, queue_consumers(store))
        _HEALTH_CACHE[store.url] = cached
    return dict(cached[1])


@bp.get("/conformance")
def conformance() -> Response:
    """The conformance classes implemented."""
    return jsonify({"conformsTo": CONFORMANCE})


@bp.get("/api")
def api() -> Response:
    """The OpenAPI 3.0 document of this API."""
    resp = jsonify(build_openapi(web.ogcapi_root()))
    resp.mimetype = "application/vnd.oai.openapi+json"
    return resp


@bp.get("/processes")
def processes() -> Response:
    """Summaries of every process."""
    limit = _int_arg("limit", default=len(PROCESSES) or 1, low=1, high=10000)
    specs = list(PROCESSES.values())[:limit]
    return jsonify({"processes": [_summary(s) for s in specs],
                    "links": [_link(f"{web.ogcapi_root()}/processes", "self")]})


@bp.get("/processes/<process_id>")
def process(process_id: str) -> Response:
    """One process: its inputs (JSON schemas) and outputs."""
    spec = _process(process_id)
    doc = _summary(spec)
    doc["inputs"] = web.input_descriptions(spec)
    doc["outputs"] = web.output_descriptions(spec)
    return jsonify(doc)


# ----------------------------------------------------------------- execution
def _unwrap(value: Any) -> Any:
    """An OGC qualified value (``{"value": v}``) or link (``{"href": url}``) as a plain value."""
    if isinstance(value, dict):
        if "href" in value and isinstance(value["href"], str):
            return value["href"]
        if "value" in value and set(value) <= _QUALIFIED_KEYS:
            return value["value"]
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _prefer() -> tuple[bool, float | None]:
    """``Prefer`` header: (respond-async asked, wait=N seconds or None)."""
    asynchronous, wait_s = False, None
    for part in request.headers.get("Prefer", "").split(","):
        for token in part.split(";"):
            token = token.strip().lower()
            if token == "respond-async":
                asynchronous = True
            elif token.startswith("wait="):
                try:
                    wait_s = max(0.0, float(token[5:].strip('"')))
                except ValueError:
                    pass
    return asynchronous, wait_s


def _execute_body() -> dict[str, Any]:
    _need_json()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object: {\"inputs\": {...}}")
    unknown = sorted(set(body) - _EXECUTE_KEYS)
    if unknown:
        raise Problem(400, f"unknown member(s) of the execute request: {', '.join(unknown)}; "
                      f"known: {', '.join(sorted(_EXECUTE_KEYS))}")
    return body


def _selected_outputs(spec: ProcessSpec, body: dict[str, Any]) -> list[str] | None:
    outputs = body.get("outputs")
    if outputs is None:
        return None
    if not isinstance(outputs, dict):
        raise Problem(400, "outputs must be an object of output name: options")
    known = web.output_descriptions(spec)
    for name, options in outputs.items():
        if name not in known:
            raise Problem(400, f"process {spec.id} has no output {name!r}; known: "
                          f"{', '.join(known)}")
        if options is not None and not isinstance(options, dict):
            raise Problem(400, f"options of output {name!r} must be an object")
        mode = (options or {}).get("transmissionMode", "value")
        if mode not in ("value", "reference"):
            raise Problem(400, f"transmissionMode of output {name!r} must be value or "
                          "reference")
    return list(outputs)


@bp.post("/processes/<process_id>/execution")
def execute(process_id: str) -> Response:
    """Submit a job (asynchronously with ``Prefer: respond-async``, else wait for it)."""
    spec = _process(process_id)
    body = _execute_body()
    inputs = body.get("inputs", {})
    if not isinstance(inputs, dict):
        raise Problem(400, "inputs must be an object of input name: value")
    selected = _selected_outputs(spec, body)
    response = body.get("response", "document")
    if response not in ("document", "raw"):
        raise Problem(400, "response must be 'document' or 'raw'")
    if response == "raw":
        names = selected if selected is not None else list(spec.outputs)
        if len(names) != 1 or names[0] == "quicklooks":
            raise Problem(400, "response 'raw' needs exactly one selected output "
                          f"(process {spec.id} has {len(spec.outputs)}): use 'document'")
    queue = body.get("queue")
    if queue is not None and not isinstance(queue, str):
        raise Problem(400, "queue must be one of rapid, ondemand, batch")
    public = body.get("public", False)
    if not isinstance(public, bool):
        raise Problem(400, "public must be true or false")
    subscriber = body.get("subscriber")
    if subscriber is not None and not isinstance(subscriber, dict):
        raise Problem(400, "subscriber must be an object with successUri, failedUri, "
                      "inProgressUri")
    mode = body.get("mode")
    if mode is not None and mode not in ("sync", "async", "auto"):
        raise Problem(400, "mode must be sync, async or auto")
    asynchronous, wait_s = _prefer()
    asynchronous = asynchronous or mode == "async"

    st = state()
    job = submit(spec.id, {k: _unwrap(v) for k, v in inputs.items()}, _user(), store=st.store,
                 queue=queue, public=public, subscriber=subscriber)
    location = f"{web.ogcapi_root()}/jobs/{job.id}"
    if not asynchronous:
        timeout = web.sync_timeout() if wait_s is None else min(wait_s, web.sync_timeout())
        job = wait(job.id, store=st.store, timeout=timeout)
        if job.status == "successful":
            if response == "raw":
                return _raw_result(job, spec, (selected or list(spec.outputs))[0])
            resp = jsonify(results_document(job, selected))
            resp.headers["Link"] = f'<{location}>; rel="monitor"'
            return resp
        if job.status == "failed":
            return _failed_problem(job)
        if job.status == "dismissed":
            return problem(410, f"job {job.id} was dismissed", title="Job dismissed")
    resp = jsonify(status_info(job))
    resp.status_code = 201
    resp.headers["Location"] = location
    if asynchronous:
        resp.headers["Preference-Applied"] = "respond-async"
    return resp


def _failed_problem(job: Job) -> Response:
    internal = job.message.startswith("internal error")
    return problem(500 if internal else 400, job.message or "the job failed",
                   OGC_EXC + "job-results-failed", f"Job {job.id} failed")


def _raw_result(job: Job, spec: ProcessSpec, name: str) -> Response:
    value = job.outputs.get(name)
    out = spec.outputs.get(name)
    if out is not None and out.kind == "file" and isinstance(value, str):
        path = job_file(job, value, state().settings)
        return send_file(path, mimetype=out.media_type)
    if isinstance(value, str):
        return Response(value, mimetype=out.media_type if out else "text/plain")
    return jsonify(value)


# ---------------------------------------------------------------------- jobs
def status_info(job: Job) -> dict[str, Any]:
    """The OGC ``statusInfo`` document of a job (plus ``queue``, ``public``, ``owner``)."""
    base = f"{web.ogcapi_root()}/jobs/{job.id}"
    links = [_link(base, "self", title="job status"),
             _link(f"{web.site_root()}/jobs/{job.id}", "alternate", "text/html", "job page")]
    if job.status == "successful":
        links.append(_link(f"{base}/results", OGC_REL + "results", title="job results"))
        if job.outputs.get("quicklooks"):
            links.append(_link(f"{base}/quicklooks", "preview", title="quicklooks"))
    message = job.message
    if job.status == "accepted" and queue_health().get(job.queue, 1) == 0:
        message = (f"{message}; no worker consumes the {job.queue} queue at the moment: "
                   "the job waits until one does")
    return {"jobID": job.id, "processID": job.process, "type": "process",
            "status": job.status, "message": message, "progress": job.progress,
            "created": web.iso(job.created), "started": web.iso(job.started),
            "finished": web.iso(job.finished), "updated": web.iso(job.updated),
            "queue": job.queue, "public": job.public, "owner": job.owner, "links": links}


def _file_link(job: Job, relpath: str, media_type: str | None, title: str | None = None
               ) -> dict[str, str]:
    mt = media_type or mimetypes.guess_type(relpath)[0] or "application/octet-stream"
    link = {"href": web.download_href(job, relpath), "type": mt}
    if title:
        link["title"] = title
    return link


def results_document(job: Job, selected: list[str] | None = None) -> dict[str, Any]:
    """The results of a successful job: files by reference (``href``), literals by value."""
    spec = PROCESSES.get(job.process)
    doc: dict[str, Any] = {}
    for name, value in job.outputs.items():
        if selected is not None and name not in selected:
            continue
        out = spec.outputs.get(name) if spec else None
        if name == "quicklooks" and isinstance(value, list):
            doc[name] = [_file_link(job, q, "image/png", Path(q).stem)
                         for q in value if isinstance(q, str)]
        elif out is not None and out.kind == "file" and isinstance(value, str):
            doc[name] = _file_link(job, value, out.media_type, out.title)
        elif out is None and web.is_job_file(job, value):
            doc[name] = _file_link(job, value, None, name)
        else:
            doc[name] = value
    return doc


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise Problem(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def _multi_arg(name: str) -> list[str]:
    values: list[str] = []
    for raw in request.args.getlist(name):
        values.extend(v.strip() for v in raw.split(",") if v.strip())
    return values


def _parse_instant(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise Problem(400, f"datetime: {text!r} is not an RFC 3339 date-time") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _datetime_filter(raw: str | None) -> tuple[dt.datetime | None, dt.datetime | None] | None:
    if not raw:
        return None
    if "/" in raw:
        start_s, _, end_s = raw.partition("/")
        start = None if start_s in ("", "..") else _parse_instant(start_s)
        end = None if end_s in ("", "..") else _parse_instant(end_s)
        if start and end and start > end:
            raise Problem(400, "datetime: the interval ends before it starts")
        return start, end
    t = _parse_instant(raw)
    return t, t


def _duration(job: Job, now: dt.datetime) -> float | None:
    if job.started is None:
        return None
    return ((job.finished or now) - job.started).total_seconds()


@bp.get("/jobs")
def jobs() -> Response:
    """Jobs the caller may see, newest first, with OGC filters and paging."""
    statuses = _multi_arg("status")
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise Problem(400, f"unknown status {bad[0]!r}; known: {', '.join(STATUSES)}")
    process_ids = _multi_arg("processID") + _multi_arg("process")
    types = _multi_arg("type")
    limit = _int_arg("limit", JOBS_LIMIT_DEFAULT, 1, JOBS_LIMIT_MAX)
    offset = _int_arg("offset", 0, 0, 10**9)
    window = _datetime_filter(request.args.get("datetime"))
    min_d = _int_arg("minDuration", -1, 0, 10**9)
    max_d = _int_arg("maxDuration", -1, 0, 10**9)

    found: list[Job] = []
    known = [p for p in process_ids if p in PROCESSES]
    if (not types or "process" in types) and (not process_ids or known):
        found = _list_jobs(statuses, known, window, min_d, max_d, limit, offset)
    base = f"{web.ogcapi_root()}/jobs"
    links = [_link(request.url, "self")]
    if len(found) == limit:
        args = request.args.to_dict(flat=False)
        args["offset"] = [str(offset + limit)]
        links.append(_link(f"{base}?{urllib.parse.urlencode(args, doseq=True)}", "next"))
    return jsonify({"jobs": [status_info(j) for j in found], "links": links})


def _list_jobs(statuses: list[str], processes: list[str],
               window: tuple[dt.datetime | None, dt.datetime | None] | None,
               min_d: int, max_d: int, limit: int, offset: int) -> list[Job]:
    user = _user()
    store = state().store
    owner = None if user.role == "admin" else user.name
    kwargs: dict[str, Any] = {"owner": owner, "statuses": statuses or None,
                              "processes": processes or None, "include_public": True}
    if window is None and min_d < 0 and max_d < 0:
        return store.list(limit=limit, offset=offset, **kwargs)
    now = dt.datetime.now(dt.UTC)

    def keep(job: Job) -> bool:
        if window is not None:
            start, end = window
            if (start and job.created < start) or (end and job.created > end):
                return False
        if min_d >= 0 or max_d >= 0:
            d = _duration(job, now)
            if d is None or (min_d >= 0 and d < min_d) or (max_d >= 0 and d > max_d):
                return False
        return True

    out: list[Job] = []
    skipped, page, chunk = 0, 0, 500
    while len(out) < limit:
        batch = store.list(limit=chunk, offset=page * chunk, **kwargs)
        for job in batch:
            if not keep(job):
                continue
            if skipped < offset:
                skipped += 1
                continue
            out.append(job)
            if len(out) == limit:
                break
        if len(batch) < chunk:
            break
        page += 1
    return out


@bp.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    """A job's ``statusInfo``."""
    return jsonify(status_info(_visible(job_id)))


@bp.delete("/jobs/<job_id>")
def job_dismiss(job_id: str) -> Response:
    """Dismiss a job (owner or admin): a queued job never starts, a running one stops.

    A job already finished keeps its status and its products.
    """
    job = _visible(job_id)
    return jsonify(status_info(dismiss(job.id, _user(), store=state().store)))


@bp.get("/jobs/<job_id>/results")
def job_results(job_id: str) -> Response:
    """Results of a successful job (404 ``result-not-ready`` before it is done)."""
    job = _visible(job_id)
    if job.status == "successful":
        return jsonify(results_document(job))
    if job.status == "failed":
        return problem(404, job.message or "the job failed", OGC_EXC + "job-results-failed",
                       f"Job {job.id} failed")
    if job.status == "dismissed":
        return problem(404, f"job {job.id} was dismissed: it has no results",
                       OGC_EXC + "no-such-job", "Job dismissed")
    return problem(404, f"job {job.id} is {job.status}: results are not ready yet",
                   OGC_EXC + "result-not-ready", "Result not ready")


@bp.get("/jobs/<job_id>/quicklooks")
def job_quicklooks(job_id: str) -> Response:
    """Links to the quicklook images of a job's products."""
    job = _visible(job_id)
    looks = job.outputs.get("quicklooks", []) if job.status == "successful" else []
    return jsonify({"jobID": job.id,
                    "quicklooks": [_file_link(job, q, "image/png", Path(q).stem)
                                   for q in looks if isinstance(q, str)],
                    "links": [_link(f"{web.ogcapi_root()}/jobs/{job.id}/quicklooks", "self")]})


@bp.post("/jobs/<job_id>/download-links")
def job_download_link(job_id: str) -> Response:
    """Extension: a one-time link to one file of a job, valid for five minutes.

    Body ``{"path": "products/east.tif"}``; answers ``201 {"href", "expires"}``. The
    link works once, without a token (for a browser's download or a tool that cannot
    send headers); it is the only credential the service reads from a URL.
    """
    import datetime as dt

    _need_json()
    job = _visible(job_id)
    body = request.get_json(silent=True)
    relpath = body.get("path") if isinstance(body, dict) else None
    if not isinstance(relpath, str):
        raise Problem(400, 'the body must be {"path": "<file of the job>"}')
    job_file(job, relpath, state().settings)  # 400/404 for a path that is not a file
    ttl = dt.timedelta(minutes=5)
    key = state().store.create_download_key(job.id, _user().name, relpath, ttl)
    resp = jsonify({"href": f"{web.download_href(job, relpath)}?key={key}",
                    "expires": web.iso(dt.datetime.now(dt.UTC) + ttl), "uses": 1})
    resp.status_code = 201
    return resp


@bp.get("/jobs/<job_id>/download/<path:relpath>", merge_slashes=False)
def job_download(job_id: str, relpath: str) -> Response:
    """A file of a job's folder (owner, admin or public job; ``..`` refused).

    Authorised by the caller's token, or by a one-time ``?key=`` from
    ``POST /jobs/{id}/download-links``.
    """
    job = _visible(job_id)
    path = job_file(job, relpath, state().settings)
    mt = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return send_file(path, mimetype=mt, conditional=True, max_age=0)


# ------------------------------------------------------------------- uploads
def _uploads_folder() -> Path:
    """The caller's uploads folder (:func:`gdmcore.user_uploads`)."""
    try:
        return user_uploads(state().settings.uploads_dir, _user().name)
    except InputError as exc:
        raise Problem(400, str(exc)) from None


def _check_upload_name(name: str | None) -> str:
    if not name:
        raise Problem(400, "an upload needs a file name (multipart filename or ?name=)")
    try:
        return check_file_name(name)
    except InputError as exc:
        raise Problem(400, str(exc)) from None


def _store_stream(chunks: Iterator[bytes], folder: Path, name: str, room: int) -> int:
    """Write an upload under a temporary name, then give it its name.

    A file of that name is never replaced (409); ``room`` is what the user's quota
    leaves (bytes).
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=folder)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                size += len(chunk)
                if size > room:
                    raise Problem(413, _quota_message())
                fh.write(chunk)
        if size == 0:
            raise Problem(400, f"upload {name!r} is empty")
        try:
            os.link(tmp, folder / name)  # fails if the name exists: no silent overwrite
        except FileExistsError:
            raise Problem(409, _exists_message(name)) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return size


def _exists_message(name: str) -> str:
    return (f"an upload named {name!r} exists already: choose another name, or delete it "
            f"first (DELETE /ogcapi/uploads/{name})")


def _quota_bytes() -> int:
    user = _user()
    mb = user.disk_quota_mb if user.disk_quota_mb is not None \
        else state().settings.user_quota_mb
    return int(mb) * 1024 * 1024


def _quota_message() -> str:
    quota = _quota_bytes()
    size = f"{quota / 2**30:.1f} GiB" if quota >= 2**30 else f"{quota / 2**20:.0f} MiB"
    return (f"your uploads would exceed your quota of {size}: delete some "
            "(DELETE /ogcapi/uploads/NAME)")


def _used_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


_RAW_TYPES_REFUSED = ("", "application/x-www-form-urlencoded", "text/plain")


def _chunks(stream: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk


@bp.post("/scenes/search")
def scenes_search() -> Response:
    """Extension: the scenes a ``{provider, aoi, start, end, ...}`` request selects.

    The same object a process takes as its ``scenes`` input; nothing is downloaded.
    """
    _need_json()
    body = request.get_json(silent=True)
    return jsonify(preview_scenes(body))


@bp.post("/uploads")
def upload() -> Response:
    """Store input files (multipart ``file`` fields, or a raw body with ``?name=``).

    A body of another type (``application/octet-stream``, ``image/tiff``...; not a form
    type nor ``text/plain``) is taken as the file itself: ``curl -H 'Content-Type:
    application/octet-stream' --data-binary @scene.tif '.../uploads?name=scene.tif'``.
    An existing upload is never replaced (409: delete it first); the user's uploads may
    not exceed their disk quota (413).

    Returns ``{"name": ..., "names": [...], "size": ...}`` with status 201; the names
    are what process inputs reference (e.g. ``{"images": ["a.tif", "b.tif"]}``).
    """
    folder = _uploads_folder()
    stored: list[tuple[str, int]] = []
    mt = request.mimetype or ""
    if mt != "multipart/form-data" and mt in _RAW_TYPES_REFUSED:
        raise Problem(415, "send files as multipart/form-data, or the raw file with its "
                      "own type (e.g. Content-Type: application/octet-stream) and ?name=")
    room = _quota_bytes() - _used_bytes(folder)
    if request.content_length is not None and request.content_length > room + (1 << 20):
        raise Problem(413, _quota_message())
    if mt == "multipart/form-data":
        files = [f for key in request.files for f in request.files.getlist(key)]
        if not files:
            raise Problem(400, "a multipart upload needs at least one file field")
        names = [_check_upload_name(f.filename) for f in files]
        for name in names:
            if names.count(name) > 1 or (folder / name).exists():
                raise Problem(409, _exists_message(name))
        for f, name in zip(files, names, strict=True):
            size = _store_stream(_chunks(f.stream), folder, name, room)
            stored.append((name, size))
            room -= size
    else:
        names = request.args.getlist("name")
        if len(names) > 1:
            raise Problem(400, "give ?name= once")
        name = _check_upload_name(names[0] if names else None)
        if (folder / name).exists():
            raise Problem(409, _exists_message(name))
        stored.append((name, _store_stream(_chunks(request.stream), folder, name, room)))
    resp = jsonify({"name": stored[0][0], "names": [n for n, _ in stored],
                    "size": stored[0][1], "sizes": [s for _, s in stored]})
    resp.status_code = 201
    return resp


@bp.get("/uploads")
def uploads() -> Response:
    """The caller's uploaded files."""
    folder = _uploads_folder()
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if folder.is_dir() else []
    return jsonify({"uploads": [{"name": p.name, "size": p.stat().st_size} for p in files]})


@bp.delete("/uploads/<name>")
def upload_delete(name: str) -> Response:
    """Delete one of the caller's uploaded files."""
    folder = _uploads_folder()
    path = folder / _check_upload_name(name)
    if not path.is_file():
        raise Problem(404, f"no uploaded file named {name!r}")
    path.unlink()
    return Response(status=204)
