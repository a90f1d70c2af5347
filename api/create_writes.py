"""The database write of concurrent creates, sent together (PostgreSQL).

A new delivery without an external_ref is one statement: its idempotency claim and its projection
row (`_CLAIM_AND_ROW_PG` in api/delivery_service.py). Sent one request at a time, each create paid a
pool checkout with its pre-ping round trip, a session transaction and the autocommit switch, which
were most of the API's database time. Here the creates that arrive while a write is in flight are
queued, and the next write sends all of them in one round trip (psycopg's pipeline mode, one
statement per create). A create's claim and row are one statement, so they are written together or
not at all.

The statements of one pipeline run in one implicit transaction: if any fails (a statement refused,
the connection lost), none is kept, and each create of that write is tried again alone, so a failure
reaches only the create it belongs to and the others still get their own outcome (a claim made, or
the key found claimed by an earlier request).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement

log = logging.getLogger(__name__)

MAX_BATCH = 64  # creates per round trip


class CreateWrites:
    def __init__(self, engine: AsyncEngine, statement: ClauseElement, max_batch: int = MAX_BATCH) -> None:
        # Compiled once to psycopg's %(name)s placeholders; parameters are bound by psycopg itself.
        self.sql = str(statement.compile(dialect=postgresql.psycopg.dialect()))  # type: ignore[no-untyped-call]
        # Weakly: the per-engine cache in api/delivery_service.py must not keep a disposed engine alive.
        self._engine = weakref.ref(engine)
        self.max_batch = max_batch
        self._queue: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None
        self.round_trips = 0  # writes sent (tests and benchmarks compare it with the creates)

    async def write(self, params: dict[str, Any]) -> bool:
        """Run the statement with these parameters; True if it returned a row (the claim was made)."""
        for name, value in params.items():  # what the UTCDateTime columns refuse on the ORM path
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError(f"naive datetime given for {name}")
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((params, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="create-writes")
        return await asyncio.shield(done)  # a cancelled request does not cancel the others' write

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # the creates of this loop turn join the first write
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                results = await self._send([params for params, _ in batch])
            except Exception:
                log.warning("a pipelined write of %d creates failed; writing them one by one", len(batch))
                await self._one_by_one(batch)
                continue
            for (_, done), claimed in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(claimed)

    async def _one_by_one(self, batch: list[tuple[dict[str, Any], asyncio.Future[bool]]]) -> None:
        for params, done in batch:
            try:
                (claimed,) = await self._send([params])
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
            else:
                if not done.done():
                    done.set_result(claimed)

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
