"""The Temporal server stopped for 20 s under load, then started again on its kept state.

While it is down every endpoint that needs it answers 503 `temporal_unavailable` with Retry-After
(creates and actions; never a 500), reads of the projection keep working and the worker keeps
running. Once it is back the worker picks up again, every action sent during the outage applies
once when retried with its Idempotency-Key, every keyed create retried ends with its workflow, and
an unkeyed create that answered 503 left nothing behind.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

from domain.delivery import DeliveryStatus
from tests.faults.report import Figures
from tests.faults.stack import FAULTS, Action, Answer, Creates, Stack, delivery_body, get, post
from tests.integration.sockets.support import make_fleet

pytestmark = FAULTS

OUTAGE_S = 20.0
DELIVERIES = 10  # made before the outage; each gets one assign, sent during it


async def test_temporal_stopped_20s_503s_reads_work_nothing_lost(up: Stack) -> None:
    fleet = await make_fleet(up.sessionmaker, 2)
    headers = up.headers(fleet)
    figures = Figures("temporal stopped 20 s")
    creates = Creates(headers)
    down: list[tuple[str, Answer]] = []
    unkeyed: set[uuid.UUID] = set()
    async with up.http() as http:
        first = [creates.new() for _ in range(DELIVERIES)]
        await creates.retry_all(http)
        ids = [next(iter(creates.answered[k])) for k in first]
        await up.wait_projected(ids, {DeliveryStatus.PENDING})
        assigns = [
            Action(d, "assign", {"vehicle_id": str(fleet.vehicles[i % 2])}, headers)
            for i, d in enumerate(ids)
        ]

        up.temporal.stop()
        stopped = time.monotonic()

        def outage() -> bool:
            return time.monotonic() - stopped < OUTAGE_S

        async def create_loop() -> None:
            i = 0
            while outage():
                answer = await creates.send(http, creates.new(ref=i % 3 == 0))
                assert answer is not None
                down.append(("create", answer))
                plain = await post(http, "/api/v1/deliveries", delivery_body(i), headers)
                down.append(("create", plain))
                if plain.status == 201:
                    unkeyed.add(uuid.UUID(plain.body["id"]))
                i += 1

        async def action_loop() -> None:
            i = 0
            while outage():
                down.append(("action", await assigns[i % DELIVERIES].send(http)))
                i += 1

        async def read_loop() -> None:
            i = 0
            while outage():
                d = ids[i % DELIVERIES]
                down.append(("read", await get(http, "/api/v1/deliveries?limit=20", headers)))
                down.append(("read", await get(http, f"/api/v1/deliveries/{d}", headers)))
                down.append(("read", await get(http, f"/api/v1/deliveries/{d}/events", headers)))
                i += 1
                await asyncio.sleep(0.2)

        # Each loop stops starting requests at OUTAGE_S; the ones under way still meet no Temporal.
        await asyncio.gather(create_loop(), action_loop(), read_loop())
        worker_alive = up.worker.running

        began = time.monotonic()
        await up.start_temporal()
        finals = await asyncio.gather(*(a.settle(http, timeout=90) for a in assigns))
        figures.extra["actions applied after restart"] = f"{time.monotonic() - began:.1f} s"
        await creates.retry_all(http)

    codes = Counter(f"{kind} {a.status} {a.body.get('code', '')}".strip() for kind, a in down)
    refused = [a for kind, a in down if kind != "read"]
    figures.extra["answers during outage"] = str(dict(codes))
    for kind in ("create", "action", "read"):
        slowest = max(a.seconds for k, a in down if k == kind)
        figures.extra[f"slowest {kind} during outage"] = f"{slowest:.1f} s"
    await up.audit(figures, fleet.org, creates.acknowledged | unkeyed, creates.answered)
    assert all(a.status == 503 and a.body.get("code") == "temporal_unavailable" for a in refused), codes
    assert all(int(a.headers["retry-after"]) > 0 for a in refused), codes
    assert all(a.status == 200 for kind, a in down if kind == "read"), codes
    assert worker_alive, up.worker.output()[-3000:]
    assert up.worker.running, up.worker.output()[-3000:]
    assert [f.body.get("status") for f in finals] == [DeliveryStatus.ASSIGNED.value] * DELIVERIES
    assert not creates.unanswered, creates.statuses
    figures.assert_clean()
