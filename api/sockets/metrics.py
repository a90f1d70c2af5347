"""Prometheus metrics of the socket server (`waybill sockets`): a registry of its own (one per
process, like the API's and the worker's), served as `GET /metrics` on the socket port.

Cheap by construction, since ingest takes tens of thousands of positions a second:

- nothing per position: position outcomes are read at scrape time from the counts the pipeline
  keeps anyway (`Ingest.stats`), tracking events from `Tracker.stats` (api/sockets/counts.py);
- per frame, one integer increment (connections and frames, like the positions, are plain counts
  read at scrape time: no lock, no label lookup);
- one histogram observation per history write, per acknowledged generation, per bus message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from websockets.datastructures import Headers
from websockets.http11 import Response

from api.sockets.counts import EndpointCounts, IngestStats, TrackingStats
from db.process_metrics import add_process_collectors
from domain.positions import Reject

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from api.resources import Resources

ENDPOINTS = ("driver", "dispatch")
DEPENDENCY_CHECK_S = 5.0  # at most one round of dependency checks this often, started by a scrape
DEPENDENCY_TIMEOUT_S = 3.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


# What `# HELP` says of each metric SocketMetrics declares.
HELP = {
    "waybill_position_ingest_seconds": (
        "From the first frame of a history batch to the acknowledgement of all its positions (stored in "
        "history), one observation per batch"
    ),
    "waybill_history_flush_seconds": (
        "Duration of one successful write of a batch of positions to the history store"
    ),
    "waybill_history_batch_size": "Positions per history write",
    "waybill_history_write_failures_total": "History writes that failed (each is retried until it succeeds)",
    "waybill_fanout_seconds": (
        "Time to hand one bus message to the outboxes of every interested client on this replica"
    ),
    "waybill_subscriber_drops_total": (
        "Positions a slow client never received: older positions of a vehicle replaced by its newest"
    ),
    "waybill_socket_refused_total": (
        "Socket frames and connections refused by a limit: rate_limited (a frame over the frame rate), "
        "flood (a connection closed 4420), too_many_connections (closed 4409)"
    ),
    "waybill_subscriber_disconnects_total": "Clients disconnected (4429) for falling too far behind",
    "waybill_dependency_up": (
        "1 if the dependency answered the last check (started by a scrape, at most every "
        f"{DEPENDENCY_CHECK_S:g} s), else 0"
    ),
}


def _histogram(registry: CollectorRegistry, name: str, buckets: tuple[float, ...]) -> Histogram:
    return Histogram(name, HELP[name], registry=registry, buckets=buckets)


def _counter(registry: CollectorRegistry, name: str, labels: Sequence[str] = ()) -> Counter:
    return Counter(name, HELP[name], labels, registry=registry)


class IngestCounts(Protocol):
    """What the collector reads of the ingest pipeline (api/sockets/ingest.py `Ingest`)."""

    @property
    def stats(self) -> IngestStats: ...
    @property
    def tracks(self) -> Sized: ...


class TrackerCounts(Protocol):
    """What the collector reads of the tracker (api/sockets/arrivals.py `Tracker`)."""

    @property
    def stats(self) -> TrackingStats: ...


class SocketMetrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        engine: Callable[[], AsyncEngine | None] = lambda: None,
    ) -> None:
        self.registry = registry = registry or CollectorRegistry()
        add_process_collectors(registry, engine)
        self.endpoints = {name: EndpointCounts() for name in ENDPOINTS}
        r = registry
        self.ingest_seconds = _histogram(r, "waybill_position_ingest_seconds", LATENCY_BUCKETS)
        self.history_flush_seconds = _histogram(r, "waybill_history_flush_seconds", WRITE_BUCKETS)
        self.history_batch_size = _histogram(r, "waybill_history_batch_size", BATCH_BUCKETS)
        self.history_failures = _counter(r, "waybill_history_write_failures_total")
        self.fanout_seconds = _histogram(r, "waybill_fanout_seconds", FANOUT_BUCKETS)
        self.subscriber_drops = _counter(r, "waybill_subscriber_drops_total")
        self.refused = _counter(r, "waybill_socket_refused_total", ["reason"])
        for reason in ("rate_limited", "flood", "too_many_connections"):
            self.refused.labels(reason)
        self.subscriber_disconnects = _counter(r, "waybill_subscriber_disconnects_total")
        self.dependency_up = Gauge(
            "waybill_dependency_up", HELP["waybill_dependency_up"], ["dependency"], registry=r
        )
        self._resources: Resources | None = None
        self._checked_at = -1e9
        self._check: asyncio.Task[None] | None = None
        self._stopped = False

    def bind(self, resources: Resources, ingest: IngestCounts, tracker: TrackerCounts) -> None:
        """Read the pipeline's own counts at scrape time, and check these resources' dependencies."""
        self._resources = resources
        self.registry.register(_PipelineCollector(ingest, tracker, self.endpoints))

    # GET /metrics --------------------------------------------------------------------------------

    def response(self) -> Response:
        """The registry in Prometheus' text format. Runs on the event loop (websockets'
        process_request), so it also starts the next dependency check, whose verdict the next
        scrape reports: a scrape never waits on a dependency."""
        if self._check is None and not self._stopped:
            if time.monotonic() - self._checked_at >= DEPENDENCY_CHECK_S:
                self._start_check()
        body = generate_latest(self.registry)
        headers = Headers([("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return Response(200, "OK", headers, body)

    def start(self) -> None:
        """First dependency check, so the first scrape already has a verdict."""
        self._start_check()

    def _start_check(self) -> None:
        if self._resources is not None:
            self._checked_at = time.monotonic()
            self._check = asyncio.get_running_loop().create_task(
                self._check_dependencies(self._resources), name="socket-metrics-dependencies"
            )

    async def stop(self) -> None:
        self._stopped = True  # a scrape while the server shuts down starts no new check
        if self._check is not None:
            self._check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._check

    async def _check_dependencies(self, resources: Resources) -> None:
        from api.http.readiness import readiness  # the checks /ready makes on the API

        try:
            verdicts = await readiness(resources)
            try:
                await asyncio.wait_for(resources.history.ping(), DEPENDENCY_TIMEOUT_S)
                verdicts["history"] = True
            except Exception:
                verdicts["history"] = False
            for name, ok in verdicts.items():
                self.dependency_up.labels(name).set(1 if ok else 0)
        finally:
            self._check = None


class _PipelineCollector(Collector):
    """Counts the ingest pipeline and the tracker keep as plain integers, exported at scrape time."""

    def __init__(
        self, ingest: IngestCounts, tracker: TrackerCounts, endpoints: dict[str, EndpointCounts]
    ) -> None:
        self.ingest, self.tracker, self.endpoints = ingest, tracker, endpoints

    def collect(self) -> Iterable[Metric]:
        connections = GaugeMetricFamily(
            "waybill_socket_connections", "Open authenticated sockets, by endpoint", labels=["endpoint"]
        )
        frames = CounterMetricFamily(
            "waybill_socket_frames",
            "WebSocket frames, by endpoint and direction: in = handled by the endpoint's protocol "
            "(positions, subscriptions), out = sent to clients",
            labels=["endpoint", "direction"],
        )
        for name, c in self.endpoints.items():
            connections.add_metric([name], c.connections)
            frames.add_metric([name, "in"], c.frames_in)
            frames.add_metric([name, "out"], c.frames_out)
        yield connections
        yield frames
        s = self.ingest.stats
        positions = CounterMetricFamily(
            "waybill_positions",
            "Positions received, by outcome (accepted, filtered) and, for filtered ones, the reason "
            "(invalid: malformed or not finite, refused before the filters)",
            labels=["outcome", "reason"],
        )
        positions.add_metric(["accepted", ""], s.accepted)
        filtered = {r.value: 0 for r in Reject} | s.filtered
        # Malformed or non-finite ones are refused by the driver protocol before the filters.
        invalid = s.received - s.accepted - sum(s.filtered.values())
        filtered["invalid"] = filtered.get("invalid", 0) + invalid
        for reason, n in filtered.items():
            positions.add_metric(["filtered", reason], n)
        yield positions
        stored = CounterMetricFamily("waybill_positions_stored", "Positions written to the history store")
        stored.add_metric([], s.stored)
        yield stored
        t = self.tracker.stats
        events = CounterMetricFamily(
            "waybill_tracking_events",
            "Tracking events from the positions: arrivals at stops, ETA updates, depot geofence crossings",
            labels=["kind"],
        )
        events.add_metric(["arrival"], t.arrivals)
        events.add_metric(["eta"], t.etas)
        events.add_metric(["geofence"], t.geofence)
        yield events
        errors = CounterMetricFamily(
            "waybill_tracking_errors", "Tracking evaluations or workflow signals that failed"
        )
        errors.add_metric([], t.errors)
        yield errors
        vehicles = GaugeMetricFamily(
            "waybill_ingest_vehicles", "Vehicles whose track (filter state) this replica holds"
        )
        vehicles.add_metric([], len(self.ingest.tracks))
        yield vehicles
