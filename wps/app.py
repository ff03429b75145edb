"""The WSGI application: one Flask app serving every face of the service."""

from __future__ import annotations

from flask import Flask

from workflows.jobstore import JobStore
from workflows.settings import Settings, get_settings
from wps.activation import bp as activation_bp
from wps.campaigns import bp as campaigns_bp
from wps.context import AppState
from wps.guard import install
from wps.maps import bp as maps_bp
from wps.ogcapi import bp as ogcapi_bp
from wps.webform import bp as webform_bp
from wps.wps1 import bp as wps_bp

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, store: JobStore | None = None) -> Flask:
    """Build the application: web form at ``/``, WPS at ``/wps``, OGC API at ``/ogcapi``."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_mb * 1024**2
    store = store or JobStore(settings.database_url)
    app.extensions["gdm"] = AppState(settings=settings, store=store)

    install(app)  # Host/Origin, CSRF, cookie-only changes, JSON depth, security headers

    app.register_blueprint(ogcapi_bp, url_prefix="/ogcapi")
    app.register_blueprint(wps_bp, url_prefix="/wps")
    app.register_blueprint(webform_bp)
    app.register_blueprint(maps_bp)  # map layers: tiles, legends, values
    app.register_blueprint(campaigns_bp)  # FLATSIM campaign monitoring
    app.register_blueprint(activation_bp)  # CIEST² activations
    return app
