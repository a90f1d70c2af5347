"""Analytics request and response bodies (KPI definitions: docs/analytics.md)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from api.schemas.common import Input


class KpiOut(BaseModel):
    deliveries: int
    on_time_rate: float | None = Field(
        description="delivered inside the promised window / delivered with a window"
    )
    first_attempt_success_rate: float | None
    deliveries_per_vehicle_hour: float | None
    avg_duration_min: float | None = Field(description="picked up -> delivered")
    p90_duration_min: float | None
    avg_late_min: float | None
    late_histogram: dict[str, int]
    avg_dwell_min: float | None = Field(description="arrived -> delivered or failed")
    idle_hours: float
    active_hours: float
    distance_km: float = Field(description="from filtered position history, not from the plan")
    capacity_utilization: float | None
    attempts: int
    failures: int
    failure_reasons: dict[str, int]
    early: int
    late: int


class KpiGroupOut(KpiOut):
    key: str
    label: str | None = None


class KpisOut(BaseModel):
    from_day: date
    to_day: date
    group_by: str
    timezone: str | None
    days_with_reports: int
    groups: list[KpiGroupOut]


class RouteKpiOut(BaseModel):
    route_id: str
    vehicle_id: str
    driver_id: str | None
    stops: int
    stops_finished: int
    planned_distance_m: float | None
    actual_distance_m: float
    planned_s: float
    actual_s: float | None


class ReportOut(BaseModel):
    day: date
    timezone: str
    final: bool
    computed_at: datetime
    totals: KpiOut
    hourly_deliveries: list[int]
    by_driver: list[KpiGroupOut]
    by_vehicle: list[KpiGroupOut]
    by_depot: list[KpiGroupOut]
    routes: list[RouteKpiOut]
    charts: dict[str, str]


class BackfillIn(Input):
    from_day: date = Field(alias="from")
    to_day: date = Field(alias="to")


class BackfillOut(BaseModel):
    workflow_id: str
    from_day: date
    to_day: date
    timezone: str
