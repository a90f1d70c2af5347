"""One server under test: start it and the load generators, connect every driver (the memory per idle
connection), then the warm-up and the runs, and stop everything."""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common.children import child_env
from bench.common.machine import free_port, rss_bytes
from bench.common.output import say
from bench.ingest.config import is_waybill, processes_of
from bench.ingest.processes import Child, ServerProcess
from bench.ingest.report import run_line
from bench.ingest.results import RunSpec, ServerResult, run_specs
from bench.ingest.runs import Ticks, one_run
from plumbing.ports import free_port_range


@dataclass(frozen=True)
class Setup:
    """What every server of the benchmark gets: the waybill server's environment, a scratch directory,
    the drivers' and the dispatcher's access tokens, and the epoch of the seqs' send times."""

    env: dict[str, str]
    tmp: Path
    tokens: list[str]
    dispatcher_token: str
    epoch: float


def _server(kind: str, setup: Setup) -> ServerProcess:
    port = free_port()
    if not is_waybill(kind):
        return ServerProcess(kind, port, child_env(clean=True), setup.tmp)
    server_env = {**setup.env, "WAYBILL_SOCKETS_PORT": str(port)}
    if (processes := processes_of(kind)) > 1:
        server_env["WAYBILL_SOCKETS_PROCESSES"] = str(processes)
        server_env["WAYBILL_SOCKETS_METRICS_PORT"] = str(free_port_range(processes))
    return ServerProcess(kind, port, server_env, setup.tmp)


async def _connect(result: ServerResult, server: ServerProcess, loaders: list[Child], setup: Setup) -> None:
    """Every driver socket authenticated, split over the load generators; RSS before and after."""
    kind, tokens = result.server, setup.tokens
    result.rss_before = rss_bytes(server.pid)
    say(f"[{kind}] RSS {result.rss_before / 2**20:.1f} MiB; connecting {len(tokens):,} drivers")
    t0 = time.monotonic()
    shares = [tokens[i :: len(loaders)] for i in range(len(loaders))]
    job = {"op": "connect", "host": "127.0.0.1", "port": server.port, "epoch": setup.epoch}
    answers = await asyncio.gather(
        *(
            child.ask({**job, "tokens": share, "first_index": i * 1_000_000}, timeout=300)
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


async def bench_server(kind: str, args: argparse.Namespace, setup: Setup) -> ServerResult:
    result = ServerResult(kind)
    server = _server(kind, setup)
    ticks: Ticks = asyncio.Queue()
    loaders = [Child(f"load{i}") for i in range(args.loaders)]
    dispatcher = Child("dispatcher") if is_waybill(kind) else None
    children = loaders + ([dispatcher] if dispatcher else [])
    say(f"[{kind}] starting the server on port {server.port}")
    await server.start()
    try:
        for child in children:
            await child.start(ticks)
        if dispatcher is not None:
            await dispatcher.ask(
                {
                    "op": "dispatcher",
                    "host": "127.0.0.1",
                    "port": server.port,
                    "token": setup.dispatcher_token,
                    "epoch": setup.epoch,
                }
            )
        await asyncio.sleep(1.0)
        await _connect(result, server, loaders, setup)
        for spec in [RunSpec("warm-up", "warm-up", 1, None, 1), *run_specs(args)]:
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
