"""`waybill worker` killed (SIGKILL) with 50 assigns in flight, and actions and creates arriving while
no worker runs.

While it is down the API stays up: creates answer 201 quickly (p99 under 1 s) even with dozens of
actions waiting on Temporal at the same time (an action holds no database connection while it
waits), and each action answers within WAYBILL_ACTION_WAIT_SECONDS and a little: 202 action_pending
with a Location to learn the outcome from. Once a worker runs again every action applies exactly
once: its outcome is at the Location, the same Idempotency-Key sent again answers with that same
outcome, and the event log holds each transition once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from domain.delivery import DeliveryStatus
from tests.faults.report import Figures
from tests.faults.stack import ACTION_WAIT_S, FAULTS, Action, Creates, Stack, get, p99, state_of
from tests.integration.sockets.support import make_fleet

pytestmark = FAULTS

IN_FLIGHT = 50  # deliveries whose assign is under way when the worker dies
KILL_AFTER = 10  # assigns applied before the kill
CANCELS = 20  # actions sent while no worker runs
DOWN_CREATES = 40  # creates while no worker runs, 4 at a time
ACTION_ANSWER_S = ACTION_WAIT_S + 2.0  # "answers quickly": the wait, plus a margin for a busy machine


async def test_worker_killed_mid_flight_api_stays_up_and_actions_apply_once(up: Stack) -> None:
    fleet = await make_fleet(up.sessionmaker, 5)
    headers = up.headers(fleet)
    figures = Figures("worker kill -9, 50 in flight")
    creates = Creates(headers)
    async with up.http() as http:
        first = [creates.new() for _ in range(IN_FLIGHT + CANCELS)]
        await creates.retry_all(http)
        assert not creates.unanswered, creates.statuses
        ids = [next(iter(creates.answered[k])) for k in first]
        assigns = [
            Action(d, "assign", {"vehicle_id": str(fleet.vehicles[i % 5])}, headers)
            for i, d in enumerate(ids[:IN_FLIGHT])
        ]
        cancels = [Action(d, "cancel", {"reason": "fault suite"}, headers) for d in ids[IN_FLIGHT:]]

        await up.wait_projected(ids, {DeliveryStatus.PENDING})
        sent = [asyncio.create_task(a.send(http)) for a in assigns]
        # Killed once some assigns have applied, the others being under way on the worker.
        applied = await up.wait_projected(ids[:IN_FLIGHT], {DeliveryStatus.ASSIGNED}, at_least=KILL_AFTER)
        up.worker.sigkill()
        in_flight = IN_FLIGHT - applied
        assert in_flight > 0, "every assign had finished before the kill"

        # No worker: creates and actions at the same time (the actions wait on Temporal meanwhile).
        down_creates = [creates.new() for _ in range(DOWN_CREATES)]
        gate = asyncio.Semaphore(4)

        async def create(key: str) -> None:
            async with gate:
                await creates.send(http, key)

        before = len(creates.seconds)
        again = [a for a in assigns if a.final is None][:10]  # the same key again while still down
        await asyncio.gather(
            *(create(k) for k in down_creates),
            *(c.send(http) for c in cancels),
            *(a.send(http) for a in again),
            *sent,
        )
        down_p99 = p99(creates.seconds[before:])
        listing = await get(http, "/api/v1/deliveries?limit=5", headers)
        down_actions = [c.answers[0] for c in cancels]  # sent only while the worker is down
        figures.extra["create p99 worker down"] = f"{down_p99 * 1000:.0f} ms"
        figures.extra["slowest action worker down"] = f"{max(x.seconds for x in down_actions):.1f} s"
        figures.extra["in flight at kill"] = str(in_flight)

        down_codes = Counter(f"{x.status} {x.body.get('code', '')}".strip() for x in down_actions)
        assert all(creates.answered.get(k) for k in down_creates), creates.statuses
        assert listing.status == 200, listing.body
        assert down_p99 < 1.0, f"create p99 {down_p99:.2f}s with the worker down"
        assert set(down_codes) <= {"202 action_pending", "503 temporal_unavailable"}, down_codes
        # A resent assign the worker had applied just before it died answers its first outcome.
        resent = [a.answers[-1] for a in again]
        resent_codes = Counter(f"{x.status} {x.body.get('code', '')}".strip() for x in resent)
        assert set(resent_codes) <= {"200", "202 action_pending", "503 temporal_unavailable"}, resent_codes
        assert all(x.body.get("status") == "assigned" for x in resent if x.status == 200)
        answers = down_actions + resent
        assert all(x.seconds < ACTION_ANSWER_S for x in answers), sorted(x.seconds for x in answers)
        pending = [x for x in answers if x.status == 202]
        assert all(x.headers["location"].endswith(x.body["action_id"]) for x in pending)

        began = time.monotonic()
        up.worker.start()
        await up.worker.wait_polling()
        finals = await asyncio.gather(*(a.settle(http) for a in assigns + cancels))
        figures.extra["settled after restart"] = f"{time.monotonic() - began:.1f} s"
        # Sent once more with the same keys: the first outcome, nothing applied again.
        repeats = await asyncio.gather(*(a.send(http) for a in assigns + cancels))

    actions_lost = sum(
        not (f.status == 200 and f.body["status"] == want)
        for f, want in zip(
            finals,
            [DeliveryStatus.ASSIGNED.value] * IN_FLIGHT + [DeliveryStatus.CANCELLED.value] * CANCELS,
            strict=True,
        )
    )
    changed = [
        (a.delivery_id, a.name, r.status, r.body.get("code"))
        for a, f, r in zip(assigns + cancels, finals, repeats, strict=True)
        if r.status != 200 or state_of(r) != state_of(f)
    ]
    figures.extra["actions lost"] = str(actions_lost)
    figures.extra["repeats not the first outcome"] = str(len(changed))
    await up.audit(figures, fleet.org, creates.acknowledged, creates.answered)
    events = {d: Counter(e.type for e in await up.history.events(fleet.org, d)) for d in ids}
    once = [d for d in ids[:IN_FLIGHT] if events[d]["assigned"] != 1] + [
        d for d in ids[IN_FLIGHT:] if events[d]["cancelled"] != 1
    ]
    assert actions_lost == 0, [(f.status, f.body.get("status"), f.body.get("code")) for f in finals]
    assert not once, {d: events[d] for d in once}
    assert not changed, changed
    figures.assert_clean()
