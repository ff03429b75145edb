"""Campaign monitoring pages: the FLATSIM campaigns, their frames, failures and ETA.

* ``GET /campaigns``: every campaign with its progress;
* ``GET /campaigns/<id>``: one campaign: per-frame progress, failures, dropped dates,
  throughput and the estimated completion (the page refreshes itself from the JSON);
* ``GET /campaigns/<id>/status``: the status document
  (:func:`flatsim.monitor.campaign_status`) as JSON;
* ``GET /campaigns/<id>/report/<file>``: the campaign report (HTML and PNGs) once
  written.

With accounts configured, every page needs a valid token, as the rest of the service.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, render_template, send_from_directory

from wps.context import current_user, state

__all__ = ["bp"]

bp = Blueprint("campaigns", __name__, template_folder="templates")


def _campaign_state():
    from flatsim.state import get_state

    if current_user() is None:
        abort(401, description="a valid API token is required (Authorization: Bearer TOKEN)")
    return get_state(state().settings.database_url)


def _who() -> dict:
    user = current_user()
    return {"accounts": state().store.count_users() > 0,
            "user": None if user is None else user.name,
            "role": None if user is None else user.role}


@bp.get("/campaigns")
def campaigns_page() -> str:
    """The list of campaigns."""
    from flatsim.monitor import campaign_status

    st = _campaign_state()
    docs = [campaign_status(st, row["id"]) for row in st.campaigns()]
    return render_template("campaigns/index.html", campaigns=docs, who=_who())


@bp.get("/campaigns/<cid>")
def campaign_page(cid: str) -> tuple[str, int] | str:
    """One campaign (server-rendered, then refreshed from ``/status``)."""
    from flatsim.monitor import campaign_status

    st = _campaign_state()
    try:
        doc = campaign_status(st, cid)
    except KeyError:
        return render_template("campaigns/campaign.html", doc=None, cid=cid, who=_who(),
                               report=False), 404
    report = (Path(doc["out_dir"]) / "report" / "index.html").is_file()
    return render_template("campaigns/campaign.html", doc=doc, cid=cid, who=_who(),
                           report=report)


@bp.get("/campaigns/<cid>/status")
def campaign_status_json(cid: str) -> Response | tuple[Response, int]:
    """The campaign's status document as JSON."""
    from flatsim.monitor import campaign_status

    st = _campaign_state()
    try:
        return jsonify(campaign_status(st, cid))
    except KeyError:
        return jsonify({"error": f"no campaign {cid!r}", "status": 404}), 404


@bp.get("/campaigns/<cid>/report/<path:name>")
def campaign_report(cid: str, name: str) -> Response:
    """A file of the campaign report (``index.html`` and its PNGs)."""
    st = _campaign_state()
    row = st.campaign(cid)
    if row is None:
        abort(404)
    return send_from_directory(Path(row["out_dir"]) / "report", name)
