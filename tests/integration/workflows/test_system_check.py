"""The wiring: client → Temporal → worker → activity → stores, on both Temporal test servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from db.session import create_engine
from domain.health import SystemCheckInput, SystemCheckResult
from plumbing.temporal import TemporalConnector
from tests.support import test_settings
from workers.compose import build_workers
from workflows.system_check import SystemCheckWorkflow


@pytest.fixture
async def resources(sqlite_url: str, workflow_env: WorkflowEnvironment) -> AsyncIterator[Resources]:
    settings = test_settings(database_url=sqlite_url, temporal_task_queue=f"tq-{uuid.uuid4().hex[:8]}")
    res = await Resources.open(settings, TemporalConnector(settings, workflow_env.client))
    yield res
    await res.close()


async def run_check(env: WorkflowEnvironment, resources: Resources) -> SystemCheckResult:
    workers = build_workers(env.client, resources, ["default"])
    assert [w.task_queue for w in workers] == [resources.settings.temporal_task_queue]
    async with workers[0]:
        return await env.client.execute_workflow(
            SystemCheckWorkflow.run,
            SystemCheckInput(requested_by="test"),
            id=f"system-check-{uuid.uuid4()}",
            task_queue=resources.settings.temporal_task_queue,
        )


async def test_system_check_end_to_end(resources: Resources, workflow_env: WorkflowEnvironment) -> None:
    result = await run_check(workflow_env, resources)
    assert result.ok
    assert {s.name: s.backend for s in result.stores} == {
        "database": "sqlite",
        "cache_bus": "in-process",
        "history": "sqlite",
    }
    assert result.worker_identity


async def test_system_check_names_a_broken_store(
    resources: Resources, workflow_env: WorkflowEnvironment
) -> None:
    await resources.engine.dispose()
    resources.engine = create_engine("sqlite+aiosqlite:////nonexistent-dir/waybill.db")
    result = await run_check(workflow_env, resources)
    assert not result.ok
    assert [s.name for s in result.stores if not s.ok] == ["database"]
