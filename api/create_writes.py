"""The database writes of concurrent creates, sent together on held connections (PostgreSQL).

A new delivery without an external_ref is one statement: its idempotency claim and its projection
row (`_CLAIM_AND_ROW_PG` in api/delivery_service.py), or the row alone without a key. Sent one
request at a time, each create paid a pool checkout with its pre-ping round trip, a session
transaction and the autocommit switch, which were most of the API's database time. Here the creates
that arrive while a write is in flight are queued, and the next write sends all of them in one round
trip (psycopg's pipeline mode, one statement per create); at most MAX_IN_FLIGHT writes are in flight
at once. A create's claim and row are one statement, so they are written together or not at all.

The writes keep their connections between writes (at most MAX_IN_FLIGHT, in autocommit), so a busy
API does not check one out, ping it and reset it for every write. A connection idle for longer than
MAX_IDLE_S goes back to the pool, whose pre-ping checks it before anyone uses it again; after a failed
write every held connection is let go (the server may have restarted). `close_writes` hands them
back when the process closes its engine.

The statements of one pipeline run in one implicit transaction (no Sync between them): if one is
refused, none is kept, and each create of that write is sent again alone on a fresh connection, so
the failure reaches only the create it belongs to and the others get their own outcome. If the
connection is lost after PostgreSQL committed, the retry finds the work done: a keyed create finds
its claim taken (False: the caller's replay path then finds its own claim, same body and delivery
id) and a row without a key finds its id taken (`Statement.duplicate_means_written`: that fresh id can
only be this create's).

Errors reach callers as SQLAlchemy's exceptions (`IntegrityError`, `OperationalError`, …), as on the
ORM path, not as psycopg's.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement

log = logging.getLogger(__name__)

MAX_BATCH = 64  # creates per round trip
MAX_IN_FLIGHT = 2  # writes at once: one slow write (a lock wait) does not hold up every create
MAX_IDLE_S = 10.0  # a held connection unused for longer goes back to the pool (and its pre-ping)


@dataclass(frozen=True)
class Statement:
    """A statement for `CreateWrites.write`, compiled once to psycopg's %(name)s placeholders."""

    sql: str
    # A unique violation on the one-by-one retry means the failed pipeline wrote it (a fresh id).
    duplicate_means_written: bool = False

    @classmethod
    def compile(cls, statement: ClauseElement, *, duplicate_means_written: bool = False) -> Statement:
        sql = str(statement.compile(dialect=postgresql.psycopg.dialect()))  # type: ignore[no-untyped-call]
        return cls(sql, duplicate_means_written)


_Item = tuple[Statement, dict[str, Any], "asyncio.Future[bool]"]


class CreateWrites:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_idle_s: float = MAX_IDLE_S,
    ) -> None:
        # Weakly: the per-engine registry below must not keep a disposed engine alive.
        self._engine = weakref.ref(engine)
        self.max_batch, self.max_in_flight, self.max_idle_s = max_batch, max_in_flight, max_idle_s
        self._queue: list[_Item] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: list[tuple[AsyncConnection, float]] = []  # idle connections kept, with last use
        self._closed = False
        self.round_trips = 0  # writes sent (the tests compare it with the creates)
        self.connections_opened = 0  # checkouts from the pool (the tests check they are reused)

    async def write(self, statement: Statement, params: dict[str, Any]) -> bool:
        """Run the statement with these parameters; True if it returned a row (the claim was made)."""
        for name, value in params.items():  # what the UTCDateTime columns refuse on the ORM path
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError(f"naive datetime given for {name}")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._queue.append((statement, params, done))
        if not self._scheduled:  # the creates of this loop turn join the same write
            self._scheduled = True
            loop.call_soon(self._start_writes)
        try:
            return await asyncio.shield(done)  # a cancelled request does not cancel the others' write
        except psycopg.Error as exc:
            raise DBAPIError.instance(statement.sql, params, exc, psycopg.Error) from exc

    async def close(self) -> None:
        """Hand the held connections back to the pool; writes still in flight hand theirs back after."""
        self._closed = True
        await self._release_held()

    def _start_writes(self) -> None:
        self._scheduled = False
        while self._queue and self._in_flight < self.max_in_flight:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._in_flight += 1
            task = asyncio.create_task(self._write(batch), name="create-writes")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write(self, batch: list[_Item]) -> None:
        try:
            async with self._connection(held=True) as conn:
                results = await self._send(conn, [(statement, params) for statement, params, _ in batch])
        except Exception:
            log.warning("a pipelined write of %d creates failed; writing them one by one", len(batch))
            await self._release_held()  # they may be as broken as the one that failed
            await self._one_by_one(batch)
        else:
            for (_, _, done), claimed in zip(batch, results, strict=True):
                _settle(done, claimed)
        finally:
            self._in_flight -= 1
            if self._queue:
                self._start_writes()  # what queued meanwhile goes out now, together

    async def _one_by_one(self, batch: list[_Item]) -> None:
        for statement, params, done in batch:
            try:
                async with self._connection(held=False) as conn:
                    (claimed,) = await self._send(conn, [(statement, params)])
            except pg_errors.UniqueViolation as exc:
                # With the flag: committed by the failed pipeline before its connection was lost.
                _settle(done, True if statement.duplicate_means_written else exc)
            except Exception as exc:
                _settle(done, exc)
            else:
                _settle(done, claimed)

    @asynccontextmanager
    async def _connection(self, *, held: bool) -> AsyncIterator[AsyncConnection]:
        """A connection in autocommit: a held one if `held` and one is fresh enough, else from the
        pool. After the block it is kept (if `held` and the block succeeded) or returned to the pool,
        or, if the block broke it, discarded."""
        conn = self._take_held() if held else None
        if conn is None:
            engine = self._engine()
            if engine is None:
                raise RuntimeError("the database engine of these creates was closed")
            conn = await engine.connect()
            self.connections_opened += 1
            try:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            except BaseException:
                await conn.close()
                raise
        try:
            yield conn
        except BaseException:
            raw = await conn.get_raw_connection()
            if raw.driver_connection is None or raw.driver_connection.closed:
                await conn.invalidate()  # else the pool's reset on return clears what failed
            await conn.close()
            raise
        if held and not self._closed:
            self._held.append((conn, time.monotonic()))
        else:
            await conn.close()

    def _take_held(self) -> AsyncConnection | None:
        while self._held:
            conn, last_used = self._held.pop()
            if time.monotonic() - last_used <= self.max_idle_s:
                return conn
            # Too long idle: back to the pool (closed in a task, as this is not a coroutine).
            self._spawn(conn.close())
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release_held(self) -> None:
        held, self._held = self._held, []
        for conn, _ in held:
            await conn.close()

    async def _send(self, conn: AsyncConnection, batch: list[tuple[Statement, dict[str, Any]]]) -> list[bool]:
        self.round_trips += 1
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection  # psycopg's AsyncConnection, in autocommit
        assert pg is not None
        if len(batch) == 1:
            statement, params = batch[0]
            async with pg.cursor() as cursor:
                await cursor.execute(statement.sql, params)
                return [await cursor.fetchone() is not None]
        # One executemany per statement, all in one pipeline: no Sync until its end.
        positions: dict[Statement, list[int]] = {}
        for position, (statement, _) in enumerate(batch):
            positions.setdefault(statement, []).append(position)
        results = [False] * len(batch)
        async with pg.pipeline():
            for statement, where in positions.items():
                async with pg.cursor() as cursor:
                    await cursor.executemany(statement.sql, [batch[i][1] for i in where], returning=True)
                    for position in where:
                        results[position] = await cursor.fetchone() is not None
                        cursor.nextset()
        return results


def _settle(done: asyncio.Future[bool], outcome: bool | BaseException) -> None:
    if done.done():  # defensive: each future is settled once
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)


# One CreateWrites per engine (per process), made on first use.
_WRITES: weakref.WeakKeyDictionary[AsyncEngine, CreateWrites] = weakref.WeakKeyDictionary()


def writes_for(engine: AsyncEngine) -> CreateWrites:
    writes = _WRITES.get(engine)
    if writes is None:
        writes = _WRITES[engine] = CreateWrites(engine)
    return writes


async def close_writes(engine: AsyncEngine) -> None:
    """Before the engine is disposed: its held connections go back to the pool."""
    writes = _WRITES.pop(engine, None)
    if writes is not None:
        await writes.close()
