"""Fleet analytics read from the stored daily reports (the analytics workflows compute them): KPIs
over a range of days by group, one day's report, its CSV, the data of its charts, and backfill."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import date, timedelta

from fastapi import Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from api.deps import CurrentUser
from api.errors import ProblemError
from api.resources import Resources
from api.schemas.analytics import (
    BackfillIn,
    BackfillOut,
    KpiGroupOut,
    KpiOut,
    KpisOut,
    ReportOut,
    RouteKpiOut,
)
from api.services import analytics_charts as charts
from db.models import AnalyticsReport
from db.repositories.analytics import reports_between
from domain.analytics import MAX_BACKFILL_DAYS, BackfillInput, GroupBy, KpiParts, derive_kpis, merge_parts
from starters.analytics import start_backfill, target_for

TREND_DAYS, HEATMAP_DAYS = 14, 7


def _range(first: date, last: date) -> None:
    if last < first:
        raise ProblemError(422, "invalid_range", "`to` must not be before `from`")
    if (last - first).days >= MAX_BACKFILL_DAYS:
        raise ProblemError(422, "range_too_long", f"at most {MAX_BACKFILL_DAYS} days at a time")


def _groups(reports: list[AnalyticsReport], group_by: GroupBy) -> dict[str, KpiParts]:
    if group_by is GroupBy.DAY:
        return {
            r.day.isoformat(): merge_parts(KpiParts.from_json(p) for p in r.report["groups"]["day"].values())
            for r in reports
        }
    collected: dict[str, list[KpiParts]] = {}
    for r in reports:
        for key, parts in r.report["groups"].get(group_by.value, {}).items():
            collected.setdefault(key, []).append(KpiParts.from_json(parts))
    return {key: merge_parts(parts) for key, parts in sorted(collected.items())}


def _labels(reports: list[AnalyticsReport]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for r in reports:
        labels.update(r.report.get("labels", {}))
    return labels


def _kpi_groups(reports: list[AnalyticsReport], group_by: GroupBy) -> list[KpiGroupOut]:
    labels = _labels(reports)
    return [
        KpiGroupOut(key=key, label=labels.get(key), **asdict(derive_kpis(parts)))
        for key, parts in _groups(reports, group_by).items()
    ]


async def kpis(
    session: AsyncSession, user: CurrentUser, first: date, last: date, group_by: GroupBy
) -> KpisOut:
    _range(first, last)
    reports = await reports_between(session, user.organization_id, first, last)
    return KpisOut(
        from_day=first,
        to_day=last,
        group_by=group_by.value,
        timezone=reports[-1].timezone if reports else None,
        days_with_reports=len(reports),
        groups=_kpi_groups(reports, group_by),
    )


def as_csv(rows: list[KpiGroupOut], extra: dict[str, str] | None = None) -> Response:
    buf = io.StringIO()
    fields = [
        "key",
        "label",
        *(f for f in KpiOut.model_fields if f not in ("late_histogram", "failure_reasons")),
    ]
    writer = csv.writer(buf)
    writer.writerow([*(extra or {}), *fields, "late_histogram", "failure_reasons"])
    for row in rows:
        values = row.model_dump()
        writer.writerow(
            [
                *(extra or {}).values(),
                *("" if values[f] is None else values[f] for f in fields),
                ";".join(f"{k}:{v}" for k, v in row.late_histogram.items()),
                ";".join(f"{k}:{v}" for k, v in row.failure_reasons.items()),
            ]
        )
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8")


async def _report(session: AsyncSession, user: CurrentUser, day: date) -> AnalyticsReport:
    found = await reports_between(session, user.organization_id, day, day)
    if not found:
        raise ProblemError(
            404, "report_not_found", f"no analytics report for {day.isoformat()} (backfill it?)"
        )
    return found[0]


async def report(session: AsyncSession, user: CurrentUser, day: date) -> ReportOut:
    r = await _report(session, user, day)
    total = merge_parts(KpiParts.from_json(p) for p in r.report["groups"]["day"].values())
    base = f"/api/v1/analytics/reports/{day.isoformat()}"
    return ReportOut(
        day=r.day,
        timezone=r.timezone,
        final=r.final,
        computed_at=r.computed_at,
        totals=KpiOut(**asdict(derive_kpis(total))),
        hourly_deliveries=total.hourly,
        by_driver=_kpi_groups([r], GroupBy.DRIVER),
        by_vehicle=_kpi_groups([r], GroupBy.VEHICLE),
        by_depot=_kpi_groups([r], GroupBy.DEPOT),
        routes=[RouteKpiOut(**row) for row in r.report.get("routes", [])],
        charts={name: f"{base}/charts/{name}" for name in charts.CHARTS} | {"csv": f"{base}/csv"},
    )


async def report_csv(session: AsyncSession, user: CurrentUser, day: date) -> Response:
    r = await _report(session, user, day)
    rows = [
        row.model_copy(update={"key": f"{dim.value}:{row.key}"})
        for dim in GroupBy
        for row in _kpi_groups([r], dim)
    ]
    return as_csv(rows, {"day": r.day.isoformat()})


async def chart_png(session: AsyncSession, user: CurrentUser, day: date, chart: str) -> bytes:
    """One of charts.CHARTS for the day (the trend and heatmap over the days before it too)."""
    await _report(session, user, day)
    span = TREND_DAYS if chart == "on_time_trend" else HEATMAP_DAYS if chart == "deliveries_heatmap" else 1
    reports = await reports_between(session, user.organization_id, day - timedelta(days=span - 1), day)
    daily = _groups(reports, GroupBy.DAY)
    days = list(daily)
    png: bytes
    if chart == "on_time_trend":
        png = await run_in_threadpool(
            charts.on_time_trend, days, [derive_kpis(p).on_time_rate for p in daily.values()]
        )
    elif chart == "deliveries_heatmap":
        png = await run_in_threadpool(charts.deliveries_heatmap, days, [p.hourly for p in daily.values()])
    else:
        png = await run_in_threadpool(charts.late_minutes, daily[day.isoformat()].late_histogram)
    return png


async def backfill(client: Client, resources: Resources, user: CurrentUser, body: BackfillIn) -> BackfillOut:
    _range(body.from_day, body.to_day)
    target = await target_for(resources, user.organization_id)
    inp = BackfillInput(
        target,
        body.from_day.isoformat(),
        body.to_day.isoformat(),
        requested_by=f"{user.role.value}:{user.id}",
    )
    handle = await start_backfill(client, resources.settings, inp)
    return BackfillOut(
        workflow_id=handle.id, from_day=body.from_day, to_day=body.to_day, timezone=target.timezone
    )
