"""Helpers shared by the web front ends (WPS, OGC API - Processes, the web form).

Site URLs, timestamps, the authenticated caller, job files by reference, the
synchronous-execution timeout and the JSON descriptions of a process's inputs and
outputs: written once here, used by :mod:`wps.wps1`, :mod:`wps.ogcapi`,
:mod:`wps.openapi` and :mod:`wps.webform`.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
from collections.abc import Callable
from typing import Any

from flask import current_app, g, request

from gdmio.process import ProcessSpec
from workflows.jobstore import Job, User
from workflows.submit import SubmitError, job_file, visible_job
from wps.context import current_user, state

__all__ = ["TOKEN_REQUIRED", "DEFAULT_SYNC_TIMEOUT", "site_root", "ogcapi_root", "iso",
           "now_iso", "download_href", "is_job_file", "caller", "user", "sync_timeout",
           "input_descriptions", "output_descriptions", "visible"]

TOKEN_REQUIRED = "a valid API token is required (Authorization: Bearer TOKEN)"
"""What a request without a valid token is told."""

DEFAULT_SYNC_TIMEOUT = 300.0
"""Longest wait of a synchronous execution when ``GDM_SYNC_TIMEOUT`` is not set (s)."""


def site_root() -> str:
    """Absolute URL of the site, without a trailing slash (``GDM_PUBLIC_URL`` when set)."""
    public = state().settings.public_url
    return public.rstrip("/") if public else request.url_root.rstrip("/")


def ogcapi_root() -> str:
    """Absolute URL of the OGC API root."""
    return site_root() + "/ogcapi"


def iso(t: dt.datetime | None) -> str | None:
    """An instant as RFC 3339 UTC to the second (``...Z``), None for None."""
    if t is None:
        return None
    return t.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    """The current instant, as :func:`iso` writes it."""
    return iso(dt.datetime.now(dt.UTC)) or ""


def download_href(job: Job, relpath: str, root: str | None = None) -> str:
    """URL of one file of a job (``root``: the site root, by default this request's)."""
    root = site_root() if root is None else root
    return f"{root}/ogcapi/jobs/{job.id}/download/{urllib.parse.quote(relpath)}"


def is_job_file(job: Job, value: Any) -> bool:
    """Whether ``value`` names an existing file inside the job's product folder."""
    if not isinstance(value, str):
        return False
    try:
        job_file(job, value, state().settings)
    except SubmitError:
        return False
    return True


def caller() -> User | None:
    """The authenticated caller of this request (looked up once per request), or None."""
    if "gdm_user" not in g:
        g.gdm_user = current_user()
    return g.gdm_user


def user(unauthenticated: Callable[[str], Exception]) -> User:
    """The authenticated caller; raises ``unauthenticated(TOKEN_REQUIRED)`` when none."""
    who = caller()
    if who is None:
        raise unauthenticated(TOKEN_REQUIRED)
    return who


def visible(job_id: str) -> Job:
    """Job ``job_id`` as the caller of a page may see it.

    A token is needed (401), and another user's private job is not found (404). A public
    job is public to the service's users, as on ``/ogcapi/jobs/<id>``, not to anyone
    without a token.
    """
    return visible_job(job_id, user(lambda message: SubmitError(401, message)),
                       store=state().store)


def sync_timeout() -> float:
    """Longest wait of a synchronous execution (``GDM_SYNC_TIMEOUT``, seconds)."""
    value = current_app.config.get("GDM_SYNC_TIMEOUT", os.environ.get("GDM_SYNC_TIMEOUT"))
    try:
        return max(0.0, float(value)) if value is not None else DEFAULT_SYNC_TIMEOUT
    except ValueError:
        return DEFAULT_SYNC_TIMEOUT


def output_descriptions(spec: ProcessSpec) -> dict[str, dict[str, Any]]:
    """OGC output descriptions of a process (files are given by reference)."""
    outputs: dict[str, dict[str, Any]] = {}
    for name, out in spec.outputs.items():
        if out.kind == "file":
            schema: dict[str, Any] = {"type": "string", "contentMediaType": out.media_type}
        else:
            schema = dict(out.schema or {"type": "string"})
        outputs[name] = {"title": out.title, "schema": schema}
    if any(o.kind == "file" for o in spec.outputs.values()):
        outputs["quicklooks"] = {
            "title": "Quicklook images of the products",
            "schema": {"type": "array",
                       "items": {"type": "string", "contentMediaType": "image/png"}}}
    return outputs


def input_descriptions(spec: ProcessSpec) -> dict[str, dict[str, Any]]:
    """OGC input descriptions of a process, from its inputs model's JSON schema."""
    inputs = {}
    for name, schema in spec.input_schemas().items():
        schema = dict(schema)
        required = bool(schema.pop("x-required", False))
        inputs[name] = {"title": schema.get("title", name),
                        "description": schema.get("description", ""),
                        "minOccurs": 1 if required else 0, "maxOccurs": 1,
                        "schema": schema}
    return inputs
