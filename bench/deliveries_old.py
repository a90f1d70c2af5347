"""Deliveries created per second: through the REST API, and with raw `client.start_workflow`, in one run.

    .venv/bin/python -m bench.deliveries [--n 1000] [--concurrency 32] [--rounds 2]
                                         [--database-url URL] [--worker process|inprocess|none]
                                         [--time-limit SECONDS] [--write-docs]

Starts the bundled Temporal dev server (in memory; or uses TEMPORAL_ADDRESS), migrates a database (a
temporary SQLite file unless --database-url), makes a tenant with a dispatcher, runs the API (uvicorn
on a free loopback port) in this process and a worker on the benchmark's own task queue (by default
in a child process, as `waybill worker` runs beside `waybill api`). Then, alternating A B B A … so
that drift hits both sides alike:

  api  N x POST /api/v1/deliveries over HTTP, each with its own Idempotency-Key, sent by a child
       process (httpx, one keep-alive connection per concurrent lane), so that the load generator
       does not share the API's event loop
  raw  N x client.start_workflow(DeliveryWorkflow.run, DeliveryInput(...)) from this process, on
       the API's own Temporal client: same server, task queue and workflow-id policies

both with the same concurrency. After each phase it waits until the worker has recorded every
delivery started so far, so that no phase pays for the other's backlog. Reports count, errors, wall
time, rate, p50/p99 latency and this process's CPU per delivery for each phase, each side's median
over its runs, and the API/raw rate ratio (goal: at least GOAL_RATIO). Bounded in count and time;
all traffic stays on loopback unless TEMPORAL_ADDRESS or --database-url point elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import re
import resource
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from activities.reconcile import delivery_options
from api.resources import Resources
from api.schemas.deliveries import DeliveryCreate, to_spec
from api.security.passwords import hash_password
from api.services.deliveries import start_delivery_workflow
from db.migrate import upgrade
from db.models import NotificationOutbox, Organization, User
from domain.delivery import DeliveryInput
from domain.ids import uuid7
from domain.roles import Role
from domain.search_attributes import KEYWORD_ATTRIBUTES
from plumbing import eventloop
from plumbing.converter import DATA_CONVERTER
from plumbing.settings import Settings, redact_url, to_sync_url
from plumbing.temporal import TemporalConnector, connect
from waybill.services import ApiService
from waybill.temporal_dev import temporal_binary
from workers.compose import build_workers
from workers.search_attributes import ensure_search_attributes

GOAL_RATIO = 0.8
WARMUP = 20
# The worker records a delivery in two workflows and five activities; on a busy two-core machine
# 500 of them have taken 45-85 s to drain, so a drain may take up to this long before the next phase.
DRAIN_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 30.0
REPO = Path(__file__).resolve().parents[1]
DOCS_PATH = REPO / "docs" / "benchmarks.md"
SIDES = ("api", "raw")
WORKER_MODES = ("process", "inprocess", "none")
RESULT = "@result "
READY = "@ready"


def say(message: str = "") -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """CPU time of another process so far (user + system, every thread), from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Measuring ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Run:
    side: str
    round: int
    planned: int
    latencies: list[float] = field(default_factory=list)  # seconds, successful operations only
    errors: int = 0
    first_error: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU of the API/benchmark process during the phase
    load_cpu_s: float = 0.0  # api: CPU of the HTTP load generator (a child process) during the phase
    drain_s: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.side} #{self.round}" if self.round else f"{self.side} warm-up"

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / self.ok * 1000 if self.ok else float("nan")

    @property
    def load_cpu_ms(self) -> float:
        return self.load_cpu_s / self.ok * 1000 if self.ok else float("nan")


async def drive(
    run: Run,
    concurrency: int,
    op: Callable[[int], Awaitable[None]],
    deadline: float,
    progress: bool = True,
) -> Run:
    """Call `op(lane)` `run.planned` times over `concurrency` lanes, until done or `deadline` (monotonic)."""
    step = max(1, run.planned // 10)
    issued = done = 0
    start = time.perf_counter()

    async def lane(number: int) -> None:
        nonlocal issued, done
        while issued < run.planned and time.monotonic() < deadline:
            issued += 1
            t0 = time.perf_counter()
            try:
                await op(number)
            except Exception as exc:
                run.errors += 1
                run.first_error = run.first_error or f"{type(exc).__name__}: {exc}"[:300]
            else:
                run.latencies.append(time.perf_counter() - t0)
            done += 1
            if progress and (done % step == 0 or done == run.planned):
                elapsed = time.perf_counter() - start
                say(
                    f"  {run.label:<10} {done:>6}/{run.planned}  {done / elapsed:7.1f}/s  errors {run.errors}"
                )

    await asyncio.gather(*(lane(i) for i in range(min(concurrency, run.planned))))
    run.wall_s = time.perf_counter() - start
    if issued < run.planned:
        say(f"  {run.label}: time limit reached after {issued} of {run.planned}")
    return run


# Child processes: the HTTP load generator and the worker ----------------------------------------


def child_command(role: str) -> list[str]:
    return [sys.executable, "-m", "bench.deliveries", "--role", role]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


async def read_line(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    return (await stream.readline()).decode()


class HttpConnection:
    """One keep-alive HTTP/1.1 connection with the request pre-encoded: the lightest client that can
    send a real request, so the load generator's CPU stays small next to the server's.

    It understands what uvicorn answers here: a status line, headers, a Content-Length body.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.writer is not None:
            try:
                return await self.exchange(data)
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed the idle connection (uvicorn's keep-alive timeout) before it
                # read the request: send it again on a new one, as HTTP clients do.
                pass
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return await self.exchange(data)

    async def exchange(self, data: bytes) -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        try:
            self.writer.write(data)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, _, header_block = head.partition(b"\r\n")
            status = int(status_line.split(b" ", 2)[1])
            length, close = 0, False
            for line in header_block.split(b"\r\n"):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    raise RuntimeError("chunked responses are not supported by this load generator")
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            body = await self.reader.readexactly(length)
        except BaseException:
            await self.close()
            raise
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def encode_post(host: str, path: str, token: str, body: bytes, key: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Idempotency-Key: {key}\r\n\r\n"
    ).encode() + body


async def http_job(job: dict[str, Any], connections: dict[int, HttpConnection]) -> Run:
    """POST `job["n"]` deliveries; `connections` holds a keep-alive connection per lane, kept across jobs.

    With several API processes (job["urls"]), lane i talks to process i mod n, as a load balancer would.
    """
    servers = [(u.host, u.port or 80) for u in map(httpx.URL, job["urls"])]
    body = json.dumps(job["body"], separators=(",", ":")).encode()

    async def post(lane: int) -> None:
        host, port = servers[lane % len(servers)]
        if lane not in connections:
            connections[lane] = HttpConnection(host, port)
        data = encode_post(f"{host}:{port}", "/api/v1/deliveries", job["token"], body, uuid.uuid4().hex)
        status, answer = await asyncio.wait_for(connections[lane].request(data), REQUEST_TIMEOUT_S)
        if status != 201:
            raise RuntimeError(f"HTTP {status}: {answer[:200].decode(errors='replace')}")

    deadline = time.monotonic() + job["seconds"]
    cpu0 = cpu_seconds()
    run = await drive(Run("api", job["round"], job["n"]), job["concurrency"], post, deadline, job["progress"])
    run.load_cpu_s = cpu_seconds() - cpu0
    return run


async def http_load_role() -> None:
    """Child: take jobs (JSON lines) on stdin, POST deliveries, answer with progress and a result line."""
    connections: dict[int, HttpConnection] = {}
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            run = await http_job(json.loads(line), connections)
            say(RESULT + json.dumps(asdict(run)))
    finally:
        for connection in connections.values():
            await connection.close()


class HttpLoad:
    """The parent's handle on the load-generator child."""

    def __init__(
        self, urls: list[str], token: str, body: dict[str, Any], concurrency: int, api_pids: list[int]
    ) -> None:
        self.urls, self.token, self.body, self.concurrency = urls, token, body, concurrency
        self.api_pids = api_pids  # API processes besides this one, whose CPU counts as the API's
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *child_command("http"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
            env=child_env(),
        )

    async def run(self, round_no: int, n: int, deadline: float, progress: bool = True) -> Run:
        assert self.proc is not None
        assert self.proc.stdin is not None
        seconds = max(0.0, deadline - time.monotonic())
        job = {
            "urls": self.urls,
            "token": self.token,
            "body": self.body,
            "round": round_no,
            "n": n,
            "concurrency": self.concurrency,
            "seconds": seconds,
            "progress": progress,
        }
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        await self.proc.stdin.drain()
        cpu0 = cpu_seconds() + sum(map(process_cpu_seconds, self.api_pids))
        async with asyncio.timeout(seconds + REQUEST_TIMEOUT_S + 30):
            while line := await read_line(self.proc.stdout):
                if line.startswith(RESULT):
                    run = Run(**json.loads(line[len(RESULT) :]))
                    run.cpu_s = cpu_seconds() + sum(map(process_cpu_seconds, self.api_pids)) - cpu0
                    return run
                say(line.rstrip("\n"))
        raise RuntimeError(f"the load generator exited with code {await self.proc.wait()}")

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # EOF: the child closes its connections and exits
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def bench_settings(config: dict[str, Any]) -> Settings:
    return Settings(
        env="test",
        data_dir=Path(config["data_dir"]),
        database_url=config["database_url"],
        redis_url=None,
        mongodb_url=None,
        temporal_address=config["temporal_address"],
        temporal_namespace=config["namespace"],
        temporal_task_queue=config["task_queue"],
        access_token_ttl_seconds=3600,
        # One client sends everything from one address as one user: limits far above the load, so
        # they never answer 429, yet every request still pays for being counted.
        rate_limit_ip=100_000_000,
        rate_limit_user=100_000_000,
        worker_metrics_port=0,
        temporal_metrics_port=0,
        # A pool as large as the requests in flight (WAYBILL_DB_POOL_SIZE, as a deployment sizes it):
        # with the default 10 (+10 overflow) bursts above 10 open and close connections all the time.
        db_pool_size=max(10, int(config.get("concurrency", 10))),
    )


async def worker_role() -> None:
    """Child: run a worker with the settings on stdin's first line until stdin closes."""
    logging.basicConfig(level=logging.WARNING, format="worker %(levelname)s %(name)s: %(message)s")
    settings = bench_settings(json.loads(await asyncio.to_thread(sys.stdin.readline)))
    client = await connect(settings)
    resources = await Resources.open(settings, TemporalConnector(settings, client))
    try:
        async with build_workers(client, resources, ["default"])[0]:
            say(READY)
            while await asyncio.to_thread(sys.stdin.readline):
                pass
    finally:
        await resources.close()


async def api_role() -> None:
    """Child: one more API process (own engine and Temporal client, like another `waybill api`
    replica) on the port in stdin's first line, until stdin closes."""
    logging.basicConfig(level=logging.WARNING, format="api %(levelname)s %(name)s: %(message)s")
    config = json.loads(await asyncio.to_thread(sys.stdin.readline))
    settings = bench_settings(config)
    client = await connect(settings)
    resources = await Resources.open(settings, TemporalConnector(settings, client))
    api = ApiService(resources, "127.0.0.1", int(config["port"]))
    try:
        await api.start()
        say(READY)
        while await asyncio.to_thread(sys.stdin.readline):
            pass
    finally:
        await api.stop()
        await resources.close()


@contextlib.asynccontextmanager
async def api_processes(config: dict[str, Any], count: int) -> AsyncIterator[list[tuple[int, int]]]:
    """`count` API child processes: [(pid, port)]."""
    async with contextlib.AsyncExitStack() as stack:
        found = []
        for _ in range(count):
            port = free_port()
            pid = await stack.enter_async_context(child_process("api", {**config, "port": port}))
            found.append((pid, port))
        yield found


@contextlib.asynccontextmanager
async def worker_process(config: dict[str, Any]) -> AsyncIterator[None]:
    async with child_process("worker", config):
        yield


@contextlib.asynccontextmanager
async def child_process(role: str, config: dict[str, Any]) -> AsyncIterator[int]:
    """A child in `role`, given `config` on stdin, once it said it is ready: its pid."""
    proc = await asyncio.create_subprocess_exec(
        *child_command(role),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=child_env(),
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write((json.dumps(config) + "\n").encode())
        await proc.stdin.drain()
        async with asyncio.timeout(60):
            while (line := await read_line(proc.stdout)).strip() != READY:
                if not line:
                    raise RuntimeError(f"the {role} process exited with code {await proc.wait()}")
        yield proc.pid
    finally:
        proc.stdin.close()  # the child shuts down gracefully on EOF
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# Set-up ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def delivery_body() -> dict[str, Any]:
    """The request body every create sends (no external_ref, so no by-reference lookup)."""
    start = datetime.now(UTC) + timedelta(hours=1)
    return {
        "dropoff": {
            "address": "Unter den Linden 1, Berlin",
            "location": {"lat": 52.52, "lon": 13.405},
            "windows": [{"start": start.isoformat(), "end": (start + timedelta(hours=4)).isoformat()}],
            "contact": {"name": "Ms Recipient", "phone": "+49 30 1234"},
        },
        "size": {"weight_kg": 2.5, "units": 1},
    }


async def make_dispatcher(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[uuid.UUID, str, str]:
    """A fresh organization with one dispatcher: (organization id, e-mail, password)."""
    tag = uuid.uuid4().hex[:10]
    password = secrets.token_urlsafe(16)
    email = f"bench-dispatcher-{tag}@example.test"
    async with sessionmaker() as session:
        org = Organization(name=f"Bench {tag}", slug=f"bench-{tag}")
        session.add(org)
        await session.flush()
        session.add(
            User(
                organization_id=org.id,
                email=email,
                name="Bench dispatcher",
                role=Role.DISPATCHER.value,
                password_hash=hash_password(password),
            )
        )
        await session.commit()
        return org.id, email, password


async def recorded_count(sessionmaker: async_sessionmaker[AsyncSession], org: uuid.UUID) -> int:
    """Deliveries of `org` whose "created" transition the worker has fully recorded (notify runs last)."""
    async with sessionmaker() as session:
        stmt = select(func.count()).where(
            NotificationOutbox.organization_id == org, NotificationOutbox.event == "created"
        )
        return int((await session.execute(stmt)).scalar_one())


async def drain(
    sessionmaker: async_sessionmaker[AsyncSession], org: uuid.UUID, expected: int, timeout: float
) -> float:
    """Wait until the worker has recorded `expected` deliveries; the seconds it took."""
    start = time.perf_counter()
    seen = 0
    while time.perf_counter() - start < timeout:
        seen = await recorded_count(sessionmaker, org)
        if seen >= expected:
            return time.perf_counter() - start
        await asyncio.sleep(0.2)
    say(f"  drain: the worker recorded {seen} of {expected} within {timeout:.0f}s; going on")
    return time.perf_counter() - start


@contextlib.asynccontextmanager
async def temporal_client(address: str | None, namespace: str) -> AsyncIterator[tuple[Client, str]]:
    """A client on TEMPORAL_ADDRESS, or on a fresh in-memory dev server: (client, description)."""
    if address:
        client = await Client.connect(address, namespace=namespace, data_converter=DATA_CONVERTER)
        await ensure_search_attributes(client, namespace)
        yield client, f"server at {address}"
        return
    binary = temporal_binary()
    env = await WorkflowEnvironment.start_local(
        namespace=namespace,
        dev_server_existing_path=str(binary),
        dev_server_log_format="json",
        data_converter=DATA_CONVERTER,
        search_attributes=[SearchAttributeKey.for_keyword(name) for name in KEYWORD_ATTRIBUTES],
    )
    try:
        yield env.client, f"bundled dev server, in memory ({cli_version(binary)})"
    finally:
        await env.shutdown()


def cli_version(binary: Path) -> str:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "temporal CLI"
    return out.strip().splitlines()[0] if out.strip() else "temporal CLI"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


async def database_version(resources: Resources) -> str:
    if resources.engine.dialect.name == "postgresql":
        async with resources.engine.connect() as conn:
            version = str((await conn.execute(text("SHOW server_version"))).scalar_one())
        return f"PostgreSQL {version.split()[0]} (same machine)"
    return f"SQLite {sqlite3.sqlite_version} (temporary file, WAL)"


def package_versions() -> str:
    found = []
    for name in ("temporalio", "fastapi", "uvicorn", "sqlalchemy", "httpx"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    return ", ".join(found) + f"; uvicorn runs on the {eventloop.loop_name()} loop + {http}"


# The benchmark --------------------------------------------------------------------------------


@dataclass
class Outcome:
    runs: list[Run]
    facts: dict[str, str]
    command: str
    backend: str

    def side(self, side: str) -> list[Run]:
        return [r for r in self.runs if r.side == side]

    def median(self, side: str, attr: str) -> float:
        runs = self.side(side)
        return statistics.median(float(getattr(r, attr)) for r in runs) if runs else float("nan")

    @property
    def ratio(self) -> float:
        raw = self.median("raw", "rate")
        return self.median("api", "rate") / raw if raw else float("nan")

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)


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
        "machine": f"{os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
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
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    for key, value in facts.items():
        say(f"{key:>9}: {value}")
    return facts


async def measure(
    args: argparse.Namespace,
    deadline: float,
    client: Client,
    resources: Resources,
    extra_apis: Sequence[tuple[int, int]] = (),
) -> list[Run]:
    settings = resources.settings
    org, email, password = await make_dispatcher(resources.sessionmaker)
    port = free_port()
    api = ApiService(resources, "127.0.0.1", port)
    await api.start()
    load: HttpLoad | None = None
    try:
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as http:
            login = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
            login.raise_for_status()
            token = login.json()["access_token"]
            me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            me.raise_for_status()
        payload = delivery_body()
        spec = to_spec(DeliveryCreate.model_validate(payload))
        options = delivery_options(settings)
        created_by = f"{Role.DISPATCHER.value}:{me.json()['id']}"

        async def start_one(_: int) -> None:
            delivery_id = uuid7()
            params = DeliveryInput(
                delivery_id=str(delivery_id),
                organization_id=str(org),
                spec=spec,
                created_by=created_by,
                created_at=datetime.now(UTC),
                options=options,
            )
            await start_delivery_workflow(
                client, params, settings.temporal_task_queue, timedelta(seconds=REQUEST_TIMEOUT_S)
            )

        async def one_run(side: str, round_no: int, n: int, progress: bool = True) -> Run:
            assert load is not None
            if side == "api":
                return await load.run(round_no, n, deadline, progress)
            cpu0 = cpu_seconds()
            run = await drive(Run("raw", round_no, n), args.concurrency, start_one, deadline, progress)
            run.cpu_s = cpu_seconds() - cpu0
            return run

        urls = [base_url, *(f"http://127.0.0.1:{port}" for _, port in extra_apis)]
        load = HttpLoad(urls, token, payload, args.concurrency, [pid for pid, _ in extra_apis])
        await load.start()
        started = 0
        say(f"warm-up: {WARMUP} of each")
        for side in SIDES:
            warm = await one_run(side, 0, WARMUP, progress=False)
            started += warm.ok
            if warm.errors:
                raise RuntimeError(f"warm-up of {side} failed: {warm.first_error}")
        if args.worker != "none":
            await drain(resources.sessionmaker, org, started, DRAIN_TIMEOUT_S)

        runs: list[Run] = []
        for round_no in range(1, args.rounds + 1):
            for side in SIDES if round_no % 2 else tuple(reversed(SIDES)):
                if time.monotonic() >= deadline:
                    say("time limit reached: no further runs")
                    return runs
                say(f"{side} run {round_no}: {args.n} deliveries, concurrency {args.concurrency}")
                run = await one_run(side, round_no, args.n)
                started += run.ok
                if args.worker != "none":
                    wait = max(1.0, min(DRAIN_TIMEOUT_S, deadline - time.monotonic()))
                    run.drain_s = await drain(resources.sessionmaker, org, started, wait)
                runs.append(run)
                say(run_line(run))
                if run.first_error:
                    say(f"     first error: {run.first_error}")
        return runs
    finally:
        if load is not None:
            await load.stop()
        await api.stop()


# Reporting ------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"  # NaN check


def run_line(run: Run) -> str:
    return (
        f"  -> {run.ok} in {run.wall_s:.2f}s = {run.rate:.1f}/s, p50 {run.p50_ms:.1f} ms, "
        f"p99 {run.p99_ms:.1f} ms, errors {run.errors}, CPU {run.cpu_ms:.1f} ms/delivery"
        + (f" (+ load generator {run.load_cpu_ms:.1f})" if run.side == "api" else "")
        + f"; worker drained in {run.drain_s:.1f}s"
    )


def runs_table(runs: Sequence[Run]) -> list[str]:
    lines = [
        "| side | run | deliveries | errors | wall s | rate /s | p50 ms | p99 ms | CPU ms/delivery "
        "| load generator CPU ms/delivery |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in runs:
        load = _fmt(r.load_cpu_ms) if r.side == "api" else "–"
        lines.append(
            f"| {r.side} | {r.round} | {r.ok} | {r.errors} | {r.wall_s:.2f} | {_fmt(r.rate)} | "
            f"{_fmt(r.p50_ms)} | {_fmt(r.p99_ms)} | {_fmt(r.cpu_ms)} | {load} |"
        )
    return lines


def summary_table(outcome: Outcome) -> list[str]:
    lines = [
        "| median of runs | API (`POST /api/v1/deliveries`) | raw `start_workflow` | API / raw |",
        "|---|--:|--:|--:|",
    ]
    rows = (("rate /s", "rate"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("CPU ms/delivery", "cpu_ms"))
    for label, attr in rows:
        a, b = outcome.median("api", attr), outcome.median("raw", attr)
        lines.append(f"| {label} | {_fmt(a)} | {_fmt(b)} | {_fmt(a / b if b else float('nan'), 2)}x |")
    return lines


def verdict(outcome: Outcome) -> str:
    ratio = outcome.ratio
    met = "meets" if ratio >= GOAL_RATIO else "is below"
    return f"API/raw rate ratio **{ratio:.2f}x**, which {met} the goal of {GOAL_RATIO}x."


def print_report(outcome: Outcome) -> None:
    say()
    say(f"Results ({outcome.backend}):")
    for line in runs_table(outcome.runs):
        say(line)
    say()
    for line in summary_table(outcome):
        say(line)
    say()
    say(verdict(outcome).replace("**", ""))


# docs/benchmarks.md ---------------------------------------------------------------------------

INTRO = """# Benchmarks

Numbers measured with the scripts in `bench/`, on the machine named with each result. Each
section says what is measured and the exact command; re-run it to refresh the section
(`--write-docs` rewrites only its own marked blocks and leaves the rest of this file alone).
"""

SECTION_HEAD = """## Deliveries created per second: API vs raw `start_workflow`

`bench/deliveries.py` compares, in one run and on one Temporal server, creating deliveries through
the REST API (`POST /api/v1/deliveries` over HTTP, each request with its own `Idempotency-Key`)
with starting the same workflow directly (`client.start_workflow(DeliveryWorkflow.run,
DeliveryInput(...))` on the API's own Temporal client, with the same task queue and workflow-id
policies). Goal: the API reaches at least **0.8x** the raw start rate.

How it runs:

- The benchmark process hosts the API (uvicorn on a free loopback port, the same app and
  resources as `waybill api`, access log off as there) and issues the raw starts. The HTTP
  requests come from a child process, so the load generator does not share the API's event loop:
  plain asyncio HTTP/1.1, one keep-alive connection per concurrent lane, the request pre-encoded
  (about 0.1–0.2 ms of CPU per request, reported as "load generator CPU"; httpx cost 2.4 ms, as
  much as a tenth of what it measured). The bundled Temporal dev server (in memory) is another
  process, and so is the worker unless `--worker inprocess|none`. On a small machine they all
  share its CPUs.
- `--api-processes N` spreads the lanes over N API processes (this one and N-1 children, each
  with its own engine and Temporal client, like replicas behind a load balancer; their CPU is
  counted as the API's). The raw starts stay in one process: its client needs under 1 ms of CPU
  per start and is not what limits the raw rate (the server is). The default and the figures
  below use one API process.
- The worker runs every started workflow as it arrives (four activities per new delivery:
  projection update, event append, bus publish, outbox insert): the same work per delivery on both
  sides. After each phase the benchmark waits until the worker has recorded every delivery started
  so far ("drained"), so no phase inherits the other's backlog.
- Phases alternate A B B A … (`--rounds`) against drift; 20 of each go first as warm-up and are not
  counted. Each side is summarised by the median over its runs.
- Latency is per operation as the client sees it: for the API the whole HTTP exchange, for raw
  the `start_workflow` call. Errors are counted and left out of the rate. "CPU ms/delivery" is the
  CPU time of the benchmark process (API server or raw client) per delivery created.
- Per request the API does more than the raw start: HTTP parsing and JSON/pydantic validation,
  JWT verification, the user check (`SELECT users` at most every 5 s per user and process), the
  idempotency claim and the projection row (on PostgreSQL one autocommit statement, `WITH claim
  AS (INSERT … ON CONFLICT DO NOTHING RETURNING) INSERT … SELECT FROM claim`; on SQLite two),
  then the same `start_workflow`, and the response (serialisation, metrics and request-id
  middleware). The API's connection pool is sized to the concurrency (`db_pool_size`).
- `--database-url` should name a database made for the run (for example `CREATE DATABASE
  waybill_bench`, dropped afterwards): the benchmark migrates it and adds an organization and
  thousands of deliveries. Without it, a temporary SQLite file is used and deleted.
"""

BEGIN, END = "<!-- bench:deliveries:{}:begin -->", "<!-- bench:deliveries:{}:end -->"


def backend_block(outcome: Outcome) -> str:
    title = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(outcome.backend, outcome.backend)
    lines = [f"### {title}", "", "```sh", outcome.command, "```", ""]
    lines += [f"- {key}: {value}" for key, value in outcome.facts.items()]
    lines += [
        "",
        *summary_table(outcome),
        "",
        verdict(outcome),
        "",
        "Every run:",
        "",
        *runs_table(outcome.runs),
    ]
    api_cpu, raw_cpu = outcome.median("api", "cpu_ms"), outcome.median("raw", "cpu_ms")
    if api_cpu == api_cpu and api_cpu > 0:  # not NaN
        lines += [
            "",
            f"The API process spent {api_cpu:.1f} ms of CPU per delivery (one event loop, so at most "
            f"about {1000 / api_cpu:.0f} deliveries/s per API process on this CPU if nothing else ran); "
            f"a raw start cost the client {raw_cpu:.1f} ms.",
        ]
    drains = [r.drain_s for r in outcome.runs]
    if drains and outcome.facts.get("worker", "").startswith("in "):
        lines += [
            "",
            f"After each phase the worker needed {min(drains):.1f}–{max(drains):.1f}s more to drain.",
        ]
    return "\n".join(lines) + "\n"


def _replace_block(doc: str, name: str, content: str, after: str | None) -> str:
    begin, end = BEGIN.format(name), END.format(name)
    block = f"{begin}\n{content.rstrip()}\n{end}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(doc):
        return pattern.sub(lambda _: block, doc, count=1)
    if after is not None:
        anchor = END.format(after)
        index = doc.find(anchor)
        if index >= 0:
            index += len(anchor) + 1
            return doc[:index] + "\n" + block + doc[index:]
    return doc.rstrip() + "\n\n" + block


def write_docs(outcome: Outcome, path: Path = DOCS_PATH) -> None:
    """Rewrite this benchmark's marked blocks in `path`; everything else in the file stays."""
    doc = path.read_text() if path.exists() else INTRO
    doc = _replace_block(doc, "intro", SECTION_HEAD, None)
    # Backends keep a fixed order (SQLite, then PostgreSQL), each replaced only by its own run.
    previous = "intro"
    for backend in ("sqlite", "postgresql"):
        if backend == outcome.backend:
            doc = _replace_block(doc, backend, backend_block(outcome), previous)
        if BEGIN.format(backend) in doc:
            previous = backend
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    say(f"wrote {path}")


# Entry point ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.deliveries",
        description="Deliveries per second through the API vs raw client.start_workflow.",
    )
    parser.add_argument("--n", type=int, default=1000, help="deliveries per run and side (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, alternating (default 2)")
    parser.add_argument("--database-url", help="PostgreSQL or SQLite URL (default: a temporary SQLite file)")
    parser.add_argument(
        "--worker", choices=WORKER_MODES, default="process", help="where the worker runs (default: process)"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=900.0,
        help="start no new phase after this many seconds (900: room for 2 rounds and their drains)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update docs/{DOCS_PATH.name}")
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="API processes (replicas) the requests are spread over; raw starts stay in one (default 1)",
    )
    parser.add_argument("--role", choices=("http", "worker", "api"), help=argparse.SUPPRESS)  # children
    args = parser.parse_args(argv)
    for name in ("n", "concurrency", "rounds", "api_processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.n > 100_000 or args.concurrency > 1000:
        parser.error("--n is capped at 100000 and --concurrency at 1000")
    return args


def command_line(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python -m bench.deliveries", f"--n {args.n}", f"--concurrency {args.concurrency}"]
    parts.append(f"--rounds {args.rounds}")
    if args.database_url:
        parts.append(f"--database-url {redact_url(args.database_url)}")
    if args.worker != "process":
        parts.append(f"--worker {args.worker}")
    if args.api_processes != 1:
        parts.append(f"--api-processes {args.api_processes}")
    if args.write_docs:
        parts.append("--write-docs")
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "http":
        eventloop.run(http_load_role())
        return 0
    if args.role == "api":
        eventloop.run(api_role())
        return 0
    if args.role == "worker":
        eventloop.run(worker_role())
        return 0
    command = command_line(args)
    # A safety net above --time-limit: set-up, drains and requests in flight are bounded as well.
    hard_limit = args.time_limit + 2 * DRAIN_TIMEOUT_S + 120
    try:
        # The event loop `waybill api` uses (uvloop when installed): the API is hosted in this process.
        outcome = eventloop.run(asyncio.wait_for(benchmark(args, command), hard_limit))
    except TimeoutError:
        say(f"gave up after {hard_limit:.0f}s")
        return 2
    print_report(outcome)
    if args.write_docs:
        if outcome.errors or not outcome.side("api") or not outcome.side("raw"):
            say("not writing the docs: a run had errors or a side did not run")
            return 1
        write_docs(outcome)
    return 1 if outcome.errors else 0


if __name__ == "__main__":
    sys.exit(main())
