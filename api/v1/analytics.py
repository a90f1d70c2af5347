"""Fleet analytics: KPIs over a date range by group, daily reports as JSON, CSV and PNG charts,
and backfill. Everything here reads stored reports (computed by the analytics workflows)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from api.deps import Admin, ResourcesDep, SessionDep, Staff, TemporalDep
from api.schemas.analytics import BackfillIn, BackfillOut, KpisOut, ReportOut
from api.services import analytics as service
from api.v1 import PREFIX
from domain.analytics import GroupBy

router = APIRouter(prefix=f"{PREFIX}/analytics", tags=["analytics"])
FromDay = Annotated[date, Query(alias="from", description="first local day (inclusive)")]
ToDay = Annotated[date, Query(alias="to", description="last local day (inclusive)")]
GroupByQ = Annotated[GroupBy, Query()]
Chart = Literal["on_time_trend", "deliveries_heatmap", "late_minutes"]
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}, "description": "a PNG image"}}
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "CSV with a header row"}
}


@router.get("/kpis", response_model=KpisOut)
async def get_kpis(
    user: Staff, session: SessionDep, first: FromDay, last: ToDay, group_by: GroupByQ = GroupBy.DAY
) -> KpisOut:
    return await service.kpis(session, user, first, last, group_by)


@router.get("/kpis/csv", response_class=Response, responses=CSV)
async def get_kpis_csv(
    user: Staff, session: SessionDep, first: FromDay, last: ToDay, group_by: GroupByQ = GroupBy.DAY
) -> Response:
    out = await service.kpis(session, user, first, last, group_by)
    return service.as_csv(out.groups)


@router.get("/reports/{day}", response_model=ReportOut)
async def get_report(user: Staff, session: SessionDep, day: date) -> ReportOut:
    return await service.report(session, user, day)


@router.get("/reports/{day}/csv", response_class=Response, responses=CSV)
async def get_report_csv(user: Staff, session: SessionDep, day: date) -> Response:
    return await service.report_csv(session, user, day)


@router.get("/reports/{day}/charts/{chart}", response_class=Response, responses=PNG)
async def get_report_chart(user: Staff, session: SessionDep, day: date, chart: Chart) -> Response:
    return Response(await service.chart_png(session, user, day, chart), media_type="image/png")


@router.post("/backfill", status_code=202, response_model=BackfillOut)
async def backfill(
    user: Admin, resources: ResourcesDep, client: TemporalDep, body: BackfillIn
) -> BackfillOut:
    return await service.backfill(client, resources, user, body)
