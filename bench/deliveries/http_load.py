"""The HTTP load generator: a child process that POSTs deliveries over pre-encoded keep-alive
connections, and the parent's handle on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from dataclasses import asdict
from typing import Any

import httpx

from bench.common.children import child_env, close_and_wait, read_line, role_command, send_json
from bench.common.machine import own_cpu_seconds, process_cpu_seconds
from bench.common.output import REPO, say
from bench.deliveries.config import MODULE, REQUEST_TIMEOUT_S, RESULT
from bench.deliveries.runs import Run, drive


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
    cpu0 = own_cpu_seconds()
    run = await drive(Run("api", job["round"], job["n"]), job["concurrency"], post, deadline, job["progress"])
    run.load_cpu_s = own_cpu_seconds() - cpu0
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
            *role_command(MODULE, "http"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
            env=child_env(),
        )

    async def run(self, round_no: int, n: int, deadline: float, progress: bool = True) -> Run:
        assert self.proc is not None
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
        await send_json(self.proc, job)
        cpu0 = self._api_cpu_seconds()
        async with asyncio.timeout(seconds + REQUEST_TIMEOUT_S + 30):
            while line := await read_line(self.proc.stdout):
                if line.startswith(RESULT):
                    run = Run(**json.loads(line[len(RESULT) :]))
                    run.cpu_s = self._api_cpu_seconds() - cpu0
                    return run
                say(line.rstrip("\n"))
        raise RuntimeError(f"the load generator exited with code {await self.proc.wait()}")

    def _api_cpu_seconds(self) -> float:
        """CPU time so far of the API: this process and the other API processes."""
        return own_cpu_seconds() + sum(map(process_cpu_seconds, self.api_pids))

    async def stop(self) -> None:
        if self.proc is not None:
            await close_and_wait(self.proc, 10)  # EOF: the child closes its connections and exits
