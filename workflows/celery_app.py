"""The Celery application: three queues, late acknowledgement, one job per worker slot.

The broker only carries job identifiers (task ``gdm.run_job``); everything else about a
job lives in the job store. Configuration comes from :class:`workflows.settings.Settings`:

- embedded default: SQLAlchemy/SQLite broker and database result backend under
  ``GDM_HOME`` (nothing else running);
- production: ``GDM_BROKER_URL=redis://...`` or ``amqp://...``.

Celery options that matter for long jobs: ``task_acks_late`` (a message is acknowledged
only when its job is over, so a worker lost mid-job does not lose the message on brokers
that redeliver), ``worker_prefetch_multiplier=1`` (a worker never hoards queued jobs
while busy), ``task_reject_on_worker_lost`` and a broker visibility timeout longer than
any job. Cancellation is cooperative, through the job store (see
:mod:`workflows.runner`); jobs whose worker died are re-enqueued by the lease reaper of
any live worker (:mod:`workflows.worker`).
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery
from kombu import Exchange, Queue
from kombu.transport import sqlalchemy as _sqla_transport

from workflows.jobstore import Job
from workflows.settings import QUEUES, Settings, get_settings

__all__ = ["make_celery", "get_app", "enqueue", "revoke", "queue_name", "TASK_NAME",
           "TASK_MODULES"]

TASK_NAME = "gdm.run_job"
"""The one task: run the job whose identifier is the only argument."""

TASK_MODULES = ("workflows.tasks", "workflows.activation.tasks", "workflows.campaign_tasks")
"""The modules that define the workers' tasks and signal handlers: Celery imports them
when a worker starts (the app's ``include``), nothing imports them for their side effect."""

log = logging.getLogger(__name__)

_APPS: dict[tuple[str, str, str], Celery] = {}
_LOCK = threading.Lock()


def queue_name(queue: str, settings: Settings) -> str:
    """The broker queue name of a logical queue (``rapid``, ``ondemand``, ``batch``)."""
    return f"{settings.queue_prefix}{queue}"


EMBEDDED_POLL_S = 0.25
"""Seconds between polls of the embedded (SQLite) broker by an idle worker."""

EMBEDDED_BUSY_POLL_S = 0.02
"""Seconds between polls for :data:`EMBEDDED_BUSY_S` after a message was delivered."""

EMBEDDED_BUSY_S = 5.0


class EmbeddedTransport(_sqla_transport.Transport):
    """kombu's SQLAlchemy transport, polled every :data:`EMBEDDED_POLL_S` s (not 1 s).

    kombu hands every transport option of this transport to ``create_engine``, so the
    polling interval cannot be passed as an option; it is a property of this subclass.
    While a worker's one job slot is taken (late acknowledgement, prefetch 1) kombu's
    loop finds nothing to consume and sleeps the polling interval, so a job that ends
    waits for the sleep to end before the next message is taken: a quarter of a second
    a job, which for short jobs (and a queue full of them) was most of the time. For a
    few seconds after each delivery the interval is therefore short; an idle worker goes
    back to the slow interval.
    """

    _last_delivery = float("-inf")
    _idle_poll_s = EMBEDDED_POLL_S

    @property
    def polling_interval(self) -> float:  # type: ignore[override]
        if time.monotonic() - self._last_delivery < EMBEDDED_BUSY_S:
            return min(EMBEDDED_BUSY_POLL_S, self._idle_poll_s)
        return self._idle_poll_s

    @polling_interval.setter
    def polling_interval(self, value: float) -> None:  # kombu's own option, if ever given
        self._idle_poll_s = float(value)

    def _deliver(self, message, queue):  # noqa: ANN001, ANN202 - kombu's signature
        self._last_delivery = time.monotonic()
        return super()._deliver(message, queue)


def _transport_options(settings: Settings) -> dict:
    url = settings.broker_url
    if url.startswith("sqla+"):
        # kombu passes these to sqlalchemy.create_engine: wait for SQLite's write lock
        # instead of failing when the server and the workers touch the broker at once.
        if url.startswith("sqla+sqlite"):
            return {"connect_args": {"timeout": 60}}
        return {}
    return {"visibility_timeout": settings.visibility_timeout}


def make_celery(settings: Settings) -> Celery:
    """Build a Celery application for ``settings`` (broker, result backend, queues)."""
    if settings.embedded:
        settings.ensure_dirs()
    broker, transport = settings.broker_url, None
    if broker.startswith("sqla+"):
        broker, transport = broker[len("sqla+"):], f"{__name__}:EmbeddedTransport"
    app = Celery("gdm", broker=broker, backend=settings.result_backend,
                 include=list(TASK_MODULES))
    queues = [Queue(queue_name(q, settings), Exchange(queue_name(q, settings), type="direct"),
                    routing_key=queue_name(q, settings)) for q in QUEUES]
    app.conf.update(
        task_queues=queues,
        task_default_queue=queue_name("ondemand", settings),
        task_default_exchange=queue_name("ondemand", settings),
        task_default_routing_key=queue_name("ondemand", settings),
        task_create_missing_queues=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_track_started=False,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 86400,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # Remote control needs fanout exchanges, which the SQLAlchemy transport lacks;
        # on the embedded broker it would only add polling of a pidbox queue.
        worker_enable_remote_control=not settings.embedded,
        broker_transport=transport,
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_heartbeat=120,
        enable_utc=True,
        timezone="UTC",
    )
    app.conf["gdm_settings"] = settings
    return app


def get_app(settings: Settings | None = None) -> Celery:
    """The Celery application for the current settings (one per broker, cached)."""
    settings = settings or get_settings()
    key = (settings.broker_url, settings.result_backend, settings.queue_prefix)
    with _LOCK:
        app = _APPS.get(key)
        if app is None:
            app = _APPS[key] = make_celery(settings)
        return app


def enqueue(job: Job, settings: Settings | None = None) -> None:
    """Send the job's task to its queue (the task id is the job id)."""
    settings = settings or get_settings()
    app = get_app(settings)
    name = queue_name(job.queue, settings)
    app.send_task(TASK_NAME, args=[job.id], task_id=job.id, queue=name, routing_key=name,
                  exchange=name)


def revoke(job: Job, settings: Settings | None = None) -> None:
    """Ask workers to drop the job's queued message (best effort).

    Cancellation does not depend on it: the job store says ``dismissed``, a worker that
    picks up the message skips the job, and a running job is stopped by its runner.
    Nothing is sent on the embedded broker (no remote control there).
    """
    settings = settings or get_settings()
    if settings.embedded:
        return
    try:
        get_app(settings).control.revoke(job.id)
    except Exception as exc:  # noqa: BLE001 - best effort; the job store decides
        log.warning("could not broadcast revoke of job %s: %s", job.id, exc)
