"""OGC WPS face of the job service: WPS 1.0.0 through pywps, WPS 2.0 job operations.

One endpoint, ``/wps`` (KVP ``GET`` and XML ``POST``):

- WPS 1.0.0 ``GetCapabilities`` and ``DescribeProcess`` are rendered by pywps from
  :class:`pywps.Process` objects generated from :data:`workflows.processes.PROCESSES`
  (:func:`pywps_process`): scalar inputs become literal inputs (data type, allowed
  values, default), inputs that take files (URLs or upload names) become complex inputs
  accepted by reference, other structured inputs complex JSON inputs; file outputs are
  complex outputs given by reference, the others literal outputs.
- WPS 1.0.0 ``Execute`` is parsed by pywps (:class:`pywps.app.WPSRequest`) but never run
  by it: the inputs become a job of the job store (:func:`workflows.submit.submit`) that a
  Celery worker runs. ``storeExecuteResponse=true`` answers at once with
  ``ProcessAccepted`` and a ``statusLocation`` (``/wps/status/{job_id}.xml``) whose
  ``ExecuteResponse`` is rendered from the job store on every fetch (accepted, started
  with ``percentCompleted``, succeeded with outputs by reference, failed with an
  exception report). Otherwise the request waits for the job (``GDM_SYNC_TIMEOUT``
  seconds at most, like OGC API) and answers the final document, or the status document
  of a job still running (its ``statusLocation`` lets the client follow it).
  ``RawDataOutput`` returns the named output itself. Files are always given by reference
  to ``/ogcapi/jobs/{id}/download/{path}``; the quicklooks by reference to the JSON list
  ``/ogcapi/jobs/{id}/quicklooks``. The vendor parameter ``?queue=rapid|ondemand|batch``
  on an Execute request picks the queue (``rapid``: operators and admins).
- WPS 2.0 ``GetStatus``, ``GetResult`` and ``Dismiss`` (KVP with ``jobId``, or XML in the
  ``http://www.opengis.net/wps/2.0`` namespace) answer ``wps:StatusInfo`` and
  ``wps:Result`` documents from the job store; a job the caller may not see is
  ``NoSuchJob``.

Errors are OWS exception reports (OWS 1.1 for WPS 1.0, OWS 2.0 for WPS 2.0) with the
OGC exception code (``MissingParameterValue``, ``InvalidParameterValue``, ``NoSuchJob``,
...) and HTTP status 400, 401, 403, 404 or 429; an unexpected server error is
``NoApplicableCode`` with 500.

pywps keeps its configuration in a module-level object: :func:`write_pywps_config`
generates ``GDM_HOME/pywps.cfg`` (no log file, an in-memory pywps database that this
module never writes to, pywps work folders under ``GDM_HOME/pywps``), and the server URL
is set from the request (or ``GDM_PUBLIC_URL``) under a lock while a document renders.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import threading
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request, send_file
from lxml import etree
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request as WerkzeugRequest

from gdmio.atomic import write_text
from gdmio.process import ProcessSpec
from workflows.jobstore import Job, User
from workflows.processes import PROCESSES
from workflows.settings import Settings
from workflows.submit import SubmitError, dismiss, job_file, submit, visible_job, wait
from wps import web
from wps.context import state
from wps.jsonlimit import loads_limited

__all__ = ["bp", "pywps_process", "input_kinds", "InputKind", "write_pywps_config",
           "execute_response", "status_info_document", "result_document", "WPSError",
           "WPS_NS", "WPS2_NS", "OWS_NS", "OWS2_NS", "XLINK_NS", "MAX_REQUEST_BYTES"]

LOG = logging.getLogger(__name__)

bp = Blueprint("wps", __name__)

WPS_NS = "http://www.opengis.net/wps/1.0.0"
WPS2_NS = "http://www.opengis.net/wps/2.0"
OWS_NS = "http://www.opengis.net/ows/1.1"
OWS2_NS = "http://www.opengis.net/ows/2.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_REQUEST_BYTES = 10 * 1024 * 1024
"""Largest XML request body accepted (inputs that are files travel by reference)."""

_JOB_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_REFERENCE_HINT = re.compile(r"\b(urls?|uploads?|uploaded)\b", re.IGNORECASE)
_SCALARS = {"string": "string", "integer": "integer", "number": "float", "boolean": "boolean"}
_FILE_FORMATS = ("image/tiff", "image/tiff; application=geotiff", "image/jp2",
                 "application/zip", "application/octet-stream")
_XML_TYPE = "text/xml; charset=utf-8"
_CONFIG_LOCK = threading.Lock()


# ------------------------------------------------------------------- errors
class WPSError(Exception):
    """An OWS exception: code, locator, message and the HTTP status to answer with."""

    def __init__(self, code: str, message: str, locator: str | None = None,
                 status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.locator = locator
        self.status = status


def _exception_report(err: WPSError, version: str = "1.0.0") -> Response:
    ows = OWS2_NS if version.startswith("2") else OWS_NS
    root = etree.Element(f"{{{ows}}}ExceptionReport", nsmap={"ows": ows},
                         version="2.0.0" if version.startswith("2") else "1.0.0")
    root.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    exc = etree.SubElement(root, f"{{{ows}}}Exception", exceptionCode=err.code)
    if err.locator:
        exc.set("locator", err.locator)
    etree.SubElement(exc, f"{{{ows}}}ExceptionText").text = err.message
    resp = _xml_response(root, err.status)
    if err.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="gdm"'
    return resp


def _from_submit_error(exc: SubmitError, *, job_op: bool = False) -> WPSError:
    if exc.status == 404 and exc.message.startswith("no job"):
        return WPSError("NoSuchJob", exc.message, "jobId", 404)
    if exc.status == 404 and exc.message.startswith("unknown process"):
        return WPSError("InvalidParameterValue", exc.message, "Identifier", 400)
    if exc.status == 429:
        return WPSError("ServerBusy", exc.message, None, 429)
    code = "InvalidParameterValue" if exc.status == 400 else "NoApplicableCode"
    return WPSError(code, exc.message, "jobId" if job_op else None, exc.status)


def _from_pywps_error(exc: HTTPException) -> WPSError:
    name = type(exc).__name__
    known = ("MissingParameterValue", "InvalidParameterValue", "VersionNegotiationFailed",
             "OperationNotSupported", "FileSizeExceeded", "NoApplicableCode")
    code = name if name in known else "NoApplicableCode"
    locator = str(getattr(exc, "locator", "") or "") or None
    message = str(exc.description or code)
    if code == "MissingParameterValue" and locator and message.lower() == locator.lower():
        message = f"missing parameter {locator!r}"
    status = exc.code if exc.code and 400 <= exc.code < 500 else 400
    return WPSError(code, message, locator, status)


# ------------------------------------------------------- pywps configuration
def write_pywps_config(settings: Settings) -> Path:
    """Write ``GDM_HOME/pywps.cfg`` for this service and return its path.

    Nothing of pywps lands outside ``GDM_HOME``: no log file, its request database in
    memory (unused: jobs live in the job store), its work and output folders under
    ``GDM_HOME/pywps``.
    """
    work = settings.home / "pywps"
    work.mkdir(parents=True, exist_ok=True)

    def esc(text: str) -> str:
        return text.replace("%", "%%").replace("$", "$$").replace("\n", " ")

    lines = [
        "[server]",
        "url = http://localhost/wps",
        "language = en-US",
        "encoding = utf-8",
        f"maxrequestsize = {MAX_REQUEST_BYTES // (1024 * 1024)}mb",
        "maxsingleinputsize = 4096mb",
        f"workdir = {esc(str(work))}",
        f"outputpath = {esc(str(work))}",
        "outputurl = http://localhost/wps/outputs",
        "parallelprocesses = 0",
        "allowedinputpaths =",
        "",
        "[logging]",
        "file =",
        "level = WARNING",
        "database = sqlite:///:memory:",
        "",
        "[metadata:main]",
        "identification_title = Ground deformation service (GDM)",
        "identification_abstract = " + esc(
            "On-demand ground deformation processing: optical correlation (GDM-OPT), "
            "InSAR time series (GDM-SAR), stereo DSMs and FLATSIM campaigns. Jobs run on "
            "Celery workers; WPS 2.0 GetStatus, GetResult and Dismiss are also served."),
        "identification_keywords = deformation,InSAR,optical correlation,WPS",
        "identification_keywords_type = theme",
        "identification_fees = NONE",
        "identification_accessconstraints = NONE",
        "provider_name = GDM service",
        "provider_url = http://localhost/",
        "contact_name = GDM operators",
        "contact_role = pointOfContact",
        *(f"{key} =" for key in (
            "contact_position", "contact_address", "contact_city", "contact_stateorprovince",
            "contact_postalcode", "contact_country", "contact_phone", "contact_fax",
            "contact_email", "contact_url", "contact_hours", "contact_instructions")),
        "",
    ]
    path = settings.home / "pywps.cfg"
    write_text(path, "\n".join(lines))
    return path


# --------------------------------------------------------- process mapping
@dataclass(frozen=True)
class InputKind:
    """How one input of a process travels in WPS.

    ``kind``: ``literal`` (a scalar, or a list of scalars given as repeated inputs),
    ``reference`` (files: URLs or upload names, by reference or as inline text) or
    ``json`` (any other structure, inline JSON). ``data_type`` is the pywps literal type.
    """

    name: str
    kind: str
    data_type: str
    array: bool
    min_occurs: int
    max_occurs: int
    schema: dict


def _non_null(schema: dict) -> tuple[dict, bool]:
    """The schema without its ``null`` alternative, and whether null was allowed."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        nullable = len(rest) < len(options)
        if len(rest) == 1:
            merged = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            return {**rest[0], **merged}, nullable
        return schema, nullable
    return schema, schema.get("type") == "null"


def _is_reference(schema: dict, description: str) -> bool:
    return bool(schema.get("format") in ("uri", "uri-reference")
                or schema.get("contentMediaType")
                or _REFERENCE_HINT.search(description or ""))


def input_kinds(spec: ProcessSpec) -> dict[str, InputKind]:
    """The WPS form of every input of a process, from its inputs model's JSON schema."""
    kinds = {}
    for name, raw in spec.input_schemas().items():
        required = bool(raw.get("x-required"))
        schema, _ = _non_null(raw)
        description = raw.get("description", "")
        typ = schema.get("type")
        if typ == "array":
            items, _ = _non_null(schema.get("items", {}))
            lo = int(schema.get("minItems", 1 if required else 0)) if required else 0
            hi = int(schema.get("maxItems", 1000))
            item_type = items.get("type")
            if item_type == "string" and _is_reference(items, description):
                kinds[name] = InputKind(name, "reference", "string", True, lo, hi, raw)
            elif item_type in _SCALARS:
                kinds[name] = InputKind(name, "literal", _SCALARS[item_type], True, lo, hi, raw)
            else:
                kinds[name] = InputKind(name, "json", "string", False, int(required), 1, raw)
        elif typ in _SCALARS:
            kind = "reference" if typ == "string" and _is_reference(schema, description) \
                else "literal"
            kinds[name] = InputKind(name, kind, _SCALARS[typ], False, int(required), 1, raw)
        else:
            kinds[name] = InputKind(name, "json", "string", False, int(required), 1, raw)
    return kinds


def _allowed_values(schema: dict, data_type: str) -> list:
    from pywps.inout.literaltypes import AllowedValue
    from pywps.validator.allowed_value import ALLOWEDVALUETYPE, RANGECLOSURETYPE

    if "enum" in schema:
        return [str(v) for v in schema["enum"] if v is not None]
    if data_type in ("integer", "float"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        if lo is not None and hi is not None:
            closure = {(False, False): RANGECLOSURETYPE.CLOSED,
                       (True, False): RANGECLOSURETYPE.OPENCLOSED,
                       (False, True): RANGECLOSURETYPE.CLOSEDOPEN,
                       (True, True): RANGECLOSURETYPE.OPEN}[
                ("exclusiveMinimum" in schema, "exclusiveMaximum" in schema)]
            return [AllowedValue(allowed_type=ALLOWEDVALUETYPE.RANGE, minval=lo, maxval=hi,
                                 range_closure=closure)]
    return []


def _abstract(schema: dict) -> str:
    text = schema.get("description", "")
    inner, _ = _non_null(schema)
    bounds = [f"{k}={inner[k]}" for k in ("minimum", "exclusiveMinimum", "maximum",
                                          "exclusiveMaximum", "minLength", "maxLength")
              if k in inner]
    if bounds:
        text += f" ({', '.join(bounds)})"
    return text


def _never_run(request: Any, response: Any) -> Any:
    """Refuse to run: jobs of this service run on its Celery workers, never in pywps."""
    from pywps.exceptions import NoApplicableCode

    raise NoApplicableCode("jobs of this service run on its workers", code=500)


def pywps_process(spec: ProcessSpec) -> Any:
    """A :class:`pywps.Process` describing ``spec`` (its handler is never run)."""
    from pywps import ComplexInput, ComplexOutput, Format, LiteralInput, LiteralOutput, Process
    from pywps.validator.mode import MODE

    inputs = []
    for name, k in input_kinds(spec).items():
        title = k.schema.get("title", name)
        abstract = _abstract(k.schema)
        if k.kind == "literal":
            scalar, _ = _non_null(k.schema)
            if k.array:
                scalar, _ = _non_null(scalar.get("items", {}))
            default = scalar.get("default", k.schema.get("default"))
            if isinstance(default, bool):
                default = str(default).lower()
            inputs.append(LiteralInput(
                name, title, data_type=k.data_type, abstract=abstract,
                min_occurs=k.min_occurs, max_occurs=k.max_occurs, mode=MODE.NONE,
                allowed_values=_allowed_values(scalar, k.data_type) or None,
                default=None if k.array or isinstance(default, (list, dict)) else default))
        elif k.kind == "reference":
            inputs.append(ComplexInput(
                name, title, supported_formats=[Format(m) for m in _FILE_FORMATS],
                abstract=abstract + " Give each file by reference (an http(s) URL), or "
                "inline as the name of a file uploaded to /ogcapi/uploads.",
                min_occurs=k.min_occurs, max_occurs=k.max_occurs, mode=MODE.NONE))
        else:
            inputs.append(ComplexInput(
                name, title, supported_formats=[Format("application/json")],
                abstract=abstract + " Inline JSON.", min_occurs=k.min_occurs,
                max_occurs=1, mode=MODE.NONE))
    outputs = []
    for name, out in spec.outputs.items():
        if out.kind == "file":
            outputs.append(ComplexOutput(name, out.title, as_reference=True,
                                         supported_formats=[Format(out.media_type)]))
        else:
            typ = _SCALARS.get((out.schema or {}).get("type", "string"), "string")
            outputs.append(LiteralOutput(name, out.title, data_type=typ))
    if any(o.kind == "file" for o in spec.outputs.values()):
        outputs.append(ComplexOutput(
            "quicklooks", "Quicklook images of the products (JSON list of links)",
            as_reference=True, supported_formats=[Format("application/json")]))
    return Process(_never_run, identifier=spec.id, title=spec.title,
                   abstract=spec.description, keywords=list(spec.keywords),
                   version=spec.version, inputs=inputs, outputs=outputs,
                   store_supported=True, status_supported=True)


def _service() -> Any:
    """The pywps service of this application (built once, with its configuration)."""
    app = current_app
    service = app.extensions.get("gdm_pywps")
    if service is None:
        from pywps import Service

        pywps_log = logging.getLogger("PYWPS")
        if not pywps_log.handlers:
            pywps_log.addHandler(logging.NullHandler())
        # pywps logs every client error as an exception: keep that out of our logs
        pywps_log.propagate = False
        cfg = write_pywps_config(state().settings)
        with _CONFIG_LOCK:
            service = Service([pywps_process(s) for s in PROCESSES.values()],
                              cfgfiles=[str(cfg)])
        app.extensions["gdm_pywps"] = service
    return service


# ------------------------------------------------------------------ helpers
def _xml_response(root: etree._Element, status: int = 200) -> Response:
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return Response(body, status=status, content_type=_XML_TYPE)


@dataclass(frozen=True)
class _OutputValue:
    name: str
    title: str
    href: str | None = None
    media_type: str | None = None
    value: Any = None
    data_type: str = "string"


def _output_values(job: Job, root: str, selected: Iterable[str] | None = None
                   ) -> list[_OutputValue]:
    """The outputs of a successful job: files by reference, literals by value."""
    spec = PROCESSES.get(job.process)
    wanted = set(selected) if selected else None
    values = []
    for name, value in job.outputs.items():
        if wanted is not None and name not in wanted:
            continue
        out = spec.outputs.get(name) if spec else None
        if name == "quicklooks":
            if isinstance(value, list) and value:
                values.append(_OutputValue(name, "Quicklook images of the products",
                                           f"{root}/ogcapi/jobs/{job.id}/quicklooks",
                                           "application/json"))
        elif out is not None and out.kind == "file" and isinstance(value, str):
            values.append(_OutputValue(name, out.title, web.download_href(job, value, root),
                                       out.media_type))
        elif out is None and isinstance(value, str) and web.is_job_file(job, value):
            values.append(_OutputValue(name, name, web.download_href(job, value, root),
                                       "application/octet-stream"))
        else:
            typ = _SCALARS.get(((out.schema if out else None) or {}).get("type", ""), "string")
            values.append(_OutputValue(name, out.title if out else name, value=value,
                                       data_type=typ,
                                       media_type=out.media_type if out else "text/plain"))
    return values


def _literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)


# ------------------------------------------------------ WPS 1.0.0 documents
def execute_response(job: Job, root: str, selected: Iterable[str] | None = None,
                     with_status_location: bool = True) -> etree._Element:
    """The WPS 1.0.0 ``ExecuteResponse`` of a job, as it stands in the job store.

    Parameters
    ----------
    job
        The job.
    root
        Absolute URL of the site root (hrefs and ``statusLocation`` start with it).
    selected
        Output identifiers to report (default: all); the ``statusLocation`` keeps them
        (``?outputs=a,b``).
    with_status_location
        Include ``statusLocation`` (``{root}/wps/status/{job_id}.xml``).

    """
    spec = PROCESSES.get(job.process)
    nsmap = {"wps": WPS_NS, "ows": OWS_NS, "xlink": XLINK_NS, "xsi": XSI_NS}
    doc = etree.Element(f"{{{WPS_NS}}}ExecuteResponse", nsmap=nsmap)
    doc.set(f"{{{XSI_NS}}}schemaLocation",
            f"{WPS_NS} http://schemas.opengis.net/wps/1.0.0/wpsExecute_response.xsd")
    doc.set("service", "WPS")
    doc.set("version", "1.0.0")
    doc.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    doc.set("serviceInstance", f"{root}/wps?service=WPS&request=GetCapabilities")
    selected = sorted(selected) if selected else None
    if with_status_location:
        query = "?outputs=" + urllib.parse.quote(",".join(selected), safe=",") \
            if selected else ""
        doc.set("statusLocation", f"{root}/wps/status/{job.id}.xml{query}")
    proc = etree.SubElement(doc, f"{{{WPS_NS}}}Process")
    proc.set(f"{{{WPS_NS}}}processVersion", spec.version if spec else "1.0.0")
    etree.SubElement(proc, f"{{{OWS_NS}}}Identifier").text = job.process
    etree.SubElement(proc, f"{{{OWS_NS}}}Title").text = spec.title if spec else job.process
    status = etree.SubElement(doc, f"{{{WPS_NS}}}Status", creationTime=web.now_iso())
    if job.status == "accepted":
        etree.SubElement(status, f"{{{WPS_NS}}}ProcessAccepted").text = \
            f"job {job.id} accepted ({job.queue} queue)"
    elif job.status == "running":
        el = etree.SubElement(status, f"{{{WPS_NS}}}ProcessStarted",
                              percentCompleted=str(max(0, min(99, job.progress))))
        el.text = job.message or "running"
    elif job.status == "successful":
        etree.SubElement(status, f"{{{WPS_NS}}}ProcessSucceeded").text = \
            f"job {job.id} succeeded"
    else:
        failed = etree.SubElement(status, f"{{{WPS_NS}}}ProcessFailed")
        report = etree.SubElement(failed, f"{{{OWS_NS}}}ExceptionReport", version="1.0.0")
        exc = etree.SubElement(report, f"{{{OWS_NS}}}Exception",
                               exceptionCode="NoApplicableCode")
        text = "job was dismissed" if job.status == "dismissed" else (job.message or "failed")
        etree.SubElement(exc, f"{{{OWS_NS}}}ExceptionText").text = text
    if job.status == "successful":
        outputs = etree.SubElement(doc, f"{{{WPS_NS}}}ProcessOutputs")
        for out in _output_values(job, root, selected):
            el = etree.SubElement(outputs, f"{{{WPS_NS}}}Output")
            etree.SubElement(el, f"{{{OWS_NS}}}Identifier").text = out.name
            etree.SubElement(el, f"{{{OWS_NS}}}Title").text = out.title
            if out.href is not None:
                etree.SubElement(el, f"{{{WPS_NS}}}Reference", href=out.href,
                                 mimeType=out.media_type or "application/octet-stream")
            else:
                data = etree.SubElement(el, f"{{{WPS_NS}}}Data")
                lit = etree.SubElement(data, f"{{{WPS_NS}}}LiteralData",
                                       dataType=out.data_type)
                lit.text = _literal_text(out.value)
    return doc


# ------------------------------------------------------- WPS 2.0 documents
_STATUS2 = {"accepted": "Accepted", "running": "Running", "successful": "Succeeded",
            "failed": "Failed", "dismissed": "Dismissed"}


def status_info_document(job: Job) -> etree._Element:
    """The WPS 2.0 ``wps:StatusInfo`` of a job."""
    doc = etree.Element(f"{{{WPS2_NS}}}StatusInfo", nsmap={"wps": WPS2_NS})
    etree.SubElement(doc, f"{{{WPS2_NS}}}JobID").text = job.id
    etree.SubElement(doc, f"{{{WPS2_NS}}}Status").text = _STATUS2.get(job.status, "Failed")
    if job.expires is not None:
        etree.SubElement(doc, f"{{{WPS2_NS}}}ExpirationDate").text = web.iso(job.expires)
    if not job.done:
        etree.SubElement(doc, f"{{{WPS2_NS}}}NextPoll").text = web.iso(
            dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2))
    if job.status == "running":
        etree.SubElement(doc, f"{{{WPS2_NS}}}PercentCompleted").text = \
            str(max(0, min(99, job.progress)))
    elif job.status == "successful":
        etree.SubElement(doc, f"{{{WPS2_NS}}}PercentCompleted").text = "100"
    return doc


def result_document(job: Job, root: str) -> etree._Element:
    """The WPS 2.0 ``wps:Result`` of a successful job (files by reference)."""
    doc = etree.Element(f"{{{WPS2_NS}}}Result", nsmap={"wps": WPS2_NS, "xlink": XLINK_NS})
    etree.SubElement(doc, f"{{{WPS2_NS}}}JobID").text = job.id
    if job.expires is not None:
        etree.SubElement(doc, f"{{{WPS2_NS}}}ExpirationDate").text = web.iso(job.expires)
    for out in _output_values(job, root):
        el = etree.SubElement(doc, f"{{{WPS2_NS}}}Output", id=out.name)
        if out.href is not None:
            ref = etree.SubElement(el, f"{{{WPS2_NS}}}Reference",
                                   mimeType=out.media_type or "application/octet-stream")
            ref.set(f"{{{XLINK_NS}}}href", out.href)
        else:
            data = etree.SubElement(el, f"{{{WPS2_NS}}}Data",
                                    mimeType=out.media_type or "text/plain")
            data.text = _literal_text(out.value)
    return doc


# ------------------------------------------------------------------ routes
def _user() -> User:
    return web.user(lambda message: WPSError("NoApplicableCode", message, None, 401))


def _body_request() -> tuple[WerkzeugRequest, bytes]:
    """A copy of the request whose body is read (bounded) and whose length is known."""
    length = request.content_length
    if length is not None and length > MAX_REQUEST_BYTES:
        raise WPSError("FileSizeExceeded", f"request body of {length} bytes exceeds the "
                       f"{MAX_REQUEST_BYTES} bytes accepted; give files by reference", None)
    body = request.stream.read(MAX_REQUEST_BYTES + 1) if request.method == "POST" else b""
    if len(body) > MAX_REQUEST_BYTES:
        raise WPSError("FileSizeExceeded", "request body too large; give files by reference")
    environ = dict(request.environ)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)
    return WerkzeugRequest(environ), body


def _kvp(name: str) -> str | None:
    for key, value in request.args.items():
        if key.lower() == name.lower():
            return value
    return None


def _refuse_repeated_kvp() -> None:
    """A KVP parameter given twice is ambiguous: refused, not silently the first one."""
    seen: set[str] = set()
    for key in request.args.keys():  # noqa: SIM118 - MultiDict keys, one per name
        low = key.lower()
        if low in seen or len(request.args.getlist(key)) > 1:
            raise WPSError("InvalidParameterValue", f"parameter {key!r} is given more than "
                           "once", key)
        seen.add(low)


_XML_TYPES = ("text/xml", "application/xml")


@bp.route("", methods=["GET", "POST"])
@bp.route("/", methods=["GET", "POST"])
def endpoint() -> Response:
    """WPS 1.0.0 (GetCapabilities, DescribeProcess, Execute) and WPS 2.0 job operations."""
    version = "1.0.0"
    try:
        _refuse_repeated_kvp()
        user = _user()
        if request.method == "GET":
            op = (_kvp("request") or "").lower()
            if op in ("getstatus", "getresult", "dismiss"):
                version = "2.0.0"
                return _wps2(op, _kvp("jobId"), _kvp("version"), _kvp("service"), user)
            wreq, body = _body_request()
        else:
            if "json" in (request.content_type or ""):
                raise WPSError("InvalidParameterValue", "JSON requests are served by the OGC "
                               "API at /ogcapi; /wps takes KVP GET or XML POST", "request")
            mt = request.mimetype or ""
            if mt not in _XML_TYPES and not mt.endswith("+xml"):
                raise WPSError("InvalidParameterValue", "send WPS POST requests as XML "
                               f"(Content-Type: text/xml), not {mt or 'no type'!r}",
                               "Content-Type", 415)
            wreq, body = _body_request()
            root = _sniff_root(body)
            if root.tag.startswith(f"{{{WPS2_NS}}}") and \
                    etree.QName(root).localname in ("GetStatus", "GetResult", "Dismiss"):
                version = "2.0.0"
                ids = root.findall(f"{{{WPS2_NS}}}JobID")
                return _wps2(etree.QName(root).localname.lower(),
                             ids[0].text.strip() if ids and ids[0].text else None,
                             root.get("version"), root.get("service"), user)
            qname = etree.QName(root)
            if qname.namespace == WPS2_NS:
                raise WPSError("VersionNegotiationFailed", f"WPS 2.0 {qname.localname} is not "
                               "served: WPS 2.0 GetStatus, GetResult and Dismiss only; use "
                               "WPS 1.0.0 for the other operations", "version")
            if qname.namespace != WPS_NS or qname.localname not in (
                    "GetCapabilities", "DescribeProcess", "Execute"):
                raise WPSError("InvalidParameterValue", f"unknown request element "
                               f"{qname.localname!r} in namespace {qname.namespace!r}",
                               "request")
        return _wps1(wreq, body, user)
    except WPSError as err:
        return _exception_report(err, version)
    except SubmitError as exc:
        return _exception_report(_from_submit_error(exc), version)
    except HTTPException as exc:
        return _exception_report(_from_pywps_error(exc), version)
    except Exception:  # an OWS report, not an HTML page, even for our own bugs
        LOG.exception("WPS request failed: %s %s", request.method, request.full_path)
        return _exception_report(WPSError("NoApplicableCode", "internal server error",
                                          None, 500), version)


def _sniff_root(body: bytes) -> etree._Element:
    from pywps import xml_util

    if not body.strip():
        raise WPSError("MissingParameterValue", "empty POST body: send an XML WPS request",
                       "request")
    try:
        return xml_util.fromstring(body)
    except etree.XMLSyntaxError as exc:
        raise WPSError("NoApplicableCode", f"request body is not well-formed XML: {exc}",
                       None) from None


def _accepted_versions(wreq: WerkzeugRequest, body: bytes) -> list[str]:
    if wreq.method == "GET":
        value = next((v for k, v in wreq.args.items() if k.lower() == "acceptversions"), "")
        return [v.strip() for v in value.split(",") if v.strip()]
    root = _sniff_root(body)
    return [(v.text or "").strip() for v in root.iter(f"{{{OWS_NS}}}Version")]


def _wps1(wreq: WerkzeugRequest, body: bytes, user: User) -> Response:
    from pywps.app.WPSRequest import WPSRequest

    service = _service()
    try:
        parsed = WPSRequest(wreq)
    except HTTPException:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        # pywps's parser trusts the document's structure (a missing ows:Identifier, ...)
        raise WPSError("InvalidParameterValue", f"malformed WPS request document: {exc}",
                       "request") from None
    if parsed.operation == "getcapabilities" and parsed.version != "1.0.0":
        if "1.0.0" not in _accepted_versions(wreq, body):
            raise WPSError("VersionNegotiationFailed", "this service's capabilities are WPS "
                           "1.0.0 (its WPS 2.0 part is GetStatus, GetResult and Dismiss)",
                           "AcceptVersions")
        parsed.set_version("1.0.0")
    if parsed.version and parsed.version != "1.0.0":
        raise WPSError("VersionNegotiationFailed", f"WPS {parsed.version} {parsed.operation} "
                       "is not served; use version 1.0.0 (WPS 2.0: GetStatus, GetResult, "
                       "Dismiss)", "version")
    if parsed.operation in ("getcapabilities", "describeprocess"):
        return _pywps_document(service, parsed)
    if parsed.operation == "execute":
        if wreq.method == "POST":
            _refuse_empty_literals(_sniff_root(body))
        return _execute(parsed, user)
    raise WPSError("OperationNotSupported", f"unknown request {parsed.operation!r}", "request")


def _refuse_empty_literals(root: etree._Element) -> None:
    """An empty ``wps:LiteralData`` is a missing value (pywps would read it as "None")."""
    for inp in root.iter(f"{{{WPS_NS}}}Input"):
        for lit in inp.iter(f"{{{WPS_NS}}}LiteralData"):
            if not (lit.text or "").strip():
                ident = inp.findtext(f"{{{OWS_NS}}}Identifier") or "?"
                raise WPSError("MissingParameterValue", f"input {ident.strip()} has an empty "
                               "LiteralData: give a value or leave the input out",
                               ident.strip())


def _pywps_document(service: Any, parsed: Any) -> Response:
    import pywps.configuration as pywps_config

    url = web.site_root() + "/wps"
    with _CONFIG_LOCK:
        if pywps_config.CONFIG is None:
            pywps_config.load_configuration([str(state().settings.home / "pywps.cfg")])
        pywps_config.CONFIG.set("server", "url", url.replace("%", "%%"))
        if parsed.operation == "getcapabilities":
            response = service.get_capabilities(parsed, uuid.uuid1())
        else:
            response = service.describe(parsed, uuid.uuid1(), parsed.identifiers)
        doc, mimetype = response._construct_doc()
    if "json" in str(mimetype):
        return Response(doc, content_type="application/json")
    return Response(doc, content_type=_XML_TYPE)


# ------------------------------------------------------------------ execute
def _convert_literal(kind: InputKind, text: Any) -> Any:
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = text.strip() if kind.data_type != "string" else text
    try:
        if kind.data_type == "integer":
            as_float = float(text)
            if not as_float.is_integer():
                raise ValueError
            return int(as_float)
        if kind.data_type == "float":
            return float(text)
        if kind.data_type == "boolean":
            low = text.lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError
    except ValueError:
        raise WPSError("InvalidParameterValue", f"input {kind.name}: {text!r} is not a valid "
                       f"{kind.data_type}", kind.name) from None
    return text


def _complex_value(kind: InputKind, item: dict) -> Any:
    href = item.get("href")
    if kind.kind == "reference":
        value = href if href else item.get("data")
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        value = (value or "").strip()
        if not value:
            raise WPSError("MissingParameterValue", f"input {kind.name}: give an http(s) "
                           "reference (xlink:href) or an upload name", kind.name)
        scheme = urllib.parse.urlsplit(value).scheme.lower()
        if scheme not in (("http", "https") if href else ("", "upload", "http", "https")):
            raise WPSError("InvalidParameterValue", f"input {kind.name}: {value!r} is neither "
                           "an http(s) URL nor the name of an uploaded file", kind.name)
        return value
    if href:
        raise WPSError("InvalidParameterValue", f"input {kind.name} takes inline JSON, "
                       "not a reference", kind.name)
    data = item.get("data")
    try:
        return loads_limited(data if data is not None else "")
    except (TypeError, ValueError) as exc:
        raise WPSError("InvalidParameterValue", f"input {kind.name}: not valid JSON ({exc})",
                       kind.name) from None


def request_inputs(spec: ProcessSpec, raw: dict[str, list[dict]]) -> dict[str, Any]:
    """Turn inputs parsed by pywps into the JSON inputs of a job.

    Raises
    ------
    WPSError
        ``InvalidParameterValue`` for an unknown input, a bad value or too many
        occurrences; ``MissingParameterValue`` for a required input not given.

    """
    kinds = input_kinds(spec)
    out: dict[str, Any] = {}
    for name, items in (raw or {}).items():
        kind = kinds.get(name)
        if kind is None:
            raise WPSError("InvalidParameterValue", f"process {spec.id} has no input "
                           f"{name!r}; known: {', '.join(kinds)}", name)
        items = list(items or [])
        if kind.kind == "literal":
            for i in items:
                if not str(i.get("href") or i.get("data") or "").strip():
                    raise WPSError("MissingParameterValue", f"input {name} has an empty "
                                   "value: give a value or leave the input out", name)
            values = [_convert_literal(kind, i.get("href") or i.get("data")) for i in items]
        else:
            values = [_complex_value(kind, i) for i in items]
        if not values:
            continue
        if len(values) > kind.max_occurs:
            raise WPSError("InvalidParameterValue", f"input {name} given {len(values)} times; "
                           f"at most {kind.max_occurs}", name)
        out[name] = values if kind.array else values[0]
    for name, kind in kinds.items():
        if kind.min_occurs > 0 and name not in out:
            raise WPSError("MissingParameterValue", f"input {name} is required", name)
        if kind.array and name in out and len(out[name]) < kind.min_occurs:
            raise WPSError("MissingParameterValue", f"input {name} needs at least "
                           f"{kind.min_occurs} values; got {len(out[name])}", name)
    return out


def _flag(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def _execute(parsed: Any, user: User) -> Response:
    identifier = parsed.identifier
    if not identifier:
        raise WPSError("MissingParameterValue", "missing parameter 'identifier'", "Identifier")
    spec = PROCESSES.get(identifier)
    if spec is None:
        raise WPSError("InvalidParameterValue", f"unknown process {identifier!r}; known: "
                       f"{', '.join(PROCESSES)}", "Identifier")
    store_execute, status = _flag(parsed.store_execute), _flag(parsed.status)
    if status and not store_execute:
        raise WPSError("InvalidParameterValue", "status=true needs storeExecuteResponse=true",
                       "status")
    outputs = dict(parsed.outputs or {})
    known_outputs = set(spec.outputs) | ({"quicklooks"} if any(
        o.kind == "file" for o in spec.outputs.values()) else set())
    for name in outputs:
        if name not in known_outputs:
            raise WPSError("InvalidParameterValue", f"process {spec.id} has no output "
                           f"{name!r}; known: {', '.join(sorted(known_outputs))}", name)
    raw = bool(parsed.raw) and bool(outputs)
    selected = None if set(outputs) == known_outputs else list(outputs)
    if raw and len(outputs) != 1:
        raise WPSError("InvalidParameterValue", "RawDataOutput names exactly one output",
                       "RawDataOutput")
    inputs = request_inputs(spec, parsed.inputs)
    queue = _kvp("queue")
    job = submit(spec.id, inputs, user, store=state().store, queue=queue or None)
    root = web.site_root()
    if store_execute and not raw:
        return _xml_response(execute_response(job, root, selected))
    job = wait(job.id, store=state().store, timeout=web.sync_timeout())
    if raw and job.status == "successful":
        return _raw_output(job, spec, next(iter(outputs)))
    if raw and job.done:
        raise WPSError("NoApplicableCode", f"job {job.id} {job.status}: {job.message}",
                       None, 400)
    return _xml_response(execute_response(job, root, selected,
                                          with_status_location=not job.done))


def _raw_output(job: Job, spec: ProcessSpec, name: str) -> Response:
    from flask import redirect

    out = spec.outputs.get(name)
    value = job.outputs.get(name)
    if value is None:
        raise WPSError("InvalidParameterValue", f"job {job.id} has no output {name!r}", name)
    if name == "quicklooks":
        return redirect(f"{web.site_root()}/ogcapi/jobs/{job.id}/quicklooks", 303)
    if out is not None and out.kind == "file":
        path = job_file(job, value, state().settings)
        return send_file(path, mimetype=out.media_type.split(";")[0], max_age=0,
                         download_name=path.name)
    mt = out.media_type if out else "text/plain"
    return Response(_literal_text(value), content_type=mt)


@bp.get("/status/<job_id>.xml")
def status_document(job_id: str) -> Response:
    """The WPS 1.0.0 ``ExecuteResponse`` of a job, rendered from the job store."""
    try:
        user = _user()
        if not _JOB_ID.match(job_id):
            raise WPSError("InvalidParameterValue", f"no job {job_id!r}", "jobId", 404)
        job = visible_job(job_id, user, store=state().store)
        selected = [n for n in (request.args.get("outputs") or "").split(",") if n]
        return _xml_response(execute_response(job, web.site_root(), selected or None))
    except WPSError as err:
        return _exception_report(err)
    except SubmitError as exc:
        err = _from_submit_error(exc, job_op=True)
        return _exception_report(WPSError("InvalidParameterValue", err.message, "jobId",
                                          err.status))
    except Exception:  # an OWS report, not an HTML page, even for our own bugs
        LOG.exception("WPS status document failed: %s", request.full_path)
        return _exception_report(WPSError("NoApplicableCode", "internal server error",
                                          None, 500))


# ----------------------------------------------------------------- WPS 2.0
def _wps2(op: str, job_id: str | None, version: str | None, service: str | None,
          user: User) -> Response:
    if service is not None and service.upper() != "WPS":
        raise WPSError("InvalidParameterValue", f"service {service!r} is not served; use WPS",
                       "service")
    if version is not None and version != "2.0.0":
        raise WPSError("VersionNegotiationFailed", f"{op} is a WPS 2.0.0 operation, not "
                       f"version {version!r}", "version")
    if not job_id:
        raise WPSError("MissingParameterValue", "missing parameter 'jobId'", "jobId")
    if not _JOB_ID.match(job_id):
        raise WPSError("NoSuchJob", f"no job {job_id!r}", "jobId", 404)
    store = state().store
    try:
        if op == "dismiss":
            job = dismiss(job_id, user, store=store)
            return _xml_response(status_info_document(job))
        job = visible_job(job_id, user, store=store)
    except SubmitError as exc:
        raise _from_submit_error(exc, job_op=True) from None
    if op == "getstatus":
        return _xml_response(status_info_document(job))
    if job.status in ("accepted", "running"):
        raise WPSError("ResultNotReady", f"job {job.id} is {job.status}; its result is not "
                       "ready", "jobId", 400)
    if job.status != "successful":
        raise WPSError("NoApplicableCode", f"job {job.id} {job.status}: {job.message}",
                       "jobId", 400)
    return _xml_response(result_document(job, web.site_root()))
