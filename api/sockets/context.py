"""What every socket connection of one server shares: the ingest pipeline, the fan-out hub, tracking."""

from __future__ import annotations

import asyncio
import time

from websockets.asyncio.server import ServerConnection

from api.resources import Resources
from api.sockets.arrivals import Tracker
from api.sockets.fanout import Hub, Outbox
from api.sockets.ingest import Ingest
from api.sockets.metrics import SocketMetrics
from domain.positions import FilterConfig

SWEEP_S = 0.5
DRAIN_TIMEOUT_S = 5.0  # at shutdown: how long the last acknowledgements may take to go out


class Context:
    def __init__(self, resources: Resources) -> None:
        s = resources.settings
        self.resources = resources
        self.settings = s
        self.closing = False
        self.metrics = SocketMetrics(engine=lambda: resources.engine)
        self.tracker = Tracker(resources)
        self.hub = Hub(resources.cache_bus, self.tracker, self.metrics)
        self.ingest = Ingest(
            resources.cache_bus,
            resources.history,
            FilterConfig(
                max_accuracy_m=s.tracking_max_accuracy_m,
                max_speed_mps=s.tracking_max_speed_mps,
                max_future_s=s.tracking_max_future_seconds,
            ),
            batch=s.tracking_history_batch,
            flush_s=s.tracking_history_flush_ms / 1000,
            publish_s=s.tracking_publish_ms / 1000,
            on_latest=self.tracker.offer,
            metrics=self.metrics,
        )
        self.metrics.bind(resources, self.ingest, self.tracker)
        self.outboxes: set[Outbox] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def outbox(self, ws: ServerConnection, endpoint: str = "dispatch") -> Outbox:
        s = self.settings
        box = Outbox(ws, s.ws_dispatch_max_pending, s.ws_dispatch_max_lag_seconds, self.metrics, endpoint)
        box.start()
        self.outboxes.add(box)
        return box

    async def drop(self, box: Outbox) -> None:
        self.outboxes.discard(box)
        await box.stop()

    def start(self) -> None:
        self.ingest.start()
        self.tracker.start()
        self.metrics.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="outbox-sweep")

    async def _sweep(self) -> None:
        """Find clients stuck behind a full socket even when nothing new is offered to them."""
        while True:
            await asyncio.sleep(SWEEP_S)
            for box in list(self.outboxes):
                box.check()

    async def stop(self) -> None:
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.ingest.stop()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while any(b.pending or b.busy_since for b in self.outboxes) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.tracker.stop()
        await self.hub.stop()
        await self.metrics.stop()
