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
              help="Address to listen on (other than 127.0.0.1 only once accounts exist, "
              "or with --no-accounts-on-network).")
@click.option("--port", default=5000, show_default=True, type=int, help="TCP port.")
@click.option("--threads", default=24, show_default=True, type=int,
              help="HTTP worker threads.")
@click.option("--workers/--no-workers", "with_workers", default=None,
              help="Start the local workers (default: only with the embedded broker).")
@click.option("--no-accounts-on-network", "open_network", is_flag=True,
              help="Serve a non-loopback --host with no account: anyone who reaches it "
              "runs jobs as the local admin. Needs GDM_PUBLIC_URL (Host and Origin are "
              "checked against it).")
def serve(host: str, port: int, threads: int, with_workers: bool | None,
          open_network: bool) -> None:
    """Serve the web form (/), WPS (/wps) and OGC API - Processes (/ogcapi).

    \b
    With the embedded default (no GDM_BROKER_URL) this also starts two local Celery
    workers: one consuming only the `rapid` queue, so an operator's rapid job starts
    at once even when batch jobs are queued, and one consuming `ondemand,batch`.
    A local worker that dies is restarted within seconds (after a growing delay when
    it keeps dying) and its running job goes back to its queue.
    With an external broker, start workers with `gdm worker` (any number, anywhere).
    """
    from workflows.worker import WorkerSupervisor, wait_ready
    from wps.app import create_app
    from wps.server import create_server

    settings, store = _store()
    accounts = store.count_users()
    if host not in LOOPBACK and accounts == 0:
        if not open_network:
            _fail(f"no account exists, so the service only listens on 127.0.0.1 (asked: "
                  f"{host}); create one first (gdm users add NAME --role admin), or serve "
                  "without accounts on purpose with --no-accounts-on-network")
        if not settings.public_url:
            _fail("--no-accounts-on-network needs GDM_PUBLIC_URL (the URL clients use), so "
                  "that requests naming another host are refused")
    start = settings.embedded if with_workers is None else with_workers

    if not 0 <= port <= 65535:
        _fail(f"--port {port} is not a TCP port (0 to 65535)")
    app = create_app(settings, store)
    try:
        server = create_server(app, settings, store, host=host, port=port, threads=threads)
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
        if accounts == 0:
            where = ("on 127.0.0.1 only" if host in LOOPBACK else
                     f"on {host}, for anyone who reaches it (--no-accounts-on-network)")
            click.echo(f"gdm serve: no accounts: every request runs as the local admin; "
                       f"listening {where}; `gdm users add NAME --role admin` to require "
                       "tokens", err=True)
        elif not settings.public_url:
            click.echo("gdm serve: GDM_PUBLIC_URL is not set: the Host header is not checked "
                       "(set it to the URL clients use)", err=True)
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


_DAYS = click.option("--days", type=click.FloatRange(min=0.001), default=None,
                     help="Lifetime of the token in days (default: GDM_TOKEN_DAYS, 90).")


def _check_name(name: str) -> None:
    if not name or len(name) > 128 or not all(c.isalnum() or c in "-_.@" for c in name):
        _fail(f"invalid user name {name!r}: letters, digits and -_.@ only, at most 128")


def _when(t: Any) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M")


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["user", "operator", "admin"]), default="user",
              show_default=True, help="operator: may use the rapid queue; admin: sees all.")
@click.option("--max-jobs", default=20, show_default=True, type=click.IntRange(1, 100000),
              help="Most unfinished jobs at once (quota).")
@click.option("--disk-quota-gb", type=click.FloatRange(min=0.001), default=None,
              help="Space of the user's uploads (default: GDM_USER_QUOTA_MB, 50 GiB).")
@_DAYS
def users_add(name: str, role: str, max_jobs: int, disk_quota_gb: float | None,
              days: float | None) -> None:
    """Create account NAME and print its API token on stdout (it expires after 90 days).

    \b
    Example:
      TOKEN=$(gdm users add alice --role operator)
      curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/ogcapi/jobs
    An existing account is refused: `gdm users rotate` gives it a new token (and
    revokes the old ones), `gdm users set` changes its role and quotas.
    """
    _check_name(name)
    settings, store = _store()
    if store.get_user(name) is not None:
        _fail(f"user {name!r} exists: `gdm users rotate {name}` for a new token, "
              f"`gdm users set {name}` to change its role or quotas")
    quota = None if disk_quota_gb is None else int(disk_quota_gb * 1024)
    try:
        user, token = store.create_user(name, role=role, max_active_jobs=max_jobs,
                                        token_days=days or settings.token_days,
                                        disk_quota_mb=quota)
    except (ValueError, InputError) as exc:
        _fail(str(exc))
    click.echo(f"user {user.name} (role {user.role}, quota {user.max_active_jobs} jobs); "
               f"token valid {days or settings.token_days:g} days:", err=True)
    click.echo(token)


@users.command("set")
@click.argument("name")
@click.option("--role", type=click.Choice(["user", "operator", "admin"]), default=None)
@click.option("--max-jobs", type=click.IntRange(1, 100000), default=None)
@click.option("--disk-quota-gb", type=click.FloatRange(min=0.001), default=None)
def users_set(name: str, role: str | None, max_jobs: int | None,
              disk_quota_gb: float | None) -> None:
    """Change the role or quotas of account NAME (its tokens are unchanged)."""
    _settings, store = _store()
    try:
        user = store.set_user(name, role=role, max_active_jobs=max_jobs,
                              disk_quota_mb=None if disk_quota_gb is None
                              else int(disk_quota_gb * 1024))
    except KeyError:
        _fail(f"no user {name!r}")
    click.echo(f"user {user.name}: role {user.role}, quota {user.max_active_jobs} jobs")


@users.command("rotate")
@click.argument("name")
@_DAYS
def users_rotate(name: str, days: float | None) -> None:
    """Revoke every token of NAME and print a new one on stdout."""
    settings, store = _store()
    try:
        token = store.rotate_token(name, days or settings.token_days)
    except KeyError:
        _fail(f"no user {name!r}")
    click.echo(f"user {name}: old tokens revoked; new token valid "
               f"{days or settings.token_days:g} days:", err=True)
    click.echo(token)


@users.command("revoke")
@click.argument("name")
@click.option("--token", "token_id", default=None,
              help="Only this token (its id from `gdm users tokens`); default: all of them.")
def users_revoke(name: str, token_id: str | None) -> None:
    """Revoke the tokens of NAME (at once: the next request with them gets 401)."""
    _settings, store = _store()
    try:
        n = store.revoke_tokens(name, token_id)
    except KeyError:
        _fail(f"no user {name!r}")
    except ValueError as exc:
        _fail(str(exc))
    if token_id is not None and n == 0:
        _fail(f"user {name} has no active token {token_id!r}")
    click.echo(f"user {name}: {n} token(s) revoked")


@users.command("tokens")
@click.argument("name", required=False)
def users_tokens(name: str | None) -> None:
    """List tokens (of NAME, or all): id, state, created, expires, last used."""
    _settings, store = _store()
    if name is not None and store.get_user(name) is None:
        _fail(f"no user {name!r}")
    click.echo(f"{'USER':24s} {'TOKEN ID':12s} {'STATE':8s} {'CREATED':16s}  "
               f"{'EXPIRES':16s}  LAST USED")
    for t in store.tokens(name):
        click.echo(f"{t.user:24s} {t.id:12s} {t.state:8s} {_when(t.created):16s}  "
                   f"{_when(t.expires):16s}  {_when(t.last_used)}")


@users.command("list")
def users_list() -> None:
    """List accounts: name, role, job quota, active tokens, last use of a token."""
    _settings, store = _store()
    tokens: dict[str, list] = {}
    for t in store.tokens():
        tokens.setdefault(t.user, []).append(t)
    for u in store.users():
        mine = tokens.get(u.name, [])
        active = sum(1 for t in mine if t.state == "active")
        used = max((t.last_used for t in mine if t.last_used is not None), default=None)
        click.echo(f"{u.name:24s} {u.role:9s} {u.max_active_jobs:6d} jobs  "
                   f"{active} active token(s)  last used {_when(used)}")


COMMANDS = (serve, worker, jobs, users)
"""Registered on the ``gdm`` group by :mod:`gdm.cli`."""
