"""Driver sockets: connect and authenticate many, then one run (closed or open loop) at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.common.children import emit
from bench.wsload.protocol import WsConn, open_conn
from bench.wsload.timing import DRAIN_S, SEQ_SLOTS

CONNECT_CONCURRENCY = 64


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
