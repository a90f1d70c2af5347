"""Schedules on the real dev server (the time-skipping server has none), and the analytics
workflows run by real workers on both servers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from temporalio.client import ScheduleCalendarSpec
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.resources import Resources
from db.models import AnalyticsReport, Depot
from domain.analytics import BackfillInput, daily_schedule_id, hourly_schedule_id
from plumbing.temporal import TemporalConnector
from starters.analytics import start_backfill, target_for
from tests.integration.analytics.fleet import DAY, build_known_history
from tests.support import make_tenant, test_settings
from workers.compose import plan_queues
from workers.schedules import ensure_org_schedules


@pytest.fixture
async def resources(sqlite_url: str, workflow_env: WorkflowEnvironment) -> AsyncIterator[Resources]:
    tag = uuid.uuid4().hex[:8]
    settings = test_settings(
        database_url=sqlite_url,
        temporal_task_queue=f"an-{tag}",
        temporal_analytics_task_queue=f"an-cpu-{tag}",
        analytics_report_time="03:15",
    )
    r = await Resources.open(settings, TemporalConnector(settings, workflow_env.client))
    yield r
    await r.close()


@pytest.fixture
async def workers(resources: Resources, workflow_env: WorkflowEnvironment) -> AsyncIterator[None]:
    plans = plan_queues(resources, ["default", "analytics"])
    running = [
        Worker(workflow_env.client, task_queue=p.task_queue, workflows=p.workflows, activities=p.activities)
        for name, p in plans.items()
        if name in ("default", "analytics")
    ]
    for w in running:
        await w.__aenter__()
    yield
    for w in running:
        await w.__aexit__(None, None, None)


async def test_backfill_recomputes_every_day_of_the_range(resources: Resources, workers: None) -> None:
    tenant = await make_tenant(resources.sessionmaker)
    await build_known_history(resources.sessionmaker, resources.history, tenant.organization_id)
    target = await target_for(resources, tenant.organization_id)
    assert target.timezone == "Europe/Berlin"  # the depot's
    client = await resources.temporal.get()
    handle = await start_backfill(
        client, resources.settings, BackfillInput(target, "2026-01-13", "2026-01-15")
    )
    result = await handle.result()
    assert [(r.day, r.deliveries) for r in result.reports] == [
        ("2026-01-13", 1),
        (DAY, 4),
        ("2026-01-15", 1),
    ]
    async with resources.sessionmaker() as s:
        days = (
            await s.scalars(
                select(AnalyticsReport.day).where(AnalyticsReport.organization_id == tenant.organization_id)
            )
        ).all()
    assert len(days) == 3
    with pytest.raises(ValueError, match="before"):
        await start_backfill(client, resources.settings, BackfillInput(target, "2026-01-15", "2026-01-13"))


@pytest.mark.parametrize("workflow_env", ["dev_server"], indirect=True)
async def test_schedules_are_created_idempotently_keep_their_pause_and_run(
    resources: Resources, workers: None
) -> None:
    tenant = await make_tenant(resources.sessionmaker)
    org = str(tenant.organization_id)
    async with resources.sessionmaker() as s:
        s.add(
            Depot(
                organization_id=tenant.organization_id,
                name="NY",
                lat=40.7,
                lon=-74.0,
                timezone="America/New_York",
            )
        )
        await s.commit()
    client = await resources.temporal.get()
    target = await target_for(resources, tenant.organization_id)
    await ensure_org_schedules(client, resources.settings, target)
    daily = client.get_schedule_handle(daily_schedule_id(org))
    await daily.pause(note="paused by ops")
    await ensure_org_schedules(client, resources.settings, target)  # again: no error, state kept
    desc = await daily.describe()
    assert desc.schedule.state.paused
    assert desc.schedule.spec.time_zone_name == "America/New_York"
    (cal,) = desc.schedule.spec.calendars
    assert isinstance(cal, ScheduleCalendarSpec)
    assert (cal.hour[0].start, cal.minute[0].start) == (3, 15)
    ids = [s.id async for s in await client.list_schedules()]
    assert hourly_schedule_id(org) in ids

    await client.get_schedule_handle(hourly_schedule_id(org)).trigger()  # today's report, as the hour would
    for _ in range(100):
        async with resources.sessionmaker() as s:
            row = await s.scalar(
                select(AnalyticsReport).where(AnalyticsReport.organization_id == tenant.organization_id)
            )
        if row is not None:
            break
        await asyncio.sleep(0.2)
    assert row is not None
    assert (row.final, row.timezone, row.deliveries) == (False, "America/New_York", 0)
    for sid in (hourly_schedule_id(org), daily_schedule_id(org)):
        await client.get_schedule_handle(sid).delete()
