"""Each organization's analytics schedules, created (or brought up to date) when a worker starts.

Ids are stable (`analytics-hourly-{org}`, `analytics-daily-{org}`), so every worker start is
idempotent: an existing schedule gets the current spec and action but keeps its state, so one
paused in the Temporal Web UI stays paused. Organizations created later get theirs at the next
worker start (or from `ensure_org_schedules`). The daily schedule fires at
WAYBILL_ANALYTICS_REPORT_TIME in the organization's time zone (its first depot's).

The delivery reconciler's schedule (`delivery-reconcile`, every WAYBILL_RECONCILE_INTERVAL_SECONDS)
is made the same way, once for the namespace.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from db.repositories.analytics import organizations
from domain.analytics import (
    AnalyticsTarget,
    daily_schedule_id,
    hourly_schedule_id,
)
from domain.reconcile import RECONCILE_SCHEDULE_ID, ReconcileInput
from starters.analytics import target_for
from workflows.analytics import AnalyticsDailyWorkflow, AnalyticsHourlyWorkflow
from workflows.reconcile import ReconcileWorkflow

if TYPE_CHECKING:
    from activities.resources import ActivityResources as Resources
    from plumbing.settings import Settings

CONCURRENCY = 8


def schedules_for(settings: Settings, target: AnalyticsTarget) -> dict[str, Schedule]:
    hour, minute = (int(x) for x in settings.analytics_report_time.split(":"))
    org = target.organization_id
    hourly = Schedule(
        action=ScheduleActionStartWorkflow(
            AnalyticsHourlyWorkflow.run,
            target,
            id=hourly_schedule_id(org),
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(hours=1), offset=timedelta(minutes=5))],
            jitter=timedelta(minutes=5),  # many organizations: not all at the same second
        ),
        policy=SchedulePolicy(catchup_window=timedelta(hours=1)),
        state=ScheduleState(note="Waybill: today's fleet KPIs so far, every hour"),
    )
    daily = Schedule(
        action=ScheduleActionStartWorkflow(
            AnalyticsDailyWorkflow.run,
            target,
            id=daily_schedule_id(org),
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])],
            time_zone_name=target.timezone,
            jitter=timedelta(minutes=10),
        ),
        policy=SchedulePolicy(catchup_window=timedelta(days=1)),
        state=ScheduleState(
            note=f"Waybill: yesterday's fleet report at {settings.analytics_report_time} {target.timezone}"
        ),
    )
    return {hourly_schedule_id(org): hourly, daily_schedule_id(org): daily}


async def ensure_schedule(client: Client, schedule_id: str, schedule: Schedule) -> None:
    """Create the schedule, or give an existing one this spec and action but keep its state (paused)."""
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def keep_state(u: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(dataclasses.replace(schedule, state=u.description.schedule.state))

        await client.get_schedule_handle(schedule_id).update(keep_state)


async def ensure_org_schedules(client: Client, settings: Settings, target: AnalyticsTarget) -> None:
    for schedule_id, schedule in schedules_for(settings, target).items():
        await ensure_schedule(client, schedule_id, schedule)


def reconcile_schedule(settings: Settings) -> Schedule:
    """The delivery reconciler, one schedule for the namespace; a run still going when the next is
    due makes that one skip (the default overlap policy)."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileWorkflow.run,
            ReconcileInput(requested_by="schedule", repair=settings.reconcile_repair),
            id=RECONCILE_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.reconcile_interval_seconds))]
        ),
        policy=SchedulePolicy(catchup_window=timedelta(seconds=settings.reconcile_interval_seconds)),
        state=ScheduleState(note="Waybill: delivery rows and workflows out of step, found and repaired"),
    )


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> bool:
    """Create or update the reconciler's schedule; with WAYBILL_RECONCILE_INTERVAL_SECONDS=0 delete
    it. True if it is on."""
    if settings.reconcile_interval_seconds == 0:
        try:
            await client.get_schedule_handle(RECONCILE_SCHEDULE_ID).delete()
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise
        return False
    await ensure_schedule(client, RECONCILE_SCHEDULE_ID, reconcile_schedule(settings))
    return True


async def analytics_targets(resources: Resources) -> list[AnalyticsTarget]:
    async with resources.sessionmaker() as session:
        orgs = await organizations(session)
    return [await target_for(resources, org) for org in orgs]


async def ensure_analytics_schedules(client: Client, resources: Resources) -> int:
    """Create or update every organization's schedules; returns how many organizations."""
    targets = await analytics_targets(resources)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(target: AnalyticsTarget) -> None:
        async with gate:
            await ensure_org_schedules(client, resources.settings, target)

    await asyncio.gather(*(one(t) for t in targets))
    return len(targets)
