"""The one SQLAlchemy declarative base and engine factory of the service's database.

The job store (:mod:`workflows.jobstore`), the activation store
(:mod:`workflows.activation.store`) and the FLATSIM campaign state (:mod:`flatsim.state`)
keep their tables in one database (SQLite by default, PostgreSQL in production). They
declare them on :class:`Base` and open it through :func:`make_engine`, so every engine
gets the same SQLite set-up: WAL journal, a busy timeout, foreign keys, and write
transactions that take the write lock first (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

__all__ = ["Base", "make_engine", "create_tables"]


class Base(DeclarativeBase):
    """Declarative base of every table of the service's database."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by SQLAlchemy's "begin" hook
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine on the database at ``url`` (``sqlite:///...`` or ``postgresql+...://``).

    On SQLite, pysqlite runs a SELECT outside any transaction and opens one only at the
    first write, so two writers could each overwrite a status the other committed in
    between (a dismissal lost to a worker's claim): every transaction takes the write
    lock first instead, and waits up to 30 s for it.
    """
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate)
    return engine


def create_tables(engine: Engine, *tables: Any) -> None:
    """Create the given tables (ORM classes or :class:`~sqlalchemy.Table`) if missing."""
    Base.metadata.create_all(engine, tables=[t if isinstance(t, Table) else t.__table__
                                             for t in tables])
