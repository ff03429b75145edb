"""Campaign monitoring pages: the FLATSIM campaigns, their frames, failures and ETA.

* ``GET /campaigns``: every campaign with its progress;
* ``GET /campaigns/<id>``: one campaign: per-frame progress, failures, dropped dates,
  throughput and the estimated completion (the page refreshes itself from the JSON);
* ``GET /campaigns/<id>/status``: the status document
  (:func:`flatsim.monitor.campaign_status`) as JSON;
* ``GET /campaigns/<id>/frames.geojson``: the frames' outlines with their status (the
  page's map);
* ``GET /campaigns/<id>/report/<file>``: the campaign report (HTML and PNGs) once
  written.

With accounts configured, every page needs a valid token, as the rest of the service,
and a campaign obeys the rules of the job that runs it: its owner and admins see it, and
anyone when the job is public; a campaign started from the command line is for admins.
A campaign the caller may not see answers 404, like a missing one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, jsonify, render_template, send_from_directory

from workflows.jobstore import User
from wps.context import current_user, state

__all__ = ["bp", "campaign_visible"]

bp = Blueprint("campaigns", __name__, template_folder="templates")


def _caller() -> User:
    user = current_user()
    if user is None:
        abort(401, description="a valid API token is required (Authorization: Bearer TOKEN)")
    return user


def _campaign_state():
    from flatsim.state import get_state

    return get_state(state().settings.database_url)


def campaign_visible(st: Any, cid: str, user: User) -> bool:
    """Whether ``user`` may see campaign ``cid``: the rules of its jobs.

    A campaign run by a job of the service belongs to that job's owner and is public
    when the job is; admins see every campaign; a campaign started from the command line
    (no job) is the operators' business: admins only.
    """
    if user.role == "admin":
        return True
    store = state().store
    for job_id in st.jobs_of(cid):
        job = store.get(job_id)
        if job is not None and job.visible_to(user):
            return True
    return False


def _status_doc(st: Any, cid: str, user: User) -> dict:
    """The status document, or KeyError for an unknown campaign or one not visible."""
    from flatsim.monitor import campaign_status

    if not campaign_visible(st, cid, user):
        raise KeyError(cid)
    doc = campaign_status(st, cid)
    if user.role != "admin":  # server paths are the operators' business
        out_dir = str(doc.pop("out_dir", "") or "")
        for failure in doc.get("failures", []):
            if out_dir and isinstance(failure.get("error"), str):
                failure["error"] = failure["error"].replace(out_dir.rstrip("/") + "/", "")
    return doc


def _who() -> dict:
    user = current_user()
    return {"accounts": state().store.count_users() > 0,
            "user": None if user is None else user.name,
            "role": None if user is None else user.role}


@bp.get("/campaigns")
def campaigns_page() -> str:
    """The list of campaigns the caller may see."""
    user = _caller()
    st = _campaign_state()
    docs = []
    for row in st.campaigns():
        try:
            docs.append(_status_doc(st, row["id"], user))
        except KeyError:
            continue
    return render_template("campaigns/index.html", campaigns=docs, who=_who())


@bp.get("/campaigns/<cid>")
def campaign_page(cid: str) -> tuple[str, int] | str:
    """One campaign (server-rendered, then refreshed from ``/status``)."""
    user = _caller()
    st = _campaign_state()
    try:
        doc = _status_doc(st, cid, user)
    except KeyError:
        return render_template("campaigns/campaign.html", doc=None, cid=cid, who=_who(),
                               report=False), 404
    row = st.campaign(cid)
    report = row is not None and (Path(row["out_dir"]) / "report" / "index.html").is_file()
    return render_template("campaigns/campaign.html", doc=doc, cid=cid, who=_who(),
                           report=report)


@bp.get("/campaigns/<cid>/status")
def campaign_status_json(cid: str) -> Response | tuple[Response, int]:
    """The campaign's status document as JSON (404 when unknown or not the caller's)."""
    user = _caller()
    try:
        return jsonify(_status_doc(_campaign_state(), cid, user))
    except KeyError:
        return jsonify({"error": f"no campaign {cid!r}", "status": 404}), 404


@bp.get("/campaigns/<cid>/frames.geojson")
def campaign_frames(cid: str) -> Response | tuple[Response, int]:
    """The campaign's frames as GeoJSON (outline, id, track, status, progress)."""
    from flatsim.monitor import campaign_status
    from flatsim.report import frame_footprints

    st = _campaign_state()
    try:
        doc = campaign_status(st, cid)
    except KeyError:
        return jsonify({"error": f"no campaign {cid!r}", "status": 404}), 404
    resp = jsonify(frame_footprints(Path(doc["out_dir"]), doc["frames"]))
    resp.mimetype = "application/geo+json"
    return resp


@bp.get("/campaigns/<cid>/report/<path:name>")
def campaign_report(cid: str, name: str) -> Response:
    """A file of the campaign report (``index.html`` and its PNGs)."""
    user = _caller()
    st = _campaign_state()
    row = st.campaign(cid)
    if row is None or not campaign_visible(st, cid, user):
        abort(404)
    return send_from_directory(Path(row["out_dir"]) / "report", name)
