"""CIEST² activations over HTTP: OGC-API-style JSON endpoints and the operators' pages.

JSON (``application/problem+json`` on errors, like the rest of ``/ogcapi``):

* ``POST /ogcapi/activations``: create (operators and admins only): 201 with
  ``Location``; 400 bad request, 401 no token, 403 not an operator, 422 no usable
  scene (the detail names each sensor and why);
* ``GET /ogcapi/activations``: the activations, newest first;
* ``GET /ogcapi/activations/<id>``: one activation (refreshed from its jobs first);
* ``GET /ogcapi/activations/<id>/bulletin``: the bulletin page (HTML);
  ``/bulletin.pdf``: the PDF page.

Pages (web form, operators): ``/activations`` (form and list) and ``/activations/<id>``
(the bulletin in the site's layout, reloading while jobs run).

The caller is found like everywhere else (:func:`wps.context.current_user`: bearer
token, or the ``gdm_token`` cookie for reading; the local user when no account exists).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request
from markupsafe import Markup

from workflows.activation import (
    HAZARDS,
    Activation,
    ActivationError,
    ActivationStore,
    activate,
    bulletin_dir,
    check_operator,
    refresh_bulletin,
)
from workflows.activation.bulletin import CSS, render_fragment
from wps.context import current_user, state
from wps.ogcapi import problem

__all__ = ["bp"]

bp = Blueprint("activation", __name__, template_folder="templates")


@bp.errorhandler(ActivationError)
def _on_error(exc: ActivationError) -> Response:
    if request.path.startswith("/ogcapi/"):
        resp = problem(exc.status, exc.message)
        if exc.activation_id:
            body = resp.get_json()
            body["activation"] = exc.activation_id
            resp.set_data(json.dumps(body))
        return resp
    who = _who()
    return Response(render_template("activation/error.html", who=who, message=exc.message),
                    status=exc.status)


def _who() -> dict[str, Any]:
    user = current_user()
    accounts = state().store.count_users() > 0
    return {"accounts": accounts, "user": None if user is None else user.name,
            "role": None if user is None else user.role}


def _operator() -> Any:
    return check_operator(current_user())


def _links(act: Activation) -> list[dict[str, str]]:
    root = request.url_root.rstrip("/")
    base = f"{root}/ogcapi/activations/{act.id}"
    links = [{"href": base, "rel": "self", "type": "application/json"},
             {"href": base + "/bulletin", "rel": "alternate", "type": "text/html",
              "title": "bulletin"},
             {"href": base + "/bulletin.pdf", "rel": "alternate",
              "type": "application/pdf", "title": "bulletin (PDF)"},
             {"href": f"{root}/activations/{act.id}", "rel": "alternate",
              "type": "text/html", "title": "web page"}]
    links += [{"href": f"{root}/ogcapi/jobs/{j}", "rel": "related",
               "type": "application/json", "title": "job"} for j in act.job_ids]
    return links


def _doc(act: Activation) -> dict[str, Any]:
    return {**act.to_json(), "links": _links(act)}


def _refreshed(activation_id: str) -> Activation:
    st = state()
    return refresh_bulletin(activation_id, store=st.store, settings=st.settings)


# ----------------------------------------------------------------------- JSON
@bp.post("/ogcapi/activations")
def create() -> Response:
    """Create an activation (operators and admins)."""
    user = _operator()
    body = request.get_json(silent=True)
    if body is None:
        raise ActivationError(400, "the body must be a JSON object (Content-Type: "
                              "application/json)")
    st = state()
    act = activate(body, user, store=st.store, settings=st.settings)
    resp = jsonify(_doc(act))
    resp.status_code = 201
    resp.headers["Location"] = f"{request.url_root.rstrip('/')}/ogcapi/activations/{act.id}"
    return resp


@bp.get("/ogcapi/activations")
def list_json() -> Response:
    """The activations, newest first (``limit``, default 100)."""
    _operator()
    try:
        limit = max(1, min(10000, int(request.args.get("limit", 100))))
    except ValueError:
        raise ActivationError(400, "limit must be an integer") from None
    acts = ActivationStore(state().store).list(limit)
    return jsonify({"activations": [_doc(a) for a in acts],
                    "hazards": {k: {"sensors": list(v.sensors), "pre_days": v.pre_days,
                                    "post_days": v.post_days, "max_cloud": v.max_cloud,
                                    "why": v.why} for k, v in HAZARDS.items()}})


@bp.get("/ogcapi/activations/<activation_id>")
def one_json(activation_id: str) -> Response:
    """One activation, brought up to date with its jobs."""
    _operator()
    return jsonify(_doc(_refreshed(activation_id)))


@bp.get("/ogcapi/activations/<activation_id>/bulletin")
def bulletin_html(activation_id: str) -> Response:
    """The bulletin page (HTML with the maps embedded)."""
    _operator()
    act = _refreshed(activation_id)
    path = bulletin_dir(act.id, state().settings) / "bulletin.html"
    resp = Response(path.read_bytes(), mimetype="text/html")
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@bp.get("/ogcapi/activations/<activation_id>/bulletin.pdf")
def bulletin_pdf(activation_id: str) -> Response:
    """The bulletin as one PDF page."""
    _operator()
    act = _refreshed(activation_id)
    path = bulletin_dir(act.id, state().settings) / "bulletin.pdf"
    resp = Response(path.read_bytes(), mimetype="application/pdf")
    resp.headers["Content-Disposition"] = f'inline; filename="bulletin-{act.id[:8]}.pdf"'
    resp.headers["Cache-Control"] = "no-cache"
    return resp


# ---------------------------------------------------------------------- pages
@bp.get("/activations")
def page_index() -> str:
    """The activation form and the list of activations (operators)."""
    _operator()
    acts = ActivationStore(state().store).list(100)
    return render_template("activation/index.html", who=_who(), activations=acts,
                           hazards=HAZARDS)


@bp.get("/activations/<activation_id>")
def page_one(activation_id: str) -> str:
    """One activation: its bulletin in the site's layout."""
    _operator()
    st = state()
    act = _refreshed(activation_id)
    fragment = render_fragment(act, bulletin_dir(act.id, st.settings), store=st.store,
                               settings=st.settings)
    map_jobs = [{"id": e["job_id"], "label": f"{e['process']} ({e['role']})"}
                for e in act.jobs if e.get("job_id") and e.get("status") == "successful"]
    return render_template("activation/page.html", who=_who(), act=act,
                           fragment=Markup(fragment), css=Markup(CSS), map_jobs=map_jobs,
                           running=act.status in ("running", "selecting"))
