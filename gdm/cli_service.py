"""Service commands: ``gdm serve``, ``gdm worker``, ``gdm jobs ...``, ``gdm users ...``.

Every command reads its settings from the environment (``GDM_HOME``,
``GDM_DATABASE_URL``, ``GDM_BROKER_URL``, ...; see :mod:`workflows.settings`).
"""

from __future__ import annotations

import errno
import json
import signal
import sys
from typing import Any

import click

from gdm.common import EXIT_BAD_INPUT
from gdmcore import InputError

__all__ = ["serve", "worker", "jobs", "users", "COMMANDS"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _store() -> Any:
    from workflows.jobstore import JobStore
    from workflows.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    return settings, JobStore(settings.database_url)


# -------------------------------------------------------------------- serve
@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (other than 127.0.0.1 only once accounts exist).")
@click.option("--port", default=5000, show_default=True, type=int, help="TCP port.")
@click.option("--threads", default=24, show_default=True, type=int,
              help="HTTP worker threads.")
@click.option("--workers/--no-workers", "with_workers", default=None,
              help="Start the local workers (default: only with the embedded broker).")
def serve(host: str, port: int, threads: int, with_workers: bool | None) -> None:
    """Serve the web form (/), WPS (/wps) and OGC API - Processes (/ogcapi).

    \b
    With the embedded default (no GDM_BROKER_URL) this also starts two local Celery
    workers: one consuming only the `rapid` queue, so an operator's rapid job starts
    at once even when batch jobs are queued, and one consuming `ondemand,batch`.
    A local worker that dies is restarted within seconds (after a growing delay when
    it keeps dying) and its running job goes back to its queue.
    With an external broker, start workers with `gdm worker` (any number, anywhere).
    """
    import waitress

    from workflows.worker import WorkerSupervisor, wait_ready
    from wps.app import create_app

    settings, store = _store()
    if host not in LOOPBACK and store.count_users() == 0:
        _fail(f"no account exists, so the service only listens on 127.0.0.1 (asked: {host}); "
              "create one first: gdm users add NAME --role admin")
    start = settings.embedded if with_workers is None else with_workers

    if not 0 <= port <= 65535:
        _fail(f"--port {port} is not a TCP port (0 to 65535)")
    app = create_app(settings, store)
    try:
        server = waitress.create_server(app, host=host, port=port, threads=threads,
                                        ident="gdm", channel_timeout=120,
                                        connection_limit=1000)
    except OSError as exc:  # busy port, no permission, unknown address: before any worker
        reason = exc.strerror or str(exc)
        hint = " (another server is using it: pick another --port)" \
            if exc.errno == errno.EADDRINUSE else ""
        _fail(f"cannot listen on {host}:{port}: {reason}{hint}")

    def on_term(_sig: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    supervisor = None
    try:
        if start:
            run_dir = settings.home / "run"
            run_dir.mkdir(parents=True, exist_ok=True)
            supervisor = WorkerSupervisor(
                (("rapid", "rapid"), ("ondemand-batch", "ondemand,batch")), settings, store,
                run_dir, say=lambda line: click.echo(line, err=True))
            supervisor.start_all()
            supervisor.start()  # from now on a worker that dies is restarted
        url = f"http://{host}:{server.effective_port}/"
        n_workers = len(supervisor.slots) if supervisor else 0
        click.echo(f"gdm serve: {url} (web form), {url}wps, {url}ogcapi/ ; "
                   f"{n_workers} local worker(s)"
                   + (", restarted if they die" if supervisor else ""), err=True)
        if supervisor is not None:
            import threading

            def announce() -> None:
                try:
                    for slot in supervisor.slots:
                        assert slot.ready is not None and slot.proc is not None
                        wait_ready(slot.ready, slot.proc, timeout=300)
                except RuntimeError as exc:
                    click.echo(f"gdm serve: a local worker failed to start: {exc}", err=True)
                else:
                    click.echo("gdm serve: local workers ready", err=True)

            threading.Thread(target=announce, daemon=True).start()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if supervisor is not None:
            supervisor.stop()


# ------------------------------------------------------------------- worker
@click.command("worker")
@click.option("--queues", "-Q", default="rapid,ondemand,batch", show_default=True,
              help="Comma-separated queues to consume (rapid, ondemand, batch).")
@click.option("--concurrency", "-c", default=1, show_default=True, type=int,
              help="Jobs run at once (one process each).")
@click.option("--name", "-n", default=None, help="Node name (default: gdm-QUEUES-random@host).")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker(queues: str, concurrency: int, name: str | None, loglevel: str) -> None:
    """Run a Celery worker in the foreground (production: one or more per machine).

    \b
    Example, on each processing machine:
      GDM_BROKER_URL=redis://broker:6379/0 GDM_DATABASE_URL=postgresql://... \\
        gdm worker --queues rapid
    """
    from workflows.worker import worker_argv

    try:
        argv = worker_argv(queues, concurrency=concurrency, name=name, loglevel=loglevel)
    except ValueError as exc:
        _fail(str(exc))
    from workflows.tasks import app

    app.worker_main(argv)


# --------------------------------------------------------------------- jobs
@click.group("jobs")
def jobs() -> None:
    """List, inspect and dismiss jobs in the job store."""


def _job_dict(job: Any) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(job)
    d.pop("extra", None)
    for k, v in d.items():
        if hasattr(v, "isoformat"):
            d[k] = v.isoformat()
    return d


@jobs.command("list")
@click.option("--status", "-s", "statuses", multiple=True,
              type=click.Choice(["accepted", "running", "successful", "failed", "dismissed"]),
              help="Only jobs with this status (repeatable).")
@click.option("--owner", help="Only this user's jobs.")
@click.option("--process", "processes", multiple=True, help="Only this process (repeatable).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def jobs_list(statuses: tuple[str, ...], owner: str | None, processes: tuple[str, ...],
              limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    _settings, store = _store()
    found = store.list(owner=owner, statuses=statuses or None, processes=processes or None,
                       limit=limit)
    if as_json:
        for job in found:
            click.echo(json.dumps(_job_dict(job)))
        return
    click.echo(f"{'ID':36s}  {'STATUS':10s} {'%':>3s}  {'PROCESS':16s} {'OWNER':12s} "
               f"{'QUEUE':8s} {'CREATED':19s}  MESSAGE")
    for j in found:
        click.echo(f"{j.id:36s}  {j.status:10s} {j.progress:3d}  {j.process:16s} "
                   f"{j.owner[:12]:12s} {j.queue:8s} {j.created:%Y-%m-%d %H:%M:%S}  "
                   f"{j.message[:60]}")


@jobs.command("show")
@click.argument("job_id")
def jobs_show(job_id: str) -> None:
    """Print one job as JSON (inputs, status, outputs, attempts, work folder)."""
    from workflows.submit import job_dir

    settings, store = _store()
    job = store.get(job_id)
    if job is None:
        _fail(f"no job {job_id!r}")
    d = _job_dict(job)
    d["workdir"] = str(job_dir(job, settings))
    click.echo(json.dumps(d, indent=2))


@jobs.command("dismiss")
@click.argument("job_id")
def jobs_dismiss(job_id: str) -> None:
    """Dismiss a job: an accepted one never starts, a running one stops within seconds."""
    from workflows.celery_app import revoke

    _settings, store = _store()
    before = store.get(job_id)
    if before is None:
        _fail(f"no job {job_id!r}")
    job = store.dismiss(job_id)
    assert job is not None
    if not before.done:
        revoke(before)
        click.echo(f"{job.id} dismissed (was {before.status})")
    else:
        click.echo(f"{job.id} already {job.status}; nothing to dismiss")


# -------------------------------------------------------------------- users
@click.group("users")
def users() -> None:
    """Accounts and API tokens (once one exists, every request needs a token)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["user", "operator", "admin"]), default="user",
              show_default=True, help="operator: may use the rapid queue; admin: sees all.")
@click.option("--max-jobs", default=20, show_default=True, type=click.IntRange(1, 100000),
              help="Most unfinished jobs at once (quota).")
def users_add(name: str, role: str, max_jobs: int) -> None:
    """Create (or update) account NAME and print a new API token on stdout.

    \b
    Example:
      TOKEN=$(gdm users add alice --role operator)
      curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/ogcapi/jobs
    """
    if not name or len(name) > 128 or not all(c.isalnum() or c in "-_.@" for c in name):
        _fail(f"invalid user name {name!r}: letters, digits and -_.@ only, at most 128")
    _settings, store = _store()
    try:
        user, token = store.create_user(name, role=role, max_active_jobs=max_jobs)
    except (ValueError, InputError) as exc:
        _fail(str(exc))
    click.echo(f"user {user.name} (role {user.role}, quota {user.max_active_jobs}); token:",
               err=True)
    click.echo(token)


@users.command("list")
def users_list() -> None:
    """List accounts."""
    from sqlalchemy import text

    _settings, store = _store()
    with store.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT name, role, max_active_jobs FROM users ORDER BY name")).all()
    for name, role, quota in rows:
        click.echo(f"{name:24s} {role:9s} {quota}")


COMMANDS = (serve, worker, jobs, users)
"""Registered on the ``gdm`` group by :mod:`gdm.cli`."""
