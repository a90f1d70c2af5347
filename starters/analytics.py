"""Client-side calls into the analytics workflows: a backfill of a range of days (API, CLI), and the
target an organization's analytics run with (its time zone and task queue)."""

from __future__ import annotations

import logging
import uuid
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities.resources import ActivityResources
from db.repositories.analytics import organization_timezone
from domain.analytics import (
    AnalyticsTarget,
    BackfillInput,
    BackfillResult,
    backfill_workflow_id,
    days_between,
)
from plumbing.settings import Settings
from workflows.analytics import AnalyticsBackfillWorkflow

log = logging.getLogger(__name__)


def _zone(name: str, default: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r, analytics use %s", name, default)
        return default
    return name


async def start_backfill(
    client: Client, settings: Settings, inp: BackfillInput
) -> WorkflowHandle[Any, BackfillResult]:
    """Start (or join the running) backfill of the range; the range is checked before it starts."""
    days_between(inp.from_day, inp.to_day)  # raises ValueError for a bad range
    return await client.start_workflow(
        AnalyticsBackfillWorkflow.run,
        inp,
        id=backfill_workflow_id(inp.target.organization_id, inp.from_day, inp.to_day),
        task_queue=settings.temporal_task_queue,
        # The same range again while it runs joins it; after it finished, runs again (after a fix).
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


async def target_for(resources: ActivityResources, organization_id: uuid.UUID) -> AnalyticsTarget:
    s = resources.settings
    async with resources.sessionmaker() as session:
        tz = await organization_timezone(session, organization_id, s.analytics_default_timezone)
    return AnalyticsTarget(
        str(organization_id), _zone(tz, s.analytics_default_timezone), s.temporal_analytics_task_queue
    )
