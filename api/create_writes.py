"""The database write of concurrent creates, sent together (PostgreSQL).

A new delivery without an external_ref is one statement: its idempotency claim and its projection
row (`_CLAIM_AND_ROW_PG` in api/delivery_service.py). Sent one request at a time, each create paid a
pool checkout with its pre-ping round trip, a session transaction and the autocommit switch, which
were most of the API's database time. Here the creates that arrive while a write is in flight are
queued, and the next write sends all of them in one round trip (psycopg's pipeline mode, one
statement per create); at most MAX_IN_FLIGHT writes are in flight at once, each on its own pooled
connection. A create's claim and row are one statement, so they are written together or not at all.

The statements of one pipeline run in one implicit transaction (no Sync between them): if one is
refused, none is kept, and each create of that write is sent again alone, so the failure reaches only
the create it belongs to and the others get their own outcome. If the connection is lost after
PostgreSQL committed, the retry finds the work done: a keyed create finds its claim taken (False:
the caller's replay path then finds its own claim, same body and delivery id) and a row without a key
finds its id taken (`duplicate_means_written`: that fresh id can only be this create's).

Errors reach callers as SQLAlchemy's exceptions (`IntegrityError`, `OperationalError`, …), as on the
ORM path, not as psycopg's.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement

log = logging.getLogger(__name__)

MAX_BATCH = 64  # creates per round trip
MAX_IN_FLIGHT = 2  # writes at once: one slow write (a lock wait) does not hold up every create
_Item = tuple[dict[str, Any], "asyncio.Future[bool]"]


class CreateWrites:
    def __init__(
        self,
        engine: AsyncEngine,
        statement: ClauseElement,
        *,
        duplicate_means_written: bool = False,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        # Compiled once to psycopg's %(name)s placeholders; parameters are bound by psycopg itself.
        self.sql = str(statement.compile(dialect=postgresql.psycopg.dialect()))  # type: ignore[no-untyped-call]
        # Weakly: the per-engine cache in api/delivery_service.py must not keep a disposed engine alive.
        self._engine = weakref.ref(engine)
        self.duplicate_means_written = duplicate_means_written
        self.max_batch, self.max_in_flight = max_batch, max_in_flight
        self._queue: list[_Item] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.round_trips = 0  # writes sent (the tests compare it with the creates)

    async def write(self, params: dict[str, Any]) -> bool:
        """Run the statement with these parameters; True if it returned a row (the claim was made)."""
        for name, value in params.items():  # what the UTCDateTime columns refuse on the ORM path
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError(f"naive datetime given for {name}")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._queue.append((params, done))
        if not self._scheduled:  # the creates of this loop turn join the same write
            self._scheduled = True
            loop.call_soon(self._start_writes)
        try:
            return await asyncio.shield(done)  # a cancelled request does not cancel the others' write
        except psycopg.Error as exc:
            raise DBAPIError.instance(self.sql, params, exc, psycopg.Error) from exc

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
            results = await self._send([params for params, _ in batch])
        except Exception:
            log.warning("a pipelined write of %d creates failed; writing them one by one", len(batch))
            await self._one_by_one(batch)
        else:
            for (_, done), claimed in zip(batch, results, strict=True):
                _settle(done, claimed)
        finally:
            self._in_flight -= 1
            if self._queue:
                self._start_writes()  # what queued meanwhile goes out now, together

    async def _one_by_one(self, batch: list[_Item]) -> None:
        for params, done in batch:
            try:
                (claimed,) = await self._send([params])
            except pg_errors.UniqueViolation as exc:
                # With the flag: committed by the failed pipeline before its connection was lost.
                _settle(done, True if self.duplicate_means_written else exc)
            except Exception as exc:
                _settle(done, exc)
            else:
                _settle(done, claimed)

    async def _send(self, batch: list[dict[str, Any]]) -> list[bool]:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the database engine of these creates was closed")
        self.round_trips += 1
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            raw = await conn.get_raw_connection()
            pg = raw.driver_connection  # psycopg's AsyncConnection, in autocommit
            assert pg is not None
            async with pg.cursor() as cursor:
                if len(batch) == 1:
                    await cursor.execute(self.sql, batch[0])
                    return [await cursor.fetchone() is not None]
                await cursor.executemany(self.sql, batch, returning=True)
                results: list[bool] = []
                while True:
                    results.append(await cursor.fetchone() is not None)
                    if not cursor.nextset():
                        break
                return results


def _settle(done: asyncio.Future[bool], outcome: bool | BaseException) -> None:
    if done.done():  # defensive: each future is settled once
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
