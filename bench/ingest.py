"""Position ingest through the socket server, side by side with a bare `websockets` server.

    .venv/bin/python -m bench.ingest [--connections 2000] [--rate 5000] [--seconds 12]
                                     [--database-url URL] [--redis-url URL] [--loaders 2]
                                     [--servers bare,waybill] [--write-docs]

Sets up a PostgreSQL database (created if missing, migrated; one organization with K drivers bound
to K vehicles and a dispatcher, written directly; access tokens minted with the project's
TokenService), then for each server in turn:

  bare     a `websockets` asyncio server (same loop, same connection options) that parses each
           frame and acknowledges its seqs, nothing else, in a child process
  waybill  `waybill sockets` itself, as a child process, on that database and on Redis
           (`--redis-url`, a database number of its own; the bench's keys carry their own prefix)

and against each: K driver sockets (split over `--loaders` child processes) authenticate and sit idle
(the server's RSS before and after, divided by K, is the memory per idle connection), send one
position each (warm-up), then three runs:

  live max      each socket streams one position per frame and keeps `--window` frames unacknowledged
                (closed loop): the most the server sustains
  live RATE/s   RATE positions per second in all (default 5,000), one per frame, spread evenly over
                the sockets (open loop)
  backlog max   frames of `--batch` positions (default 100), as a phone uploads its backlog after a
                gap, `--batch-window` frames unacknowledged per socket (closed loop)

On the waybill server one dispatcher socket, in a child process of its own, is subscribed to the
fleet; for every position it receives it notes the time since the driver sent it (the send time is
encoded in the position's `seq`, see bench/wsload.py). Rates count acknowledged positions between
the end of the ramp and the end of the run; latencies are of positions sent in that interval. The
server's CPU time per position comes from /proc. Bounded in time (each run `--seconds`, then at most
15 s for the last acknowledgements); everything stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import re
import secrets
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.wsload import DRAIN_S, QUIET_S, client_role, hist_merge, hist_percentile

REPO = Path(__file__).resolve().parents[1]
DOCS_PATH = REPO / "docs" / "benchmarks.md"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/waybill_ingest_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
REDIS_PREFIX = "waybill-bench-ingest:"
WAYBILL = str(Path(sys.executable).parent / "waybill")
STORE_VARS = ("DATABASE_URL", "REDIS_URL", "MONGODB_URL", "TEMPORAL_ADDRESS", "TEST_DATABASE_URL")
GOAL_RATE = 20_000.0
GOAL_P99_MS = 100.0
GOAL_IDLE_KIB = 50.0
READY = "@ready"
SERVERS = ("bare", "waybill")
RUNS = ("live-max", "live-rate", "backlog-max")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def is_waybill(kind: str) -> bool:
    return kind.startswith("waybill")


def processes_of(kind: str) -> int:
    """`waybill-x2`: `waybill sockets --processes 2`."""
    return int(kind.split("-x", 1)[1]) if "-x" in kind else 1


def label(kind: str) -> str:
    if kind == "bare":
        return "bare `websockets`"
    n = processes_of(kind)
    return "`waybill sockets`" if n == 1 else f"`waybill sockets --processes {n}`"


def server_kinds(args: argparse.Namespace) -> list[str]:
    """The servers to measure, in order: `waybill` once per `--processes` count."""
    kinds: list[str] = []
    for server in args.servers:
        if server == "waybill":
            kinds += ["waybill" if n == 1 else f"waybill-x{n}" for n in args.processes]
        else:
            kinds.append(server)
    return kinds


def say(message: str = "") -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARS and not k.startswith("WAYBILL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


# /proc ------------------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (`waybill sockets --processes N`: the supervisor and its replicas)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                pids += process_tree(int(child))
    return pids


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):  # gone since it was listed
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of a process and its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:  # gone since it was listed
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


# The bare server (a child role) -------------------------------------------------------------------


async def bare_role(port: int, max_size: int) -> None:
    """Child: a `websockets` server that parses every frame and acknowledges its seqs; ends on SIGTERM."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws: ServerConnection) -> None:
        try:
            first = json.loads(await ws.recv())
            if first.get("type") != "auth":
                await ws.close(4401, "auth_required")
                return
            await ws.send(json.dumps({"type": "ready", "role": "driver"}))
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "position":
                    seqs = [msg["seq"]]
                else:
                    seqs = [p["seq"] for p in msg["positions"]]
                await ws.send(json.dumps({"type": "ack", "seqs": seqs}))
        except ConnectionClosed:
            pass

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with serve(
        handler, "127.0.0.1", port, max_size=max_size, ping_interval=25, ping_timeout=30, compression=None
    ):
        say(READY)
        await stop.wait()


# Child processes ----------------------------------------------------------------------------------


class Child:
    """A load-generator child (`--role client`): jobs in, `@tick`/`@result` lines out."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.ticks: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._results: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, ticks: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        self.ticks = ticks
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.ingest",
            "--role",
            "client",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
            env=child_env(),
            limit=64 * 1024 * 1024,  # result lines carry latency histograms
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        assert self.ticks is not None
        while line := (await self.proc.stdout.readline()).decode():
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "@result":
                await self._results.put(json.loads(rest))
            elif kind in ("@tick", "@dtick"):
                await self.ticks.put((kind, json.loads(rest)))
            else:
                say(f"  [{self.name}] {line.rstrip()}")
        await self._results.put({"failed": f"{self.name} exited with code {await self.proc.wait()}"})

    async def ask(self, job: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        await self.proc.stdin.drain()
        result = await asyncio.wait_for(self._results.get(), timeout)
        if "failed" in result:
            raise RuntimeError(f"{self.name}: {result['failed']}")
        return result

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class ServerProcess:
    def __init__(self, kind: str, port: int, env: dict[str, str], tmp: Path) -> None:
        self.kind, self.port, self.env, self.tmp = kind, port, env, tmp
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = tmp / f"{kind}.log"
        self.exit_s = float("nan")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        log = self.log_path.open("wb")
        if self.kind == "bare":
            cmd = [sys.executable, "-m", "bench.ingest", "--role", "bare", "--port", str(self.port)]
            cwd = REPO
        else:
            cmd = [WAYBILL, "sockets"]
            cwd = self.tmp  # no stray .env from the checkout
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=cwd, env=self.env
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                break
            if await self._healthy():
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the {self.kind} server did not come up:\n{self.log_tail()}")

    async def _healthy(self) -> bool:
        """The server answers; with `--processes N`, every replica does, each on its metrics port (which
        it opens after the shared port), so that the connections are spread over all of them."""
        if not await self._answers(self.port):
            return False
        processes = int(self.env.get("WAYBILL_SOCKETS_PROCESSES", "1"))
        base = int(self.env.get("WAYBILL_SOCKETS_METRICS_PORT", "0"))
        for i in range(processes if processes > 1 else 0):
            if not await self._answers(base + i):
                return False
        return True

    async def _answers(self, port: int) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        if self.kind == "bare":
            writer.close()
            return True
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        try:
            head = await asyncio.wait_for(reader.read(100), 5)
        except (OSError, TimeoutError):
            head = b""
        writer.close()
        return head.startswith(b"HTTP/1.1 200")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def stop(self) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        self.exit_s = time.monotonic() - t0
        return code


# Set-up -----------------------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in `url` if it does not exist."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return
    name = parsed.database
    assert name, "the database URL names no database"
    admin = parsed.set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            say(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')


@dataclass
class Fleet:
    organization_id: uuid.UUID
    driver_users: list[uuid.UUID]
    dispatcher: uuid.UUID


async def make_fleet(database_url: str, k: int) -> Fleet:
    """One organization, K vehicles each with a driver (a user with role `driver`), one dispatcher."""
    from sqlalchemy import insert

    from db.models import Driver, Organization, User, Vehicle
    from db.session import create_engine, create_sessionmaker
    from domain.ids import uuid7
    from domain.roles import Role
    from plumbing.settings import to_async_url

    engine = create_engine(to_async_url(database_url))
    try:
        tag = uuid.uuid4().hex[:10]
        org = uuid7()
        # Nobody logs in with a password here: one placeholder hash for every user.
        pw = "$argon2id$v=19$m=65536,t=3,p=4$bench$bench"
        users = [uuid7() for _ in range(k)]
        vehicles = [uuid7() for _ in range(k)]
        dispatcher = uuid7()
        now = datetime.now(UTC)
        stamp = {"created_at": now, "updated_at": now}
        async with create_sessionmaker(engine)() as session:
            await session.execute(
                insert(Organization).values(id=org, name=f"Bench ingest {tag}", slug=f"bench-{tag}", **stamp)
            )
            user_rows = [
                {
                    "id": u,
                    "organization_id": org,
                    "email": f"bench-driver-{i}-{tag}@example.test",
                    "name": f"Driver {i}",
                    "role": Role.DRIVER.value,
                    "password_hash": pw,
                    "active": True,
                    **stamp,
                }
                for i, u in enumerate(users)
            ]
            user_rows.append(
                {
                    "id": dispatcher,
                    "organization_id": org,
                    "email": f"bench-dispatcher-{tag}@example.test",
                    "name": "Dispatcher",
                    "role": Role.DISPATCHER.value,
                    "password_hash": pw,
                    "active": True,
                    **stamp,
                }
            )
            await session.execute(insert(User), user_rows)
            await session.execute(
                insert(Vehicle),
                [
                    {
                        "id": v,
                        "organization_id": org,
                        "name": f"Van {i}",
                        "skills": [],
                        "active": True,
                        **stamp,
                    }
                    for i, v in enumerate(vehicles)
                ],
            )
            await session.execute(
                insert(Driver),
                [
                    {
                        "id": uuid7(),
                        "organization_id": org,
                        "name": f"Driver {i}",
                        "user_id": u,
                        "vehicle_id": v,
                        "skills": [],
                        "active": True,
                        **stamp,
                    }
                    for i, (u, v) in enumerate(zip(users, vehicles, strict=True))
                ],
            )
            await session.commit()
        return Fleet(org, users, dispatcher)
    finally:
        await engine.dispose()


async def forget_positions(database_url: str, org: uuid.UUID) -> int:
    """Delete the run's position history so that the bench database does not grow run after run."""
    from sqlalchemy import delete

    from db.models.history import PositionRow
    from db.session import create_engine
    from plumbing.settings import to_async_url

    engine = create_engine(to_async_url(database_url))
    try:
        async with engine.begin() as conn:
            result = await conn.execute(delete(PositionRow).where(PositionRow.organization_id == org))
            return int(result.rowcount or 0)
    finally:
        await engine.dispose()


async def clear_redis(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=REDIS_PREFIX + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# Measuring ----------------------------------------------------------------------------------------


@dataclass
class RunSpec:
    name: str  # live-max, live-rate, backlog-max
    label: str
    per_frame: int
    rate: float | None
    window: int


@dataclass
class RunResult:
    server: str
    spec: str
    label: str
    sent: int = 0
    acked: int = 0
    acked_in_window: int = 0
    window_s: float = 0.0
    filtered: int = 0
    errors: int = 0
    first_error: str | None = None
    blocked: int = 0
    unacked_frames: int = 0
    closed: int = 0
    ack_hist: dict[int, int] = field(default_factory=dict)
    dispatch_hist: dict[int, int] = field(default_factory=dict)
    dispatch_received: int = 0
    dispatch_closed: bool = False
    server_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.acked_in_window / self.window_s if self.window_s else 0.0

    def ack_ms(self, q: float) -> float:
        return hist_percentile(self.ack_hist, q)

    def dispatch_ms(self, q: float) -> float:
        return hist_percentile(self.dispatch_hist, q)

    @property
    def measured(self) -> int:
        return sum(self.ack_hist.values())

    @property
    def cpu_share(self) -> float:
        """The server's CPU time over the measured interval, in % of one core."""
        return self.server_cpu_s / self.window_s * 100 if self.window_s else float("nan")

    @property
    def cpu_us(self) -> float:
        return self.server_cpu_s / self.acked_in_window * 1e6 if self.acked_in_window else float("nan")


@dataclass
class ServerResult:
    server: str
    connected: int = 0
    connect_s: float = 0.0
    rss_before: int = 0
    rss_after: int = 0
    runs: list[RunResult] = field(default_factory=list)
    exit_code: int | None = None
    exit_s: float = float("nan")

    @property
    def idle_kib(self) -> float:
        return (self.rss_after - self.rss_before) / self.connected / 1024 if self.connected else float("nan")


def run_specs(args: argparse.Namespace) -> list[RunSpec]:
    specs = [
        RunSpec("live-max", "live, max throughput", 1, None, args.window),
        RunSpec("live-rate", f"live, {args.rate:,.0f} positions/s", 1, float(args.rate), 1000),
        RunSpec("backlog-max", f"backlog, {args.batch}/frame, max", args.batch, None, args.batch_window),
    ]
    return [spec for spec in specs if spec.name in args.runs]


async def progress(ticks: asyncio.Queue[tuple[str, dict[str, Any]]], label: str, loaders: int) -> None:
    """Print one line per second: sent, acknowledged and received by the dispatcher."""
    second = 0
    sent = acked = received = 0
    seen = 0
    while True:
        kind, data = await ticks.get()
        if kind == "@dtick":
            received += data["received"]
            continue
        sent += data["sent"]
        acked += data["acked"]
        seen += 1
        if seen == loaders:
            second += 1
            say(
                f"  {label:<32} {second:>3}s  sent {sent:>8,}/s  acked {acked:>8,}/s"
                f"  dispatcher {received:>8,}/s"
            )
            sent = acked = received = seen = 0


async def bench_server(
    kind: str,
    args: argparse.Namespace,
    env: dict[str, str],
    tmp: Path,
    tokens: list[str],
    dispatcher_token: str,
    epoch: float,
) -> ServerResult:
    result = ServerResult(kind)
    port = free_port()
    server_env = child_env()
    if is_waybill(kind):
        from plumbing.ports import free_port_range

        server_env = {**env, "WAYBILL_SOCKETS_PORT": str(port)}
        if (processes := processes_of(kind)) > 1:
            server_env["WAYBILL_SOCKETS_PROCESSES"] = str(processes)
            server_env["WAYBILL_SOCKETS_METRICS_PORT"] = str(free_port_range(processes))
    server = ServerProcess(kind, port, server_env, tmp)
    ticks: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    loaders = [Child(f"load{i}") for i in range(args.loaders)]
    dispatcher = Child("dispatcher") if is_waybill(kind) else None
    children = loaders + ([dispatcher] if dispatcher else [])
    say(f"[{kind}] starting the server on port {port}")
    await server.start()
    try:
        for child in children:
            await child.start(ticks)
        if dispatcher is not None:
            await dispatcher.ask(
                {
                    "op": "dispatcher",
                    "host": "127.0.0.1",
                    "port": port,
                    "token": dispatcher_token,
                    "epoch": epoch,
                }
            )
        await asyncio.sleep(1.0)
        result.rss_before = rss_bytes(server.pid)
        say(f"[{kind}] RSS {result.rss_before / 2**20:.1f} MiB; connecting {len(tokens):,} drivers")
        t0 = time.monotonic()
        shares = [tokens[i :: args.loaders] for i in range(args.loaders)]
        answers = await asyncio.gather(
            *(
                child.ask(
                    {
                        "op": "connect",
                        "host": "127.0.0.1",
                        "port": port,
                        "tokens": share,
                        "first_index": i * 1_000_000,
                        "epoch": epoch,
                    },
                    timeout=300,
                )
                for i, (child, share) in enumerate(zip(loaders, shares, strict=True))
            )
        )
        result.connect_s = time.monotonic() - t0
        result.connected = sum(a["connected"] for a in answers)
        errors = [a["first_error"] for a in answers if a["errors"]]
        if errors:
            say(f"[{kind}] {sum(a['errors'] for a in answers)} connections failed, first: {errors[0]}")
        await asyncio.sleep(2.0)
        result.rss_after = rss_bytes(server.pid)
        say(
            f"[{kind}] {result.connected:,} connected in {result.connect_s:.1f}s; RSS "
            f"{result.rss_after / 2**20:.1f} MiB = {result.idle_kib:.1f} KiB per idle connection"
        )
        specs = [RunSpec("warm-up", "warm-up", 1, None, 1), *run_specs(args)]
        for spec in specs:
            run = await one_run(kind, spec, args, loaders, dispatcher, ticks, server.pid)
            if spec.name != "warm-up":
                result.runs.append(run)
                say(run_line(run))
        await asyncio.gather(*(child.ask({"op": "disconnect"}) for child in children))
    finally:
        for child in children:
            await child.stop()
        result.exit_code = await server.stop()
        result.exit_s = server.exit_s
        if result.exit_code not in (0, None):
            say(f"[{kind}] exited with code {result.exit_code}:\n{server.log_tail()}")
    return result


async def one_run(
    kind: str,
    spec: RunSpec,
    args: argparse.Namespace,
    loaders: list[Child],
    dispatcher: Child | None,
    ticks: asyncio.Queue[tuple[str, dict[str, Any]]],
    pid: int,
) -> RunResult:
    warm = spec.name == "warm-up"
    seconds = 1.0 if warm else args.seconds
    ramp = 0.0 if warm else args.ramp
    start = time.monotonic() + 0.3
    say(f"[{kind}] {spec.label}: {seconds:.0f}s" + ("" if warm else f" (first {ramp:.0f}s not counted)"))
    job = {
        "op": "run",
        "name": spec.name,
        "start": start,
        "ramp": ramp,
        "seconds": seconds,
        "per_frame": spec.per_frame,
        "rate": None if spec.rate is None else spec.rate / len(loaders),
        "window": spec.window,
    }
    if warm:
        job["rate"], job["window"] = 1e9, 1  # one frame per socket, then wait for the acks
        job["seconds"] = 0.05
    printer = None if warm else asyncio.create_task(progress(ticks, f"{kind} {spec.label}", len(loaders)))
    cpu_task = asyncio.create_task(_cpu_between(pid, start + ramp, start + seconds))
    collect = None
    if dispatcher is not None and not warm:
        collect = asyncio.create_task(
            dispatcher.ask(
                {
                    "op": "collect",
                    "from": start + ramp,
                    "to": start + seconds,
                    "until": start + seconds + DRAIN_S + QUIET_S,
                },
                timeout=seconds + 60,
            )
        )
    try:
        answers = await asyncio.gather(*(child.ask(job, timeout=seconds + 90) for child in loaders))
        dispatched = await collect if collect is not None else None
        cpu = await cpu_task
    finally:
        if printer is not None:
            printer.cancel()
        while not ticks.empty():
            ticks.get_nowait()
    run = RunResult(kind, spec.name, spec.label, server_cpu_s=cpu)
    for a in answers:
        for name in (
            "sent",
            "acked",
            "acked_in_window",
            "filtered",
            "errors",
            "blocked",
            "unacked_frames",
            "closed",
        ):
            setattr(run, name, getattr(run, name) + a[name])
        run.window_s = a["window_s"]
        run.first_error = run.first_error or a["first_error"]
        hist_merge(run.ack_hist, a["ack_hist"])
    if dispatched is not None:
        hist_merge(run.dispatch_hist, dispatched["hist"])
        run.dispatch_received = dispatched["received"]
        run.dispatch_closed = dispatched["closed"]
    return run


async def _cpu_between(pid: int, t1: float, t2: float) -> float:
    await asyncio.sleep(max(0.0, t1 - time.monotonic()))
    c1 = cpu_s(pid)
    await asyncio.sleep(max(0.0, t2 - time.monotonic()))
    return cpu_s(pid) - c1


# Reporting --------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"  # NaN check


def run_line(r: RunResult) -> str:
    line = (
        f"  -> {r.rate:,.0f} positions/s acknowledged; ack p50 {_fmt(r.ack_ms(50))} ms, p99 "
        f"{_fmt(r.ack_ms(99))} ms; server CPU {_fmt(r.cpu_us)} µs/position ({_fmt(r.cpu_share, 0)}% of a "
        f"core); sent {r.sent:,}, acked {r.acked:,}, filtered {r.filtered:,}, errors {r.errors}"
    )
    if is_waybill(r.server):
        line += (
            f"; dispatcher p50 {_fmt(r.dispatch_ms(50))} ms, p99 {_fmt(r.dispatch_ms(99))} ms, "
            f"received {r.dispatch_received:,} of {r.measured:,}"
        )
    if r.blocked:
        line += f"; {r.blocked:,} not sent (every socket's window full)"
    if r.first_error:
        line += f"\n     first error: {r.first_error}"
    return line


@dataclass
class Outcome:
    servers: list[ServerResult]
    facts: dict[str, str]
    command: str
    args: argparse.Namespace

    def server(self, kind: str) -> ServerResult | None:
        return next((s for s in self.servers if s.server == kind), None)

    def run(self, kind: str, spec: str) -> RunResult | None:
        s = self.server(kind)
        return next((r for r in s.runs if r.spec == spec), None) if s else None


def results_table(outcome: Outcome) -> list[str]:
    lines = [
        "| run | server | positions/s acked | ack p50 ms | ack p99 ms | dispatcher p50 ms "
        "| dispatcher p99 ms "
        "| dispatcher got | server CPU µs/position | server CPU % of a core |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for spec in run_specs(outcome.args):
        for kind in [s.server for s in outcome.servers]:
            r = outcome.run(kind, spec.name)
            if r is None:
                continue
            name = label(kind)
            ours = is_waybill(kind)
            got = f"{r.dispatch_received / r.measured:.1%}" if ours and r.measured else "—"
            d50 = _fmt(r.dispatch_ms(50)) if ours else "—"
            d99 = _fmt(r.dispatch_ms(99)) if ours else "—"
            lines.append(
                f"| {spec.label} | {name} | {r.rate:,.0f} | {_fmt(r.ack_ms(50))} | {_fmt(r.ack_ms(99))} | "
                f"{d50} | {d99} | {got} | {_fmt(r.cpu_us)} | {_fmt(r.cpu_share, 0)} |"
            )
    return lines


def memory_table(outcome: Outcome) -> list[str]:
    lines = [
        "| server | connections | RSS before MiB | RSS after MiB | KiB per idle connection |",
        "|---|--:|--:|--:|--:|",
    ]
    for s in outcome.servers:
        name = label(s.server)
        lines.append(
            f"| {name} | {s.connected:,} | {s.rss_before / 2**20:.1f} | {s.rss_after / 2**20:.1f} | "
            f"{_fmt(s.idle_kib)} |"
        )
    return lines


def goals_table(outcome: Outcome) -> list[str]:
    """The goals, measured on every waybill configuration that ran (one column each)."""
    args = outcome.args
    bare_live = outcome.run("bare", "live-max")
    kinds = [s.server for s in outcome.servers if is_waybill(s.server)]
    ceiling = f" (bare server: {bare_live.rate:,.0f})" if bare_live else ""

    def measured(kind: str, spec: str, value: Callable[[RunResult], float]) -> float:
        r = outcome.run(kind, spec)
        return value(r) if r is not None else float("nan")

    def idle(kind: str) -> float:
        srv = outcome.server(kind)
        return srv.idle_kib if srv else float("nan")

    rows: list[tuple[str, str, Callable[[str], float], bool]] = [
        (
            f"sustained positions/s (live, one per frame, max){ceiling}",
            f"≥ {GOAL_RATE:,.0f}",
            lambda k: measured(k, "live-max", lambda r: r.rate),
            True,
        ),
        (
            f"sustained positions/s (backlog, {args.batch} per frame, max)",
            f"≥ {GOAL_RATE:,.0f}",
            lambda k: measured(k, "backlog-max", lambda r: r.rate),
            True,
        ),
        (
            f"dispatcher p99 ms at {args.rate:,.0f}/s",
            f"< {GOAL_P99_MS:.0f}",
            lambda k: measured(k, "live-rate", lambda r: r.dispatch_ms(99)),
            False,
        ),
        ("KiB per idle connection", f"< {GOAL_IDLE_KIB:.0f}", idle, False),
    ]
    lines = [
        "| goal | target | " + " | ".join(f"{label(k)} | met" for k in kinds) + " |",
        "|---|--:|" + "--:|---|" * len(kinds),
    ]
    for name, target, value_of, higher in rows:
        bound = float(re.sub(r"[^0-9.]", "", target))
        cells = []
        for kind in kinds:
            value = value_of(kind)
            met = (
                "n/a"
                if value != value
                else ("yes" if (value >= bound if higher else value < bound) else "**no**")
            )
            cells.append(f"{_fmt(value, 0 if higher else 1)} | {met}")
        lines.append(f"| {name} | {target} | " + " | ".join(cells) + " |")
    return lines


def print_report(outcome: Outcome) -> None:
    say()
    for table in (results_table(outcome), memory_table(outcome), goals_table(outcome)):
        for line in table:
            say(line)
        say()


SECTION = "## Position ingest"
BEGIN, END = "<!-- bench:ingest:begin -->", "<!-- bench:ingest:end -->"


def section(outcome: Outcome) -> str:
    args = outcome.args
    lines = [
        f"{SECTION} (`bench/ingest.py`)",
        "",
        "Driver sockets streaming GPS positions into `waybill sockets` (the real server, a child process,",
        "on PostgreSQL and Redis), side by side with a bare `websockets` server that only parses each frame",
        "and acknowledges it: same frames, same client, same connection options. The load generator is a",
        f"minimal RFC 6455 client in {args.loaders} child processes; one dispatcher socket (its own process)",
        "is subscribed to the fleet on the waybill server. Latency is from the driver's send to the ack",
        "(ack) and to the dispatcher's receipt (dispatcher); the send time travels in each position's",
        "`seq`. Rates count acknowledged positions after a ramp of "
        f"{args.ramp:.0f} s of each {args.seconds:.0f} s run.",
        "",
        "```sh",
        outcome.command,
        "```",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in outcome.facts.items()]
    lines += ["", *goals_table(outcome), "", *results_table(outcome), "", *memory_table(outcome), ""]
    lines += [
        "Runs: *live, max throughput*: each socket sends one position per frame and keeps "
        f"{args.window} frames unacknowledged; *live, {args.rate:,.0f} positions/s*: that total rate spread "
        "evenly over the sockets (open loop); *backlog*: frames of "
        f"{args.batch} positions, {args.batch_window} frame(s) unacknowledged per socket. "
        '"dispatcher got" is the share of the measured positions the dispatcher received (its outbox '
        'keeps only each vehicle\'s newest position when it falls behind). "server CPU µs/position" is '
        "the server process's CPU time over the measured interval per acknowledged position, \"% of a "
        'core" that CPU time over the interval: well below 100 % while the server falls behind means it '
        "was waiting for the CPU (or for PostgreSQL), not busy. PostgreSQL, Redis, the load generator "
        "and whatever else runs on the machine share the same cores.",
        "",
        "`waybill sockets --processes N` runs N replicas that share the port (the kernel spreads the "
        "connections) and meet on Redis, as replicas on separate hosts do; one Python process uses at "
        "most one core, so on a 2-core machine this is how the server uses both. Their CPU time and "
        "memory are summed in these tables.",
        "",
        "When the bare server itself does not reach the rate goal with one position per frame (it parses "
        "and acknowledges nothing else), that row measures the machine and the `websockets` library more "
        "than the pipeline, and the goal is judged on the backlog run.",
        "",
        "Memory per idle connection: the server's RSS after the dispatcher connected, and again 2 s after "
        f"all {args.connections:,} driver sockets had authenticated (the waybill server also looked up "
        "each driver's vehicle), divided by the number of sockets.",
    ]
    return "\n".join(lines) + "\n"


def write_docs(outcome: Outcome, path: Path = DOCS_PATH) -> None:
    """Replace this benchmark's marked section in `path`; everything else in the file stays."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{section(outcome).rstrip()}\n{END}\n"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.DOTALL)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: block, doc, count=1)
    else:
        doc = doc.rstrip() + "\n\n" + block
    path.write_text(doc)
    say(f"wrote the {SECTION!r} section of {path}")


# The benchmark ----------------------------------------------------------------------------------


async def benchmark(args: argparse.Namespace, command: str) -> Outcome:
    from api.security.tokens import TokenService, TokenType
    from db.migrate import upgrade
    from domain.roles import Role
    from plumbing.settings import Settings, redact_url, to_async_url, to_sync_url

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    facts = {
        "machine": f"{os.cpu_count()} cores ({cpu_model()}), {platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average before the run (1, 5, 15 min)": load_average(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if args.processes != [1]:
        facts["`waybill sockets --processes N`"] = (
            "N replicas sharing the port and meeting on Redis; their CPU and memory are summed"
        )
    if args.settings:
        facts["waybill sockets settings (--set)"] = ", ".join(f"{k}={v}" for k, v in args.settings.items())
    await asyncio.to_thread(ensure_database, args.database_url)
    say(f"migrating {redact_url(args.database_url)}")
    await asyncio.to_thread(upgrade, to_sync_url(args.database_url))
    say(f"adding {args.connections:,} drivers and vehicles")
    fleet = await make_fleet(args.database_url, args.connections)
    await clear_redis(args.redis_url)
    key = secrets.token_urlsafe(48)
    settings = Settings(env="test", jwt_keys={"bench": key}, access_token_ttl_seconds=3600, redis_url=None)
    tokens_service = TokenService(settings)

    def token(user: uuid.UUID, role: Role) -> str:
        issued = tokens_service.issue(
            user_id=user, organization_id=fleet.organization_id, role=role, token_type=TokenType.ACCESS
        )
        return issued.token

    tokens = [token(u, Role.DRIVER) for u in fleet.driver_users]
    dispatcher_token = token(fleet.dispatcher, Role.DISPATCHER)
    epoch = time.monotonic()
    servers: list[ServerResult] = []
    with tempfile.TemporaryDirectory(prefix="waybill-bench-ingest-") as tmp:
        env = child_env(
            {
                "DATABASE_URL": to_async_url(args.database_url),
                "REDIS_URL": args.redis_url,
                "WAYBILL_REDIS_PREFIX": REDIS_PREFIX,
                "WAYBILL_ENV": "test",
                "WAYBILL_JWT_KEYS": json.dumps({"bench": key}),
                "WAYBILL_DATA_DIR": tmp,
                "WAYBILL_LOG_LEVEL": "WARNING",
                "WAYBILL_SOCKETS_HOST": "127.0.0.1",
                **args.settings,
            }
        )
        try:
            for kind in server_kinds(args):
                servers.append(
                    await bench_server(kind, args, env, Path(tmp), tokens, dispatcher_token, epoch)
                )
        finally:
            removed = await forget_positions(args.database_url, fleet.organization_id)
            say(f"removed the run's {removed:,} stored positions")
            await clear_redis(args.redis_url)
    facts["load average after the run (1, 5, 15 min)"] = load_average()
    for s in servers:
        if is_waybill(s.server):
            facts[f"{label(s.server)} stopped on SIGTERM"] = f"exit code {s.exit_code} in {s.exit_s:.1f}s"
    return Outcome(servers, facts, command, args)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description="Positions per second through `waybill sockets`."
    )
    parser.add_argument("--connections", type=int, default=2000, help="driver sockets (default 2000)")
    parser.add_argument("--rate", type=int, default=5000, help="positions/s of the fixed-rate run (5000)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each run (default 12)")
    parser.add_argument("--ramp", type=float, default=2.0, help="first seconds of a run not counted (2)")
    parser.add_argument("--window", type=int, default=4, help="live max: frames unacked per socket (4)")
    parser.add_argument("--batch", type=int, default=100, help="positions per backlog frame (100)")
    parser.add_argument("--batch-window", type=int, default=1, help="backlog: frames unacked per socket (1)")
    parser.add_argument("--loaders", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument(
        "--processes",
        default="1",
        help="waybill sockets replicas sharing the port (`waybill sockets --processes`); a comma-separated "
        "list measures each, e.g. 1,2 (default 1)",
    )
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL, help="PostgreSQL URL (created if missing)"
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help=f"Redis URL (default {DEFAULT_REDIS_URL})"
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="which servers, in order (default bare,waybill)"
    )
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"which runs, comma-separated (default {','.join(RUNS)})"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the waybill server for this run, e.g. tracking_history_batch=250 (repeatable)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update docs/{DOCS_PATH.name}")
    parser.add_argument("--role", choices=("client", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not args.runs or any(r not in RUNS for r in args.runs):
        parser.error(f"--runs takes a comma-separated subset of {', '.join(RUNS)}")
    if not args.servers or any(s not in SERVERS for s in args.servers):
        parser.error(f"--servers takes a comma-separated subset of {', '.join(SERVERS)}")
    if not 1 <= args.connections <= 20_000:
        parser.error("--connections must be 1..20000")
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be 1..1000 (the server's limit per frame)")
    try:
        args.settings = {f"WAYBILL_{n.strip().upper()}": v for n, v in (s.split("=", 1) for s in args.set)}
    except ValueError:
        parser.error("--set takes NAME=VALUE")
    try:
        args.processes = [int(n) for n in args.processes.split(",") if n.strip()]
    except ValueError:
        parser.error("--processes takes comma-separated counts, e.g. 1,2")
    if not args.processes or any(not 1 <= n <= 64 for n in args.processes):
        parser.error("--processes: each count must be 1..64")
    if args.loaders < 1 or args.window < 1 or args.batch_window < 1 or args.rate < 1:
        parser.error("--loaders, --window, --batch-window and --rate must be at least 1")
    if args.seconds <= args.ramp:
        parser.error("--seconds must be longer than --ramp")
    return args


def command_line(args: argparse.Namespace) -> str:
    from plumbing.settings import redact_url

    parts = [".venv/bin/python -m bench.ingest", f"--connections {args.connections}", f"--rate {args.rate}"]
    parts.append(f"--seconds {args.seconds:g}")
    if args.database_url != DEFAULT_DATABASE_URL:
        parts.append(f"--database-url {redact_url(args.database_url)}")
    if args.servers != list(SERVERS):
        parts.append(f"--servers {','.join(args.servers)}")
    if args.runs != list(RUNS):
        parts.append(f"--runs {','.join(args.runs)}")
    if args.processes != [1]:
        parts.append(f"--processes {','.join(map(str, args.processes))}")
    for name, default in (("window", 4), ("batch", 100), ("batch_window", 1), ("loaders", 2)):
        if getattr(args, name) != default:
            parts.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    parts += [f"--set {setting}" for setting in args.set]
    if args.write_docs:
        parts.append("--write-docs")
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    from plumbing import eventloop

    args = parse_args(argv)
    if args.role == "client":
        eventloop.run(client_role())
        return 0
    if args.role == "bare":
        eventloop.run(bare_role(args.port, 64 * 1024))
        return 0
    command = command_line(args)
    hard_limit = 600.0
    try:
        outcome = eventloop.run(asyncio.wait_for(benchmark(args, command), hard_limit))
    except TimeoutError:
        say(f"gave up after {hard_limit:.0f}s")
        return 2
    print_report(outcome)
    failed = any(r.errors or r.closed for s in outcome.servers for r in s.runs)
    if args.write_docs:
        ran_all = len(outcome.servers) == len(server_kinds(args)) and args.servers == list(SERVERS)
        if failed or not ran_all or args.runs != list(RUNS):
            say("not writing the docs: a run had errors, or not every server and run ran")
            return 1
        write_docs(outcome)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
