"""`waybill api` killed (SIGKILL) while clients send keyed creates, then every create retried with its
Idempotency-Key against a restarted API: each key ends with one delivery whose workflow runs, and no
row is left that no answer named (no duplicate, no orphan). Half the creates carry an external_ref,
which takes the create's other path (a lookup by reference)."""

from __future__ import annotations

import asyncio

import httpx

from tests.faults.report import Figures
from tests.faults.stack import FAULTS, Creates, Stack
from tests.integration.sockets.support import make_fleet

pytestmark = FAULTS

CLIENTS = 8  # creates in flight at any time
KILL_AFTER = 40  # answered creates before the kill


async def test_api_killed_during_keyed_creates_then_retried(up: Stack) -> None:
    fleet = await make_fleet(up.sessionmaker, 1)
    figures = Figures("api kill -9 during keyed creates")
    creates = Creates(up.headers(fleet))
    killed = asyncio.Event()

    async def client(http: httpx.AsyncClient, n: int) -> None:
        while not killed.is_set():
            if await creates.send(http, creates.new(ref=n % 2 == 0)) is None:
                return

    async with up.http() as http:
        clients = [asyncio.create_task(client(http, n)) for n in range(CLIENTS)]
        async with asyncio.timeout(60):
            while len(creates.answered) < KILL_AFTER:
                await asyncio.sleep(0.01)
        up.api.sigkill()
        killed.set()
        async with asyncio.timeout(30):
            await asyncio.gather(*clients)
        cut = creates.statuses["connection"]
        await up.api.restart()
        await creates.retry_all(http)

    figures.extra["creates"] = str(len(creates.bodies))
    figures.extra["cut by the kill"] = str(cut)
    await up.audit(figures, fleet.org, creates.acknowledged, creates.answered)
    assert cut > 0, "no create was in flight when the API was killed"
    assert not creates.unanswered, f"never answered 201/200: {creates.unanswered} ({creates.statuses})"
    figures.assert_clean()
