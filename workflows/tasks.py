"""The Celery task and the worker's signal handlers (``celery -A workflows.tasks worker``).

Importing this module builds the Celery application from the environment's settings
and registers ``gdm.run_job`` on it; a worker imports the other task modules named in
:data:`workflows.celery_app.TASK_MODULES` itself. Worker processes also get:

- in each pool process, a parent-death signal (``kill -9`` of the worker ends its
  pool and the jobs' child processes too, so their leases expire and another worker
  takes the jobs over);
- in the main process, once ready, the lease reaper and heartbeat
  (:class:`workflows.worker.Reaper`) and the optional ready file named by
  ``GDM_WORKER_READY_FILE``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from celery import signals
from sqlalchemy.exc import OperationalError

from gdmio.atomic import write_text
from workflows.celery_app import TASK_NAME, get_app
from workflows.jobstore import JobStore
from workflows.runner import run_job, set_parent_death_signal
from workflows.settings import Settings

__all__ = ["app", "run_job_task", "READY_FILE_ENV"]

log = logging.getLogger(__name__)

READY_FILE_ENV = "GDM_WORKER_READY_FILE"
"""Environment variable: a file the worker writes (its pid) once it consumes."""

app = get_app()

_STORES: dict[str, JobStore] = {}


def _store(settings: Settings) -> JobStore:
    """One job store per process (created after the pool's fork)."""
    key = f"{os.getpid()}:{settings.database_url}"
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = JobStore(settings.database_url)
    return store


@app.task(name=TASK_NAME, bind=True, acks_late=True, autoretry_for=(OperationalError,),
          max_retries=5, retry_backoff=2, retry_backoff_max=60)
def run_job_task(self: Any, job_id: str) -> str:
    """Run job ``job_id`` (see :func:`workflows.runner.run_job`); returns what happened."""
    settings: Settings = self.app.conf["gdm_settings"]
    worker = f"{self.request.hostname or 'worker'}:{os.getpid()}"
    return run_job(job_id, store=_store(settings), settings=settings, worker_name=worker)


@signals.worker_process_init.connect
def _pool_process_init(**_: Any) -> None:
    set_parent_death_signal()


_REAPERS: list[Any] = []


def _logical_queues(consumer: Any, settings: Settings) -> list[str]:
    """The logical queues (rapid, ondemand, batch) a worker consumes."""
    from workflows.settings import QUEUES

    try:
        names = list(consumer.app.amqp.queues.consume_from or consumer.app.amqp.queues)
    except AttributeError:
        return []
    prefix = settings.queue_prefix
    logical = [n[len(prefix):] if prefix and n.startswith(prefix) else n for n in names]
    return [q for q in QUEUES if q in logical]


@signals.worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    from workflows.worker import Reaper

    settings: Settings = app.conf["gdm_settings"]
    reaper = Reaper(_store(settings), settings, name=getattr(sender, "hostname", None),
                    queues=_logical_queues(sender, settings))
    reaper.start()
    _REAPERS.append(reaper)
    ready = os.environ.get(READY_FILE_ENV)
    if ready:
        write_text(ready, str(os.getpid()))
    log.info("worker ready (lease reaper every %d s)", reaper.interval)


@signals.worker_shutting_down.connect
def _worker_shutting_down(**_: Any) -> None:
    for reaper in _REAPERS:
        reaper.stop()
    ready = os.environ.get(READY_FILE_ENV)
    if ready:
        Path(ready).unlink(missing_ok=True)
