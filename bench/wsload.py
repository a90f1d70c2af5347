"""The load generator of `bench.ingest`: many driver sockets and one dispatcher, in a child process.

The sockets speak plain RFC 6455 over an `asyncio.Protocol`, not through a WebSocket library: a frame
is built with one `bytes` concatenation (client frames carry the all-zero mask key, which the
protocol allows and which makes masking a no-op) and acknowledgements are parsed in
`data_received`, with no task or future per frame. On a small machine the load generator shares the
CPUs with the server under test, so the less it costs the more the figures say about the server.
The same client drives the real server and the bare `websockets` server.

Send times travel inside the positions: `seq = microseconds since the run's epoch * 1000 + index in
the frame`, where the epoch is a `time.monotonic()` reading of the parent (CLOCK_MONOTONIC, one
clock for every process on the host). An ack or a position a dispatcher receives therefore says
when it was sent, without a table shared between processes.

Jobs arrive as JSON lines on stdin; answers go to stdout as lines starting with "@".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ZERO_MASK = b"\x00\x00\x00\x00"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
SEQ_SLOTS = 1000  # positions per frame at most (the server's MAX_BATCH)
CONNECT_CONCURRENCY = 64
DRAIN_S = 15.0  # after a run: how long to wait for the last acknowledgements
QUIET_S = 3.0  # the dispatcher stops counting once no position arrived for this long after a run


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def emit(kind: str, data: dict[str, Any]) -> None:
    say(f"@{kind} " + json.dumps(data))


# Latency histograms: tenths of a millisecond -> count, mergeable across processes ---------------


def hist_add(hist: dict[int, int], seconds: float) -> None:
    key = int(seconds * 10_000)
    hist[key] = hist.get(key, 0) + 1


def hist_merge(into: dict[int, int], other: dict[Any, int]) -> None:
    for key, count in other.items():
        k = int(key)
        into[k] = into.get(k, 0) + count


def hist_percentile(hist: dict[int, int], q: float) -> float:
    """Nearest-rank percentile in milliseconds; NaN when empty."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = max(1, min(total, round(q / 100 * total + 0.5)))
    seen = 0
    for key in sorted(hist):
        seen += hist[key]
        if seen >= rank:
            return key / 10
    return max(hist) / 10


# The WebSocket client ---------------------------------------------------------------------------


def frame_header(opcode: int, length: int) -> bytes:
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, 0x80 | length)) + ZERO_MASK
    if length < 65536:
        return bytes((first, 0x80 | 126)) + length.to_bytes(2, "big") + ZERO_MASK
    return bytes((first, 0x80 | 127)) + length.to_bytes(8, "big") + ZERO_MASK


class WsConn(asyncio.Protocol):
    """One client socket; `on_text(payload)` is called for every text message."""

    def __init__(self, host: str, port: int, path: str, on_text: Callable[[bytes], None]) -> None:
        self.host, self.port, self.path, self.on_text = host, port, path, on_text
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.key = base64.b64encode(os.urandom(16))
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.is_open = False
        self.close_code: int | None = None
        self._fragments: list[bytes] = []

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".encode()
            + b"Sec-WebSocket-Key: "
            + self.key
            + b"\r\n\r\n"
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.is_open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[: end + 4]
            accept = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest()).decode()  # noqa: S324
            if not head.startswith("HTTP/1.1 101") or accept not in head:
                self.opened.set_exception(ConnectionError(head.split("\r\n", 1)[0]))
                assert self.transport is not None
                self.transport.close()
                return
            self.is_open = True
            self.opened.set_result(None)
        self._frames()

    # frames

    def _frames(self) -> None:
        buf, pos, n = self.buf, 0, len(self.buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, header = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, header = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, header = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if n - pos < header + length:
                break
            payload = bytes(buf[pos + header : pos + header + length])
            pos += header + length
            opcode = b0 & 0x0F
            if opcode in (OP_TEXT, 0x0):
                if not b0 & 0x80:  # a fragment; the message ends with a FIN frame
                    self._fragments.append(payload)
                    continue
                if self._fragments:
                    payload = b"".join([*self._fragments, payload])
                    self._fragments = []
                self.on_text(payload)
            elif opcode == OP_PING:
                self._send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if self.is_open:
                    self._send(OP_CLOSE, payload[:2])
                self.is_open = False
                assert self.transport is not None
                self.transport.close()
        del buf[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame_header(opcode, len(payload)) + payload)

    def send_text(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame_header(OP_TEXT, len(payload)) + payload)

    async def close(self, timeout: float = 5.0) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.is_open:
            self._send(OP_CLOSE, (1000).to_bytes(2, "big"))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.transport.abort()


async def open_conn(url_host: str, port: int, path: str, on_text: Callable[[bytes], None]) -> WsConn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: WsConn(url_host, port, path, on_text), url_host, port)
    await conn.opened
    return conn


# Drivers ----------------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one run counts, in the run's monotonic time."""

    name: str
    start: float  # sending starts
    measure_from: float  # after the ramp: sends and acks from here on are counted
    end: float  # sending stops
    ack_hist: dict[int, int] = field(default_factory=dict)
    sent: int = 0  # positions
    frames: int = 0
    acked: int = 0  # positions acknowledged (any time)
    acked_in_window: int = 0  # acknowledged between measure_from and end
    filtered: int = 0
    errors: int = 0
    first_error: str | None = None
    blocked: int = 0  # open loop: sends skipped because every socket had its window full
    second_acks: dict[int, int] = field(default_factory=dict)  # whole second of the run -> acks


class Driver:
    __slots__ = ("conn", "lat", "lon", "last_t", "unacked", "ready", "client", "index")

    def __init__(self, client: LoadClient, index: int) -> None:
        self.client, self.index = client, index
        rnd = random.Random(index)
        self.lat = 52.3 + rnd.random() * 0.4
        self.lon = 13.1 + rnd.random() * 0.6
        self.last_t = 0.0
        self.unacked = 0  # positions sent and not acknowledged (an ack may cover several frames)
        self.conn: WsConn | None = None
        self.ready: asyncio.Future[dict[str, Any]] | None = None

    def on_text(self, payload: bytes) -> None:
        msg = json.loads(payload)
        kind = msg.get("type")
        if kind == "ack":
            self.client.acked(self, msg)
        elif kind == "ready":
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(msg)
        elif kind == "error":
            self.client.error(f"{msg.get('code')}: {msg.get('detail')}")
            if self.ready is not None and not self.ready.done():
                self.ready.set_exception(RuntimeError(f"{msg.get('code')}: {msg.get('detail')}"))

    def positions(self, n: int, now_mono: float, epoch: float) -> str:
        """The JSON of `n` fresh positions (no frame type) recorded up to now, 1 ms apart at least."""
        wall = time.time()
        t = max(wall - (n - 1) * 0.001, self.last_t + 0.001)
        base = int((now_mono - epoch) * 1_000_000) * SEQ_SLOTS
        items = []
        lat, lon = self.lat, self.lon
        for i in range(n):
            lat += 0.00001  # about 1.1 m north per fix
            at = datetime.fromtimestamp(t, UTC).isoformat()
            items.append(
                f'"seq":{base + i},"recorded_at":"{at}","lat":{lat:.6f},"lon":{lon:.6f},'
                '"accuracy_m":5.0,"speed_mps":8.3,"heading_deg":0.0'
            )
            t += 0.001
        self.lat, self.last_t = lat, t - 0.001
        if n == 1:
            return '{"type":"position",' + items[0] + "}"
        return '{"type":"positions","positions":[{' + "},{".join(items) + "}]}"


class LoadClient:
    def __init__(self, epoch: float) -> None:
        self.epoch = epoch
        self.drivers: list[Driver] = []
        self.phase: Phase | None = None
        self.per_frame = 1
        self.closed_loop = False
        self.window = 1  # positions a socket may have unacknowledged
        self.running = False
        self.connect_errors = 0
        self.first_connect_error: str | None = None

    # connecting

    async def connect(self, host: str, port: int, tokens: list[str], first_index: int) -> dict[str, Any]:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(i: int, token: str) -> None:
            driver = Driver(self, first_index + i)
            driver.ready = asyncio.get_running_loop().create_future()
            async with gate:
                try:
                    conn = await open_conn(host, port, "/ws/driver", driver.on_text)
                    conn.send_text(json.dumps({"type": "auth", "token": token}).encode())
                    await asyncio.wait_for(driver.ready, 30)
                except Exception as exc:
                    self.connect_errors += 1
                    self.first_connect_error = self.first_connect_error or f"{type(exc).__name__}: {exc}"
                    return
            driver.conn = conn
            self.drivers.append(driver)

        t0 = time.monotonic()
        await asyncio.gather(*(one(i, token) for i, token in enumerate(tokens)))
        return {
            "connected": len(self.drivers),
            "errors": self.connect_errors,
            "first_error": self.first_connect_error,
            "seconds": time.monotonic() - t0,
        }

    async def close(self) -> None:
        await asyncio.gather(*(d.conn.close() for d in self.drivers if d.conn is not None))
        self.drivers = []

    # callbacks

    def error(self, text: str) -> None:
        if self.phase is not None:
            self.phase.errors += 1
            self.phase.first_error = self.phase.first_error or text

    def acked(self, driver: Driver, msg: dict[str, Any]) -> None:
        phase = self.phase
        if phase is None:
            return
        now = time.monotonic()
        seqs = msg.get("seqs") or ()
        driver.unacked -= len(seqs)
        phase.acked += len(seqs)
        phase.filtered += len(msg.get("filtered") or ())
        if phase.measure_from <= now <= phase.end:
            phase.acked_in_window += len(seqs)
        second = int(now - phase.start)
        phase.second_acks[second] = phase.second_acks.get(second, 0) + len(seqs)
        epoch, lo, hi, hist = self.epoch, phase.measure_from, phase.end, phase.ack_hist
        for seq in seqs:
            sent = epoch + (seq // SEQ_SLOTS) / 1_000_000
            if lo <= sent <= hi:
                key = int((now - sent) * 10_000)
                hist[key] = hist.get(key, 0) + 1
        if self.running and self.closed_loop:
            while driver.unacked + self.per_frame <= self.window and now < phase.end:
                if not self.send(driver, now):
                    break

    def send(self, driver: Driver, now: float) -> bool:
        assert self.phase is not None
        assert driver.conn is not None
        if not driver.conn.is_open:
            return False
        driver.conn.send_text(driver.positions(self.per_frame, now, self.epoch).encode())
        driver.unacked += self.per_frame
        self.phase.sent += self.per_frame
        self.phase.frames += 1
        return True

    # a run

    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        start = job["start"]
        phase = self.phase = Phase(job["name"], start, start + job["ramp"], start + job["seconds"])
        self.per_frame, self.closed_loop = int(job["per_frame"]), job["rate"] is None
        window = self.window = int(job["window"]) * self.per_frame
        drivers = [d for d in self.drivers if d.conn is not None and d.conn.is_open]
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        self.running = True
        ticker = asyncio.create_task(self._progress(phase))
        try:
            if self.closed_loop:
                now = time.monotonic()
                for _ in range(window // self.per_frame):
                    for d in drivers:
                        self.send(d, now)
                await asyncio.sleep(max(0.0, phase.end - time.monotonic()))
            else:
                await self._open_loop(phase, drivers, float(job["rate"]), window)
            self.running = False
            deadline = time.monotonic() + DRAIN_S
            while any(d.unacked > 0 for d in drivers) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            self.running = False
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        self.phase = None
        return {
            "name": phase.name,
            "sent": phase.sent,
            "frames": phase.frames,
            "acked": phase.acked,
            "acked_in_window": phase.acked_in_window,
            "window_s": phase.end - phase.measure_from,
            "filtered": phase.filtered,
            "errors": phase.errors,
            "first_error": phase.first_error,
            "blocked": phase.blocked,
            "unacked_frames": sum(max(0, d.unacked) for d in drivers) // self.per_frame,
            "ack_hist": phase.ack_hist,
            "closed": sum(1 for d in drivers if d.conn is None or not d.conn.is_open),
        }

    async def _open_loop(self, phase: Phase, drivers: list[Driver], rate: float, window: int) -> None:
        """Send `rate` positions per second in all, round robin over the sockets, every 2 ms."""
        frames_per_s = rate / self.per_frame
        sent = 0
        cursor = 0
        n = len(drivers)
        while n and (now := time.monotonic()) < phase.end:
            due = int(frames_per_s * (now - phase.start)) - sent
            tried = 0
            while due > 0 and tried < n:
                d = drivers[cursor]
                cursor = (cursor + 1) % n
                tried += 1
                if d.unacked + self.per_frame > window:
                    continue
                self.send(d, now)
                sent += 1
                due -= 1
                tried = 0
            if due > 0:
                phase.blocked += due * self.per_frame
                sent += due  # an open loop does not catch up on what it could not send
            await asyncio.sleep(0.002)

    async def _progress(self, phase: Phase) -> None:
        last_sent = last_acked = 0
        while True:
            await asyncio.sleep(1.0)
            emit("tick", {"sent": phase.sent - last_sent, "acked": phase.acked - last_acked})
            last_sent, last_acked = phase.sent, phase.acked


# The dispatcher -----------------------------------------------------------------------------------


class Dispatcher:
    """One dispatcher socket subscribed to the fleet; counts positions and their send-to-receipt time."""

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch
        self.conn: WsConn | None = None
        self.ready: asyncio.Future[dict[str, Any]] | None = None
        self.subscribed: asyncio.Future[None] | None = None
        self.window: tuple[float, float] | None = None
        self.hist: dict[int, int] = {}
        self.received = 0
        self.in_window = 0
        self.per_second: int = 0
        self.last_received = 0.0
        self.errors: list[str] = []

    def on_text(self, payload: bytes) -> None:
        now = time.monotonic()
        msg = json.loads(payload)
        kind = msg.get("type")
        if kind == "positions":
            positions = msg.get("positions") or ()
            self.received += len(positions)
            self.last_received = now
            self.per_second += len(positions)
            if self.window is None:
                return
            lo, hi = self.window
            epoch, hist = self.epoch, self.hist
            for p in positions:
                seq = p.get("seq")
                if not isinstance(seq, int):
                    continue
                sent = epoch + (seq // SEQ_SLOTS) / 1_000_000
                if lo <= sent <= hi:
                    self.in_window += 1
                    key = int((now - sent) * 10_000)
                    hist[key] = hist.get(key, 0) + 1
        elif kind == "ready" and self.ready is not None and not self.ready.done():
            self.ready.set_result(msg)
        elif kind == "subscribed" and self.subscribed is not None and not self.subscribed.done():
            self.subscribed.set_result(None)
        elif kind == "error":
            self.errors.append(f"{msg.get('code')}: {msg.get('detail')}")

    async def connect(self, host: str, port: int, token: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self.ready, self.subscribed = loop.create_future(), loop.create_future()
        self.conn = await open_conn(host, port, "/ws/dispatch", self.on_text)
        self.conn.send_text(json.dumps({"type": "auth", "token": token}).encode())
        await asyncio.wait_for(self.ready, 30)
        self.conn.send_text(b'{"type":"subscribe","topic":"fleet"}')
        await asyncio.wait_for(self.subscribed, 30)
        return {"connected": 1}

    async def collect(self, job: dict[str, Any]) -> dict[str, Any]:
        """Count positions sent between `from` and `to` that arrive before `until`: at least until
        `to` + QUIET_S, then as long as positions keep arriving (a server behind its load still
        streams what it was sent earlier; what was sent in the window arrives after that)."""
        self.hist, self.in_window = {}, 0
        self.window = (job["from"], job["to"])
        ticker = asyncio.create_task(self._progress())
        try:
            while (now := time.monotonic()) < job["until"]:
                if now > job["to"] + QUIET_S and now - self.last_received > QUIET_S:
                    break
                await asyncio.sleep(0.1)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        self.window = None
        closed = self.conn is None or not self.conn.is_open
        return {
            "received": self.in_window,
            "hist": self.hist,
            "errors": self.errors[:3],
            "closed": closed,
            "close_code": self.conn.close_code if self.conn else None,
        }

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            emit("dtick", {"received": self.per_second})
            self.per_second = 0


# The child's main loop ----------------------------------------------------------------------------


async def client_role() -> None:
    """Child: jobs on stdin (one JSON object a line), answers on stdout; ends on EOF or `close`."""
    loader: LoadClient | None = None
    dispatcher: Dispatcher | None = None
    while line := await asyncio.to_thread(sys.stdin.readline):
        job = json.loads(line)
        op = job["op"]
        try:
            if op == "connect":
                loader = loader or LoadClient(job["epoch"])
                result = await loader.connect(job["host"], job["port"], job["tokens"], job["first_index"])
            elif op == "dispatcher":
                dispatcher = Dispatcher(job["epoch"])
                result = await dispatcher.connect(job["host"], job["port"], job["token"])
            elif op == "run":
                assert loader is not None
                result = await loader.run(job)
            elif op == "collect":
                assert dispatcher is not None
                result = await dispatcher.collect(job)
            elif op == "disconnect":
                if loader is not None:
                    await loader.close()
                    loader = None
                if dispatcher is not None and dispatcher.conn is not None:
                    await dispatcher.conn.close()
                    dispatcher = None
                result = {}
            else:
                raise ValueError(f"unknown job {op!r}")
        except Exception as exc:
            result = {"failed": f"{type(exc).__name__}: {exc}"}
        emit("result", result)
