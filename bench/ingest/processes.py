"""The processes of a run: the bare server (a child role), the waybill or bare server process, and the
load-generator children."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

from bench.common.children import child_env, close_and_wait, role_command, send_json
from bench.common.output import REPO, say
from bench.ingest.config import MODULE, READY, START_TIMEOUT_S, STOP_TIMEOUT_S, WAYBILL


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
            *role_command(MODULE, "client"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
            env=child_env(clean=True),
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
        await send_json(self.proc, job)
        result = await asyncio.wait_for(self._results.get(), timeout)
        if "failed" in result:
            raise RuntimeError(f"{self.name}: {result['failed']}")
        return result

    async def stop(self) -> None:
        if self.proc is None:
            return
        await close_and_wait(self.proc, 20)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class ServerProcess:
    """The server under test in a child process (`waybill sockets` or the bare role), logging to a file."""

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
            cmd = role_command(MODULE, "bare", "--port", str(self.port))
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
