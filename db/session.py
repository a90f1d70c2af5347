"""Engines and sessions. SQLite runs in WAL mode with a busy timeout and enforced foreign keys."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def install_sqlite_pragmas(engine: Any) -> None:
    """Attach the pragmas to a sync or async SQLite engine; a no-op for other dialects."""
    sync_engine = getattr(engine, "sync_engine", engine)
    if sync_engine.dialect.name == "sqlite":
        event.listen(sync_engine, "connect", _sqlite_pragmas)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    engine = create_async_engine(url, **kwargs)
    install_sqlite_pragmas(engine)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


_write_gates: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


def write_gate(session: AsyncSession) -> AbstractAsyncContextManager[Any]:
    """Hold around a write transaction: on SQLite, one at a time per engine; elsewhere, no-op.

    SQLite admits one writer at a time, and a writer that finds the file locked sleeps and polls
    in SQLite's busy handler. With many concurrent requests in one process that polling cost most
    of the throughput (and seconds of p99); queued here they take turns as soon as the previous
    commit is done. Writers in other processes (the worker) still meet the busy timeout. Enter it
    before the session's first statement: only sessions that hold no connection wait here.
    """
    engine = session.get_bind()
    if not isinstance(engine, Engine) or engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    if session.in_transaction():
        # It already holds a pooled connection: waiting here could starve the gate's holder of one
        # (a pool-wide deadlock), so it goes ungated and meets SQLite's busy timeout instead.
        return contextlib.nullcontext()
    gate = _write_gates.get(engine)
    if gate is None:
        gate = _write_gates[engine] = asyncio.Lock()
    return gate
