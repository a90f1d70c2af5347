"""Fleet analytics: workflow inputs and results, the additive KPI parts and the KPIs derived from them.

Pure and stdlib-only (imported by workflows and by the API). The activities compute `KpiParts` per
group (day, driver, vehicle, depot) for one local day with pandas and store them; anything that
spans several days or groups merges parts with `merge_parts` and derives the ratios with
`derive_kpis`, so a rate over a week is the rate of the week's counts, not a mean of daily rates.
docs/analytics.md has each definition.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any


class GroupBy(StrEnum):
    DAY = "day"
    DRIVER = "driver"
    VEHICLE = "vehicle"
    DEPOT = "depot"


NO_KEY = "none"  # the group of deliveries or vehicle-days without a driver or depot

# Late-minute histogram buckets: upper bounds in minutes, the last one open.
LATE_BUCKET_EDGES: tuple[int, ...] = (5, 15, 30, 60, 120)
LATE_BUCKETS: tuple[str, ...] = ("0-5", "5-15", "15-30", "30-60", "60-120", "120+")

# Position-track thresholds (docs/analytics.md "Tracks").
MAX_GAP_S = 300.0  # a longer silence between two fixes is not counted as active time
MOVING_MPS = 0.5  # slower than this between two fixes is stationary
MAX_BACKFILL_DAYS = 366


def late_bucket(minutes: float) -> str:
    for edge, label in zip(LATE_BUCKET_EDGES, LATE_BUCKETS, strict=False):
        if minutes <= edge:
            return label
    return LATE_BUCKETS[-1]


@dataclass
class KpiParts:
    """Additive counts and sums for one group; every field merges by addition (lists concatenate)."""

    deliveries: int = 0  # delivered (events on the day)
    with_window: int = 0  # ... of which had a promised window
    on_time: int = 0  # ... delivered inside it
    early: int = 0
    late: int = 0
    late_minutes_sum: float = 0.0
    late_histogram: dict[str, int] = field(default_factory=dict)
    outcomes: int = 0  # final outcomes: delivered or returned
    first_attempt_successes: int = 0  # delivered with no failed attempt before
    attempts: int = 0  # delivered + failed
    failures: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    durations_s: list[float] = field(default_factory=list)  # picked up -> delivered, per delivery
    dwell_s_sum: float = 0.0  # arrived -> delivered or failed
    dwell_stops: int = 0
    vehicle_days: int = 0  # vehicle-days with at least two fixes
    active_s: float = 0.0
    moving_s: float = 0.0
    stationary_s: float = 0.0
    idle_s: float = 0.0
    distance_m: float = 0.0
    capacity_vehicle_days: int = 0
    peak_load_ratio_sum: float = 0.0
    hourly: list[int] = field(default_factory=lambda: [0] * 24)  # deliveries per local hour

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KpiParts:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def merge_parts(parts: Iterable[KpiParts]) -> KpiParts:
    out = KpiParts()
    for p in parts:
        for f in fields(KpiParts):
            mine, theirs = getattr(out, f.name), getattr(p, f.name)
            if isinstance(mine, dict):
                for k, v in theirs.items():
                    mine[k] = mine.get(k, 0) + v
            elif f.name == "hourly":
                setattr(out, f.name, [a + b for a, b in zip(mine, theirs, strict=True)])
            else:
                setattr(out, f.name, mine + theirs)
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60.0


@dataclass(frozen=True)
class Kpis:
    """The KPIs of one group (None where the denominator is zero)."""

    deliveries: int
    on_time_rate: float | None
    first_attempt_success_rate: float | None
    deliveries_per_vehicle_hour: float | None
    avg_duration_min: float | None
    p90_duration_min: float | None
    avg_late_min: float | None
    late_histogram: dict[str, int]
    avg_dwell_min: float | None
    idle_hours: float
    active_hours: float
    distance_km: float
    capacity_utilization: float | None
    attempts: int
    failures: int
    failure_reasons: dict[str, int]
    early: int
    late: int


def derive_kpis(p: KpiParts) -> Kpis:
    durations = p.durations_s
    return Kpis(
        deliveries=p.deliveries,
        on_time_rate=_ratio(p.on_time, p.with_window),
        first_attempt_success_rate=_ratio(p.first_attempt_successes, p.outcomes),
        deliveries_per_vehicle_hour=_ratio(p.deliveries, p.active_s / 3600.0),
        avg_duration_min=_minutes(_ratio(sum(durations), len(durations))),
        p90_duration_min=_minutes(percentile(durations, 90)),
        avg_late_min=_ratio(p.late_minutes_sum, p.late),
        late_histogram={b: p.late_histogram.get(b, 0) for b in LATE_BUCKETS},
        avg_dwell_min=_minutes(_ratio(p.dwell_s_sum, p.dwell_stops)),
        idle_hours=p.idle_s / 3600.0,
        active_hours=p.active_s / 3600.0,
        distance_km=p.distance_m / 1000.0,
        capacity_utilization=_ratio(p.peak_load_ratio_sum, p.capacity_vehicle_days),
        attempts=p.attempts,
        failures=p.failures,
        failure_reasons=dict(sorted(p.failure_reasons.items())),
        early=p.early,
        late=p.late,
    )


@dataclass(frozen=True)
class RouteKpis:
    """Planned against actual for one vehicle route (shift) of the day."""

    route_id: str
    vehicle_id: str
    driver_id: str | None
    stops: int
    stops_finished: int
    planned_distance_m: float | None  # from the applied plan; None if the plan is gone
    actual_distance_m: float  # filtered positions between the route start and its last finished stop
    planned_s: float  # travel + service + return, as planned
    actual_s: float | None  # route start -> last finished stop


# Workflow and activity inputs/results ----------------------------------------------------------


@dataclass(frozen=True)
class AnalyticsTarget:
    """One organization as the schedules see it (config reaches workflows as input)."""

    organization_id: str
    timezone: str = "UTC"
    task_queue: str = "waybill-analytics"  # where the pandas activities run


@dataclass(frozen=True)
class ComputeReportInput:
    """One local day's report. Scheduled runs leave `day` empty and pass `at` (the scheduled time):
    the activity resolves the local date of `at` plus `day_offset` days (time zones stay out of
    workflow code)."""

    organization_id: str
    timezone: str
    day: str = ""  # ISO local date
    at: datetime | None = None
    day_offset: int = 0
    final: bool = True


@dataclass(frozen=True)
class ComputeReportResult:
    organization_id: str
    day: str
    deliveries: int
    vehicle_days: int
    routes: int


@dataclass(frozen=True)
class ScheduledRunResult:
    reports: list[ComputeReportResult] = field(default_factory=list)


@dataclass(frozen=True)
class BackfillInput:
    target: AnalyticsTarget
    from_day: str  # ISO dates, inclusive
    to_day: str
    requested_by: str = "system"


@dataclass(frozen=True)
class BackfillResult:
    days: int
    deliveries: int
    reports: list[ComputeReportResult] = field(default_factory=list)


def days_between(from_day: str, to_day: str) -> list[str]:
    """Every ISO date from `from_day` to `to_day` inclusive; ValueError for a bad or too long range."""
    start, end = date.fromisoformat(from_day), date.fromisoformat(to_day)
    if end < start:
        raise ValueError("to must not be before from")
    count = (end - start).days + 1
    if count > MAX_BACKFILL_DAYS:
        raise ValueError(f"at most {MAX_BACKFILL_DAYS} days at a time")
    return [(start + timedelta(days=i)).isoformat() for i in range(count)]


def hourly_schedule_id(organization_id: str) -> str:
    return f"analytics-hourly-{organization_id}"


def daily_schedule_id(organization_id: str) -> str:
    return f"analytics-daily-{organization_id}"


def backfill_workflow_id(organization_id: str, from_day: str, to_day: str) -> str:
    return f"analytics-backfill-{organization_id}-{from_day}-{to_day}"
