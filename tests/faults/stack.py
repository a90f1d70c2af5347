"""The system under fault: `waybill api`, `waybill worker` and `waybill sockets` as separate processes
on PostgreSQL (TEST_DATABASE_URL), a redis-server and a Temporal dev server of the suite's own (so
that a scenario may stop and restart them), and the checks every scenario reports.

Temporal keeps its state in a fixed SQLite file, so a restarted server has every workflow; Redis runs
without persistence (`--save "" --appendonly no`), so a restarted one is empty, like a lost cache node.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.security.tokens import TokenService
from db.history.sql import SqlHistoryStore
from db.models import DeliveryRow, IdempotencyKey
from db.session import create_engine, create_sessionmaker
from domain.delivery import TERMINAL, DeliveryStatus
from domain.roles import Role
from plumbing.settings import to_async_url
from tests.conftest import REDIS_URL, TEST_DATABASE_URL
from tests.e2e.test_dev_command import STORE_VARS, WAYBILL
from tests.e2e.test_worker_crash import WorkerProcess
from tests.faults.report import Figures
from tests.integration.sockets.support import Fleet, access, staff_token
from tests.support import free_port, test_settings
from waybill.temporal_dev import TemporalDevServer
from workflows.delivery import DeliveryWorkflow

FAULTS = [
    pytest.mark.faults,
    pytest.mark.skipif(
        not (TEST_DATABASE_URL and REDIS_URL),
        reason="the fault suite runs on PostgreSQL and Redis: set TEST_DATABASE_URL and REDIS_URL",
    ),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH"),
]

ACTION_WAIT_S = 2.0  # WAYBILL_ACTION_WAIT_SECONDS of the API under test
TIMER_EVENTS = {"late", "unassigned_too_long", "late_predicted", "eta_changed", "eta"}
TERMINAL_VALUES = {s.value for s in TERMINAL}


class Acked(Protocol):
    """A driver's stream as the tests keep it: its vehicle and the seqs the server acknowledged."""

    vehicle_id: uuid.UUID
    acked: set[int]


class RoleProcess(WorkerProcess):
    """`waybill <role>` in its own process group; each start writes a fresh log (`name.N.log`)."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, port: int | None
    ) -> None:
        super().__init__(name, env, log_dir)
        self.argv = argv
        self.port = port  # answers /health there; None: a worker (ready once it polls)
        self.log_dir = log_dir
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.log = self.log_dir / f"{self.name}.{self.starts}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [WAYBILL, *self.argv],
                env=self.env,
                cwd=self.log_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_ready(self, timeout: float = 90) -> None:
        if self.port is None:
            await self.wait_polling(timeout)
            return
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if (await http.get(f"http://127.0.0.1:{self.port}/health", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not answer /health:\n{self.output()[-4000:]}")

    async def restart(self) -> None:
        self.cleanup()
        self.start()
        await self.wait_ready()


class RedisProcess:
    """A redis-server of the suite's own on a free port, without persistence."""

    def __init__(self, port: int, log_dir: Path) -> None:
        self.port = port
        self.log = log_dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]
                + ["--daemonize", "no", "--maxclients", "10000"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        client = aioredis.Redis.from_url(self.url)
        try:
            while time.monotonic() < deadline:
                try:
                    if await client.ping():
                        return
                except (OSError, aioredis.RedisError):
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        raise AssertionError(f"redis-server on {self.port} did not answer:\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Stack:
    """Every process of the suite, started once per session; a scenario that stops one restarts it."""

    def __init__(self, database_url: str, root: Path) -> None:
        self.root = root
        self.database_url = database_url
        key = secrets.token_urlsafe(48)
        self.tokens = TokenService(test_settings(jwt_keys={"faults": key}))
        self.redis = RedisProcess(free_port(), root)
        temporal_port = free_port()
        self.temporal = TemporalDevServer(
            test_settings(
                data_dir=root / "temporal", temporal_dev_port=temporal_port, temporal_ui_port=free_port()
            )
        )
        self.api_port, self.sockets_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k not in STORE_VARS and not k.startswith("WAYBILL_")}
        env.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": self.redis.url,
                "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
                "WAYBILL_ENV": "test",
                "WAYBILL_JWT_KEYS": json.dumps({"faults": key}),
                "WAYBILL_DATA_DIR": str(root),
                "WAYBILL_LOG_FORMAT": "json",
                "WAYBILL_TEMPORAL_TASK_QUEUE": f"faults-{uuid.uuid4().hex[:8]}",
                "WAYBILL_REDIS_PREFIX": f"waybill-faults-{uuid.uuid4().hex[:8]}:",
                "WAYBILL_API_PORT": str(self.api_port),
                "WAYBILL_SOCKETS_PORT": str(self.sockets_port),
                "WAYBILL_SOCKETS_METRICS_PORT": str(free_port()),
                "WAYBILL_WORKER_METRICS_PORT": "0",
                "WAYBILL_TEMPORAL_METRICS_PORT": "0",
                "WAYBILL_ANALYTICS_SCHEDULES": "false",
                # No reconciler schedule: its runs would repair other tests' rows in the shared database.
                "WAYBILL_RECONCILE_INTERVAL_SECONDS": "0",
                "WAYBILL_ACTION_WAIT_SECONDS": str(ACTION_WAIT_S),
                # Thousands of requests from one address: limits that never trigger, still checked.
                **{f"WAYBILL_RATE_LIMIT_{k}": "1000000" for k in ("IP", "USER", "LOGIN", "REFRESH")},
            }
        )
        self.env = env
        self.api = RoleProcess("api", ["api"], env, root, self.api_port)
        self.worker = RoleProcess("worker", ["worker", "--queue", "default"], env, root, None)
        self.sockets = RoleProcess("sockets", ["sockets"], env, root, self.sockets_port)
        self.engine: AsyncEngine = create_engine(to_async_url(database_url))
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        self.history = SqlHistoryStore(self.sessionmaker)
        self.client: Client | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.sockets_port}"

    async def start_temporal(self) -> None:
        self.temporal.start()
        self.client = await self.temporal.wait_ready()

    async def start(self) -> None:
        self.redis.start()
        await asyncio.gather(self.redis.wait_ready(), self.start_temporal())
        for role in (self.worker, self.api, self.sockets):
            role.start()
        await asyncio.gather(*(role.wait_ready() for role in (self.worker, self.api, self.sockets)))

    async def ensure_up(self) -> None:
        """What an earlier scenario left stopped (it failed half-way) is started again."""
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            self.redis.start()
            await self.redis.wait_ready()
        if self.temporal.process is None or self.temporal.process.poll() is not None:
            await self.start_temporal()
        await asyncio.gather(*(r.restart() for r in (self.worker, self.api, self.sockets) if not r.running))

    async def close(self) -> None:
        for role in (self.sockets, self.api, self.worker):
            role.cleanup()
        self.temporal.stop()
        self.redis.kill()
        await self.engine.dispose()

    def temporal_client(self) -> Client:
        assert self.client is not None
        return self.client

    # Clients ------------------------------------------------------------------------------

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url,
            timeout=30,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    def headers(self, fleet: Fleet, role: Role = Role.DISPATCHER) -> dict[str, str]:
        return {"Authorization": f"Bearer {staff_token(self.tokens, fleet, role)}"}

    def driver_headers(self, fleet: Fleet, i: int) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {access(self.tokens, fleet.org, fleet.driver_users[i], Role.DRIVER)}"
        }

    async def wait_projected(
        self,
        ids: list[uuid.UUID],
        statuses: set[DeliveryStatus],
        at_least: int | None = None,
        timeout: float = 60.0,
    ) -> int:
        """Until `at_least` (default: all) of these rows show one of `statuses`; how many do."""
        want = len(ids) if at_least is None else at_least
        values = [s.value for s in statuses]
        deadline = time.monotonic() + timeout
        while True:
            async with self.sessionmaker() as session:
                found = len(
                    list(
                        await session.scalars(
                            select(DeliveryRow.id).where(
                                DeliveryRow.id.in_(ids), DeliveryRow.status.in_(values)
                            )
                        )
                    )
                )
            if found >= want:
                return found
            assert time.monotonic() < deadline, f"{found}/{want} deliveries {values} after {timeout}s"
            await asyncio.sleep(0.02)

    async def unstored(
        self, org: uuid.UUID, feeds: Sequence[Acked], wait_s: float = 10.0
    ) -> dict[uuid.UUID, list[int]]:
        """Acknowledged positions not in the history store, per vehicle. An ack promises the write,
        which follows within the flush interval (or in the final flush on SIGTERM): `wait_s` to land."""
        since, until = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
        deadline = time.monotonic() + wait_s
        while True:
            stored = await asyncio.gather(
                *(self.history.positions(org, f.vehicle_id, since, until, 10_000) for f in feeds)
            )
            lost = {
                f.vehicle_id: sorted(f.acked - {p.seq for p in ps})
                for f, ps in zip(feeds, stored, strict=True)
            }
            if not any(lost.values()) or time.monotonic() > deadline:
                return {v: seqs for v, seqs in lost.items() if seqs}
            await asyncio.sleep(0.2)

    # The audit ----------------------------------------------------------------------------

    async def audit(
        self,
        figures: Figures,
        org: uuid.UUID,
        acknowledged: Iterable[uuid.UUID],
        keys: dict[str, set[uuid.UUID]] | None = None,
        settle_s: float = 30.0,
    ) -> list[DeliveryRow]:
        """Count into `figures`, for one organization:

        - lost: a delivery acknowledged (201/200) without its row or its workflow;
        - duplicated: a key answered with two deliveries, a row no answer acknowledged (a retry made
          another one), or an action applied twice (its event type twice in the event log);
        - stuck: a row whose workflow does not exist, a non-terminal row whose workflow is not running
          (no action possible), a projection still behind its workflow after `settle_s`, or an
          Idempotency-Key claim that points at no row.
        """
        acked = set(acknowledged)
        client = self.temporal_client()
        deadline = time.monotonic() + settle_s
        while True:
            async with self.sessionmaker() as session:
                rows = list(
                    await session.scalars(select(DeliveryRow).where(DeliveryRow.organization_id == org))
                )
                claims = list(
                    await session.scalars(select(IdempotencyKey).where(IdempotencyKey.organization_id == org))
                )
            found = await asyncio.gather(*(_describe(client, r.id) for r in rows))
            behind = [
                r.id for r, (_, seq) in zip(rows, found, strict=True) if seq is not None and seq != r.sequence
            ]
            if not behind or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        ids = {r.id for r in rows}
        problems = figures.problems
        missing = acked - ids
        no_workflow = {r.id for r, (status, _) in zip(rows, found, strict=True) if status is None}
        figures.lost += len(missing) + len(no_workflow & acked)
        problems += [f"acknowledged, no row: {d}" for d in sorted(missing)]
        problems += [f"row without workflow: {d}" for d in sorted(no_workflow)]
        figures.stuck += len(no_workflow)
        for r, (status, _) in zip(rows, found, strict=True):
            if (
                status is not None
                and r.status not in TERMINAL_VALUES
                and status != WorkflowExecutionStatus.RUNNING
            ):
                figures.stuck += 1
                problems.append(f"{r.id} is {r.status} but its workflow is {status.name}")
        figures.stuck += len(behind)
        problems += [f"projection behind its workflow: {d}" for d in behind]
        dangling = [c.key for c in claims if c.delivery_id not in ids]
        figures.stuck += len(dangling)
        problems += [f"key {k} claims no row" for k in dangling]
        unacked = ids - acked
        figures.duplicated += len(unacked)
        problems += [f"row nobody was answered with: {d}" for d in sorted(unacked)]
        for key, answered in (keys or {}).items():
            if len(answered) > 1:
                figures.duplicated += len(answered) - 1
                problems.append(f"key {key} answered with {sorted(map(str, answered))}")
        events = await asyncio.gather(*(self.history.events(org, d) for d in ids))
        for d, evs in zip(ids, events, strict=True):
            counts = Counter(e.type for e in evs if e.type not in TIMER_EVENTS)
            twice = {t: c for t, c in counts.items() if c > 1 or t == "reassigned"}
            if twice:
                figures.duplicated += 1
                problems.append(f"{d} applied twice: {twice}")
        figures.deliveries += len(rows)
        return rows


async def _describe(
    client: Client, delivery_id: uuid.UUID
) -> tuple[WorkflowExecutionStatus | None, int | None]:
    """The workflow's execution status (None: no such workflow) and, if it answers, its sequence."""
    handle = client.get_workflow_handle_for(DeliveryWorkflow.run, f"delivery-{delivery_id}")
    try:
        status = (await handle.describe()).status
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None, None
        raise
    try:
        state = await handle.query(DeliveryWorkflow.state, rpc_timeout=_QUERY_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError, RPCTimeoutOrCancelledError):
        return status, -1  # no worker answered: counts as behind until one does
    return status, state.sequence


_QUERY_TIMEOUT = timedelta(seconds=10)


# Load and measurement helpers ----------------------------------------------------------------


def delivery_body(i: int, ref: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "dropoff": {"address": f"Fault street {i}", "location": {"lat": 52.5 + i * 1e-4, "lon": 13.4}}
    }
    if ref is not None:
        body["external_ref"] = ref
    return body


def p99(samples: list[float]) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: httpx.Headers
    seconds: float


async def post(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str], key: str | None = None
) -> Answer:
    h = {**headers, "Idempotency-Key": key} if key else headers
    t0 = time.monotonic()
    r = await http.post(path, json=body, headers=h)
    return Answer(r.status_code, _json(r), r.headers, time.monotonic() - t0)


async def get(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> Answer:
    t0 = time.monotonic()
    r = await http.get(path, headers=headers)
    return Answer(r.status_code, _json(r), r.headers, time.monotonic() - t0)


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {"raw": r.text[:500]}
    return body if isinstance(body, dict) else {"items": body}


@dataclass
class Action:
    """One delivery action sent with an Idempotency-Key, followed to its outcome as the contract says."""

    delivery_id: uuid.UUID
    name: str  # the path segment: assign, cancel, pick-up, ...
    body: dict[str, Any]
    headers: dict[str, str]
    key: str = field(default_factory=lambda: f"act-{uuid.uuid4().hex}")
    answers: list[Answer] = field(default_factory=list)
    final: Answer | None = None

    @property
    def path(self) -> str:
        return f"/api/v1/deliveries/{self.delivery_id}/{self.name}"

    async def send(self, http: httpx.AsyncClient) -> Answer:
        answer = await post(http, self.path, self.body, self.headers, self.key)
        self.answers.append(answer)
        if answer.status == 200:
            self.final = answer
        return answer

    async def settle(self, http: httpx.AsyncClient, timeout: float = 60.0) -> Answer:
        """Until the outcome is known: follow a 202's Location, send again (same key) after a 503, a
        404 action_not_found (not applied: safe to retry) or a lost connection."""
        deadline = time.monotonic() + timeout
        last = self.answers[-1] if self.answers else None
        while self.final is None and time.monotonic() < deadline:
            try:
                if last is not None and last.status == 202 and "location" in last.headers:
                    last = await get(http, last.headers["location"], self.headers)
                    self.answers.append(last)
                    if last.status == 200:
                        self.final = last
                    elif last.status == 404 and last.body.get("code") == "action_not_found":
                        last = await self.send(http)
                elif last is None or last.status in (503, 504) or last.status >= 500:
                    last = await self.send(http)
                elif last.status != 202:
                    break  # a rejection (4xx): the outcome is known
            except httpx.TransportError:
                last = None
            if self.final is None:
                await asyncio.sleep(0.5)
        if self.final is None and last is not None and last.status not in (202, 503) and last.status < 500:
            self.final = last
        assert self.final is not None, (
            f"{self.name} {self.delivery_id}: no outcome in {timeout}s: {self.answers[-3:]}"
        )
        return self.final


def state_of(answer: Answer) -> tuple[str, int]:
    return str(answer.body.get("status")), int(answer.body.get("sequence", -1))


def is_status(answer: Answer, status: DeliveryStatus) -> bool:
    return answer.status == 200 and answer.body.get("status") == status.value


@dataclass
class Creates:
    """Keyed creates as a careful client sends them: each key with one body, retried until answered."""

    headers: dict[str, str]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    answered: dict[str, set[uuid.UUID]] = field(default_factory=dict)  # key -> ids answered 201/200
    statuses: Counter[str] = field(default_factory=Counter)  # "201", "503", "connection", ...
    seconds: list[float] = field(default_factory=list)

    def new(self, *, ref: bool = False) -> str:
        key = f"create-{self.tag}-{len(self.bodies)}"
        self.bodies[key] = delivery_body(len(self.bodies), f"ref-{key}" if ref else None)
        return key

    async def send(self, http: httpx.AsyncClient, key: str) -> Answer | None:
        """One attempt; None when the connection failed (the API died under it)."""
        try:
            answer = await post(http, "/api/v1/deliveries", self.bodies[key], self.headers, key)
        except httpx.TransportError:
            self.statuses["connection"] += 1
            return None
        self.statuses[str(answer.status)] += 1
        self.seconds.append(answer.seconds)
        if answer.status in (200, 201):
            self.answered.setdefault(key, set()).add(uuid.UUID(answer.body["id"]))
        return answer

    async def retry_all(self, http: httpx.AsyncClient, timeout: float = 60.0) -> None:
        """Every key once more, then the unanswered ones until answered (or the timeout)."""
        await asyncio.gather(*(self.send(http, k) for k in self.bodies))
        deadline = time.monotonic() + timeout
        while (left := [k for k in self.bodies if k not in self.answered]) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            await asyncio.gather(*(self.send(http, k) for k in left))

    @property
    def acknowledged(self) -> set[uuid.UUID]:
        return {d for ids in self.answered.values() for d in ids}

    @property
    def unanswered(self) -> list[str]:
        return [k for k in self.bodies if k not in self.answered]
