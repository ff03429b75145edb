"""Campaign state: two SQLAlchemy tables in the job store's database.

``flatsim_campaigns`` holds one row per campaign (its spec, products folder, status);
``flatsim_campaign_jobs`` the service jobs that run it (their owners own the campaign);
``flatsim_steps`` one row per step (see :mod:`flatsim.plan`): status, attempts,
failures, the last error, the worker, timings and a JSON ``info`` document (the
ingest step's info holds the frame's dates, dropped dates and network).

The products on disk are the truth about what is done (a step is skipped when its
outputs exist and verify); these rows are the record of what happened, the failure
counter of pairs, and what monitoring reads. Every change is one short transaction
(SQLite: WAL and ``BEGIN IMMEDIATE``, as the job store), so several worker processes
on several machines can update one campaign at once; counters are incremented in SQL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from flatsim.plan import Step
from gdmio.db import Base, create_tables, make_engine

__all__ = ["CampaignState", "get_state", "MAX_PAIR_FAILURES", "STEP_STATUSES"]

MAX_PAIR_FAILURES = 2
"""A step that raised this many times is recorded as failed and not tried again."""

STEP_STATUSES = ("pending", "running", "done", "failed")

CAMPAIGNS = Table(
    "flatsim_campaigns", Base.metadata,
    Column("id", String(80), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    Column("out_dir", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False, default=5),
    Column("message", Text, nullable=True),
    Column("created", DateTime, nullable=False),
    Column("updated", DateTime, nullable=False),
)
CAMPAIGN_JOBS = Table(
    "flatsim_campaign_jobs", Base.metadata,
    Column("campaign_id", String(80), primary_key=True),
    Column("job_id", String(64), primary_key=True),
)
"""Which service jobs run a campaign: the campaign has their owners and ``public`` flag."""

STEPS = Table(
    "flatsim_steps", Base.metadata,
    Column("id", String(200), primary_key=True),
    Column("campaign_id", String(80), nullable=False, index=True),
    Column("frame_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("pair", String(20), nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("started", DateTime, nullable=True),
    Column("finished", DateTime, nullable=True),
    Column("seconds", Float, nullable=True),
    Column("skipped", Integer, nullable=False, default=0),
    Column("info", Text, nullable=True),
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class CampaignState:
    """Campaign and step records in the database at ``url`` (the job store's)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        create_tables(self.engine, CAMPAIGNS, CAMPAIGN_JOBS, STEPS)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ------------------------------------------------------------- campaigns
    def create_campaign(self, cid: str, name: str, spec_json: str, out_dir: str,
                        priority: int) -> bool:
        """Record a new campaign (status ``running``); False if it already exists."""
        now = _now()
        try:
            with self._tx() as c:
                c.execute(insert(CAMPAIGNS).values(
                    id=cid, name=name, spec=spec_json, out_dir=out_dir, status="running",
                    priority=priority, created=now, updated=now))
        except IntegrityError:
            return False
        return True

    def campaign(self, cid: str) -> dict | None:
        """The campaign row as a dict, or None."""
        with self._tx() as c:
            row = c.execute(select(CAMPAIGNS).where(CAMPAIGNS.c.id == cid)).mappings().first()
        return dict(row) if row else None

    def campaigns(self) -> list[dict]:
        """Every campaign, newest first."""
        with self._tx() as c:
            rows = c.execute(select(CAMPAIGNS).order_by(CAMPAIGNS.c.created.desc()))
            return [dict(r) for r in rows.mappings()]

    def set_campaign_status(self, cid: str, status: str, message: str | None = None,
                            only_from: Iterable[str] | None = None) -> bool:
        """Set a campaign's status (only from the given ones); True if it changed."""
        q = update(CAMPAIGNS).where(CAMPAIGNS.c.id == cid)
        if only_from is not None:
            q = q.where(CAMPAIGNS.c.status.in_(list(only_from)))
        with self._tx() as c:
            n = c.execute(q.values(status=status, message=message, updated=_now())).rowcount
        return bool(n)

    def is_active(self, cid: str) -> bool:
        """Whether the campaign's steps should run (not stopped, known)."""
        row = self.campaign(cid)
        return row is not None and row["status"] != "stopped"

    def link_job(self, cid: str, job_id: str) -> None:
        """Record that job ``job_id`` runs campaign ``cid`` (idempotent)."""
        try:
            with self._tx() as c:
                c.execute(insert(CAMPAIGN_JOBS).values(campaign_id=cid, job_id=job_id))
        except IntegrityError:
            pass

    def jobs_of(self, cid: str) -> list[str]:
        """Ids of the jobs that run campaign ``cid`` (none: started from the CLI)."""
        with self._tx() as c:
            return list(c.execute(select(CAMPAIGN_JOBS.c.job_id).where(
                CAMPAIGN_JOBS.c.campaign_id == cid)).scalars())

    # ----------------------------------------------------------------- steps
    def ensure_steps(self, steps: Iterable[Step]) -> int:
        """Record the steps not recorded yet (``pending``); returns how many were new."""
        steps = list(steps)
        if not steps:
            return 0
        with self._tx() as c:
            have = set(c.execute(select(STEPS.c.id).where(
                STEPS.c.campaign_id == steps[0].campaign)).scalars())
            new = [s for s in steps if s.id not in have]
            if new:
                c.execute(insert(STEPS), [
                    {"id": s.id, "campaign_id": s.campaign, "frame_id": s.frame,
                     "kind": s.kind, "pair": s.pair, "status": "pending", "attempts": 0,
                     "failures": 0, "skipped": 0} for s in new])
        return len(new)

    def step(self, sid: str) -> dict | None:
        """A step row as a dict (``info`` decoded), or None."""
        with self._tx() as c:
            row = c.execute(select(STEPS).where(STEPS.c.id == sid)).mappings().first()
        return _decode(row) if row else None

    def steps(self, cid: str, frame: str | None = None, kind: str | None = None) -> list[dict]:
        """Step rows of a campaign (optionally of one frame / kind), in id order."""
        q = select(STEPS).where(STEPS.c.campaign_id == cid)
        if frame is not None:
            q = q.where(STEPS.c.frame_id == frame)
        if kind is not None:
            q = q.where(STEPS.c.kind == kind)
        with self._tx() as c:
            return [_decode(r) for r in c.execute(q.order_by(STEPS.c.id)).mappings()]

    def start_step(self, sid: str, worker: str) -> None:
        """Mark a step running on ``worker`` (one more attempt)."""
        with self._tx() as c:
            c.execute(update(STEPS).where(STEPS.c.id == sid).where(
                STEPS.c.status != "done").values(
                status="running", attempts=STEPS.c.attempts + 1, worker=worker,
                started=_now(), error=None))

    def finish_step(self, sid: str, info: dict | None = None, skipped: bool = False,
                    seconds: float | None = None) -> None:
        """Mark a step done (``skipped``: its outputs were already there)."""
        values: dict[str, Any] = {"status": "done", "finished": _now(), "skipped": int(skipped)}
        if seconds is not None:
            values["seconds"] = seconds
        if info is not None:
            values["info"] = json.dumps(info)
        with self._tx() as c:
            c.execute(update(STEPS).where(STEPS.c.id == sid).values(**values))

    def fail_step(self, sid: str, error: str, max_failures: int = MAX_PAIR_FAILURES) -> int:
        """Count a failure of a step; at ``max_failures`` it is ``failed`` for good.

        Returns the failures counted so far (below the limit, the step is ``pending``
        again, to be retried).
        """
        with self._tx() as c:
            c.execute(update(STEPS).where(STEPS.c.id == sid).values(
                failures=STEPS.c.failures + 1, error=error[:2000], finished=_now()))
            n = c.execute(select(STEPS.c.failures).where(STEPS.c.id == sid)).scalar_one()
            c.execute(update(STEPS).where(STEPS.c.id == sid).values(
                status="failed" if n >= max_failures else "pending"))
        return int(n)

    def last_activity(self, cid: str) -> dt.datetime | None:
        """When a step of the campaign last started or ended (or the campaign changed)."""
        with self._tx() as c:
            times = [c.execute(select(func.max(STEPS.c.started)).where(
                         STEPS.c.campaign_id == cid)).scalar(),
                     c.execute(select(func.max(STEPS.c.finished)).where(
                         STEPS.c.campaign_id == cid)).scalar(),
                     c.execute(select(CAMPAIGNS.c.updated).where(
                         CAMPAIGNS.c.id == cid)).scalar()]
        known = [t for t in times if t is not None]
        return max(known) if known else None

    def touch_campaign(self, cid: str) -> None:
        """Record activity on a running campaign (a long step's heartbeat for the watchdog)."""
        with self._tx() as c:
            c.execute(update(CAMPAIGNS).where(CAMPAIGNS.c.id == cid).where(
                CAMPAIGNS.c.status == "running").values(updated=_now()))

    def claim_stalled(self, cid: str, since: dt.datetime) -> bool:
        """Mark a running campaign as being revived; True for the one caller that wins.

        One atomic conditional update (running and unchanged since ``since``), so when
        several watchdogs race exactly one resumes the campaign.
        """
        with self._tx() as c:
            return bool(c.execute(update(CAMPAIGNS).where(CAMPAIGNS.c.id == cid).where(
                CAMPAIGNS.c.status == "running").where(CAMPAIGNS.c.updated <= since).values(
                updated=_now(), message="resumed: no step progressed")).rowcount)

    def reset_running(self, cid: str) -> int:
        """Steps left ``running`` by a crash go back to ``pending`` (on resume)."""
        with self._tx() as c:
            return c.execute(update(STEPS).where(STEPS.c.campaign_id == cid).where(
                STEPS.c.status == "running").values(status="pending")).rowcount


def _decode(row: Any) -> dict:
    out = dict(row)
    out["info"] = json.loads(out["info"]) if out.get("info") else None
    return out


_STATES: dict[str, CampaignState] = {}
_LOCK = threading.Lock()


def get_state(url: str) -> CampaignState:
    """The campaign state of this process for the database ``url`` (the job store's)."""
    key = f"{os.getpid()}:{url}"
    with _LOCK:
        st = _STATES.get(key)
        if st is None:
            st = _STATES[key] = CampaignState(url)
        return st
