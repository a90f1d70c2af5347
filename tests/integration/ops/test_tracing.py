"""Traces over OTLP/HTTP: one request that creates a delivery yields one trace from the HTTP span
through the workflow start to the workflow run and its activities, received by a real local
OTLP endpoint (an HTTP server on loopback that decodes the protobuf export requests)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from domain.roles import Role
from plumbing import tracing
from tests.support import PASSWORD, free_port, make_tenant, test_settings
from waybill.services import ApiService
from workers.compose import build_workers


class Collector:
    def __init__(self) -> None:
        self.spans: list[tuple[str, bytes, str]] = []  # (name, trace id, service)
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for rs in request.resource_spans:
                        service = next(
                            a.value.string_value for a in rs.resource.attributes if a.key == "service.name"
                        )
                        for ss in rs.scope_spans:
                            collector.spans.extend((s.name, s.trace_id, service) for s in ss.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    c = Collector()
    server = ThreadingHTTPServer(("127.0.0.1", 0), c.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield c, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_one_trace_from_the_request_to_the_activities(
    sqlite_url: str, dev_env: WorkflowEnvironment, collector: tuple[Collector, str], tmp_path: Path
) -> None:
    spans, endpoint = collector
    settings = test_settings(
        database_url=sqlite_url,
        temporal_address=dev_env.client.service_client.config.target_host,
        temporal_task_queue=f"tr-{uuid.uuid4().hex[:6]}",
        otlp_endpoint=endpoint,
        data_dir=tmp_path,
    )
    tracing.configure(settings, "waybill-test")
    try:
        resources = await Resources.open(settings)
        tenant = await make_tenant(resources.sessionmaker)
        client = await resources.temporal.get()  # connected with the tracing interceptor
        port = free_port()
        api = ApiService(resources, "127.0.0.1", port)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(build_workers(client, resources, ["default"])[0])
            await api.start()
            stack.push_async_callback(api.stop)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                r = await http.post(
                    "/api/v1/auth/login", json={"email": tenant.emails[Role.DISPATCHER], "password": PASSWORD}
                )
                headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
                now = datetime.now(UTC)
                created = await http.post(
                    "/api/v1/deliveries",
                    headers=headers,
                    json={
                        "dropoff": {
                            "address": "Somewhere 1",
                            "location": {"lat": 52.5, "lon": 13.4},
                            "windows": [
                                {"start": now.isoformat(), "end": (now + timedelta(hours=2)).isoformat()}
                            ],
                        }
                    },
                )
                assert created.status_code == 201, created.text
            handle = client.get_workflow_handle(f"delivery-{created.json()['id']}")
            for _ in range(100):  # until the worker recorded the creation (its last activity: notify)
                events = [e async for e in handle.fetch_history_events()]
                if sum(e.HasField("activity_task_completed_event_attributes") for e in events) >= 4:
                    break
                await asyncio.sleep(0.1)
        await resources.close()
    finally:
        tracing.shutdown()  # flushes every buffered span to the collector

    names = sorted({name for name, *_ in spans.spans})
    http_span = next((s for s in spans.spans if s[0] == "POST /api/v1/deliveries"), None)
    assert http_span is not None, names
    trace = {name for name, trace_id, _ in spans.spans if trace_id == http_span[1]}
    assert {
        "StartWorkflow:DeliveryWorkflow",
        "RunWorkflow:DeliveryWorkflow",
        "StartActivity:project_delivery",
        "RunActivity:project_delivery",
        "RunActivity:notify",
    } <= trace, sorted(trace)
    assert {service for *_, service in spans.spans} == {"waybill-test"}
    assert tracing.tracer() is None
