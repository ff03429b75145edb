"""Per-application state shared by the blueprints: settings, job store, current user."""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, current_app, g, request

from workflows.jobstore import JobStore, User
from workflows.settings import Settings

__all__ = ["AppState", "state", "current_user", "require_user", "LOCAL_USER"]

LOCAL_USER = User(name="local", role="admin", max_active_jobs=1000)
"""The single user of the embedded default when no account exists."""


@dataclass
class AppState:
    """What every request handler needs."""

    settings: Settings
    store: JobStore


def state() -> AppState:
    """The application's state (set by :func:`wps.app.create_app`)."""
    return current_app.extensions["gdm"]


def current_user() -> User | None:
    """The caller: from ``Authorization: Bearer TOKEN``, else the ``gdm_token`` cookie.

    With no account in the job store the service runs as one local admin user (the
    embedded default, which listens on 127.0.0.1 only). Where the credential came from
    is left in ``flask.g.gdm_auth`` (``header``, ``cookie``, ``local`` or None): a cookie
    alone does not authorise changes (see :mod:`wps.guard`). A ``?token=`` in the URL is
    not read (URLs end up in logs and histories); one-time download keys are (see
    ``/ogcapi/jobs/{id}/download``).
    """
    if "gdm_auth_user" in g:
        return g.gdm_auth_user
    st = state()
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    source = "header" if token else None
    if not token and request.cookies.get("gdm_token"):
        token, source = request.cookies.get("gdm_token"), "cookie"
    user: User | None
    if token:
        user = st.store.user_for_token(token)
    elif st.store.count_users() == 0:
        user, source = LOCAL_USER, "local"
    else:
        user = None
    g.gdm_auth = source if user is not None else None
    g.gdm_auth_user = user
    return user


def require_user() -> User:
    """The caller, or a 401 response when no valid token was given."""
    user = current_user()
    if user is None:
        abort(401, description="a valid API token is required (Authorization: Bearer TOKEN)")
    return user
