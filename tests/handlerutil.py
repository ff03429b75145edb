"""Shared set-up of the handler tests (OGC API, WPS): a Flask app on a fresh job store,
Celery's ``enqueue`` replaced by a recorder or by an inline executor."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

from flask import Flask

import workflows.celery_app as celery_app
from gdmcore import user_uploads
from gdmio.process import JobContext
from workflows.jobstore import JobStore
from workflows.processes import get_process
from workflows.settings import get_settings
from workflows.submit import job_dir


def run_inline(store, settings, job_id: str) -> None:
    """What a worker does, minus the child process: claim, execute, finish."""
    job = store.claim(job_id, "inline", 60)
    if job is None:
        return
    spec = get_process(job.process)
    ctx = JobContext(job_id=job.id, workdir=job_dir(job, settings),
                     uploads_dir=user_uploads(settings.uploads_dir, job.owner),
                     progress=lambda f, m: None)
    try:
        outputs = spec.execute(spec.validate_inputs(job.inputs), ctx)
    except Exception as exc:  # noqa: BLE001 - recorded like the runner does
        store.fail(job.id, str(exc), "inline")
        return
    store.finish(job.id, outputs, "inline")


def service(tmp_path, monkeypatch, make_app: Callable[..., Flask],
            sync_timeout: float) -> SimpleNamespace:
    """App, test client, store and settings; ``sent`` records enqueued job ids and
    ``mode["inline"] = True`` runs each job in the test as it is enqueued."""
    settings = get_settings({"GDM_HOME": str(tmp_path / "home")})
    settings.ensure_dirs()
    store = JobStore(settings.database_url)
    app = make_app(settings, store)
    app.config["GDM_SYNC_TIMEOUT"] = sync_timeout
    sent: list[str] = []
    mode = {"inline": False}

    def fake_enqueue(job, settings_=None):
        sent.append(job.id)
        if mode["inline"]:
            run_inline(store, settings, job.id)

    monkeypatch.setattr(celery_app, "enqueue", fake_enqueue)
    monkeypatch.setattr(celery_app, "revoke", lambda job, settings_=None: None)
    return SimpleNamespace(app=app, client=app.test_client(), store=store,
                           settings=settings, sent=sent, mode=mode)
