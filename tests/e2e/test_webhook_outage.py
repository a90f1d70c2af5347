"""A webhook receiver that is down for a while (answers 500, then refuses connections) while the
worker process is SIGKILLed and replaced: once the receiver is back it has every event, none lost,
each signed, duplicates recognisable by event id, and per delivery in order. The deliveries' own
Updates never waited for the receiver."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from activities.notifications.signing import SIGNATURE_HEADER, verify
from db.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from tests.conftest import REDIS_URL
from tests.e2e.test_worker_crash import EXPECTED_EVENTS, NOTIFIED, Progress, WorkerProcess, drive, worker_env
from tests.integration.notifications.receivers import HttpReceiver, wait_for
from tests.integration.workflows.delivery_support import make_input
from tests.support import make_tenant
from workflows.delivery import DeliveryWorkflow

pytestmark = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set (separate processes need Redis)")

DELIVERIES = 4
SECRET = "whsec_outage-test-secret-000000"
FAST_RETRIES = {
    "WAYBILL_WEBHOOK_RETRY_INITIAL_SECONDS": "0.2",
    "WAYBILL_WEBHOOK_RETRY_MAX_INTERVAL_SECONDS": "1",
    "WAYBILL_WEBHOOK_TIMEOUT_SECONDS": "2",
    "WAYBILL_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",  # the receiver is on loopback
}


async def test_receiver_outage_and_worker_kill_lose_nothing(
    dev_env: WorkflowEnvironment,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    receiver = HttpReceiver(status=500)
    receiver.start()
    queue = f"outage-e2e-{uuid.uuid4().hex[:8]}"
    env = {**worker_env(dev_env, database_url, queue, tmp_path), **FAST_RETRIES}
    first, second = WorkerProcess("worker1", env, tmp_path), WorkerProcess("worker2", env, tmp_path)
    org = (await make_tenant(sessionmaker)).organization_id
    async with sessionmaker() as session:
        sub = WebhookSubscription(organization_id=org, url=receiver.url("/hook"), events=["*"], secret=SECRET)
        session.add(sub)
        await session.commit()
        sub_id = sub.id
    try:
        first.start()
        await first.wait_polling()
        inputs = [make_input(str(org)) for _ in range(DELIVERIES)]
        handles = [
            await dev_env.client.start_workflow(
                DeliveryWorkflow.run, p, id=f"delivery-{p.delivery_id}", task_queue=queue
            )
            for p in inputs
        ]
        # The deliveries complete while every webhook call fails: notify never waits on a receiver.
        began = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(drive(h, Progress()) for h in handles)), timeout=60)
        assert time.monotonic() - began < 30
        await wait_for(lambda: len(receiver.at("/hook", ok_only=False)) >= DELIVERIES, 20, "failing calls")

        receiver.stop()  # now connections are refused
        await asyncio.sleep(1.5)
        first.sigkill()
        await asyncio.sleep(0.5)
        receiver.status = 200
        receiver.start()
        second.start()
        await second.wait_polling()

        expected = {
            f"delivery-{p.delivery_id}:{seq}" for p in inputs for seq, e in _notified(EXPECTED_EVENTS)
        }
        await wait_for(
            lambda: {r.json()["id"] for r in receiver.at("/hook")} >= expected,
            60,
            "every event after the outage",
        )
        assert second.sigterm() == 0, second.output()[-4000:]
    finally:
        first.cleanup()
        second.cleanup()
        receiver.stop()

    accepted = receiver.at("/hook")
    assert {r.json()["id"] for r in accepted} == expected  # none lost, nothing foreign
    for r in receiver.at("/hook", ok_only=False):
        assert verify(SECRET, r.body, r.headers[SIGNATURE_HEADER])
        assert r.headers["Waybill-Event-Id"] == r.json()["id"]
    # Per delivery, events were accepted in sequence order (a duplicate repeats an accepted id).
    first_seen: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for r in accepted:
        body = r.json()
        if body["id"] not in seen:
            seen.add(body["id"])
            first_seen[body["delivery"]["id"]].append(body["delivery"]["sequence"])
    for p in inputs:
        assert first_seen[p.delivery_id] == [seq for seq, _ in _notified(EXPECTED_EVENTS)], p.delivery_id
    assert [r.json()["type"] for r in accepted if r.json()["delivery"]["id"] == inputs[0].delivery_id][
        :1
    ] == ["delivery.created"]

    async with sessionmaker() as session:
        rows = list(
            await session.scalars(select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub_id))
        )
        codes = set(
            await session.scalars(
                select(WebhookAttempt.response_code).where(
                    WebhookAttempt.webhook_delivery_id.in_([w.id for w in rows])
                )
            )
        )
    assert len(rows) == DELIVERIES * len(NOTIFIED)
    assert {w.status for w in rows} == {"succeeded"}
    assert {500, None, 200} <= codes  # answered 500, refused, then accepted: each attempt recorded


def _notified(events: list[str]) -> list[tuple[int, str]]:
    return [(seq, e) for seq, e in enumerate(events, start=1) if e in NOTIFIED]
