"""Analytics over HTTP: backfill a known history, then the report as JSON, CSV and PNG, and KPIs
over a range by group."""

from __future__ import annotations

import asyncio
import csv
import io

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.resources import Resources
from domain.roles import Role
from tests.integration.analytics.fleet import DAY, build_known_history
from tests.integration.api.conftest import LoginFn
from tests.support import Tenant

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_backfill_then_report_kpis_csv_and_charts(
    http: httpx.AsyncClient,
    tenant: Tenant,
    login: LoginFn,
    api_resources: Resources,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    fleet = await build_known_history(sessionmaker, api_resources.history, tenant.organization_id)
    admin, viewer = await login(tenant, Role.ADMIN), await login(tenant, Role.VIEWER)
    assert (await http.get(f"/api/v1/analytics/reports/{DAY}", headers=viewer)).json()[
        "code"
    ] == "report_not_found"

    r = await http.post(
        "/api/v1/analytics/backfill", headers=admin, json={"from": "2026-01-13", "to": "2026-01-15"}
    )
    assert r.status_code == 202, r.text
    assert r.json()["timezone"] == "Europe/Berlin"
    assert (await http.post("/api/v1/analytics/backfill", headers=viewer, json={})).status_code == 403
    bad = await http.post(
        "/api/v1/analytics/backfill", headers=admin, json={"from": "2026-01-15", "to": "2026-01-13"}
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_range")

    report = None
    for _ in range(150):
        got = await http.get(
            "/api/v1/analytics/kpis", headers=viewer, params={"from": "2026-01-13", "to": "2026-01-15"}
        )
        if got.json()["days_with_reports"] == 3:
            report = (await http.get(f"/api/v1/analytics/reports/{DAY}", headers=viewer)).json()
            break
        await asyncio.sleep(0.2)
    assert report is not None, "the backfill did not finish"
    assert report["totals"]["deliveries"] == 4
    assert report["totals"]["on_time_rate"] == 1 / 3
    assert {g["label"] for g in report["by_driver"]} == {"Rita", "Rolf"}
    assert report["routes"][0]["planned_distance_m"] == 1500

    by_day = (
        await http.get(
            "/api/v1/analytics/kpis", headers=viewer, params={"from": "2026-01-13", "to": "2026-01-15"}
        )
    ).json()
    assert [(g["key"], g["deliveries"]) for g in by_day["groups"]] == [
        ("2026-01-13", 1),
        (DAY, 4),
        ("2026-01-15", 1),
    ]
    by_vehicle = (
        await http.get(
            "/api/v1/analytics/kpis",
            headers=viewer,
            params={"from": "2026-01-13", "to": "2026-01-15", "group_by": "vehicle"},
        )
    ).json()
    v2 = next(g for g in by_vehicle["groups"] if g["key"] == str(fleet.v2))
    assert v2["deliveries"] == 3  # d3 and d7 on the 14th, d4 on the 15th: merged over the range
    assert v2["on_time_rate"] == 0.5  # d4 on time, d3 late

    csv_text = (await http.get(f"/api/v1/analytics/reports/{DAY}/csv", headers=viewer)).text
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    day_row = next(row for row in rows if row["key"] == f"day:{DAY}")
    assert (day_row["deliveries"], day_row["failures"]) == ("4", "2")
    assert "recipient_absent:1" in day_row["failure_reasons"]
    kpi_csv = await http.get("/api/v1/analytics/kpis/csv", headers=viewer, params={"from": DAY, "to": DAY})
    assert kpi_csv.headers["content-type"].startswith("text/csv")

    for chart in ("on_time_trend", "deliveries_heatmap", "late_minutes"):
        png = await http.get(f"/api/v1/analytics/reports/{DAY}/charts/{chart}", headers=viewer)
        assert png.status_code == 200, png.text
        assert png.headers["content-type"] == "image/png"
        assert png.content.startswith(PNG_MAGIC)
    driver = await login(tenant, Role.DRIVER)
    assert (await http.get(f"/api/v1/analytics/reports/{DAY}", headers=driver)).status_code == 403
