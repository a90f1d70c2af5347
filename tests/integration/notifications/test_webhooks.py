"""Webhook subscriptions over the API: validation, an endpoint that keeps failing is disabled and
the admins are told, every attempt is recorded, and a failed delivery is replayed once re-enabled."""

from __future__ import annotations

import uuid

import httpx

from activities.notifications.signing import SIGNATURE_HEADER, verify
from api.resources import Resources
from tests.integration.notifications.conftest import Org
from tests.integration.notifications.helpers import delivery_body, notifications_done, post, unique_path
from tests.integration.notifications.receivers import HttpReceiver, wait_for
from tests.support import free_port


async def test_subscription_validation_and_listing(http: httpx.AsyncClient, org: Org) -> None:
    bad = await http.post(
        "/api/v1/webhooks", headers=org.admin, json={"url": "http://x.test", "events": ["nope"]}
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    forbidden = await http.post(
        "/api/v1/webhooks", headers=org.dispatcher, json={"url": "http://x.test", "events": ["*"]}
    )
    assert forbidden.status_code == 403
    made = await post(
        http, "/api/v1/webhooks", org.admin, {"url": "http://x.test/h", "events": ["late", "delivered"]}
    )
    assert made["secret"].startswith("whsec_")
    assert made["events"] == ["delivered", "late"]
    listed = (await http.get("/api/v1/webhooks", headers=org.admin)).json()["items"]
    assert [w["id"] for w in listed] == [made["id"]]
    assert "secret" not in listed[0]
    gone = await http.delete(f"/api/v1/webhooks/{made['id']}", headers=org.admin)
    assert gone.status_code == 204
    assert (await http.get(f"/api/v1/webhooks/{made['id']}", headers=org.admin)).status_code == 404


async def test_failing_endpoint_is_disabled_admins_told_and_replay_delivers(
    http: httpx.AsyncClient, org: Org, receiver: HttpReceiver, notify_resources: Resources
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/down"  # nothing listens: connections are refused
    hook = await post(http, "/api/v1/webhooks", org.admin, {"url": dead, "events": ["created"]})
    did = (
        await post(http, "/api/v1/deliveries", org.dispatcher, delivery_body(f"W-{uuid.uuid4().hex[:6]}"))
    )["id"]

    async def disabled() -> bool:
        return not (await http.get(f"/api/v1/webhooks/{hook['id']}", headers=org.admin)).json()["active"]

    await wait_for(disabled, 20, "the failing endpoint to be disabled")  # disable-after is 2 s here
    sub = (await http.get(f"/api/v1/webhooks/{hook['id']}", headers=org.admin)).json()
    assert "unreachable" in sub["disabled_reason"]

    items = (await http.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=org.admin)).json()["items"]
    assert [(d["event_type"], d["status"]) for d in items] == [("delivery.created", "failed")]
    wd = (
        await http.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{items[0]['id']}", headers=org.admin)
    ).json()
    assert len(wd["attempt_log"]) >= 2
    assert {(a["response_code"], a["succeeded"]) for a in wd["attempt_log"]} == {(None, False)}
    assert all(a["error"] for a in wd["attempt_log"])

    async def admin_told() -> bool:
        notes = (await http.get("/api/v1/notifications", headers=org.admin)).json()["items"]
        return any(n["event"] == "webhook_disabled" and dead in n["body"] for n in notes)

    await wait_for(admin_told, 10, "the admins' in-app notice")

    replay = f"/api/v1/webhooks/{hook['id']}/deliveries/{items[0]['id']}/replay"
    refused = await http.post(replay, headers=org.admin)
    assert (refused.status_code, refused.json()["code"]) == (409, "webhook_inactive")
    await post(http, f"/api/v1/deliveries/{did}/cancel", org.dispatcher, {"reason": "test over"})
    await notifications_done(await notify_resources.temporal.get(), did)

    path = unique_path()
    fixed = await http.patch(
        f"/api/v1/webhooks/{hook['id']}", headers=org.admin, json={"url": receiver.url(path), "active": True}
    )
    assert fixed.json()["active"] is True
    assert fixed.json()["failing_since"] is None
    accepted = await http.post(replay, headers=org.admin)
    assert accepted.status_code == 202, accepted.text
    await wait_for(lambda: len(receiver.at(path)) == 1, 20, "the replayed webhook")
    call = receiver.at(path)[0]
    assert call.json()["id"] == wd["event_id"]
    assert call.json()["delivery"]["id"] == did
    assert verify(hook["secret"], call.body, call.headers[SIGNATURE_HEADER])
    done = (
        await http.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{items[0]['id']}", headers=org.admin)
    ).json()
    assert (done["status"], done["last_response_code"]) == ("succeeded", 200)
