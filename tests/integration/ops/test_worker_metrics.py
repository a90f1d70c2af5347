"""The worker's Prometheus endpoints: its own registry (activities, business gauges) and the
Temporal SDK's, scraped over HTTP after real workflows ran."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from plumbing.temporal import TemporalConnector
from tests.integration.workflows.delivery_support import make_input
from tests.support import free_port, make_tenant, test_settings
from waybill.services import WorkerService
from workers.metrics import sdk_metrics_runtime
from workflows.delivery import DeliveryWorkflow


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_worker_serves_activity_business_and_sdk_metrics(
    sqlite_url: str, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    app_port, sdk_port = free_port(), free_port()
    settings = test_settings(
        database_url=sqlite_url,
        temporal_address=dev_env.client.service_client.config.target_host,
        temporal_task_queue=f"m-{uuid.uuid4().hex[:6]}",
        temporal_routing_task_queue=f"m-r-{uuid.uuid4().hex[:6]}",
        worker_metrics_port=app_port,
        temporal_metrics_port=sdk_port,
        data_dir=tmp_path,
    )
    connector = TemporalConnector(settings, runtime=sdk_metrics_runtime(settings))
    resources = await Resources.open(settings, connector)
    service = WorkerService(resources, ["default"])
    service.metrics_server.interval_s = 0.2
    await service.start()
    try:
        org = str((await make_tenant(resources.sessionmaker)).organization_id)
        client = await connector.get()
        params = make_input(org)
        await client.start_workflow(
            DeliveryWorkflow.run,
            params,
            id=f"delivery-{params.delivery_id}",
            task_queue=settings.temporal_task_queue,
        )
        key = (
            "waybill_activity_duration_seconds_count",
            (("activity", "project_delivery"), ("outcome", "completed")),
        )
        for _ in range(100):
            samples = scrape(app_port)
            if (
                samples.get(key, 0) >= 1
                and samples.get(("waybill_deliveries", (("status", "pending"),)), 0) >= 1
            ):
                break
            await asyncio.sleep(0.1)
        assert samples[key] >= 1
        assert samples[("waybill_deliveries", (("status", "pending"),))] >= 1
        assert samples[("waybill_deliveries_oldest_pending_seconds", ())] >= 0
        assert samples[("process_resident_memory_bytes", ())] > 0
        sdk = scrape(sdk_port)
        assert any(name.startswith("temporal_") and value > 0 for (name, _), value in sdk.items()), sorted(
            sdk
        )[:5]
    finally:
        await service.stop()
        await resources.close()
