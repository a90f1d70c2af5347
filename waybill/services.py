"""The three runnable roles (API, sockets, worker) as start/stop services, and the signal-driven runner.

`waybill api|sockets|worker` each run one of them; `waybill dev` runs all three on shared resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Protocol

import uvicorn
from prometheus_client import CollectorRegistry
from temporalio.worker import Worker
from websockets.asyncio.server import Server as WsServer

from api.app import create_app
from api.resources import Resources
from api.sockets.server import SocketServer
from starters.calls import WorkflowStarters
from workers.compose import build_workers
from workers.log_context import LogContextInterceptor
from workers.metrics import MetricsInterceptor, MetricsServer, WorkerMetrics
from workers.schedules import ensure_analytics_schedules, ensure_reconcile_schedule
from workers.search_attributes import ensure_search_attributes

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def failed(self) -> BaseException | None: ...


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the runner owns SIGINT/SIGTERM so that every service stops in order


class ApiService:
    name = "api"

    def __init__(self, resources: Resources, host: str, port: int) -> None:
        app = create_app(resources.settings, resources)
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default, which lets any local client (or
        # one behind a proxy that does not reset the header) pick its own address for the per-IP rate
        # limits: only the configured proxies are believed, none unless set.
        trusted = resources.settings.trusted_proxies
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            proxy_headers=bool(trusted),
            forwarded_allow_ips=trusted,
        )
        self.server = _Uvicorn(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(), name="api")
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises what went wrong
                raise RuntimeError("the API server stopped during start-up")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task:
            await self.task

    def failed(self) -> BaseException | None:
        return _task_failure(self.task)


class SocketService:
    name = "sockets"

    def __init__(self, resources: Resources, host: str, port: int, replica: int | None = None) -> None:
        self.sockets = SocketServer(resources)
        self.host, self.port, self.replica = host, port, replica
        self.server: WsServer | None = None

    async def start(self) -> None:
        self.server = await self.sockets.start(self.host, self.port, replica=self.replica)

    async def stop(self) -> None:
        if self.server:
            await self.sockets.stop()  # stores and acknowledges received positions before closing

    def failed(self) -> BaseException | None:
        return None


class WorkerService:
    name = "worker"

    def __init__(self, resources: Resources, queues: Sequence[str]) -> None:
        self.resources = resources
        self.queues = queues
        self.workers: list[Worker] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.metrics = WorkerMetrics(CollectorRegistry(), lambda: resources.engine)
        self.metrics_server = MetricsServer(resources, self.metrics)

    async def start(self) -> None:
        client = await self.resources.temporal.get()
        try:
            await ensure_search_attributes(client, self.resources.settings.temporal_namespace)
        except Exception as exc:  # e.g. no operator permission on a managed cluster: register them there
            log.warning("could not register search attributes: %s (see docs/operations.md)", exc)
        if self.resources.settings.analytics_schedules and "default" in self.queues:
            try:
                await ensure_analytics_schedules(client, self.resources)
            except Exception as exc:  # the worker still serves; the next start tries again
                log.warning("could not create the analytics schedules: %s (see docs/analytics.md)", exc)
        if "default" in self.queues:
            try:
                await ensure_reconcile_schedule(client, self.resources.settings)
            except Exception as exc:  # as above: the next start tries again
                log.warning("could not create the reconciler's schedule: %s (see docs/operations.md)", exc)
        interceptors = [LogContextInterceptor(), MetricsInterceptor(self.metrics)]
        # What activities call workflows with: the worker's own Temporal connection.
        calls = WorkflowStarters(self.resources.temporal, self.resources.settings)
        self.workers = build_workers(client, self.resources, self.queues, interceptors, self.metrics, calls)
        if not self.workers:
            raise RuntimeError(f"nothing is registered on queue(s) {', '.join(self.queues)}")
        self.tasks = [asyncio.create_task(w.run(), name=f"worker:{w.task_queue}") for w in self.workers]
        self.metrics_server.start()
        log.info("worker polling", extra={"task_queues": [w.task_queue for w in self.workers]})

    async def stop(self) -> None:
        # shutdown() stops polling, lets running activities finish (graceful timeout), then returns.
        await asyncio.gather(*(w.shutdown() for w in self.workers), return_exceptions=True)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.metrics_server.stop()

    def failed(self) -> BaseException | None:
        for task in self.tasks:
            if (exc := _task_failure(task)) is not None:
                return exc
        return None


def _task_failure(task: asyncio.Task[None] | None) -> BaseException | None:
    if task is None or not task.done() or task.cancelled():
        return None
    exc = task.exception()
    return exc if exc is not None else RuntimeError(f"{task.get_name()} stopped unexpectedly")


async def run_services(
    services: Sequence[Service], on_started: Callable[[], Awaitable[None] | None] | None = None
) -> int:
    """Start services in order, run until SIGINT/SIGTERM or a failure, stop them in reverse order."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started: list[Service] = []
    exit_code = 0
    try:
        for service in services:
            await service.start()
            started.append(service)
        if on_started is not None:
            result = on_started()
            if result is not None:
                await result
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            for service in started:
                if (exc := service.failed()) is not None:
                    log.error("%s failed: %s", service.name, exc)
                    exit_code = 1
                    stop.set()
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("error while stopping %s", service.name)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return exit_code
