"""The database writes of concurrent creates, sent together on held connections (PostgreSQL).

A new delivery without an external_ref is one statement: its idempotency claim and its projection
row (`CLAIM_AND_ROW_PG` in db/repositories/delivery_creates.py), or the row alone without a key. Sent one
request at a time, each create paid a pool checkout with its pre-ping round trip, a session
transaction and the autocommit switch, which were most of the API's database time. Here the creates
that arrive while a write is in flight are queued, and the next write sends all of them in one round
trip (psycopg's pipeline mode, one statement per create); at most MAX_IN_FLIGHT writes are in flight
at once. A create's claim and row are one statement, so they are written together or not at all.

The writes keep their connections between writes (at most MAX_IN_FLIGHT, in autocommit), so a busy
API does not check one out, ping it and reset it for every write. A connection unused for MAX_IDLE_S
goes back to the pool, whose pre-ping checks it before anyone uses it again; a write that finds its
connection broken (lost, or closed by a restarted server) lets every held connection go.
`close_writes` waits for the writes in flight and hands the rest back when the process closes its
engine.

The statements of one pipeline run in one implicit transaction (no Sync between them): if one is
refused, none is kept, and each create of that write is sent again alone, so the failure reaches only
the create it belongs to and the others get their own outcome. If the connection is lost after
PostgreSQL committed, the retry (on a connection from the pool) finds the work done: a keyed create
finds its claim taken (False: the caller's replay path then finds its own claim, same body and
delivery id) and a row without a key finds its id taken (`Statement.duplicate_means_written`: that
fresh id can only be this create's).

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
CLOSE_WAIT_S = 10.0  # how long close() waits for the writes in flight


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
        # Weakly: the registry below must not keep an engine alive (held connections do, but
        # only until they go back to the pool, at the latest max_idle_s after their last write).
        self._engine = weakref.ref(engine)
        self.max_batch, self.max_in_flight, self.max_idle_s = max_batch, max_in_flight, max_idle_s
        self._queue: list[_Item] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._held: list[tuple[AsyncConnection, float]] = []  # idle connections kept, with last use
        self._sweep: asyncio.TimerHandle | None = None
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
        """Wait for the writes in flight, then hand every held connection back to the pool. Writes
        after this still work, each returning its connection when done."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._start_writes()  # the creates queued this loop turn go now, not after the close
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_WAIT_S)
        held, self._held = self._held, []
        for conn, _ in held:
            await conn.close()

    def _start_writes(self) -> None:
        self._scheduled = False
        while self._queue and self._in_flight < self.max_in_flight:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._in_flight += 1
            self._spawn(self._write(batch))

    async def _write(self, batch: list[_Item]) -> None:
        try:
            try:
                async with self._connection() as conn:
                    results = await self._send(conn, [(statement, params) for statement, params, _ in batch])
            except Exception:
                log.warning("a pipelined write of %d creates failed; writing them one by one", len(batch))
                await self._one_by_one(batch)
            else:
                for (_, _, done), claimed in zip(batch, results, strict=True):
                    _settle(done, claimed)
        finally:
            for _, _, done in batch:
                if not done.done():
                    done.cancel()  # this write was cancelled (the loop is closing): so are its creates
            self._in_flight -= 1
            if self._queue:
                self._start_writes()  # what queued meanwhile goes out now, together

    async def _one_by_one(self, batch: list[_Item]) -> None:
        for statement, params, done in batch:
            try:
                async with self._connection() as conn:
                    (claimed,) = await self._send(conn, [(statement, params)])
            except pg_errors.UniqueViolation as exc:
                # With the flag: committed by the failed pipeline before its connection was lost.
                _settle(done, True if statement.duplicate_means_written else exc)
            except Exception as exc:
                _settle(done, exc)
            else:
                _settle(done, claimed)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        """A held connection, or one from the pool, in autocommit; kept after the block unless the
        block left it broken (lost, or closed by the server), and then every held one is let go."""
        if self._held:
            conn = self._held.pop()[0]  # the most recently used: the others age towards the sweep
        else:
            conn = await self._checkout()
        try:
            yield conn
        except BaseException:
            if await _is_broken(conn):
                # The server may have restarted: the other held connections are likely dead too.
                lost, self._held = [conn, *(held for held, _ in self._held)], []
                await conn.invalidate()
                for each in lost:
                    await each.close()
            else:
                await self._keep(conn)  # e.g. a refused statement: the connection is fine
            raise
        await self._keep(conn)

    async def _checkout(self) -> AsyncConnection:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the database engine of these creates was closed")
        conn = await engine.connect()  # the pool's pre-ping checks it
        self.connections_opened += 1
        try:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _keep(self, conn: AsyncConnection) -> None:
        if self._closed:
            await conn.close()
            return
        self._held.append((conn, time.monotonic()))
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.max_idle_s, self._return_idle)

    def _return_idle(self) -> None:
        """Hand back the held connections unused for max_idle_s; look again when the next one is due."""
        self._sweep = None
        now = time.monotonic()
        idle = [conn for conn, last in self._held if now - last >= self.max_idle_s]
        self._held = [(conn, last) for conn, last in self._held if now - last < self.max_idle_s]
        for conn in idle:
            self._spawn(conn.close())
        if self._held:
            due = min(last for _, last in self._held) + self.max_idle_s - now
            self._sweep = asyncio.get_running_loop().call_later(due, self._return_idle)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        # In a pipeline `execute` only sends; the block's end sends the one Sync and reads every result.
        cursors = [pg.cursor() for _ in batch]
        try:
            async with pg.pipeline():
                for cursor, (statement, params) in zip(cursors, batch, strict=True):
                    await cursor.execute(statement.sql, params)
            return [await cursor.fetchone() is not None for cursor in cursors]
        finally:
            for cursor in cursors:
                await cursor.close()


async def _is_broken(conn: AsyncConnection) -> bool:
    try:
        raw = await conn.get_raw_connection()
    except Exception:
        return True
    return raw.driver_connection is None or raw.driver_connection.closed


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
    writes = _WRITES.get(engine)
    if writes is not None:
        await writes.close()
