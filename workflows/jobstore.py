"""The job store: jobs, users and API tokens in SQLAlchemy (SQLite or PostgreSQL).

Every component (HTTP front end, Celery workers, command line) reads and writes jobs
through :class:`JobStore`; the broker only carries job identifiers. A job's life:
``accepted`` → ``running`` → ``successful`` | ``failed`` | ``dismissed``. A running job
holds a lease that its worker renews with each progress report; a job whose lease has
expired (its worker died) can be claimed again by another worker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from gdmio.db import Base, create_tables, make_engine

__all__ = ["JobStore", "Job", "User", "WorkerInfo", "TokenInfo", "STATUSES",
           "FINAL_STATUSES", "ROLES", "QuotaExceeded"]

STATUSES = ("accepted", "running", "successful", "failed", "dismissed")
FINAL_STATUSES = ("successful", "failed", "dismissed")
ROLES = ("user", "operator", "admin")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite drops time zones: give UTC back to naive timestamps."""
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=dt.UTC)
    return t


class QuotaExceeded(Exception):
    """The user already has as many unfinished jobs as the quota allows."""


class _UserRow(Base):
    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="user")
    max_active_jobs: Mapped[int] = mapped_column(Integer, default=20)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    disk_quota_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)


class _TokenRow(Base):
    __tablename__ = "tokens"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    revoked: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class _DownloadKeyRow(Base):
    """A one-time, short-lived key to download one file of one job without a token."""

    __tablename__ = "download_keys"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    user: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(Text)
    expires: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


_ADDED_COLUMNS = {"tokens": ("expires", "last_used", "revoked"), "users": ("disk_quota_mb",)}
"""Columns added after the first release: added to an existing database when opened."""


class _JobRow(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    process: Mapped[str] = mapped_column(String(64), index=True)
    inputs: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True, default="accepted")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    queue: Mapped[str] = mapped_column(String(16), default="ondemand")
    outputs: Mapped[dict] = mapped_column(JSON, default=dict)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    subscriber: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    started: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class _WorkerRow(Base):
    """A live worker's heartbeat (its main process writes it every few seconds)."""

    __tablename__ = "workers"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    queues: Mapped[str] = mapped_column(String(255), default="")
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    started: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                                   index=True)


@dataclass(frozen=True)
class TokenInfo:
    """An API token as ``gdm users tokens`` lists it (never the token itself)."""

    id: str
    user: str
    created: dt.datetime
    expires: dt.datetime | None
    last_used: dt.datetime | None
    revoked: dt.datetime | None

    @property
    def state(self) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= _now():
            return "expired"
        return "active"


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as its last heartbeat described it."""

    name: str
    queues: tuple[str, ...]
    host: str
    pid: int
    started: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True)
class User:
    """An account: name, role (user, operator, admin) and quota."""

    name: str
    role: str
    max_active_jobs: int
    disk_quota_mb: int | None = None

    @property
    def may_use_rapid(self) -> bool:
        """Operators and admins may submit to the ``rapid`` queue."""
        return self.role in ("operator", "admin")


@dataclass(frozen=True)
class Job:
    """A snapshot of one job (detached from the database)."""

    id: str
    owner: str
    process: str
    inputs: dict[str, Any]
    status: str
    progress: int
    message: str
    queue: str
    outputs: dict[str, Any]
    public: bool
    subscriber: dict | None
    created: dt.datetime
    started: dt.datetime | None
    finished: dt.datetime | None
    updated: dt.datetime
    expires: dt.datetime | None
    worker: str | None
    lease_until: dt.datetime | None
    attempts: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """True once the job can change no more."""
        return self.status in FINAL_STATUSES

    def visible_to(self, user: User | None) -> bool:
        """Owners and admins see a job; anyone sees a public one."""
        if self.public:
            return True
        if user is None:
            return False
        return user.role == "admin" or user.name == self.owner

    @classmethod
    def _from_row(cls, row: _JobRow) -> Job:
        return cls(
            id=row.id, owner=row.owner, process=row.process, inputs=dict(row.inputs or {}),
            status=row.status, progress=row.progress, message=row.message or "",
            queue=row.queue, outputs=dict(row.outputs or {}), public=row.public,
            subscriber=row.subscriber, created=_aware(row.created),  # type: ignore[arg-type]
            started=_aware(row.started), finished=_aware(row.finished),
            updated=_aware(row.updated), expires=_aware(row.expires),  # type: ignore[arg-type]
            worker=row.worker, lease_until=_aware(row.lease_until), attempts=row.attempts,
        )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class JobStore:
    """Jobs, users and tokens in one SQLAlchemy database.

    Parameters
    ----------
    url
        SQLAlchemy URL, e.g. ``sqlite:////path/jobs.sqlite`` or
        ``postgresql+psycopg2://user@127.0.0.1/db``.

    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)  # SQLite: write lock taken first
        create_tables(self.engine, _UserRow, _TokenRow, _JobRow, _WorkerRow, _DownloadKeyRow)
        _add_missing_columns(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._session() as s, s.begin():
            yield s

    # ----------------------------------------------------------------- accounts
    def create_user(self, name: str, role: str = "user", max_active_jobs: int = 20,
                    *, token_days: float | None = 90, disk_quota_mb: int | None = None
                    ) -> tuple[User, str]:
        """Create (or update) an account and return it with a new API token.

        The token expires after ``token_days`` days (None: never); the account's other
        tokens stay valid (see :meth:`rotate_token` and :meth:`revoke_tokens`).
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        with self._tx() as s:
            row = s.get(_UserRow, name)
            if row is None:
                row = _UserRow(name=name, role=role, max_active_jobs=max_active_jobs,
                               disk_quota_mb=disk_quota_mb)
                s.add(row)
            else:
                row.role = role
                row.max_active_jobs = max_active_jobs
                if disk_quota_mb is not None:
                    row.disk_quota_mb = disk_quota_mb
            s.flush()
            token = self._new_token(s, name, token_days)
            return _user(row), token

    @staticmethod
    def _new_token(s: Session, name: str, days: float | None) -> str:
        token = secrets.token_urlsafe(32)
        now = _now()
        s.add(_TokenRow(digest=_digest(token), user=name, created=now,
                        expires=None if days is None else now + dt.timedelta(days=days)))
        return token

    def issue_token(self, name: str, days: float | None = 90) -> str:
        """A new token for an existing account (the others stay valid)."""
        with self._tx() as s:
            if s.get(_UserRow, name) is None:
                raise KeyError(f"no user {name!r}")
            return self._new_token(s, name, days)

    def rotate_token(self, name: str, days: float | None = 90) -> str:
        """Revoke every token of ``name`` and return a new one (one transaction)."""
        now = _now()
        with self._tx() as s:
            if s.get(_UserRow, name) is None:
                raise KeyError(f"no user {name!r}")
            s.execute(update(_TokenRow).where((_TokenRow.user == name)
                                              & _TokenRow.revoked.is_(None))
                      .values(revoked=now))
            return self._new_token(s, name, days)

    def revoke_tokens(self, name: str, token_id: str | None = None) -> int:
        """Revoke the tokens of ``name``; returns how many were revoked.

        ``token_id``: only the token whose id (see :meth:`tokens`) starts with it.
        """
        q = update(_TokenRow).where((_TokenRow.user == name) & _TokenRow.revoked.is_(None))
        if token_id is not None:
            if len(token_id) < 6 or not all(c in "0123456789abcdef" for c in token_id):
                raise ValueError("a token id is 6 to 64 hexadecimal digits (gdm users tokens)")
            q = q.where(_TokenRow.digest.like(token_id.lower() + "%"))
        with self._tx() as s:
            if s.get(_UserRow, name) is None:
                raise KeyError(f"no user {name!r}")
            return int(s.execute(q.values(revoked=_now())).rowcount)  # type: ignore[attr-defined]

    def tokens(self, name: str | None = None) -> list[TokenInfo]:
        """Tokens (of ``name``, or everyone's), newest first; ids are digest prefixes."""
        q = select(_TokenRow).order_by(_TokenRow.user, _TokenRow.created.desc())
        if name is not None:
            q = q.where(_TokenRow.user == name)
        with self._tx() as s:
            return [TokenInfo(r.digest[:12], r.user, _aware(r.created),  # type: ignore[arg-type]
                              _aware(r.expires), _aware(r.last_used), _aware(r.revoked))
                    for r in s.scalars(q)]

    def user_for_token(self, token: str) -> User | None:
        """The account a valid API token belongs to (not expired nor revoked), or None.

        Records the token's last use (at most once a minute per token).
        """
        now = _now()
        with self._tx() as s:
            tok = s.get(_TokenRow, _digest(token))
            if tok is None or tok.revoked is not None:
                return None
            expires = _aware(tok.expires)
            if expires is not None and expires <= now:
                return None
            row = s.get(_UserRow, tok.user)
            if row is None:
                return None
            last = _aware(tok.last_used)
            if last is None or now - last > dt.timedelta(seconds=60):
                tok.last_used = now
            return _user(row)

    def get_user(self, name: str) -> User | None:
        """An account by name."""
        with self._tx() as s:
            row = s.get(_UserRow, name)
            return None if row is None else _user(row)

    def set_user(self, name: str, *, role: str | None = None,
                 max_active_jobs: int | None = None, disk_quota_mb: int | None = None
                 ) -> User:
        """Change an account's role or quotas (KeyError: no such account)."""
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        with self._tx() as s:
            row = s.get(_UserRow, name)
            if row is None:
                raise KeyError(f"no user {name!r}")
            if role is not None:
                row.role = role
            if max_active_jobs is not None:
                row.max_active_jobs = max_active_jobs
            if disk_quota_mb is not None:
                row.disk_quota_mb = disk_quota_mb
            return _user(row)

    def users(self) -> list[User]:
        """Every account, by name."""
        with self._tx() as s:
            return [_user(r) for r in s.scalars(select(_UserRow).order_by(_UserRow.name))]

    # ----------------------------------------------------------- download keys
    def create_download_key(self, job_id: str, user: str, path: str,
                            ttl: dt.timedelta = dt.timedelta(minutes=5)) -> str:
        """A one-time key that lets one request download ``path`` of job ``job_id``."""
        key = secrets.token_urlsafe(24)
        now = _now()
        with self._tx() as s:
            s.execute(delete(_DownloadKeyRow).where(_DownloadKeyRow.expires < now))
            s.add(_DownloadKeyRow(digest=_digest(key), job_id=job_id, user=user, path=path,
                                  expires=now + ttl))
        return key

    def redeem_download_key(self, key: str, job_id: str, path: str) -> str | None:
        """Use a download key, once: the user it was made for.

        None when the key is unknown, used, expired, or made for another job or file.
        """
        with self._tx() as s:
            row = s.get(_DownloadKeyRow, _digest(key), with_for_update=True)
            if row is None:
                return None
            s.delete(row)  # one use, whatever the outcome
            if row.job_id != job_id or row.path != path or _aware(row.expires) <= _now():
                return None
            return row.user

    def count_users(self) -> int:
        """Number of accounts (0 means the single-user embedded mode)."""
        with self._tx() as s:
            return int(s.scalar(select(func.count()).select_from(_UserRow)) or 0)

    # --------------------------------------------------------------------- jobs
    def create_job(self, owner: str, process: str, inputs: dict[str, Any], queue: str,
                   public: bool = False, subscriber: dict | None = None,
                   expires_in: dt.timedelta | None = dt.timedelta(days=30),
                   max_active_jobs: int | None = None) -> Job:
        """Record a new accepted job.

        Raises
        ------
        QuotaExceeded
            When ``max_active_jobs`` is given and the owner already has that many
            accepted or running jobs.

        """
        now = _now()
        row = _JobRow(id=str(uuid.uuid4()), owner=owner, process=process, inputs=inputs,
                      status="accepted", progress=0, message="accepted", queue=queue,
                      outputs={}, public=public, subscriber=subscriber, created=now,
                      updated=now, expires=(now + expires_in) if expires_in else None,
                      attempts=0)
        with self._tx() as s:
            if max_active_jobs is not None:
                active = s.scalar(select(func.count()).select_from(_JobRow).where(
                    _JobRow.owner == owner, _JobRow.status.in_(("accepted", "running"))))
                if (active or 0) >= max_active_jobs:
                    raise QuotaExceeded(
                        f"{owner} already has {active} unfinished jobs (quota {max_active_jobs})")
            s.add(row)
        return Job._from_row(row)

    def get(self, job_id: str) -> Job | None:
        """A job by id, or None."""
        with self._tx() as s:
            row = s.get(_JobRow, job_id)
            return None if row is None else Job._from_row(row)

    def list(self, owner: str | None = None, statuses: Sequence[str] | None = None,
             processes: Sequence[str] | None = None, include_public: bool = False,
             limit: int = 100, offset: int = 0) -> list[Job]:
        """Jobs, newest first; ``owner=None`` lists everyone's (admins)."""
        q = select(_JobRow)
        if owner is not None:
            q = q.where((_JobRow.owner == owner) | (_JobRow.public.is_(True))
                        if include_public else _JobRow.owner == owner)
        if statuses:
            q = q.where(_JobRow.status.in_(list(statuses)))
        if processes:
            q = q.where(_JobRow.process.in_(list(processes)))
        q = q.order_by(_JobRow.created.desc(), _JobRow.id).limit(limit).offset(offset)
        with self._tx() as s:
            return [Job._from_row(r) for r in s.scalars(q)]

    def claim(self, job_id: str, worker: str, lease_seconds: int) -> Job | None:
        """Mark a job running for ``worker`` if it is accepted, or running on an expired lease.

        Returns the job when this worker now owns it, else None (already finished,
        dismissed, or running elsewhere on a live lease).
        """
        now = _now()
        with self._tx() as s:
            row = s.get(_JobRow, job_id, with_for_update=True)
            if row is None or row.status in FINAL_STATUSES:
                return None
            lease = _aware(row.lease_until)
            if row.status == "running" and lease is not None and lease > now \
                    and row.worker != worker:
                return None
            row.status = "running"
            row.worker = worker
            row.started = row.started or now
            row.updated = now
            row.lease_until = now + dt.timedelta(seconds=lease_seconds)
            row.attempts = (row.attempts or 0) + 1
            row.message = "running"
            return Job._from_row(row)

    def report(self, job_id: str, progress: int, message: str, worker: str,
               lease_seconds: int) -> str:
        """Record progress and renew the lease; returns the job's current status.

        A worker that sees ``dismissed`` stops its work (cooperative cancellation).
        """
        now = _now()
        with self._tx() as s:
            row = s.get(_JobRow, job_id)
            if row is None:
                return "dismissed"
            if row.status == "running" and row.worker == worker:
                row.progress = max(0, min(100, int(progress)))
                row.message = message[:2000]
                row.updated = now
                row.lease_until = now + dt.timedelta(seconds=lease_seconds)
            return row.status

    def finish(self, job_id: str, outputs: dict[str, Any], worker: str | None = None
               ) -> Job | None:
        """Mark a running job successful with its outputs (ignored if it was dismissed)."""
        return self._final(job_id, "successful", "done", outputs, worker)

    def fail(self, job_id: str, message: str, worker: str | None = None) -> Job | None:
        """Mark a job failed with a message naming the problem."""
        return self._final(job_id, "failed", message, None, worker)

    def dismiss(self, job_id: str) -> Job | None:
        """Dismiss a job: an accepted one never starts, a running one is told to stop."""
        now = _now()
        with self._tx() as s:
            row = s.get(_JobRow, job_id, with_for_update=True)
            if row is None:
                return None
            if row.status not in FINAL_STATUSES:
                row.status = "dismissed"
                row.message = "dismissed"
                row.finished = now
                row.updated = now
            return Job._from_row(row)

    def _final(self, job_id: str, status: str, message: str, outputs: dict | None,
               worker: str | None) -> Job | None:
        now = _now()
        with self._tx() as s:
            row = s.get(_JobRow, job_id, with_for_update=True)
            if row is None:
                return None
            if row.status in FINAL_STATUSES:
                return Job._from_row(row)
            if worker is not None and row.worker not in (None, worker):
                return Job._from_row(row)  # another worker took the job over
            row.status = status
            row.message = message[:2000]
            row.finished = now
            row.updated = now
            row.lease_until = None
            if status == "successful":
                row.progress = 100
            if outputs is not None:
                row.outputs = outputs
            return Job._from_row(row)

    def stale_running(self) -> list[Job]:
        """Running jobs whose lease has expired (their worker is gone)."""
        now = _now()
        with self._tx() as s:
            rows = s.scalars(select(_JobRow).where(_JobRow.status == "running"))
            return [Job._from_row(r) for r in rows
                    if r.lease_until is None or _aware(r.lease_until) < now]  # type: ignore[operator]

    def requeue_stale(self, job_id: str, max_attempts: int) -> str | None:
        """Take a running job whose lease has expired back to ``accepted`` (worker lost).

        One atomic conditional update, so when several reapers race exactly one wins.
        A job already tried ``max_attempts`` times fails instead.

        Returns
        -------
        str or None
            ``"accepted"`` (re-enqueue it), ``"failed"`` (gave up), or None when the job
            is not (or no longer) running on an expired lease.

        """
        now = _now()
        stale = ((_JobRow.id == job_id) & (_JobRow.status == "running")
                 & (_JobRow.lease_until.is_(None) | (_JobRow.lease_until < now)))
        with self._tx() as s:
            gave_up = s.execute(update(_JobRow).where(
                stale & (_JobRow.attempts >= max_attempts)).values(
                status="failed", finished=now, updated=now, lease_until=None,
                message=f"gave up after {max_attempts} attempts: the worker running the "
                "job was lost each time")).rowcount  # type: ignore[attr-defined]
            if gave_up:
                return "failed"
            requeued = s.execute(update(_JobRow).where(stale).values(
                status="accepted", worker=None, lease_until=None, updated=now,
                message="requeued: its worker was lost")).rowcount  # type: ignore[attr-defined]
            return "accepted" if requeued else None

    def stale_accepted(self, older_than: dt.timedelta) -> list[Job]:
        """Accepted jobs not started nor touched for ``older_than`` (message lost?)."""
        cutoff = _now() - older_than
        with self._tx() as s:
            rows = s.scalars(select(_JobRow).where((_JobRow.status == "accepted")
                                                   & (_JobRow.updated < cutoff)))
            return [Job._from_row(r) for r in rows]

    def touch_accepted(self, job_id: str, older_than: dt.timedelta) -> bool:
        """Mark an accepted job as re-sent now; True for the one reaper that wins.

        One atomic conditional update, so when several reapers race exactly one re-sends.
        """
        now = _now()
        with self._tx() as s:
            return bool(s.execute(update(_JobRow).where(
                (_JobRow.id == job_id) & (_JobRow.status == "accepted")
                & (_JobRow.updated < now - older_than)).values(
                updated=now)).rowcount)  # type: ignore[attr-defined]

    def expire_leases(self, worker_prefix: str) -> int:
        """End now the leases of running jobs whose worker name starts with ``worker_prefix``.

        Used when a worker is known dead (``gdm serve`` saw its process exit): the reaper
        then takes its jobs back at once instead of waiting for the lease to run out.
        Returns the number of jobs concerned.
        """
        if not worker_prefix:
            raise ValueError("empty worker prefix")
        past = _now() - dt.timedelta(seconds=1)
        escaped = worker_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._tx() as s:
            return int(s.execute(update(_JobRow).where(
                (_JobRow.status == "running")
                & _JobRow.worker.like(escaped + "%", escape="\\")).values(
                lease_until=past)).rowcount)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ workers
    def worker_beat(self, name: str, queues: Sequence[str], host: str, pid: int) -> None:
        """Record that worker ``name`` is alive and consumes ``queues`` (logical names)."""
        now = _now()
        with self._tx() as s:
            row = s.get(_WorkerRow, name)
            if row is None:
                s.add(_WorkerRow(name=name, queues=",".join(queues)[:255], host=host[:255],
                                 pid=pid, started=now, last_seen=now))
            else:
                row.queues = ",".join(queues)[:255]
                row.last_seen = now
                row.pid = pid
            # rows of workers silent for a day are of no use to anyone
            s.execute(delete(_WorkerRow).where(
                _WorkerRow.last_seen < now - dt.timedelta(days=1)))

    def forget_worker(self, name: str) -> None:
        """Remove a worker's heartbeat (it stopped, or was seen dying)."""
        with self._tx() as s:
            s.execute(delete(_WorkerRow).where(_WorkerRow.name == name))

    def live_workers(self, max_age: float) -> list[WorkerInfo]:
        """Workers whose last heartbeat is at most ``max_age`` seconds old."""
        cutoff = _now() - dt.timedelta(seconds=max_age)
        with self._tx() as s:
            rows = s.scalars(select(_WorkerRow).where(_WorkerRow.last_seen >= cutoff)
                             .order_by(_WorkerRow.name))
            return [WorkerInfo(r.name, tuple(q for q in r.queues.split(",") if q), r.host,
                               r.pid, _aware(r.started), _aware(r.last_seen))  # type: ignore[arg-type]
                    for r in rows]

    def set_public(self, job_id: str, public: bool) -> None:
        """Publish (or hide) a job's results."""
        with self._tx() as s:
            s.execute(update(_JobRow).where(_JobRow.id == job_id).values(public=public))

    def counts(self, owner: str | None = None) -> dict[str, int]:
        """Number of jobs per status."""
        q = select(_JobRow.status, func.count()).group_by(_JobRow.status)
        if owner is not None:
            q = q.where(_JobRow.owner == owner)
        with self._tx() as s:
            return {status: int(n) for status, n in s.execute(q)}


def _user(row: _UserRow) -> User:
    return User(row.name, row.role, row.max_active_jobs, row.disk_quota_mb)


def _add_missing_columns(engine: Engine) -> None:
    """Add the columns of :data:`_ADDED_COLUMNS` to a database made before them.

    Tokens made before expiry existed get the default lifetime from their creation
    (90 days), so that no token lives for ever.
    """
    from sqlalchemy import inspect, text

    insp = inspect(engine)
    for table, names in _ADDED_COLUMNS.items():
        have = {c["name"] for c in insp.get_columns(table)}
        missing = [n for n in names if n not in have]
        if not missing:
            continue
        cols = Base.metadata.tables[table].c
        with engine.begin() as conn:
            for name in missing:
                ddl = cols[name].type.compile(dialect=engine.dialect)
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))
            if table == "tokens" and "expires" in missing:
                rows = conn.execute(text("SELECT digest, created FROM tokens")).all()
                for digest, created in rows:
                    if isinstance(created, str):
                        created = dt.datetime.fromisoformat(created)
                    born = _aware(created) or _now()
                    conn.execute(text("UPDATE tokens SET expires = :e WHERE digest = :d"),
                                 {"e": born + dt.timedelta(days=90), "d": digest})
