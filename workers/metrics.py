"""Worker metrics: activity durations and failures (an interceptor), business gauges read from
the projection, and the Temporal SDK's own metrics (its runtime's Prometheus endpoint).

The worker has no web server, so its registry is served by prometheus-client's small HTTP server
on WAYBILL_WORKER_METRICS_PORT; the SDK serves its series on WAYBILL_TEMPORAL_METRICS_PORT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities.resources import ActivityResources as Resources
from db.process_metrics import add_process_collectors
from db.repositories.worker_gauges import OPEN_STATUSES, business_counts
from domain.reconcile import FindingKind, ReconcileResult
from plumbing.settings import Settings

log = logging.getLogger(__name__)
_runtimes: dict[str, Runtime] = {}


def sdk_metrics_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting the SDK's metrics (one per process and address), or None.

    A port already taken costs the metrics, not the worker: it logs and goes on without them."""
    if not settings.temporal_metrics_port:
        return None
    address = f"{settings.metrics_host}:{settings.temporal_metrics_port}"
    if address not in _runtimes:
        try:
            _runtimes[address] = Runtime(
                telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address))
            )
        except Exception as exc:  # the core raises a plain RuntimeError when it cannot bind
            log.warning("Temporal SDK metrics are off: cannot serve them on %s (%s)", address, exc)
            return None
    return _runtimes[address]


class WorkerMetrics:
    def __init__(
        self, registry: CollectorRegistry, engine: Callable[[], AsyncEngine | None] = lambda: None
    ) -> None:
        self.registry = registry
        add_process_collectors(registry, engine)
        self.activity_seconds = Histogram(
            "waybill_activity_duration_seconds",
            "Activity execution time, by activity type and outcome",
            ["activity", "outcome"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.activity_failures = Counter(
            "waybill_activity_failures_total",
            "Activity attempts that raised, by activity type and error type",
            ["activity", "error"],
            registry=registry,
        )
        self.deliveries = Gauge(
            "waybill_deliveries", "Deliveries by status (the projection)", ["status"], registry=registry
        )
        self.late_open = Gauge(
            "waybill_deliveries_late_open",
            "Open deliveries whose promised window has passed",
            registry=registry,
        )
        self.oldest_pending = Gauge(
            "waybill_deliveries_oldest_pending_seconds",
            "Age of the oldest pending (unassigned) delivery",
            registry=registry,
        )
        self.routes = Gauge("waybill_routes", "Routes by status", ["status"], registry=registry)
        # The reconciler (activities/reconcile.py): anything found is a bug's trace, repaired or not.
        self.reconcile_found = Counter(
            "waybill_reconcile_found",
            "Deliveries the reconciler found out of step, by kind (again by every run that finds them)",
            ["kind"],
            registry=registry,
        )
        self.reconcile_last_found = Gauge(
            "waybill_reconcile_last_found",
            "Deliveries out of step found by the last reconciler run on this worker, by kind",
            ["kind"],
            registry=registry,
        )
        self.reconcile_last_unrepairable = Gauge(
            "waybill_reconcile_last_unrepairable",
            "Deliveries the last reconciler run on this worker could not repair (they need an operator)",
            registry=registry,
        )
        self.reconcile_last_run = Gauge(
            "waybill_reconcile_last_run_timestamp_seconds",
            "When the last reconciler run on this worker finished (0: none since the worker started)",
            registry=registry,
        )
        for kind in FindingKind:  # every series exists from the start, so increase() sees the first
            self.reconcile_found.labels(kind.value)
            self.reconcile_last_found.labels(kind.value).set(0)

    def record_reconcile(self, result: ReconcileResult) -> None:
        counts = {
            FindingKind.MISSING_WORKFLOW: result.missing_workflow,
            FindingKind.CLOSED_WORKFLOW: result.closed_workflow,
            FindingKind.MISSING_ROW: result.missing_row,
        }
        for kind, count in counts.items():
            self.reconcile_found.labels(kind.value).inc(count)
            self.reconcile_last_found.labels(kind.value).set(count)
        self.reconcile_last_unrepairable.set(result.unrepairable)
        self.reconcile_last_run.set(time.time())

    async def refresh_business(self, resources: Resources) -> None:
        """Read the gauges from the projection (a few aggregate queries, indexed by status)."""
        now = datetime.now(UTC)
        async with resources.sessionmaker() as session:
            counts = await business_counts(session, now)
        by_status, oldest, routes = counts.deliveries, counts.oldest_pending, counts.routes
        for status in {*OPEN_STATUSES, "delivered", "returned", "cancelled", *by_status}:
            self.deliveries.labels(status).set(by_status.get(status, 0))
        self.late_open.set(counts.late_open)
        self.oldest_pending.set((now - oldest).total_seconds() if oldest else 0)
        for status in {"planned", "in_progress", "completed", *routes}:
            self.routes.labels(status).set(routes.get(status, 0))


class MetricsInterceptor(Interceptor):
    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:  # noqa: A002
        return _ActivityMetrics(next, self.metrics)


class _ActivityMetrics(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: WorkerMetrics) -> None:  # noqa: A002
        super().__init__(next)
        self.metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:  # noqa: A002
        name = activity.info().activity_type
        start = time.perf_counter()
        try:
            result = await super().execute_activity(input)
        except BaseException as exc:
            self.metrics.activity_seconds.labels(name, "failed").observe(time.perf_counter() - start)
            self.metrics.activity_failures.labels(name, type(exc).__name__).inc()
            raise
        self.metrics.activity_seconds.labels(name, "completed").observe(time.perf_counter() - start)
        return result


class MetricsServer:
    """Serves a registry over HTTP and keeps the business gauges fresh while the worker runs."""

    def __init__(self, resources: Resources, metrics: WorkerMetrics, interval_s: float = 15.0) -> None:
        self.resources = resources
        self.metrics = metrics
        self.interval_s = interval_s
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        s = self.resources.settings
        if s.worker_metrics_port:
            try:
                self._server, _ = start_http_server(
                    s.worker_metrics_port, s.metrics_host, registry=self.metrics.registry
                )
            except OSError as exc:
                log.warning("worker metrics are off: port %s: %s", s.worker_metrics_port, exc)
        self._task = asyncio.create_task(self._refresh_loop(), name="worker-metrics")

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.metrics.refresh_business(self.resources)
            except Exception as exc:  # a database hiccup must not stop the worker; the next round retries
                log.warning("could not refresh business metrics: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
