"""Running one job: claim, work folder, child process, heartbeat, cancellation, callbacks.

:func:`run_job` is what the Celery task calls (and what tests call directly). It

1. claims the job in the job store with a lease (a job that is finished, dismissed or
   running elsewhere on a live lease is skipped: the task is idempotent);
2. prepares the job's work folder (:func:`workflows.submit.job_dir`), discarding any
   staging folder a crashed earlier attempt left behind, and skips execution when an
   earlier attempt already completed the products (``.job-outputs.json`` marker);
3. runs the process's ``execute`` in a forked child process, while this process
   renews the lease, records progress and polls the job store for dismissal; a
   dismissed job's child is asked to stop, then terminated, then killed, so that the
   work stops within seconds even inside a long step that reports no progress (a
   numerical kernel holding the GIL could not be interrupted from a thread);
4. records the outcome: outputs (paths relative to the work folder) on success, the
   message of an :class:`~gdmcore.InputError` or ``ValidationError`` on bad
   input, ``internal error: ...`` otherwise; and POSTs the job's status document to
   the subscriber URLs (``successUri``, ``failedUri``, ``inProgressUri``).

Products are written by the services through :class:`gdmio.products.ProductDir`, which
publishes them by atomic renames only once complete, so a re-run after a crash redoes
the unfinished stage and never leaves a duplicate set of files.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from gdmcore import InputError, user_uploads, validation_message
from gdmio.atomic import write_text
from gdmio.process import Cancelled, JobContext
from gdmio.products import STAGING_PREFIX
from workflows.jobstore import Job, JobStore
from workflows.processes import get_process
from workflows.settings import Settings
from workflows.submit import job_dir

__all__ = ["run_job", "status_document", "notify", "set_parent_death_signal", "public_message",
           "OUTPUTS_MARKER", "STOP_GRACE_S"]

log = logging.getLogger(__name__)

OUTPUTS_MARKER = ".job-outputs.json"
"""Written in the work folder once a job's products are complete (resumable jobs)."""

STOP_GRACE_S = 2.0
"""Seconds a dismissed job's child gets after each stop request (ask, SIGTERM, SIGKILL)."""

POLL_S = 1.0
"""How often the runner looks at the job store for dismissal (seconds)."""

CALLBACK_TIMEOUT_S = 10.0


# ------------------------------------------------------------------ utilities
def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux only).

    A ``kill -9`` of a worker then also ends the processes doing its work, instead of
    leaving orphans that keep renewing a lease nobody will act on.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - exotic libc
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable")


def _iso(t: Any) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def status_document(job: Job, settings: Settings) -> dict[str, Any]:
    """The OGC API - Processes ``statusInfo`` of a job (what callbacks receive)."""
    doc: dict[str, Any] = {
        "jobID": job.id, "processID": job.process, "type": "process",
        "status": job.status, "message": job.message, "progress": job.progress,
        "created": _iso(job.created), "started": _iso(job.started),
        "finished": _iso(job.finished), "updated": _iso(job.updated),
    }
    if settings.public_url:
        base = settings.public_url.rstrip("/") + f"/ogcapi/jobs/{job.id}"
        links = [{"href": base, "rel": "self", "type": "application/json",
                  "title": "job status"}]
        if job.status == "successful":
            links.append({"href": base + "/results", "type": "application/json",
                          "rel": "http://www.opengis.net/def/rel/ogc/1.0/results",
                          "title": "job results"})
        doc["links"] = links
    return doc


def notify(job: Job, settings: Settings, key: str | None = None) -> bool:
    """POST the job's status document to its subscriber URL for its state.

    ``key`` defaults to ``successUri`` / ``failedUri`` / ``inProgressUri`` from the job's
    status. The request goes through the guarded client (:func:`gdmio.outbound.post_json`:
    hosts checked, redirects not followed, the whole exchange within
    :data:`CALLBACK_TIMEOUT_S`). Failures are logged (a subscriber that is down must not
    fail the job); returns whether a callback was delivered with a 2xx answer.
    """
    if not job.subscriber:
        return False
    key = key or {"successful": "successUri", "failed": "failedUri"}.get(
        job.status, "inProgressUri")
    url = job.subscriber.get(key)
    if not url:
        return False
    from gdmio.outbound import OutboundError, post_json, safe_url

    try:
        code = post_json(url, status_document(job, settings), timeout=CALLBACK_TIMEOUT_S)
    except OutboundError as exc:
        log.warning("job %s: callback %s failed: %s", job.id, key, exc)
        return False
    if not 200 <= code < 300:
        log.warning("job %s: callback %s to %s answered HTTP %s", job.id, key,
                    safe_url(url), code)
    return 200 <= code < 300


_ABS_PATH = re.compile(r"(?<![\w:/.~>-])/(?:[^\s/'\"():,;]+/)*([^\s/'\"():,;]+)")


def public_message(text: str, settings: Settings, workdir: Path | None = None) -> str:
    """A job message without the server's absolute paths (users see job messages).

    Paths in the job's folder become relative to it, the caller's uploads their names,
    the service's folders a tag (``<products>``, ``<uploads>``, ``<scene cache>``); any
    other absolute path is reduced to its last part. URLs are left alone.
    """
    roots: list[tuple[str, str]] = []
    if workdir is not None:
        roots.append((str(workdir), ""))
    roots += [(str(settings.uploads_dir), "<uploads>"), (str(settings.products_dir),
              "<products>"), (str(settings.scene_cache), "<scene cache>"),
              (str(settings.home), "<service>")]
    for root, tag in sorted(roots, key=lambda r: -len(r[0])):
        root = root.rstrip("/")
        if not root:
            continue
        text = text.replace(root + "/", f"{tag}/" if tag else "")
        text = text.replace(root, tag or "the job folder")
    return _ABS_PATH.sub(lambda m: m.group(1), text)


def _notify_async(job: Job, settings: Settings) -> None:
    threading.Thread(target=notify, args=(job, settings), daemon=True,
                     name=f"callback-{job.id[:8]}").start()


def _discard_partials(workdir: Path) -> int:
    """Remove staging folders left by an attempt that died; returns how many."""
    if not workdir.is_dir():
        return 0
    stale = [p for p in workdir.rglob(f"{STAGING_PREFIX}*") if p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


def _completed_outputs(workdir: Path, process_id: str) -> dict[str, Any] | None:
    """Outputs recorded by an earlier attempt whose files are all present, else None."""
    marker = workdir / OUTPUTS_MARKER
    try:
        outputs = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(outputs, dict):
        return None
    for path in _output_files(outputs, process_id):
        if not (workdir / path).is_file():
            return None
    return outputs


def _output_files(outputs: dict[str, Any], process_id: str) -> list[str]:
    """Relative paths of the file outputs (and quicklooks) among a job's outputs."""
    specs = get_process(process_id).outputs
    files = [v for k, v in outputs.items()
             if k in specs and specs[k].kind == "file" and isinstance(v, str)]
    quicklooks = outputs.get("quicklooks") or []
    files += [q for q in quicklooks if isinstance(q, str)]
    return files


def _write_marker(workdir: Path, outputs: dict[str, Any]) -> None:
    write_text(workdir / OUTPUTS_MARKER, json.dumps(outputs, indent=1))


# ------------------------------------------------------------- child process
def _child_main(conn: Connection, process_id: str, inputs: dict[str, Any], job_id: str,
                workdir: str, uploads_dir: str, parent_pid: int,
                scene_cache: str | None = None) -> None:
    """Entry point of the child that executes the process (sends one outcome message)."""
    set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(3)

    def on_term(_sig: int, _frame: Any) -> None:
        raise Cancelled("terminated")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def progress(fraction: float, message: str) -> None:
        if conn.poll(0):
            raise Cancelled("dismissed")
        conn.send(("progress", float(fraction), str(message)))

    outcome: tuple
    try:
        spec = get_process(process_id)
        validated = spec.validate_inputs(inputs)
        ctx = JobContext(job_id=job_id, workdir=Path(workdir), uploads_dir=Path(uploads_dir),
                         progress=progress,
                         scene_cache=Path(scene_cache) if scene_cache else None)
        outputs = spec.execute(validated, ctx)
        json.dumps(outputs)  # outputs go to the job store as JSON
        outcome = ("ok", outputs)
    except Cancelled:
        outcome = ("cancelled",)
    except InputError as exc:
        outcome = ("input", str(exc))
    except ValidationError as exc:
        outcome = ("input", "invalid inputs: " + validation_message(exc, "inputs"))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then the job fails
        outcome = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    try:
        conn.send(outcome)
    except (BrokenPipeError, OSError):
        pass
    finally:
        conn.close()


class _Child:
    """A forked child process running :func:`_child_main` (plain ``os.fork``).

    ``multiprocessing.Process`` refuses to start from Celery's (daemonic) pool
    processes; a bare fork has no such rule and costs no re-import.
    """

    def __init__(self, conn: Connection, args: tuple) -> None:
        self.exitcode: int | None = None
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                _child_main(conn, *args)
            except BaseException:  # noqa: BLE001 - nothing may escape a forked child
                code = 1
            finally:
                os._exit(code)
        self.pid = pid

    def is_alive(self) -> bool:
        if self.exitcode is not None:
            return False
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.exitcode = os.waitstatus_to_exitcode(status)
        return False

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(0.02)

    def _signal(self, sig: int) -> None:
        if self.exitcode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class _Supervisor:
    """Runs one job's child process and keeps the job store informed."""

    def __init__(self, job: Job, store: JobStore, settings: Settings, worker: str,
                 workdir: Path) -> None:
        self.job = job
        self.store = store
        self.settings = settings
        self.worker = worker
        self.workdir = workdir
        self.lease = max(1, settings.lease_seconds)
        self.renew_every = min(max(self.lease / 4.0, 0.5), 15.0)
        self.progress = (0, "running")
        self.reported = (-1, "")
        self.last_callback = 0.0
        self.stop_reason: str | None = None

    def run(self) -> tuple:
        try:
            # Load the process (and its service's modules) here, once per worker process:
            # each forked child inherits it instead of reading the entry points and
            # importing the service again (about 0.5 s a job). An unknown process is
            # reported by the child.
            get_process(self.job.process)
        except KeyError:
            pass
        parent_conn, child_conn = mp.Pipe(duplex=True)
        proc = _Child(child_conn, (self.job.process, self.job.inputs, self.job.id,
                                   str(self.workdir),
                                   # Each user's uploads live in their own folder (the
                                   # OGC API's POST /uploads puts them there).
                                   str(user_uploads(self.settings.uploads_dir,
                                                    self.job.owner)),
                                   os.getpid(), str(self.settings.scene_cache)))
        child_conn.close()
        log.info("job %s (%s) attempt %d: child pid %s", self.job.id, self.job.process,
                 self.job.attempts, proc.pid)
        outcome: tuple | None = None
        last_poll = last_renew = time.monotonic()
        stop_started: float | None = None
        stage = 0
        try:
            while True:
                if parent_conn.poll(0.2):
                    try:
                        msg = parent_conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is None:
                        break
                    if msg[0] != "progress":
                        outcome = msg
                        break
                    self.progress = (int(round(100 * min(max(msg[1], 0.0), 1.0))),
                                     public_message(msg[2] or "running", self.settings,
                                                    self.workdir))
                elif not proc.is_alive():
                    break
                now = time.monotonic()
                if now - last_poll >= POLL_S:
                    last_poll = now
                    renew = now - last_renew >= self.renew_every
                    try:
                        status = self._beat(renew)
                    except SQLAlchemyError as exc:
                        # a job store outage shorter than the lease costs nothing; a
                        # longer one lets the reaper hand the job to another worker
                        log.warning("job %s: cannot reach the job store: %s", self.job.id,
                                    exc)
                        status = "running"
                    else:
                        if renew:
                            last_renew = now
                    if status != "running" and self.stop_reason is None:
                        self.stop_reason = status
                        stop_started = now
                        log.info("job %s is %s: stopping its child", self.job.id, status)
                        try:
                            parent_conn.send("cancel")
                        except OSError:
                            pass
                if stop_started is not None:
                    elapsed = time.monotonic() - stop_started
                    if stage == 0 and elapsed >= STOP_GRACE_S:
                        stage = 1
                        proc.terminate()
                    elif stage == 1 and elapsed >= 2 * STOP_GRACE_S:
                        stage = 2
                        proc.kill()
        finally:
            proc.join(timeout=STOP_GRACE_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
            parent_conn.close()
        if self.stop_reason is not None:
            return ("stopped", self.stop_reason)
        if outcome is None:
            return ("crashed", proc.exitcode)
        return outcome

    def _beat(self, renew: bool) -> str:
        """Report progress (renewing the lease) or just read the status; returns it."""
        if renew or self.progress != self.reported:
            status = self.store.report(self.job.id, self.progress[0], self.progress[1],
                                       self.worker, self.lease)
            changed = self.progress[0] != self.reported[0]
            self.reported = self.progress
            if status == "running" and changed and self.job.subscriber \
                    and time.monotonic() - self.last_callback >= 2.0:
                self.last_callback = time.monotonic()
                current = self.store.get(self.job.id)
                if current is not None:
                    _notify_async(current, self.settings)
            return status
        current = self.store.get(self.job.id)
        return "dismissed" if current is None else current.status


# ------------------------------------------------------------------ the job
def run_job(job_id: str, *, store: JobStore, settings: Settings, worker_name: str) -> str:
    """Execute one job if it is still to be done; returns what happened.

    Returns
    -------
    str
        The job's final status (``successful``, ``failed``, ``dismissed``), or
        ``skipped`` (unknown, finished, or running elsewhere on a live lease) or
        ``lost`` (another worker took the job over while this one ran it).

    """
    job = store.claim(job_id, worker_name, settings.lease_seconds)
    if job is None:
        current = store.get(job_id)
        log.info("job %s skipped (%s)", job_id, "unknown" if current is None else
                 f"{current.status}, worker {current.worker}")
        return "skipped"
    t0 = time.monotonic()
    workdir = job_dir(job, settings)
    workdir.mkdir(parents=True, exist_ok=True)
    dropped = _discard_partials(workdir)
    if dropped:
        log.info("job %s: discarded %d unfinished stage(s) of an earlier attempt", job.id,
                 dropped)
    outputs = _completed_outputs(workdir, job.process)
    if outputs is not None:
        log.info("job %s: products of an earlier attempt are complete", job.id)
        outcome: tuple = ("ok", outputs)
    else:
        outcome = _Supervisor(job, store, settings, worker_name, workdir).run()

    kind = outcome[0]
    final: Job | None
    if kind == "ok":
        _write_marker(workdir, outcome[1])
        final = store.finish(job.id, outcome[1], worker_name)
    elif kind == "input":
        final = store.fail(job.id, public_message(outcome[1], settings, workdir), worker_name)
    elif kind == "error":
        log.error("job %s failed:\n%s", job.id, outcome[2])
        final = store.fail(job.id, "internal error: "
                           + public_message(outcome[1], settings, workdir), worker_name)
    elif kind == "crashed":
        code = outcome[1]
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        final = store.fail(job.id, f"internal error: the process died ({how})", worker_name)
    else:  # stopped: dismissed, or taken over by another worker
        final = store.get(job.id)
        if final is not None and final.status == "dismissed":
            shutil.rmtree(workdir, ignore_errors=True)
            log.info("job %s dismissed: work stopped %.1f s after start", job.id,
                     time.monotonic() - t0)
            return "dismissed"
        log.warning("job %s: lost to another worker (%s)", job.id, outcome[1])
        return "lost"
    if final is None:
        return "skipped"
    if final.status == "dismissed":
        shutil.rmtree(workdir, ignore_errors=True)
    if final.worker not in (None, worker_name) and final.status == "running":
        return "lost"
    log.info("job %s %s in %.1f s: %s", job.id, final.status, time.monotonic() - t0,
             final.message)
    notify(final, settings)
    return final.status
