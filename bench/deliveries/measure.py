"""The benchmark: a database, a Temporal server, the worker and the API, then phases of both sides
alternating A B B A …, each followed by the worker's drain."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.resources import Resources
from api.schemas.deliveries import DeliveryCreate, to_spec
from bench.common.machine import free_port, machine, own_cpu_seconds, python_version, utc_now
from bench.common.output import say
from bench.deliveries.config import DRAIN_TIMEOUT_S, REQUEST_TIMEOUT_S, SIDES, WARMUP, bench_settings
from bench.deliveries.fixture import (
    database_version,
    delivery_body,
    drain,
    make_dispatcher,
    package_versions,
    temporal_client,
)
from bench.deliveries.http_load import HttpLoad
from bench.deliveries.processes import api_processes, worker_process
from bench.deliveries.report import run_line
from bench.deliveries.runs import Outcome, Run, drive
from db.migrate import upgrade
from domain.delivery import DeliveryInput
from domain.ids import uuid7
from domain.roles import Role
from plumbing.settings import Settings, redact_url, to_sync_url
from plumbing.temporal import TemporalConnector
from starters.deliveries import delivery_options, start_delivery_workflow
from waybill.services import ApiService
from workers.compose import build_workers


async def benchmark(args: argparse.Namespace, command: str) -> Outcome:
    deadline = time.monotonic() + args.time_limit
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="waybill-bench-") as tmp:
        database_url = args.database_url or f"sqlite:///{Path(tmp) / 'waybill.db'}"
        say(f"migrating {redact_url(database_url)}")
        await asyncio.to_thread(upgrade, to_sync_url(database_url))
        address = os.environ.get("TEMPORAL_ADDRESS") or None
        namespace = os.environ.get("TEMPORAL_NAMESPACE") or "default"
        say(f"connecting to Temporal at {address}" if address else "starting the Temporal dev server")
        async with temporal_client(address, namespace) as (client, temporal_label):
            config = {
                "data_dir": tmp,
                "database_url": database_url,
                "temporal_address": client.service_client.config.target_host,
                "namespace": namespace,
                "task_queue": f"bench-{uuid.uuid4().hex[:8]}",
                "concurrency": args.concurrency,
            }
            settings = bench_settings(config)
            resources = await Resources.open(settings, TemporalConnector(settings, client))
            try:
                facts = await machine_facts(resources, temporal_label, args)
                worker: contextlib.AbstractAsyncContextManager[Any]
                if args.worker == "process":
                    worker = worker_process(config)
                elif args.worker == "inprocess":
                    worker = build_workers(client, resources, ["default"])[0]
                else:
                    worker = contextlib.nullcontext()
                async with worker, api_processes(config, args.api_processes - 1) as extra_apis:
                    runs = await measure(args, deadline, client, resources, extra_apis)
            finally:
                await resources.close()
    return Outcome(runs, facts, command, settings.database_label)


async def machine_facts(
    resources: Resources, temporal_label: str, args: argparse.Namespace
) -> dict[str, str]:
    workers = {
        "process": "in a child process (like `waybill worker`)",
        "inprocess": "in the API process (like `waybill dev`)",
        "none": "none (started workflows wait on the task queue)",
    }
    facts = {
        "machine": machine("CPUs"),
        "python": python_version(),
        "database": await database_version(resources),
        "temporal": temporal_label,
        "worker": workers[args.worker],
        "API processes": str(args.api_processes)
        + (
            " (this one and child processes, each its own engine and Temporal client)"
            if args.api_processes > 1
            else ""
        ),
        "packages": package_versions(),
        "date": utc_now(),
    }
    for key, value in facts.items():
        say(f"{key:>9}: {value}")
    return facts


async def _sign_in(base_url: str, email: str, password: str) -> tuple[str, str]:
    """The dispatcher's access token and user id, through the API."""
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as http:
        login = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
        login.raise_for_status()
        token = login.json()["access_token"]
        me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        me.raise_for_status()
    return token, str(me.json()["id"])


def _raw_start(
    client: Client, settings: Settings, org: uuid.UUID, payload: dict[str, Any], user_id: str
) -> Callable[[int], Awaitable[None]]:
    """One raw start: the workflow the API would start for `payload`, with its input and policies."""
    spec = to_spec(DeliveryCreate.model_validate(payload))
    options = delivery_options(settings)
    created_by = f"{Role.DISPATCHER.value}:{user_id}"

    async def start_one(_: int) -> None:
        params = DeliveryInput(
            delivery_id=str(uuid7()),
            organization_id=str(org),
            spec=spec,
            created_by=created_by,
            created_at=datetime.now(UTC),
            options=options,
        )
        await start_delivery_workflow(
            client, params, settings.temporal_task_queue, timedelta(seconds=REQUEST_TIMEOUT_S)
        )

    return start_one


@dataclass
class Phases:
    """Runs the phases of both sides and, unless there is no worker, waits for its drain after each."""

    args: argparse.Namespace
    deadline: float
    load: HttpLoad
    start_one: Callable[[int], Awaitable[None]]
    sessionmaker: async_sessionmaker[AsyncSession]
    org: uuid.UUID
    started: int = 0

    async def one(self, side: str, round_no: int, n: int, progress: bool = True) -> Run:
        if side == "api":
            run = await self.load.run(round_no, n, self.deadline, progress)
        else:
            cpu0 = own_cpu_seconds()
            run = await drive(
                Run("raw", round_no, n), self.args.concurrency, self.start_one, self.deadline, progress
            )
            run.cpu_s = own_cpu_seconds() - cpu0
        self.started += run.ok
        return run

    async def warm_up(self) -> None:
        say(f"warm-up: {WARMUP} of each")
        for side in SIDES:
            warm = await self.one(side, 0, WARMUP, progress=False)
            if warm.errors:
                raise RuntimeError(f"warm-up of {side} failed: {warm.first_error}")
        if self.args.worker != "none":
            await drain(self.sessionmaker, self.org, self.started, DRAIN_TIMEOUT_S)

    async def rounds(self) -> list[Run]:
        args = self.args
        runs: list[Run] = []
        for round_no in range(1, args.rounds + 1):
            for side in SIDES if round_no % 2 else tuple(reversed(SIDES)):
                if time.monotonic() >= self.deadline:
                    say("time limit reached: no further runs")
                    return runs
                say(f"{side} run {round_no}: {args.n} deliveries, concurrency {args.concurrency}")
                run = await self.one(side, round_no, args.n)
                if args.worker != "none":
                    wait = max(1.0, min(DRAIN_TIMEOUT_S, self.deadline - time.monotonic()))
                    run.drain_s = await drain(self.sessionmaker, self.org, self.started, wait)
                runs.append(run)
                say(run_line(run))
                if run.first_error:
                    say(f"     first error: {run.first_error}")
        return runs


async def measure(
    args: argparse.Namespace,
    deadline: float,
    client: Client,
    resources: Resources,
    extra_apis: Sequence[tuple[int, int]] = (),
) -> list[Run]:
    org, email, password = await make_dispatcher(resources.sessionmaker)
    port = free_port()
    api = ApiService(resources, "127.0.0.1", port)
    await api.start()
    load: HttpLoad | None = None
    try:
        base_url = f"http://127.0.0.1:{port}"
        token, user_id = await _sign_in(base_url, email, password)
        payload = delivery_body()
        start_one = _raw_start(client, resources.settings, org, payload, user_id)
        urls = [base_url, *(f"http://127.0.0.1:{port}" for _, port in extra_apis)]
        load = HttpLoad(urls, token, payload, args.concurrency, [pid for pid, _ in extra_apis])
        await load.start()
        phases = Phases(args, deadline, load, start_one, resources.sessionmaker, org)
        await phases.warm_up()
        return await phases.rounds()
    finally:
        if load is not None:
            await load.stop()
        await api.stop()
