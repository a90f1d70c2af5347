from __future__ import annotations

import uuid
from dataclasses import replace

import httpx

from api.resources import Resources
from plumbing.temporal import TemporalConnector
from tests.integration.api.test_auth import assert_problem
from tests.support import free_port
from waybill.services import ApiService


async def test_health_ready_metrics(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json()["status"] == "ok"
    ready = await http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "cache": "ok", "temporal": "ok"}
    assert (await http.get("/api/v1/nope")).status_code == 404
    assert (await http.get(f"/api/v1/depots/{uuid.uuid4()}")).status_code == 401
    metrics = (await http.get("/metrics")).text
    # Labelled by the full template (prefixes included), never by the raw path with its ids.
    assert 'route="/api/v1/depots/{depot_id}",status="401"' in metrics
    assert "process_resident_memory_bytes" in metrics
    assert 'waybill_db_pool_connections{state="checked_out"}' in metrics
    for dependency in ("database", "cache", "temporal"):
        assert f'waybill_dependency_up{{dependency="{dependency}"}} 1.0' in metrics
    assert 'waybill_http_requests_total{method="GET",route="/ready",status="200"}' in metrics
    assert 'waybill_http_requests_total{method="GET",route="unmatched",status="404"}' in metrics
    assert 'waybill_http_request_duration_seconds_count{method="GET",route="/ready"}' in metrics


async def test_openapi_docs_served(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/docs")).status_code == 200
    spec = (await http.get("/api/openapi.json")).json()
    assert "/api/v1/auth/login" in spec["paths"]


async def test_unknown_route_is_problem(http: httpx.AsyncClient) -> None:
    assert_problem(await http.get("/api/v1/nope"), 404, "not_found")
    assert_problem(await http.put("/health"), 405, "method_not_allowed")


async def test_ready_names_temporal_when_it_is_down(api_resources: Resources) -> None:
    settings = api_resources.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    broken = replace(api_resources, settings=settings, temporal=TemporalConnector(settings))
    port = free_port()
    service = ApiService(broken, "127.0.0.1", port)
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            body = assert_problem(await client.get("/ready"), 503, "not_ready")
    finally:
        await service.stop()
    assert body["failing"] == ["temporal"]


async def test_request_ids_are_echoed_or_made_up(http: httpx.AsyncClient) -> None:
    given = await http.get("/health", headers={"X-Request-ID": "edge-42.a_b"})
    assert given.headers["x-request-id"] == "edge-42.a_b"
    made = await http.get("/health", headers={"X-Request-ID": "not ok <script>"})
    assert made.headers["x-request-id"] != "not ok <script>"
    assert len(made.headers["x-request-id"]) == 32
    problem = await http.get("/nowhere")
    assert len(problem.headers["x-request-id"]) == 32
