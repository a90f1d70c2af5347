"""The driver socket, with the app's delivery guarantee."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from domain.geo import LatLon
from tools.simulate.driver_api import DriverApi
from tools.simulate.options import (
    BACKOFF_S,
    CHUNK,
    DRAIN_S,
    FATAL_CLOSE,
    MAX_BACKLOG,
    ApiError,
    Emit,
    VehicleReport,
)


class DriverLink:
    """The driver socket with the app's delivery guarantee: every position is kept until the server
    acknowledges it, and everything unacknowledged is sent again, in order, after a reconnect."""

    def __init__(
        self,
        url: str,
        api: DriverApi,
        report: VehicleReport,
        emit: Emit,
        on_event: Callable[[dict[str, Any]], None],
        keep: bool,
    ) -> None:
        self.url, self.api, self.report, self.emit, self.on_event, self.keep = (
            url,
            api,
            report,
            emit,
            on_event,
            keep,
        )
        self.unacked: dict[int, dict[str, Any]] = {}  # seq -> position, in seq order
        self._seq = 0
        self._sent_upto = 0  # highest seq sent on the current connection
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        self.fatal: str | None = None
        self._closing = False
        self._connections = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"link:{self.report.driver}")

    def send(
        self, at: LatLon, speed_mps: float, heading_deg: float | None, accuracy_m: float
    ) -> dict[str, Any]:
        self._seq += 1
        p = {
            "seq": self._seq,
            "recorded_at": datetime.now(UTC).isoformat(),
            "lat": round(at.lat, 7),
            "lon": round(at.lon, 7),
            "accuracy_m": accuracy_m,
            "speed_mps": round(speed_mps, 2),
            "heading_deg": None if heading_deg is None else round(heading_deg, 1),
        }
        self.unacked[self._seq] = p
        if len(self.unacked) > MAX_BACKLOG:  # a very long outage: the oldest are not worth keeping
            del self.unacked[next(iter(self.unacked))]
        self.report.sent += 1
        if self.keep:
            self.report.positions.append(p)
        self._wake.set()
        return p

    async def close(self) -> None:
        """Wait (briefly) for the last acknowledgements, then close."""
        deadline = time.monotonic() + DRAIN_S
        while self.unacked and self.fatal is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._closing = True
        self.report.unacked = len(self.unacked)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            reason = ""
            sessions = self._connections
            try:
                async with connect(self.url, open_timeout=10, close_timeout=2, max_size=2**20) as ws:
                    await self._session(ws)
                    reason = "closed by the server"
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                if code in FATAL_CLOSE:
                    self.fatal = f"the socket server refused the driver: {FATAL_CLOSE[code]} ({code})"
                    self.ready.set()  # wake whoever waits for the link
                    return
                reason = f"connection lost ({code or 'no close frame'})"
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                reason = f"cannot connect: {exc or type(exc).__name__}"
            except ApiError as exc:  # the token refresh failed
                reason = f"cannot authenticate: {exc}"
            self.ready.clear()
            if self._closing:
                return
            if self._connections > sessions:  # it was up: start backing off from the shortest delay
                failures = 0
            delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
            failures += 1
            self.emit(
                f"socket {reason}; {len(self.unacked)} positions unacknowledged, retrying in {delay:g} s"
            )
            await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection) -> None:
        await ws.send(json.dumps({"type": "auth", "token": await self.api.token()}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if first.get("type") != "ready":
            await ws.wait_closed()  # the server closes after its error frame; the close code decides
            raise ConnectionClosed(ws.protocol.close_rcvd, ws.protocol.close_sent)
        self.report.vehicle_id = first.get("vehicle_id")
        if self._connections:
            self.report.reconnects += 1
            self.emit(f"socket reconnected; resending {len(self.unacked)} unacknowledged positions")
        self._connections += 1
        self._sent_upto = 0
        self.ready.set()
        self._wake.set()
        writer = asyncio.create_task(self._writer(ws))
        try:
            async for raw in ws:
                self._on_frame(raw)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    async def _writer(self, ws: ClientConnection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending = [p for seq, p in list(self.unacked.items()) if seq > self._sent_upto]
            for i in range(0, len(pending), CHUNK):
                part = pending[i : i + CHUNK]
                msg = (
                    {"type": "position", **part[0]}
                    if len(part) == 1
                    else {"type": "positions", "positions": part}
                )
                await ws.send(json.dumps(msg))
                self._sent_upto = part[-1]["seq"]

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        kind = msg.get("type")
        if kind == "ack":
            for seq in msg.get("seqs", ()):
                if self.unacked.pop(seq, None) is not None:
                    self.report.acked += 1
            for item in msg.get("filtered", ()):
                reason = str(item.get("reason"))
                self.report.filtered[reason] = self.report.filtered.get(reason, 0) + 1
                self.report.filtered_seqs.add(int(item.get("seq", -1)))
        elif kind == "error":
            self.emit(f"socket error {msg.get('code')}: {msg.get('detail')}")
        else:
            self.on_event(msg)
