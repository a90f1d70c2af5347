"""The analytics computation, on the `analytics` task queue (activities/analytics/activities.py)."""

from __future__ import annotations

from temporalio import activity

from domain.analytics import ComputeReportInput, ComputeReportResult


class AnalyticsInterface:
    @activity.defn(name="compute_daily_report")
    async def compute_daily_report(self, inp: ComputeReportInput) -> ComputeReportResult:
        """One organization's KPIs for one local day, stored as its report (heartbeats)."""
        raise NotImplementedError
