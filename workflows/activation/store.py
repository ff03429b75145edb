"""The activation store: activations, their logs and their jobs (SQLAlchemy)."""

from __future__ import annotations

import datetime as dt
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from gdmio.db import Base, create_tables
from gdmio.providers.aoi import aoi_to_wkt, parse_aoi
from workflows.activation.models import ActivationRequest
from workflows.jobstore import JobStore

__all__ = ["Activation", "ActivationStore", "utc_now"]


def utc_now() -> dt.datetime:
    """The current instant (UTC, aware)."""
    return dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


class _ActivationRow(Base):
    __tablename__ = "activations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128), index=True)
    hazard: Mapped[str] = mapped_column(String(32))
    event_date: Mapped[str] = mapped_column(String(40))
    aoi: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32), index=True)
    request: Mapped[dict] = mapped_column(JSON)
    selections: Mapped[list] = mapped_column(JSON)
    jobs: Mapped[list] = mapped_column(JSON)
    bulletin_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)


class _LogRow(Base):
    __tablename__ = "activation_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    activation_id: Mapped[str] = mapped_column(ForeignKey("activations.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    who: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)


class _JobLinkRow(Base):
    __tablename__ = "activation_jobs"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    activation_id: Mapped[str] = mapped_column(ForeignKey("activations.id"), index=True)


@dataclass(frozen=True)
class Activation:
    """A snapshot of one activation with its log (detached from the database)."""

    id: str
    created: dt.datetime
    updated: dt.datetime
    created_by: str
    hazard: str
    event_date: str
    aoi: str
    title: str
    status: str
    request: dict[str, Any]
    selections: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    bulletin_at: dt.datetime | None
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def job_ids(self) -> list[str]:
        """Identifiers of the jobs launched."""
        return [j["job_id"] for j in self.jobs if j.get("job_id")]

    def to_json(self) -> dict[str, Any]:
        """JSON form (API answers, ``gdm activation show``)."""
        def iso(t: dt.datetime | None) -> str | None:
            return None if t is None else t.isoformat().replace("+00:00", "Z")

        return {"id": self.id, "title": self.title, "hazard": self.hazard,
                "event_date": self.event_date, "aoi": self.aoi, "status": self.status,
                "created": iso(self.created), "updated": iso(self.updated),
                "created_by": self.created_by, "parameters": self.request,
                "selections": self.selections, "jobs": self.jobs,
                "bulletin_updated": iso(self.bulletin_at), "log": self.log}


class ActivationStore:
    """Activations and their log, in the job store's database (two more tables)."""

    _ready: weakref.WeakSet = weakref.WeakSet()  # engines whose tables were checked

    def __init__(self, store: JobStore) -> None:
        self.jobs = store
        self.engine = store.engine
        if self.engine not in self._ready:
            create_tables(self.engine, _ActivationRow, _LogRow, _JobLinkRow)
            self._ready.add(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._session() as s, s.begin():
            yield s

    @staticmethod
    def _snapshot(s: Session, row: _ActivationRow) -> Activation:
        logs = s.scalars(select(_LogRow).where(_LogRow.activation_id == row.id)
                         .order_by(_LogRow.id))
        return Activation(
            id=row.id, created=_aware(row.created), updated=_aware(row.updated),  # type: ignore[arg-type]
            created_by=row.created_by, hazard=row.hazard, event_date=row.event_date,
            aoi=row.aoi, title=row.title, status=row.status, request=dict(row.request),
            selections=list(row.selections), jobs=[dict(j) for j in row.jobs],
            bulletin_at=_aware(row.bulletin_at),
            log=[{"at": _aware(r.at).isoformat().replace("+00:00", "Z"),  # type: ignore[union-attr]
                  "who": r.who, "action": r.action, "detail": r.detail} for r in logs])

    def create(self, who: str, request: ActivationRequest, status: str) -> Activation:
        """Record a new activation (its log starts with who asked what)."""
        now = utc_now()
        row = _ActivationRow(
            id=str(uuid.uuid4()), created=now, updated=now, created_by=who,
            hazard=request.hazard, event_date=request.event_date,
            aoi=aoi_to_wkt(parse_aoi(request.aoi)),
            title=request.title or f"{request.hazard} of {request.event_date}",
            status=status, request=request.model_dump(mode="json"), selections=[], jobs=[])
        with self._tx() as s:
            s.add(row)
            s.flush()
            s.add(_LogRow(activation_id=row.id, at=now, who=who, action="activate",
                          detail=f"{request.hazard} on {request.event_date} over {row.aoi}"))
        got = self.get(row.id)
        assert got is not None
        return got

    def update(self, activation_id: str, **values: Any) -> None:
        """Change fields of an activation (``status``, ``selections``, ``jobs``...).

        Jobs listed in ``jobs`` are linked to the activation (see :meth:`find_by_job`).
        """
        with self._tx() as s:
            row = s.get(_ActivationRow, activation_id, with_for_update=True)
            if row is None:
                raise KeyError(activation_id)
            for k, v in values.items():
                setattr(row, k, v)
            row.updated = utc_now()
            for entry in values.get("jobs") or []:
                job_id = entry.get("job_id")
                if job_id and s.get(_JobLinkRow, job_id) is None:
                    s.add(_JobLinkRow(job_id=job_id, activation_id=activation_id))

    def log(self, activation_id: str, who: str, action: str, detail: str) -> None:
        """Append an entry to the activation log."""
        with self._tx() as s:
            s.add(_LogRow(activation_id=activation_id, at=utc_now(), who=who, action=action,
                          detail=detail[:4000]))

    def get(self, activation_id: str) -> Activation | None:
        """An activation by id, or None."""
        with self._tx() as s:
            row = s.get(_ActivationRow, activation_id)
            return None if row is None else self._snapshot(s, row)

    def list(self, limit: int = 100) -> list[Activation]:
        """Activations, newest first."""
        with self._tx() as s:
            rows = s.scalars(select(_ActivationRow).order_by(
                _ActivationRow.created.desc()).limit(limit))
            return [self._snapshot(s, r) for r in rows]

    def find_by_job(self, job_id: str) -> Activation | None:
        """The activation a job belongs to, or None (one indexed look-up)."""
        with self._tx() as s:
            link = s.get(_JobLinkRow, job_id)
            if link is None:
                return None
            row = s.get(_ActivationRow, link.activation_id)
            return None if row is None else self._snapshot(s, row)
