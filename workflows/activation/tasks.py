"""Worker side of activations: bulletin refresh when a job ends, and its Celery task.

Imported by every worker at start (:data:`workflows.celery_app.TASK_MODULES`), so each

- connects a ``task_postrun`` handler: when ``gdm.run_job`` ends for a job that belongs
  to an activation, the activation's bulletin is refreshed at once in the same process
  (a few seconds of drawing; a refresh queued behind the activation's other rapid jobs
  would only come after them);
- registers ``gdm.activation.refresh`` (argument: the activation id), for a poller,
  an operator or a later job to ask for a refresh explicitly.

The runner itself is untouched: the hook only reads the job store.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from sqlalchemy.exc import SQLAlchemyError

from workflows.activation.models import ActivationError
from workflows.activation.service import refresh_bulletin
from workflows.activation.store import ActivationStore
from workflows.celery_app import TASK_NAME
from workflows.settings import Settings
from workflows.tasks import _store, app

__all__ = ["REFRESH_TASK", "refresh_task", "refresh_for_job"]

log = logging.getLogger(__name__)

REFRESH_TASK = "gdm.activation.refresh"


@app.task(name=REFRESH_TASK, autoretry_for=(SQLAlchemyError,), max_retries=5,
          retry_backoff=2)
def refresh_task(activation_id: str) -> str:
    """Refresh an activation's bulletin; returns the activation's status."""
    settings: Settings = app.conf["gdm_settings"]
    return refresh_bulletin(activation_id, store=_store(settings), settings=settings).status


def refresh_for_job(job_id: str, settings: Settings) -> str | None:
    """Refresh the bulletin of the activation job ``job_id`` belongs to; its id or None."""
    store = _store(settings)
    act = ActivationStore(store).find_by_job(job_id)
    if act is None:
        return None
    refresh_bulletin(act.id, store=store, settings=settings)
    return act.id


@signals.task_postrun.connect
def _after_job(task: Any = None, args: Any = None, **_: Any) -> None:
    if task is None or getattr(task, "name", None) != TASK_NAME or not args:
        return
    settings: Settings = app.conf["gdm_settings"]
    try:
        done = refresh_for_job(str(args[0]), settings)
    except (ActivationError, SQLAlchemyError, OSError, ValueError) as exc:
        # the job's outcome is already recorded; the bulletin catches up on its next view
        log.warning("job %s: activation bulletin not refreshed: %s", args[0], exc)
        return
    if done:
        log.info("job %s ended: bulletin of activation %s refreshed", args[0], done)
