"""Every KPI of a known fleet history against hand-computed values, on each SQL backend.

The history (tests/integration/analytics/fleet.py), all times UTC, local zone Europe/Berlin (+1):
d1 V1 window 09-11, picked up 08:00, arrived 09:30, delivered 09:40: on time, 100 min, dwell 10.
d2 V1 window 09-10, arrived 10:20, delivered 10:30: 30 min late, 150 min, dwell 10.
d3 V1 fails at 11:05 after arriving 11:00 (recipient absent, dwell 5); reassigned to V2, picked up
   13:00, delivered 14:00 on arrival (dwell 0), window 12-13: 60 min late, 60 min, not first attempt.
d4 V2 delivered 23:20Z = 00:20 local on the 15th: spans midnight, belongs to the 15th.
d5 V2 fails at 09:00 on the way (address not found, no dwell) and is returned.
d6 cancelled before assignment. d7 V2 no window, picked up 13:00, arrived 15:00, delivered 15:06.
d8 delivered on the 13th. V1's track: 10 min stationary, 10 min north at 0.001 deg/min, 20 min
silent, 40 min stationary; shuffled, with a fix of the 13th, an imprecise fix and a spike.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.analytics.activities import AnalyticsActivities
from api.resources import Resources
from db.models import AnalyticsReport
from domain.analytics import ComputeReportInput, KpiParts, derive_kpis
from tests.integration.analytics.fleet import DAY, STEP, Fleet, build_known_history
from tests.support import make_tenant, test_settings

METRE_PER_STEP = 6_371_008.8 * math.radians(STEP)  # 111.195 m


@pytest.fixture(scope="module")
async def resources(database_url: str) -> AsyncIterator[Resources]:
    r = await Resources.open(test_settings(database_url=database_url))
    yield r
    await r.close()


@pytest.fixture(scope="module")
async def fleet(resources: Resources) -> Fleet:
    tenant = await make_tenant(resources.sessionmaker)
    return await build_known_history(resources.sessionmaker, resources.history, tenant.organization_id)


async def compute(
    resources: Resources, org: uuid.UUID, day: str, tz: str = "Europe/Berlin"
) -> dict[str, Any]:
    acts = AnalyticsActivities(resources)
    await ActivityEnvironment().run(acts.compute_daily_report, ComputeReportInput(str(org), tz, day=day))
    async with resources.sessionmaker() as s:
        row = await s.scalar(
            select(AnalyticsReport).where(
                AnalyticsReport.organization_id == org, AnalyticsReport.day == date.fromisoformat(day)
            )
        )
    assert row is not None
    return row.report


def parts(report: dict[str, Any], dim: str, key: str) -> KpiParts:
    return KpiParts.from_json(report["groups"][dim][key])


async def test_every_kpi_of_the_day(resources: Resources, fleet: Fleet) -> None:
    report = await compute(resources, fleet.org, DAY)
    day = derive_kpis(parts(report, "day", DAY))
    assert day.deliveries == 4  # d1 d2 d3 d7 (not d4: the 15th locally; not d8: the 13th)
    assert day.on_time_rate == pytest.approx(1 / 3)  # d1 of d1 d2 d3 (d7 has no window)
    assert (day.early, day.late) == (0, 2)
    assert day.avg_late_min == pytest.approx(45.0)
    assert day.late_histogram == {"0-5": 0, "5-15": 0, "15-30": 1, "30-60": 1, "60-120": 0, "120+": 0}
    assert day.first_attempt_success_rate == pytest.approx(3 / 5)  # d1 d2 d7 of 4 delivered + d5 returned
    assert (day.attempts, day.failures) == (6, 2)
    assert day.failure_reasons == {"address_not_found": 1, "recipient_absent": 1}
    assert day.avg_duration_min == pytest.approx((100 + 150 + 60 + 126) / 4)
    assert day.p90_duration_min == pytest.approx(126 + 0.7 * 24)  # [60,100,126,150] at rank 2.7
    assert day.avg_dwell_min == pytest.approx((10 + 10 + 5 + 0 + 6) / 5)
    assert parts(report, "day", DAY).hourly[10:17] == [1, 1, 0, 0, 0, 1, 1]  # local hours
    # V1's track: 3600 s active (the 20 min silence is not), 600 s moving over 10 steps north.
    assert day.distance_km == pytest.approx(10 * METRE_PER_STEP / 1000, rel=1e-6)
    assert day.active_hours == pytest.approx(1.0)
    assert day.idle_hours == pytest.approx((3000 - 1500) / 3600)  # stationary minus V1's dwell (25 min)
    assert day.deliveries_per_vehicle_hour == pytest.approx(4.0)
    assert day.capacity_utilization == pytest.approx(0.7)  # 4 + 2 + 1 units of V1's 10 on board


async def test_per_driver_vehicle_and_depot(resources: Resources, fleet: Fleet) -> None:
    report = await compute(resources, fleet.org, DAY)
    r1 = derive_kpis(parts(report, "driver", str(fleet.r1)))
    r2 = derive_kpis(parts(report, "driver", str(fleet.r2)))
    assert (r1.deliveries, r1.on_time_rate, r1.first_attempt_success_rate) == (2, 0.5, 1.0)
    assert r1.failure_reasons == {"recipient_absent": 1}  # d3's first attempt was V1's
    assert (r2.deliveries, r2.on_time_rate) == (2, 0.0)
    assert r2.first_attempt_success_rate == pytest.approx(1 / 3)  # d7 of d3, d7, d5
    v1 = derive_kpis(parts(report, "vehicle", str(fleet.v1)))
    assert v1.deliveries_per_vehicle_hour == pytest.approx(2.0)
    assert v1.capacity_utilization == pytest.approx(0.7)
    assert derive_kpis(parts(report, "vehicle", str(fleet.v2))).distance_km == 0.0
    assert set(report["groups"]["depot"]) == {str(fleet.depot)}
    assert report["labels"][str(fleet.v1)] == "Van 1"


async def test_route_planned_against_actual(resources: Resources, fleet: Fleet) -> None:
    report = await compute(resources, fleet.org, DAY)
    (route,) = report["routes"]
    assert route["planned_distance_m"] == 1500
    assert route["actual_distance_m"] == pytest.approx(10 * METRE_PER_STEP, rel=1e-6)
    assert (route["planned_s"], route["actual_s"]) == (2100, 2700)  # dropped stop left out
    assert (route["stops"], route["stops_finished"]) == (2, 2)


async def test_a_delivery_spanning_midnight_counts_on_the_local_day_it_ended(
    resources: Resources, fleet: Fleet
) -> None:
    report = await compute(resources, fleet.org, "2026-01-15")
    k = derive_kpis(parts(report, "day", "2026-01-15"))
    assert (k.deliveries, k.on_time_rate, k.avg_duration_min) == (1, 1.0, 80.0)
    assert parts(report, "day", "2026-01-15").hourly[0] == 1  # 00:20 local


async def test_the_same_history_in_utc_moves_the_midnight_delivery(
    resources: Resources, fleet: Fleet
) -> None:
    report = await compute(resources, fleet.org, DAY, tz="UTC")
    k = derive_kpis(parts(report, "day", DAY))
    assert k.deliveries == 5  # d4 at 23:20Z is on the 14th in UTC
    assert parts(report, "day", DAY).hourly[9] == 1  # d1 at 09:40Z


async def test_no_deliveries(resources: Resources) -> None:
    tenant = await make_tenant(resources.sessionmaker)
    report = await compute(resources, tenant.organization_id, DAY)
    k = derive_kpis(parts(report, "day", DAY))
    assert k.deliveries == 0
    assert (k.on_time_rate, k.p90_duration_min, k.deliveries_per_vehicle_hour) == (None, None, None)
    assert report["routes"] == []
