"""Submitting, dismissing and waiting for jobs: the one entry point every front end uses.

The WPS, OGC API, web form and CLI faces all call :func:`submit` and :func:`dismiss`, so
validation, roles, quotas and queue routing are decided in one place. A job is first
recorded in the job store (status ``accepted``), then its task is sent to its Celery
queue; the worker that picks it up reads everything else from the store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gdmcore import validation_message
from workflows.jobstore import Job, JobStore, QuotaExceeded, User
from workflows.processes import get_process
from workflows.settings import QUEUES, Settings

__all__ = ["SubmitError", "submit", "dismiss", "wait", "job_dir", "job_file", "visible_job"]


class SubmitError(Exception):
    """A request the service refuses, with the HTTP status that fits it.

    ``status``: 400 bad input, 401 no valid token, 403 forbidden (role or ownership),
    404 unknown process / job / file, 429 quota exceeded.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def submit(process_id: str, inputs: dict[str, Any], user: User | None, *, store: JobStore,
           queue: str | None = None, public: bool = False,
           subscriber: dict[str, str] | None = None, enqueue: bool = True) -> Job:
    """Validate a request, record the job and send its task to its queue.

    Parameters
    ----------
    process_id
        One of :data:`workflows.processes.PROCESSES`.
    inputs
        Raw inputs (JSON-like); validated against the process's inputs model. The
        validated form (defaults filled in) is what the job store keeps.
    user
        The caller (None: no valid token).
    store
        The job store.
    queue
        ``rapid``, ``ondemand`` or ``batch``; default: the process's queue. Only
        operators and admins may use ``rapid``.
    public
        Whether anyone may read the job's results.
    subscriber
        Optional OGC callbacks: ``successUri``, ``failedUri``, ``inProgressUri``.
    enqueue
        Send the Celery task (False only in tests of the handlers themselves).

    Raises
    ------
    SubmitError
        With the HTTP status that fits the refusal.

    """
    if user is None:
        raise SubmitError(401, "a valid API token is required (Authorization: Bearer TOKEN)")
    try:
        spec = get_process(process_id)
    except KeyError as exc:
        raise SubmitError(404, str(exc.args[0])) from None
    if not isinstance(inputs, dict):
        raise SubmitError(400, "inputs must be an object of name: value")
    try:
        validated = spec.validate_inputs(inputs)
    except ValidationError as exc:
        raise SubmitError(400, "invalid inputs: " + validation_message(exc, "inputs")) from None
    queue = queue or spec.default_queue
    if queue not in QUEUES:
        raise SubmitError(400, f"unknown queue {queue!r}; known: {', '.join(QUEUES)}")
    if queue == "rapid" and not user.may_use_rapid:
        raise SubmitError(403, f"user {user.name!r} (role {user.role}) may not use the "
                          "rapid queue: operators and admins only")
    if subscriber is not None:
        _check_subscriber(subscriber)
    try:
        job = store.create_job(user.name, process_id, validated.model_dump(mode="json"),
                               queue, public=public, subscriber=subscriber,
                               max_active_jobs=user.max_active_jobs)
    except QuotaExceeded as exc:
        raise SubmitError(429, str(exc)) from None
    if enqueue:
        from workflows.celery_app import enqueue as send

        send(job)
    return job


def _check_subscriber(subscriber: dict[str, str]) -> None:
    for key, url in subscriber.items():
        if key not in ("successUri", "failedUri", "inProgressUri"):
            raise SubmitError(400, f"unknown subscriber key {key!r}")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) \
                or len(url) > 2000:
            raise SubmitError(400, f"subscriber {key} must be an http(s) URL")
        from gdmio.outbound import OutboundError, check_url

        try:
            check_url(url)  # what can be refused without DNS; the rest when it is called
        except OutboundError as exc:
            raise SubmitError(400, f"subscriber {key}: {exc}") from None


def visible_job(job_id: str, user: User | None, *, store: JobStore) -> Job:
    """The job if ``user`` may read it (owner, admin, or public job).

    A job the caller may not see answers 404 like a missing one, so ids of other users'
    jobs cannot be probed.
    """
    job = store.get(job_id)
    if job is None or not job.visible_to(user):
        raise SubmitError(404, f"no job {job_id!r}")
    return job


def dismiss(job_id: str, user: User | None, *, store: JobStore) -> Job:
    """Dismiss a job: an accepted one never starts; a running one stops at its next check.

    Only the owner or an admin may dismiss (a public job stays read-only to others).
    """
    job = visible_job(job_id, user, store=store)
    assert user is not None or job.public
    if user is None or (user.role != "admin" and user.name != job.owner):
        raise SubmitError(403, f"only the owner of job {job_id} may dismiss it")
    dismissed = store.dismiss(job_id)
    assert dismissed is not None
    if not job.done:
        from workflows.celery_app import revoke

        revoke(job)
    return dismissed


def wait(job_id: str, *, store: JobStore, timeout: float, poll: float = 0.2) -> Job:
    """Poll the store until the job is final or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        job = store.get(job_id)
        if job is None:
            raise SubmitError(404, f"no job {job_id!r}")
        if job.done or time.monotonic() >= deadline:
            return job
        time.sleep(poll)


def job_dir(job: Job, settings: Settings) -> Path:
    """The job's work folder (its products live under it)."""
    return settings.products_dir / job.id


def job_file(job: Job, relpath: str, settings: Settings) -> Path:
    """A file of a job's products, refusing any path that leaves the job's folder.

    Raises
    ------
    SubmitError
        400 for ``..``, absolute or odd paths; 404 when no such file exists.

    """
    parts = Path(relpath).parts
    if not relpath or Path(relpath).is_absolute() or any(p in ("..", ".") for p in parts) \
            or "\\" in relpath or "\x00" in relpath:
        raise SubmitError(400, f"refused path {relpath!r}")
    root = job_dir(job, settings).resolve()
    path = (root / relpath).resolve()
    if root not in path.parents or not path.is_file():
        raise SubmitError(404, f"job {job.id} has no file {relpath!r}")
    return path
