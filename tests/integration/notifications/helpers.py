"""Driving deliveries through the API and waiting for their notification workflows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client

from domain.notifications import notification_workflow_id
from tests.integration.notifications.conftest import Org

DROP = {"lat": 52.52, "lon": 13.405}


def delivery_body(ref: str, email: str = "", phone: str = "", **over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "external_ref": ref,
        "dropoff": {
            "address": "Unter den Linden 1, Berlin",
            "location": DROP,
            "windows": [{"start": now.isoformat(), "end": (now + timedelta(hours=4)).isoformat()}],
            "contact": {"name": "Ms Recipient", "email": email, "phone": phone},
        },
    }
    body.update(over)
    return body


async def post(http: httpx.AsyncClient, path: str, headers: dict[str, str], json: Any = None) -> Any:
    r = await http.post(path, headers=headers, json=json if json is not None else {})
    assert r.status_code < 300, f"{path}: {r.status_code} {r.text}"
    return r.json()


async def run_lifecycle(http: httpx.AsyncClient, org: Org, did: str) -> None:
    base = f"/api/v1/deliveries/{did}"
    await post(http, f"{base}/assign", org.dispatcher, {"vehicle_id": org.vehicle_id})
    for action in ("accept", "pick-up", "depart", "arrive"):
        await post(http, f"{base}/{action}", org.driver, {"location": DROP})
    await post(http, f"{base}/deliver", org.driver, {"recipient_name": "Ms Recipient", "location": DROP})


async def notifications_done(client: Client, delivery_id: str) -> int:
    """Wait for the delivery's NotificationWorkflow to finish (every send made); its event count."""
    handle = client.get_workflow_handle(notification_workflow_id(delivery_id))
    return int(await handle.result())


def unique_path() -> str:
    return f"/hooks/{uuid.uuid4().hex[:10]}"
