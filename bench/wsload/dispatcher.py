"""The dispatcher socket: subscribed to the fleet, it counts positions and their send-to-receipt time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from bench.common.children import emit
from bench.wsload.protocol import WsConn, open_conn
from bench.wsload.timing import QUIET_S, SEQ_SLOTS


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
