"""A real Prometheus server (Debian's package) scrapes the API, the socket server, the worker and the
Temporal SDK while deliveries flow and a driver streams positions to a subscribed dispatcher; the key
series have non-zero values in its query API, and every metric name the dashboards and alert rules
use is among what it scraped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from websockets.asyncio.client import ClientConnection

from api.resources import Resources
from domain.roles import Role
from domain.route_plans import PlanRequest
from domain.workflow_names import plan_workflow_id
from plumbing.temporal import TemporalConnector
from tests.integration.sockets.support import (
    driver_token,
    fix,
    make_fleet,
    open_socket,
    recv_until,
    staff_token,
    track,
)
from tests.support import PASSWORD, free_port, make_tenant, test_settings
from tests.unit.test_monitoring_files import metric_names
from waybill.services import ApiService, SocketService, WorkerService
from workers.metrics import sdk_metrics_runtime
from workflows.route_plan import RoutePlanWorkflow

PROMETHEUS = shutil.which("prometheus")
POSITIONS = 20
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="needs Debian's prometheus package (CI installs it)"
)


@workflow.defn(sandboxed=False)
class AlwaysFailingTask:
    """A workflow whose task fails, so the SDK's failure counter has something to count."""

    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a bug, on purpose")


@contextlib.asynccontextmanager
async def prometheus(targets: dict[str, int], tmp: Path) -> AsyncIterator[str]:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
            for job, p in targets.items()
        ],
    }
    (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    assert PROMETHEUS is not None
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "prometheus.log").open("w"),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def query(http: httpx.AsyncClient, url: str, promql: str) -> float:
    try:
        r = await http.get(f"{url}/api/v1/query", params={"query": promql})
    except httpx.TransportError:  # Prometheus still starting
        return 0.0
    result = r.json()["data"]["result"] if r.status_code == 200 else []
    return sum(float(s["value"][1]) for s in result)


async def test_prometheus_scrapes_every_process_and_finds_the_series_in_use(
    sqlite_url: str, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ports = {"api": free_port(), "sockets": free_port(), "worker": free_port(), "sdk": free_port()}
    settings = test_settings(
        database_url=sqlite_url,
        data_dir=tmp_path,
        temporal_address=dev_env.client.service_client.config.target_host,
        temporal_task_queue=f"prom-{uuid.uuid4().hex[:6]}",
        temporal_routing_task_queue=f"prom-r-{uuid.uuid4().hex[:6]}",
        worker_metrics_port=ports["worker"],
        temporal_metrics_port=ports["sdk"],
        access_token_ttl_seconds=600,
    )
    resources = await Resources.open(
        settings, TemporalConnector(settings, runtime=sdk_metrics_runtime(settings))
    )
    tenant = await make_tenant(resources.sessionmaker)
    services = [
        WorkerService(resources, ["default", "routing"]),
        ApiService(resources, "127.0.0.1", ports["api"]),
        SocketService(resources, "127.0.0.1", ports["sockets"]),
    ]
    services[0].metrics_server.interval_s = 0.5  # type: ignore[attr-defined]
    jobs = {f"waybill-{name}": port for name, port in ports.items()}
    async with contextlib.AsyncExitStack() as stack:
        for service in services:
            await service.start()
            stack.push_async_callback(service.stop)
        stack.push_async_callback(resources.close)
        client = await resources.temporal.get()
        broken = Worker(client, task_queue=f"broken-{uuid.uuid4().hex[:6]}", workflows=[AlwaysFailingTask])
        await stack.enter_async_context(broken)
        failing = await client.start_workflow(
            AlwaysFailingTask.run, id=f"broken-{uuid.uuid4()}", task_queue=broken.task_queue
        )
        stack.push_async_callback(failing.terminate)
        # An activity that fails (a plan for a depot that does not exist), for the failure counter.
        plan_id = str(uuid.uuid4())
        await client.start_workflow(
            RoutePlanWorkflow.run,
            PlanRequest(str(tenant.organization_id), plan_id, str(uuid.uuid4()), None, "test"),
            id=plan_workflow_id(plan_id),
            task_queue=settings.temporal_task_queue,
        )
        base = f"http://127.0.0.1:{ports['api']}"
        async with httpx.AsyncClient(timeout=10) as http:
            await drive(http, base, tenant.emails[Role.DISPATCHER])
            for ws in await stream_positions(resources, f"ws://127.0.0.1:{ports['sockets']}"):
                stack.push_async_callback(ws.close)  # open while Prometheus scrapes: connections > 0
            async with prometheus(jobs, tmp_path) as prom:
                wanted = {
                    'sum(waybill_http_requests_total{route="/api/v1/deliveries",status="201"})': 3,
                    'sum(waybill_activity_duration_seconds_count{activity="project_delivery"})': 3,
                    'sum(waybill_deliveries{status="pending"})': 3,
                    "sum(waybill_dependency_up)": 3,
                    "sum(temporal_workflow_task_execution_failed)": 1,
                    'sum(waybill_activity_failures_total{activity="load_routing_problem"})': 1,
                    'sum(up{job=~"waybill-.*"})': 4,
                    'sum(waybill_socket_connections{job="waybill-sockets"})': 2,
                    'sum(waybill_socket_frames_total{endpoint="driver",direction="in"})': 2,
                    'sum(waybill_socket_frames_total{endpoint="dispatch",direction="out"})': 2,
                    'sum(waybill_positions_total{outcome="accepted"})': POSITIONS,
                    'sum(waybill_positions_total{outcome="filtered",reason="inaccurate"})': 1,
                    "sum(waybill_position_ingest_seconds_count)": 1,
                    "sum(waybill_history_flush_seconds_count)": 1,
                    "sum(waybill_history_batch_size_sum)": POSITIONS,
                    "sum(waybill_fanout_seconds_count)": 1,
                    'sum(waybill_dependency_up{job="waybill-sockets"})': 4,
                    'sum(process_resident_memory_bytes{job="waybill-sockets"})': 1,
                }
                values: dict[str, float] = {}
                for _ in range(60):
                    values = {q: await query(http, prom, q) for q in wanted}
                    if all(values[q] >= n for q, n in wanted.items()):
                        break
                    await asyncio.sleep(0.5)
                assert all(values[q] >= n for q, n in wanted.items()), values
                r = await http.get(f"{prom}/api/v1/label/__name__/values")
                scraped = set(r.json()["data"])
    missing = metric_names() - scraped
    assert not missing, f"used in deploy/ but never scraped: {sorted(missing)}"


async def stream_positions(resources: Resources, url: str) -> list[ClientConnection]:
    """A dispatcher subscribed to the fleet; its driver sends POSITIONS positions and one inaccurate
    one, all acknowledged, and the dispatcher receives the accepted ones. Both sockets stay open."""
    fleet = await make_fleet(resources.sessionmaker, 1)
    dispatcher, _ = await open_socket(f"{url}/ws/dispatch", staff_token(resources.tokens, fleet))
    await dispatcher.send(json.dumps({"type": "subscribe", "topic": "fleet"}))
    await recv_until(dispatcher, "subscribed")
    driver, _ = await open_socket(f"{url}/ws/driver", driver_token(resources.tokens, fleet, 0))
    points = track(POSITIONS)
    for p in points[:2]:
        await driver.send(json.dumps({"type": "position", **p}))
    await driver.send(json.dumps({"type": "positions", "positions": points[2:]}))
    await driver.send(json.dumps({"type": "position", **fix(POSITIONS + 1, 52.6, 13.4, accuracy_m=900.0)}))
    acked: set[int] = set()
    while len(acked) < POSITIONS + 1:
        acked.update((await recv_until(driver, "ack"))["seqs"])
    received = 0
    while received < POSITIONS:
        received += len((await recv_until(dispatcher, "positions"))["positions"])
    return [driver, dispatcher]


async def drive(http: httpx.AsyncClient, base: str, email: str) -> str:
    r = await http.post(f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    token = r.json()["access_token"]
    now = datetime.now(UTC)
    for i in range(3):
        created = await http.post(
            f"{base}/api/v1/deliveries",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "dropoff": {
                    "address": f"Stop {i}",
                    "location": {"lat": 52.5 + i / 100, "lon": 13.4},
                    "windows": [{"start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat()}],
                }
            },
        )
        assert created.status_code == 201, created.text
    await http.get(f"{base}/api/v1/nowhere")
    return str(token)
