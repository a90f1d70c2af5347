"""`waybill dev` creates the demo organization's analytics schedules (what the Temporal Web UI
lists), and a seeded demo day's report is served as JSON, CSV and PNG after a CLI backfill."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from tests.e2e.test_dev_command import WAYBILL, DevProcess, login_dispatcher
from tests.support import free_port


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    process = DevProcess(tmp_path / "data", {n: free_port() for n in ("api", "sockets", "temporal", "ui")})
    yield process
    process.kill()


def waybill(dev: DevProcess, *args: str) -> str:
    done = subprocess.run(
        [WAYBILL, *args], env=dev.env, cwd=dev.data_dir.parent, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_schedules_after_waybill_dev_and_a_demo_days_report(dev: DevProcess) -> None:
    dev.start()
    client = await Client.connect(f"127.0.0.1:{dev.ports['temporal']}")
    schedules = {s.id: s async for s in await client.list_schedules()}
    assert sum(i.startswith("analytics-hourly-") for i in schedules) == 1, list(schedules)
    daily_id = next(i for i in schedules if i.startswith("analytics-daily-"))
    desc = await client.get_schedule_handle(daily_id).describe()
    assert desc.schedule.spec.time_zone_name == "Europe/Berlin"  # the demo depot's

    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    assert "deliveries" in waybill(dev, "analytics", "demo", "--day", day)
    assert "1 day(s)" in waybill(dev, "analytics", "backfill", "--from", day, "--to", day, "--org", "demo")

    api = f"http://127.0.0.1:{dev.ports['api']}"
    headers = login_dispatcher(api)
    report = httpx.get(f"{api}/api/v1/analytics/reports/{day}", headers=headers, timeout=30)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["totals"]["deliveries"] > 0
    assert body["totals"]["distance_km"] > 0
    csv_text = httpx.get(f"{api}{body['charts']['csv']}", headers=headers, timeout=30).text
    assert csv_text.startswith("day,key,label,deliveries")
    for name in ("on_time_trend", "deliveries_heatmap", "late_minutes"):
        png = httpx.get(f"{api}{body['charts'][name]}", headers=headers, timeout=30)
        assert png.headers["content-type"] == "image/png"
        assert png.content[:4] == b"\x89PNG"
    assert dev.ctrl_c() == 0
