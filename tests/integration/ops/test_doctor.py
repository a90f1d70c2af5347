"""`waybill doctor` against real parts: what is up is ok, what is down or stale is named."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from plumbing.temporal import TemporalConnector
from tests.support import free_port, test_settings
from tools.doctor import Verdict, format_findings, run_doctor
from workers.compose import build_workers


async def test_a_healthy_installation_is_ready(
    database_url: str, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = test_settings(
        database_url=database_url,
        temporal_address=dev_env.client.service_client.config.target_host,
        temporal_task_queue=f"doc-{uuid.uuid4().hex[:6]}",
        temporal_routing_task_queue=f"doc-r-{uuid.uuid4().hex[:6]}",
        data_dir=tmp_path,
    )
    resources = await Resources.open(settings, TemporalConnector(settings, dev_env.client))
    try:
        async with contextlib.AsyncExitStack() as stack:
            for worker in build_workers(dev_env.client, resources):
                await stack.enter_async_context(worker)
            # A started worker shows as a poller only once its first poll reached the server,
            # which on a busy machine can take a moment: give it a few seconds.
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                findings = {f.part: f for f in await run_doctor(settings)}
                if findings["workers"].verdict is not Verdict.WARN:
                    break
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.5)
    finally:
        await resources.close()
    assert {p: f.verdict for p, f in findings.items() if f.verdict is Verdict.FAIL} == {}
    assert findings["migrations"].verdict is Verdict.OK
    assert findings["temporal"].verdict is Verdict.OK
    assert findings["workers"].verdict is Verdict.OK, findings["workers"]


async def test_down_and_stale_parts_are_named(tmp_path: Path) -> None:
    port = free_port()
    settings = test_settings(
        database_url=f"sqlite:///{tmp_path}/never-migrated.db",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        temporal_address=f"127.0.0.1:{port}",
        data_dir=tmp_path,
    )
    findings = {f.part: f for f in await run_doctor(settings)}
    assert findings["migrations"].verdict is Verdict.FAIL
    assert "waybill migrate" in findings["migrations"].detail
    assert findings["cache and bus"].verdict is Verdict.FAIL
    assert findings["temporal"].verdict is Verdict.FAIL
    assert f"127.0.0.1:{port}" in findings["temporal"].detail
    assert format_findings(list(findings.values())).endswith("(4 failed, 2 warnings)")
    assert "not ready" in format_findings(list(findings.values()))
