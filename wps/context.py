"""Per-application state shared by the blueprints: settings, job store, current user."""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, current_app, request

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
    """The caller: from ``Authorization: Bearer TOKEN`` (or ``?token=``), else None.

    With no account in the job store the service runs as one local admin user (the
    embedded default, which listens on 127.0.0.1 only).
    """
    st = state()
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    token = token or request.args.get("token") or request.cookies.get("gdm_token")
    if token:
        return st.store.user_for_token(token)
    if st.store.count_users() == 0:
        return LOCAL_USER
    return None


def require_user() -> User:
    """The caller, or a 401 response when no valid token was given."""
    user = current_user()
    if user is None:
        abort(401, description="a valid API token is required (Authorization: Bearer TOKEN)")
    return user
