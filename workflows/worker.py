"""Worker processes and the lease reaper.

:func:`start_worker` starts a real ``celery worker`` process (``gdm serve`` uses it for
its embedded workers, tests for theirs); ``gdm worker`` runs the same worker in the
foreground on any machine that reaches the broker and the job store.

The lease reaper runs in every worker: at start and then every ``lease_seconds`` it
takes running jobs whose lease has expired (their worker died) back to ``accepted`` and
re-enqueues them. The take-back is one conditional update, so when several workers
reap at once exactly one re-enqueues; a job lost :data:`MAX_ATTEMPTS` times fails. The
same thread writes the worker's heartbeat in the job store every :data:`HEARTBEAT_S`
seconds, from which :func:`queue_consumers` tells which queues have a live consumer.

:class:`WorkerSupervisor` is how ``gdm serve`` runs its embedded workers: it restarts a
worker that dies (with a back-off when one keeps dying) and re-queues its jobs at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from workflows.jobstore import JobStore
from workflows.settings import QUEUES, Settings, get_settings

__all__ = ["start_worker", "stop_worker", "stop_workers", "wait_ready", "worker_argv",
           "reap_once", "Reaper", "WorkerSupervisor", "queue_consumers", "MAX_ATTEMPTS",
           "HEARTBEAT_S", "LIVE_AFTER_S"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
"""A job whose worker was lost this many times fails instead of being re-enqueued."""

HEARTBEAT_S = 5.0
"""Seconds between two heartbeats of a worker in the job store."""

LIVE_AFTER_S = 20.0
"""A worker whose last heartbeat is older than this counts as gone."""


def _queue_list(queues: Sequence[str] | str, settings: Settings) -> list[str]:
    names = [q.strip() for q in (queues.split(",") if isinstance(queues, str) else queues)]
    names = [q for q in names if q]
    if not names:
        raise ValueError("no queue given")
    for q in names:
        if q not in QUEUES:
            raise ValueError(f"unknown queue {q!r}; known: {', '.join(QUEUES)}")
    from workflows.celery_app import queue_name

    return [queue_name(q, settings) for q in names]


def worker_argv(queues: Sequence[str] | str, *, concurrency: int = 1, name: str | None = None,
                loglevel: str = "INFO", settings: Settings | None = None) -> list[str]:
    """Arguments of ``celery worker`` for the given logical queues."""
    settings = settings or get_settings()
    qnames = _queue_list(queues, settings)
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    label = "-".join(q.strip() for q in (queues.split(",") if isinstance(queues, str)
                                         else queues) if q.strip())
    name = name or f"gdm-{label}-{uuid.uuid4().hex[:6]}@%h"
    return ["worker", "--queues", ",".join(qnames), "--concurrency", str(concurrency),
            "--pool", "prefork", "--hostname", name, "--loglevel", loglevel,
            "--without-gossip", "--without-mingle", "--prefetch-multiplier", "1"]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    from workflows.runner import set_parent_death_signal

    set_parent_death_signal(signal.SIGTERM)


def start_worker(queues: Sequence[str] | str, env: Mapping[str, str] | None = None,
                 concurrency: int = 1, name: str | None = None, *,
                 ready_file: str | os.PathLike[str] | None = None,
                 log_file: str | os.PathLike[str] | None = None,
                 loglevel: str = "INFO", die_with_parent: bool = True) -> subprocess.Popen:
    """Start a ``celery worker`` process consuming ``queues``.

    Parameters
    ----------
    queues
        Logical queues (``rapid``, ``ondemand``, ``batch``), a list or comma-separated.
    env
        Environment variables added to this process's (``GDM_*`` settings).
    concurrency
        Jobs run at once by this worker (one pool process each).
    name
        Celery node name (default: ``gdm-<queues>-<random>@<host>``).
    ready_file
        The worker writes its pid there once it consumes (see :func:`wait_ready`).
    log_file
        Where the worker's output goes (default: this process's stdout/stderr).
    loglevel
        Celery log level.
    die_with_parent
        Terminate the worker when the process that started it dies (Linux).

    Returns
    -------
    subprocess.Popen
        The worker, leader of its own process group (see :func:`stop_worker`).

    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    settings = get_settings(full_env)
    argv = worker_argv(queues, concurrency=concurrency, name=name, loglevel=loglevel,
                       settings=settings)
    if ready_file is not None:
        Path(ready_file).unlink(missing_ok=True)
        full_env["GDM_WORKER_READY_FILE"] = str(Path(ready_file).absolute())
    out: IO | None = None
    if log_file is not None:
        out = open(log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workflows.tasks", *argv],
            env=full_env, stdout=out, stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509
        )
    finally:
        if out is not None:
            out.close()


def wait_ready(ready_file: str | os.PathLike[str], proc: subprocess.Popen | None = None,
               timeout: float = 60.0) -> float:
    """Wait until a worker wrote its ready file; returns the seconds waited.

    Raises
    ------
    RuntimeError
        When the worker exits first or ``timeout`` passes.

    """
    t0 = time.monotonic()
    path = Path(ready_file)
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker exited with status {proc.returncode} before ready")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"worker not ready after {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - t0


def stop_worker(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """Stop a worker started by :func:`start_worker` and reap its process group.

    A warm shutdown first (SIGTERM: the running job may finish within ``timeout``),
    then a cold one (SIGQUIT), then SIGKILL to the whole group. A job cut short stays
    ``running`` until its lease expires; then any worker's reaper re-enqueues it.
    Returns the worker's exit status.
    """
    return stop_workers([proc], timeout)[0]


def stop_workers(procs: Sequence[subprocess.Popen], timeout: float = 10.0) -> list[int]:
    """Stop several workers at once (see :func:`stop_worker`); returns their statuses."""
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGQUIT, 5.0)):
        alive = [p for p in procs if p.poll() is None]
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(sig)
        deadline = time.monotonic() + wait_s
        for p in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, deadline - time.monotonic()))
    for p in procs:
        # pool processes and job children left over
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
    return [p.wait() for p in procs]


# ------------------------------------------------------------------- reaper
def reap_once(store: JobStore, settings: Settings, max_attempts: int = MAX_ATTEMPTS
              ) -> list[str]:
    """Re-enqueue running jobs whose lease expired; returns the ids re-enqueued.

    Also re-sends the task of jobs still ``accepted`` after ``settings.resend_after``
    seconds (a broker that lost a message, e.g. a Redis restart without persistence):
    the job store decides who runs a job, so a duplicate message is skipped.
    """
    from workflows.celery_app import enqueue
    from workflows.runner import notify

    requeued = []
    for job in store.stale_running():
        outcome = store.requeue_stale(job.id, max_attempts)
        if outcome == "accepted":
            current = store.get(job.id)
            if current is not None:
                enqueue(current, settings)
                requeued.append(job.id)
                log.warning("job %s: worker %s lost (attempt %d); re-enqueued on %s",
                            job.id, job.worker, job.attempts, job.queue)
        elif outcome == "failed":
            current = store.get(job.id)
            log.error("job %s failed: worker lost %d times", job.id, job.attempts)
            if current is not None:
                notify(current, settings)
    if settings.resend_after > 0:
        wait = dt.timedelta(seconds=settings.resend_after)
        for job in store.stale_accepted(wait):
            if store.touch_accepted(job.id, wait):
                enqueue(job, settings)
                requeued.append(job.id)
                log.warning("job %s: still accepted after %d s; its task was sent again "
                            "(a duplicate is skipped)", job.id, settings.resend_after)
    return requeued


class Reaper(threading.Thread):
    """Background thread of a worker: heartbeat, and :func:`reap_once` every ``interval`` s.

    The heartbeat (``name``, ``queues``), every :data:`HEARTBEAT_S` s, tells the job store
    which queues have a live consumer (``/ogcapi/health``, the jobs page); a worker whose
    heartbeat is older than :data:`LIVE_AFTER_S` counts as gone.
    """

    def __init__(self, store: JobStore, settings: Settings, interval: float | None = None,
                 *, name: str | None = None, queues: Sequence[str] = ()):
        super().__init__(name="gdm-lease-reaper", daemon=True)
        self.store = store
        self.settings = settings
        self.interval = interval or max(1, settings.lease_seconds)
        self.worker_name = name
        self.queues = tuple(queues)
        self._stop_event = threading.Event()

    def beat(self) -> None:
        """Write this worker's heartbeat (no-op without a worker name)."""
        if self.worker_name:
            import socket

            self.store.worker_beat(self.worker_name, self.queues, socket.gethostname(),
                                   os.getpid())

    def run(self) -> None:
        """Beat and reap now, then beat every few seconds and reap every ``interval`` s."""
        next_reap = 0.0
        while not self._stop_event.is_set():
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a periodic sweep must survive outages
                log.warning("worker heartbeat failed; retrying in %s s", HEARTBEAT_S)
            if time.monotonic() >= next_reap:
                next_reap = time.monotonic() + self.interval
                try:
                    reap_once(self.store, self.settings)
                    from workflows.campaign_tasks import revive_stalled

                    revive_stalled(self.settings)
                except Exception:  # noqa: BLE001 - a periodic sweep must survive outages
                    log.exception("lease reaper: sweep failed; retrying in %s s",
                                  self.interval)
            self._stop_event.wait(min(HEARTBEAT_S, self.interval))

    def stop(self) -> None:
        """Ask the thread to end after its current sweep, and forget the heartbeat."""
        self._stop_event.set()
        if self.worker_name:
            with contextlib.suppress(Exception):
                self.store.forget_worker(self.worker_name)


# --------------------------------------------------------------- supervision
def queue_consumers(store: JobStore, max_age: float | None = None) -> dict[str, int]:
    """Live workers per logical queue (every queue listed, 0 when none consumes it)."""
    counts = dict.fromkeys(QUEUES, 0)
    for w in store.live_workers(LIVE_AFTER_S if max_age is None else max_age):
        for q in w.queues:
            if q in counts:
                counts[q] += 1
    return counts


@dataclass
class _Slot:
    label: str
    queues: str
    generation: int = -1
    proc: subprocess.Popen | None = None
    node: str = ""
    ready: Path | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0
    restarts: int = 0


class WorkerSupervisor(threading.Thread):
    """Starts the local workers of ``gdm serve`` and restarts any that dies.

    A dead worker (even ``kill -9``) is noticed within :attr:`poll_s`; its process
    group is killed (its pool and job children with it), its heartbeat forgotten, the
    leases of its running jobs ended and the lease reaper run at once, so that its jobs
    go back to ``accepted`` and onto their queue; then a new worker is started. A worker
    that dies within ``healthy_after`` s of its start is restarted after a growing delay
    (``min_backoff`` doubling up to ``max_backoff``), so a crash loop does not spin; the
    first restart is immediate.

    Parameters
    ----------
    slots
        ``(label, queues)`` of each worker, e.g. ``("rapid", "rapid")``.
    settings, store
        The service settings and job store.
    run_dir
        Where the workers' ready files go.
    say
        Prints one line for the operator (default: the log).
    starter
        Starts one worker: ``starter(queues, name=..., ready_file=...)`` (tests).

    """

    def __init__(self, slots: Sequence[tuple[str, str]], settings: Settings, store: JobStore,
                 run_dir: Path, *, say: Callable[[str], None] | None = None,
                 starter: Callable[..., subprocess.Popen] | None = None,
                 poll_s: float = 0.5, min_backoff: float = 1.0, max_backoff: float = 60.0,
                 healthy_after: float = 60.0) -> None:
        super().__init__(name="gdm-worker-supervisor", daemon=True)
        self.slots = [_Slot(label, queues) for label, queues in slots]
        self.settings = settings
        self.store = store
        self.run_dir = run_dir
        self.say = say or log.warning
        self.starter = starter or start_worker
        self.poll_s = poll_s
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.events: list[tuple[float, str, str]] = []
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    # -- life cycle
    def start_all(self) -> None:
        """Start every worker now (before the thread watches them)."""
        for slot in self.slots:
            self._start(slot)

    def _start(self, slot: _Slot) -> None:
        slot.generation += 1
        prefix = f"gdm-{slot.label}-{os.getpid()}-{slot.generation}"
        slot.node = f"{prefix}@%h"
        slot.ready = self.run_dir / f"serve-{os.getpid()}-{slot.label}.ready"
        slot.proc = self.starter(slot.queues, name=slot.node, ready_file=slot.ready)
        slot.started_at = time.monotonic()
        self.events.append((time.time(), slot.label, "started"))

    def processes(self) -> list[subprocess.Popen]:
        """The current worker processes."""
        with self._lock:
            return [s.proc for s in self.slots if s.proc is not None]

    def run(self) -> None:
        """Watch the workers until :meth:`stop`."""
        while not self._stop_event.wait(self.poll_s):
            for slot in self.slots:
                with self._lock:
                    if self._stop_event.is_set():
                        return
                    self._check(slot)

    def _check(self, slot: _Slot) -> None:
        now = time.monotonic()
        if slot.proc is None:
            if now >= slot.restart_at:
                self._start(slot)
                slot.restarts += 1
                self.say(f"gdm serve: worker {slot.label} restarted "
                         f"(restart {slot.restarts}, pid {slot.proc.pid})")
            return
        code = slot.proc.poll()
        if code is None:
            return
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        lived = now - slot.started_at
        self.events.append((time.time(), slot.label, f"died ({how})"))
        self._bury(slot)
        slot.quick_deaths = slot.quick_deaths + 1 if lived < self.healthy_after else 1
        delay = 0.0 if slot.quick_deaths <= 1 else min(
            self.max_backoff, self.min_backoff * 2 ** (slot.quick_deaths - 2))
        slot.restart_at = now + delay
        slot.proc = None
        self.say(f"gdm serve: worker {slot.label} (queues {slot.queues}) died after "
                 f"{lived:.0f} s ({how}); its jobs are re-queued; restarting "
                 + ("now" if delay == 0 else f"in {delay:.0f} s (it keeps dying)"))

    def _bury(self, slot: _Slot) -> None:
        """Kill what is left of a dead worker and hand its jobs back to the queues."""
        assert slot.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(slot.proc.pid, signal.SIGKILL)  # pool processes and job children
        prefix = slot.node.split("@", 1)[0] + "@"
        try:
            self.store.forget_worker(slot.node.replace("%h", _hostname()))
            if self.store.expire_leases(prefix):
                reap_once(self.store, self.settings)
        except Exception:  # noqa: BLE001 - the lease reaper of any worker does it later
            log.exception("could not re-queue the jobs of dead worker %s", slot.label)

    def stop(self) -> list[int]:
        """Stop watching and stop the workers (see :func:`stop_workers`)."""
        with self._lock:
            self._stop_event.set()
            procs = [s.proc for s in self.slots if s.proc is not None]
        return stop_workers(procs)


def _hostname() -> str:
    import socket

    return socket.gethostname()
