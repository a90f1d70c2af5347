"""The benchmark's other processes: the worker and more API replicas, each a child on stdin's config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

from api.resources import Resources
from bench.common.children import child_env, close_and_wait, read_line, role_command, send_json
from bench.common.machine import free_port
from bench.common.output import REPO, say
from bench.deliveries.config import MODULE, READY, bench_settings
from plumbing.temporal import TemporalConnector, connect
from waybill.services import ApiService
from workers.compose import build_workers


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
        *role_command(MODULE, role),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=child_env(),
    )
    try:
        await send_json(proc, config)
        async with asyncio.timeout(60):
            while (line := await read_line(proc.stdout)).strip() != READY:
                if not line:
                    raise RuntimeError(f"the {role} process exited with code {await proc.wait()}")
        yield proc.pid
    finally:
        await close_and_wait(proc, 30)  # the child shuts down gracefully on EOF
