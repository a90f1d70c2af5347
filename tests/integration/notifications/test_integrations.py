"""Inbound integration: orders authenticated by an organization's API key (idempotent by external
id), CSV import by upload and by `waybill import deliveries` (good rows created once, bad rows
reported with their reason)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from pathlib import Path

import httpx

from api.resources import Resources
from tests.e2e.test_dev_command import STORE_VARS, WAYBILL
from tests.integration.notifications.conftest import Org
from tests.integration.notifications.helpers import post

WINDOW = "2099-01-01T08:00:00+00:00,2099-01-01T12:00:00+00:00"


def order(external_id: str) -> dict[str, object]:
    return {
        "external_id": external_id,
        "customer": {"name": "Ada", "email": "ada@example.test", "phone": "+49 30 555"},
        "shipping": {"address": "Alexanderplatz 1, Berlin", "location": {"lat": 52.5219, "lon": 13.4132}},
        "delivery_window": {"start": "2099-01-01T08:00:00Z", "end": "2099-01-01T12:00:00Z"},
        "items": [{"sku": "A-1", "quantity": 2, "weight_kg": 1.5}],
    }


async def test_orders_from_a_shop_are_idempotent_by_external_id(http: httpx.AsyncClient, org: Org) -> None:
    key = await post(http, "/api/v1/integrations/api-keys", org.admin, {"name": "shop"})
    headers = {"X-Api-Key": key["key"]}
    ref = f"SHOP-{uuid.uuid4().hex[:8]}"
    first = await http.post("/api/v1/integrations/orders", headers=headers, json=order(ref))
    assert first.status_code == 201, first.text
    delivery = first.json()["delivery"]
    assert (delivery["external_ref"], delivery["size"]["units"], delivery["size"]["weight_kg"]) == (
        ref,
        2,
        3.0,
    )
    again = await http.post("/api/v1/integrations/orders", headers=headers, json=order(ref))
    assert again.status_code == 200, again.text
    assert again.json() == {"created": False, "delivery": again.json()["delivery"]}
    assert again.json()["delivery"]["id"] == delivery["id"]
    # The dispatcher sees it like any other delivery.
    seen = await http.get(f"/api/v1/deliveries/{delivery['id']}", headers=org.dispatcher)
    assert seen.status_code == 200

    missing = await http.post("/api/v1/integrations/orders", json=order(ref))
    assert (missing.status_code, missing.json()["code"]) == (401, "api_key_required")
    wrong = await http.post("/api/v1/integrations/orders", headers={"X-Api-Key": "wbk_nope"}, json=order(ref))
    assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_api_key")
    bad = await http.post("/api/v1/integrations/orders", headers=headers, json={"external_id": "x"})
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    revoked = await http.delete(f"/api/v1/integrations/api-keys/{key['id']}", headers=org.admin)
    assert revoked.status_code == 204
    after = await http.post("/api/v1/integrations/orders", headers=headers, json=order(ref))
    assert (after.status_code, after.json()["code"]) == (401, "invalid_api_key")


def csv_text(tag: str) -> str:
    start, end = WINDOW.split(",")
    return "\n".join(
        [
            "external_ref,address,lat,lon,window_start,window_end,contact_email,units,priority",
            f"{tag}-1,Alexanderplatz 1,52.52,13.41,{start},{end},a@example.test,2,5",
            f"{tag}-2,Potsdamer Platz 1,52.509,13.376,,,,1,",
            f"{tag}-3,Nowhere,91,13.4,,,,,",  # latitude out of range
            ",No reference,52.5,13.4,,,,,",  # no external_ref
            f"{tag}-4,Bad window,52.5,13.4,{end},{start},,,",  # ends before it starts
            f"{tag}-1,Duplicate line,52.5,13.4,,,,,",  # same external_ref as line 2
            f"{tag}-5,Heavy,52.5,13.4,,,,many,",  # units not a number
        ]
    )


def outcomes(report: dict[str, object]) -> list[tuple[int, str, str | None]]:
    rows = report["rows"]
    assert isinstance(rows, list)
    return [(r["row"], r["outcome"], r["code"]) for r in rows]


EXPECTED = [
    (2, "created", None),
    (3, "created", None),
    (4, "rejected", "validation_error"),
    (5, "rejected", "external_ref_required"),
    (6, "rejected", "invalid_delivery"),
    (7, "rejected", "duplicate_row"),
    (8, "rejected", "validation_error"),
]


async def test_csv_upload_creates_good_rows_once_and_reports_bad_ones(
    http: httpx.AsyncClient, org: Org
) -> None:
    tag = f"CSV{uuid.uuid4().hex[:6]}"
    files = {"file": ("deliveries.csv", csv_text(tag).encode(), "text/csv")}
    r = await http.post("/api/v1/integrations/deliveries:import", headers=org.dispatcher, files=files)
    assert r.status_code == 200, r.text
    report = r.json()
    assert outcomes(report) == EXPECTED
    assert (report["created"], report["existing"], report["rejected"]) == (2, 0, 5)
    reasons = {row["row"]: row["reason"] for row in report["rows"]}
    assert "lat" in reasons[4]
    assert "external_ref is required" in reasons[5]
    assert "line 2" in reasons[7]
    again = (
        await http.post("/api/v1/integrations/deliveries:import", headers=org.dispatcher, files=files)
    ).json()
    assert [o for _, o, _ in outcomes(again)][:2] == ["existing", "existing"]
    assert [r["delivery_id"] for r in again["rows"][:2]] == [r["delivery_id"] for r in report["rows"][:2]]
    assert again["created"] == 0
    listed = (await http.get("/api/v1/deliveries", headers=org.dispatcher, params={"limit": 200})).json()[
        "items"
    ]
    assert sorted(d["external_ref"] for d in listed if d["external_ref"].startswith(tag)) == [
        f"{tag}-1",
        f"{tag}-2",
    ]

    broken = {"file": ("x.csv", b"name,city\nx,y\n", "text/csv")}
    r = await http.post("/api/v1/integrations/deliveries:import", headers=org.dispatcher, files=broken)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_csv")


def run_cli(args: list[str], resources: Resources, temporal: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARS and not k.startswith("WAYBILL_")}
    env.update(
        {
            "DATABASE_URL": resources.settings.sync_database_url,
            "TEMPORAL_ADDRESS": temporal,
            "WAYBILL_TEMPORAL_TASK_QUEUE": resources.settings.temporal_task_queue,
            "WAYBILL_DATA_DIR": str(resources.settings.data_dir),
        }
    )
    return subprocess.run([WAYBILL, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_cli_import_creates_once(
    http: httpx.AsyncClient, org: Org, notify_resources: Resources, tmp_path: Path
) -> None:
    tag = f"CLI{uuid.uuid4().hex[:6]}"
    path = tmp_path / "deliveries.csv"
    path.write_text(csv_text(tag))
    args = ["import", "deliveries", str(path), "--org", org.tenant.slug]
    temporal = (await notify_resources.temporal.get()).service_client.config.target_host
    first = await asyncio.to_thread(run_cli, args, notify_resources, temporal)
    assert first.returncode == 1, first.stdout + first.stderr  # some rows were rejected
    report = json.loads(first.stdout[: first.stdout.rindex("}") + 1])
    assert outcomes(report) == EXPECTED
    assert first.stdout.strip().endswith("created 2, existing 0, rejected 5")
    second = await asyncio.to_thread(run_cli, args, notify_resources, temporal)
    assert second.stdout.strip().endswith("created 0, existing 2, rejected 5"), second.stdout + second.stderr
    listed = (await http.get("/api/v1/deliveries", headers=org.dispatcher, params={"limit": 200})).json()[
        "items"
    ]
    assert sorted(d["external_ref"] for d in listed if d["external_ref"].startswith(tag)) == [
        f"{tag}-1",
        f"{tag}-2",
    ]
    unknown = await asyncio.to_thread(
        run_cli, ["import", "deliveries", str(path), "--org", "no-such-org"], notify_resources, temporal
    )
    assert unknown.returncode == 2
    assert "no organization" in unknown.stderr
