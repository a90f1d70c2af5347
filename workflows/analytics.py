"""Analytics workflows, started by each organization's Temporal Schedules (workers/schedules.py)
or by a backfill request. They only decide which days to compute; the pandas activity on the
analytics task queue reads the stores and writes the report.

- AnalyticsHourlyWorkflow (schedule `analytics-hourly-{org}`): today's report so far (not final).
- AnalyticsDailyWorkflow (schedule `analytics-daily-{org}`): yesterday's final report.
- AnalyticsBackfillWorkflow (id `analytics-backfill-{org}-{from}-{to}`): every day of a range.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.interfaces.analytics import AnalyticsInterface
    from domain.analytics import (
        AnalyticsTarget,
        BackfillInput,
        BackfillResult,
        ComputeReportInput,
        ComputeReportResult,
        ScheduledRunResult,
        days_between,
    )

# Set by the server on every workflow a schedule starts: the time it was due (not when it ran).
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
TIMEOUT = timedelta(minutes=30)
HEARTBEAT = timedelta(minutes=2)
RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=10))


def _scheduled_time() -> datetime:
    return workflow.info().typed_search_attributes.get(SCHEDULED_START) or workflow.now()


async def _compute(target: AnalyticsTarget, inp: ComputeReportInput) -> ComputeReportResult:
    result: ComputeReportResult = await workflow.execute_activity_method(
        AnalyticsInterface.compute_daily_report,
        inp,
        task_queue=target.task_queue,
        start_to_close_timeout=TIMEOUT,
        heartbeat_timeout=HEARTBEAT,
        retry_policy=RETRY,
    )
    return result


@workflow.defn
class AnalyticsHourlyWorkflow:
    @workflow.run
    async def run(self, target: AnalyticsTarget) -> ScheduledRunResult:
        today = ComputeReportInput(
            target.organization_id, target.timezone, at=_scheduled_time(), day_offset=0, final=False
        )
        return ScheduledRunResult([await _compute(target, today)])


@workflow.defn
class AnalyticsDailyWorkflow:
    @workflow.run
    async def run(self, target: AnalyticsTarget) -> ScheduledRunResult:
        yesterday = ComputeReportInput(
            target.organization_id, target.timezone, at=_scheduled_time(), day_offset=-1, final=True
        )
        return ScheduledRunResult([await _compute(target, yesterday)])


@workflow.defn
class AnalyticsBackfillWorkflow:
    """Days one after another: one day's frames in memory at a time, progress visible as history."""

    def __init__(self) -> None:
        self._done: list[ComputeReportResult] = []

    @workflow.run
    async def run(self, inp: BackfillInput) -> BackfillResult:
        t = inp.target
        try:
            days = days_between(inp.from_day, inp.to_day)
        except ValueError as exc:  # callers validate first; a bad range must not retry forever
            raise ApplicationError(str(exc), type="InvalidRange", non_retryable=True) from None
        for day in days:
            self._done.append(await _compute(t, ComputeReportInput(t.organization_id, t.timezone, day=day)))
        return BackfillResult(len(self._done), sum(r.deliveries for r in self._done), list(self._done))

    @workflow.query
    def progress(self) -> list[ComputeReportResult]:
        return list(self._done)
