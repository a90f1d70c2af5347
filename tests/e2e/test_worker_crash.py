"""A worker process killed (SIGKILL) in the middle of 50 in-flight deliveries, and a new one started:
every delivery finishes, and the event log, the projection and the outbox hold each transition once.

The deliveries are driven through the Temporal client like the API does (one Update per action).
An Update whose worker died is not lost: the client keeps polling for its outcome, and if a call
fails anyway, the driver looks at the workflow state and either waits for the same Update (it was
accepted) or re-sends it under the same Update id (Temporal de-duplicates by id).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    RPCTimeoutOrCancelledError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from db.history import SqlHistoryStore
from db.models import DeliveryRow, NotificationOutbox
from domain.delivery import (
    AssignRequest,
    DeliverRequest,
    DeliveryState,
    DeliveryStatus,
    DriverRequest,
)
from tests.conftest import REDIS_URL
from tests.e2e.test_dev_command import STORE_VARS, WAYBILL
from tests.integration.workflows.delivery_support import DISPATCHER, DROP, driver, make_input
from tests.support import make_tenant
from workflows.delivery import DeliveryWorkflow

pytestmark = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set (separate processes need Redis)")

S = DeliveryStatus
DELIVERIES = 50
ORDER = [S.PENDING, S.ASSIGNED, S.PICKED_UP, S.OUT_FOR_DELIVERY, S.ARRIVED, S.DELIVERED]
EXPECTED_EVENTS = ["created", "assigned", "picked_up", "out_for_delivery", "arrived", "delivered"]
NOTIFIED = ["created", "assigned", "out_for_delivery", "arrived", "delivered"]
STEPS_PER_DELIVERY = len(EXPECTED_EVENTS) - 1
KILL_AFTER = DELIVERIES * STEPS_PER_DELIVERY // 3  # completed Updates before the kill
UPDATE_RPC_TIMEOUT = timedelta(seconds=15)
QUERY_RPC_TIMEOUT = timedelta(seconds=5)
DRIVE_TIMEOUT = 90.0  # all deliveries, kill and restart included


class WorkerProcess:
    """`waybill worker --queue default` in its own process group, output to a file."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.env = env
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [WAYBILL, "worker", "--queue", "default"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait_polling(self, timeout: float = 90) -> None:  # pandas, OR-Tools imports: slow when busy
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "worker polling" in self.output():
                return
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not start polling:\n{self.output()[-4000:]}")

    def sigkill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def sigterm(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def cleanup(self) -> None:
        """Never leave the process (or its group) behind, whatever happened."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        else:
            try:  # anything it spawned into its group
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@dataclass
class Progress:
    started: int = 0
    completed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    reattached: int = 0
    resent: int = 0
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    def done(self) -> None:
        self.completed += 1
        if self.completed >= KILL_AFTER:
            self.enough.set()


Handle = WorkflowHandle[DeliveryWorkflow, DeliveryState]


async def step(h: Handle, update: Any, arg: Any, target: DeliveryStatus, progress: Progress) -> DeliveryState:
    """Run one Update to completion, surviving the worker's death."""
    update_id = f"{update.__name__}-{h.id}"
    progress.started += 1
    reattach = False
    st: DeliveryState
    while True:
        try:
            if reattach:
                st = await h.get_update_handle(update_id, result_type=DeliveryState).result(
                    rpc_timeout=UPDATE_RPC_TIMEOUT
                )
            else:
                st = await h.execute_update(update, arg, id=update_id, rpc_timeout=UPDATE_RPC_TIMEOUT)
            progress.done()
            return st
        except (RPCError, RPCTimeoutOrCancelledError) as exc:
            progress.errors[type(exc).__name__] += 1
        # The call failed: did the action take effect? Ask the workflow (it needs a live worker).
        await asyncio.sleep(0.5)
        try:
            state = await h.query(DeliveryWorkflow.state, rpc_timeout=QUERY_RPC_TIMEOUT)
        except (RPCError, RPCTimeoutOrCancelledError, WorkflowQueryFailedError) as exc:
            progress.errors[f"query:{type(exc).__name__}"] += 1
            continue  # unknown yet: try again (the same Update id never applies twice)
        reattach = ORDER.index(state.status) >= ORDER.index(target)
        if reattach:
            progress.reattached += 1
        else:
            progress.resent += 1


async def drive(h: Handle, progress: Progress) -> None:
    vehicle, driver_id = str(uuid.uuid4()), str(uuid.uuid4())
    d = driver(driver_id)
    steps: list[tuple[Any, Any, DeliveryStatus]] = [
        (DeliveryWorkflow.assign, AssignRequest(DISPATCHER, vehicle, driver_id), S.ASSIGNED),
        (DeliveryWorkflow.pick_up, DriverRequest(d), S.PICKED_UP),
        (DeliveryWorkflow.depart, DriverRequest(d), S.OUT_FOR_DELIVERY),
        (DeliveryWorkflow.arrive, DriverRequest(d, DROP), S.ARRIVED),
        (DeliveryWorkflow.deliver, DeliverRequest(d, "Ms Recipient", DROP), S.DELIVERED),
    ]
    for update, arg, target in steps:
        st = await step(h, update, arg, target, progress)
        assert st.status is target, (h.id, update.__name__, st.status)


def worker_env(dev_env: WorkflowEnvironment, database_url: str, queue: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARS and not k.startswith("WAYBILL_")}
    env.update(
        {
            "REDIS_URL": str(REDIS_URL),
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "WAYBILL_TEMPORAL_TASK_QUEUE": queue,
            # No reconciler schedule: its runs would repair other tests' rows in the shared database.
            "WAYBILL_RECONCILE_INTERVAL_SECONDS": "0",
            "WAYBILL_DATA_DIR": str(data_dir),
            "WAYBILL_LOG_FORMAT": "json",
        }
    )
    return env


async def test_sigkilled_worker_mid_flight_loses_and_repeats_nothing(
    dev_env: WorkflowEnvironment,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    client = dev_env.client
    queue = f"crash-e2e-{uuid.uuid4().hex[:8]}"
    env = worker_env(dev_env, database_url, queue, tmp_path)
    first, second = WorkerProcess("worker1", env, tmp_path), WorkerProcess("worker2", env, tmp_path)
    org = str((await make_tenant(sessionmaker)).organization_id)
    progress = Progress()
    tasks: list[asyncio.Task[None]] = []
    try:
        first.start()
        await first.wait_polling()

        inputs = [make_input(org) for _ in range(DELIVERIES)]
        handles: list[Handle] = await asyncio.gather(
            *(
                client.start_workflow(
                    DeliveryWorkflow.run, p, id=f"delivery-{p.delivery_id}", task_queue=queue
                )
                for p in inputs
            )
        )
        tasks = [asyncio.create_task(drive(h, progress)) for h in handles]

        await asyncio.wait_for(progress.enough.wait(), timeout=60)
        first.sigkill()
        killed_at = (progress.completed, progress.started)
        # The premise: Updates were in flight, and work was left for the second worker.
        assert progress.started > progress.completed, killed_at
        assert progress.completed < DELIVERIES * STEPS_PER_DELIVERY, killed_at
        await asyncio.sleep(1)
        second.start()
        await second.wait_polling()

        done, pending = await asyncio.wait(tasks, timeout=DRIVE_TIMEOUT - (time.monotonic() - began))
        assert not pending, (
            f"{len(pending)} deliveries still in flight; completed {progress.completed}, "
            f"errors {dict(progress.errors)}\n{second.output()[-4000:]}"
        )
        for task in done:
            task.result()  # re-raise a driver's failure

        finals = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=30)
        assert [f.status for f in finals] == [S.DELIVERED] * DELIVERIES
        assert {f.sequence for f in finals} == {len(EXPECTED_EVENTS)}

        assert second.sigterm() == 0, second.output()[-4000:]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        first.cleanup()
        second.cleanup()

    history = SqlHistoryStore(sessionmaker)
    ids = [uuid.UUID(p.delivery_id) for p in inputs]
    for p, h in zip(inputs, handles, strict=True):
        events = await history.events(uuid.UUID(org), uuid.UUID(p.delivery_id))
        assert [(e.sequence, e.type) for e in events] == list(enumerate(EXPECTED_EVENTS, start=1)), h.id
        assert {e.workflow_id for e in events} == {h.id}

    async with sessionmaker() as session:
        rows = (await session.execute(select(DeliveryRow).where(DeliveryRow.id.in_(ids)))).scalars().all()
        outbox = (
            await session.execute(
                select(NotificationOutbox.delivery_id, NotificationOutbox.event, func.count())
                .where(NotificationOutbox.delivery_id.in_(ids))
                .group_by(NotificationOutbox.delivery_id, NotificationOutbox.event)
            )
        ).all()
    assert len(rows) == DELIVERIES
    assert {(r.status, r.sequence, str(r.organization_id)) for r in rows} == {
        ("delivered", len(EXPECTED_EVENTS), org)
    }
    assert len(outbox) == DELIVERIES * len(NOTIFIED)
    assert {count for _, _, count in outbox} == {1}
    assert Counter(event for _, event, _ in outbox) == Counter(dict.fromkeys(NOTIFIED, DELIVERIES))

    print(  # noqa: T201 - the run's shape, shown with -s
        f"\nkilled after {killed_at[0]}/{killed_at[1]} completed/started updates; "
        f"errors {dict(progress.errors)}, re-attached {progress.reattached}, re-sent {progress.resent}; "
        f"{time.monotonic() - began:.1f}s"
    )
