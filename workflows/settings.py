"""Service settings, from the environment (one place for every component).

Embedded default (nothing else running): everything under ``GDM_HOME`` (default
``./.gdm``) — SQLite job store, SQLAlchemy/SQLite Celery broker and result backend,
products and uploads. Production: point ``GDM_DATABASE_URL`` at PostgreSQL and
``GDM_BROKER_URL`` at Redis or RabbitMQ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "get_settings", "QUEUES"]

QUEUES = ("rapid", "ondemand", "batch")
"""Celery queues: CIEST² activations, user jobs, FLATSIM campaigns."""


@dataclass(frozen=True)
class Settings:
    """Where the job store, broker, products and uploads live."""

    home: Path
    database_url: str
    broker_url: str
    result_backend: str
    products_dir: Path
    uploads_dir: Path
    visibility_timeout: int
    lease_seconds: int
    public_url: str | None
    queue_prefix: str = ""
    scene_cache_dir: Path | None = None
    resend_after: int = 21600
    max_request_mb: int = 4096
    user_quota_mb: int = 51200
    token_days: int = 90
    basemap_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    basemap_attribution: str = "&copy; OpenStreetMap contributors"

    @property
    def scene_cache(self) -> Path:
        """The scene cache shared by the workers (``GDM_SCENE_CACHE``, else under home)."""
        return self.scene_cache_dir or self.home / "scenes"

    @property
    def embedded(self) -> bool:
        """True when the broker is the embedded SQLite one (``gdm serve`` starts a worker)."""
        return self.broker_url.startswith("sqla+sqlite")

    def ensure_dirs(self) -> None:
        """Create the folders the settings point to."""
        for p in (self.home, self.products_dir, self.uploads_dir):
            p.mkdir(parents=True, exist_ok=True)


def get_settings(env: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (default: ``os.environ``).

    Variables: ``GDM_HOME``, ``GDM_DATABASE_URL``, ``GDM_BROKER_URL``,
    ``GDM_RESULT_BACKEND``, ``GDM_PRODUCTS_DIR``, ``GDM_UPLOADS_DIR``,
    ``GDM_VISIBILITY_TIMEOUT`` (s, default 43200), ``GDM_LEASE_SECONDS`` (s, default 60:
    a running job whose worker has not reported for this long is given to another
    worker), ``GDM_PUBLIC_URL`` (the URL clients reach the server at),
    ``GDM_QUEUE_PREFIX`` (prepended to the broker's queue names, so that several
    deployments or test runs can share one Redis or RabbitMQ server),
    ``GDM_SCENE_CACHE`` (the scene cache folder shared by all workers; default
    ``$GDM_HOME/scenes``), ``GDM_RESEND_AFTER`` (s, default 21600: the task of a job
    still accepted after this long is sent again, in case its broker message was lost;
    a duplicate is skipped by the worker that gets it; 0 never re-sends),
    ``GDM_MAX_REQUEST_MB`` (largest request body, uploads included, default 4096),
    ``GDM_USER_QUOTA_MB`` (disk space of each user's uploads, default 51200; a user's
    ``disk_quota_mb`` overrides it), ``GDM_TOKEN_DAYS`` (lifetime of a new API token,
    default 90),
    ``GDM_BASEMAP_URL`` (the XYZ tile URL of the web maps' base layer, with ``{z}``,
    ``{x}``, ``{y}``; default OpenStreetMap's) and ``GDM_BASEMAP_ATTRIBUTION``.
    """
    env = dict(os.environ if env is None else env)
    home = Path(env.get("GDM_HOME", ".gdm")).absolute()
    return Settings(
        home=home,
        database_url=env.get("GDM_DATABASE_URL", f"sqlite:///{home / 'jobs.sqlite'}"),
        broker_url=env.get("GDM_BROKER_URL", f"sqla+sqlite:///{home / 'broker.sqlite'}"),
        result_backend=env.get("GDM_RESULT_BACKEND", f"db+sqlite:///{home / 'results.sqlite'}"),
        products_dir=Path(env.get("GDM_PRODUCTS_DIR", home / "products")).absolute(),
        uploads_dir=Path(env.get("GDM_UPLOADS_DIR", home / "uploads")).absolute(),
        visibility_timeout=int(env.get("GDM_VISIBILITY_TIMEOUT", "43200")),
        lease_seconds=int(env.get("GDM_LEASE_SECONDS", "60")),
        public_url=env.get("GDM_PUBLIC_URL"),
        queue_prefix=env.get("GDM_QUEUE_PREFIX", ""),
        scene_cache_dir=(Path(env["GDM_SCENE_CACHE"]).absolute()
                         if env.get("GDM_SCENE_CACHE") else None),
        resend_after=int(env.get("GDM_RESEND_AFTER", "21600")),
        max_request_mb=int(env.get("GDM_MAX_REQUEST_MB", "4096")),
        user_quota_mb=int(env.get("GDM_USER_QUOTA_MB", "51200")),
        token_days=int(env.get("GDM_TOKEN_DAYS", "90")),
        **{field: env[var] for field, var in (("basemap_url", "GDM_BASEMAP_URL"),
                                               ("basemap_attribution",
                                                "GDM_BASEMAP_ATTRIBUTION"))
           if env.get(var)},
    )
