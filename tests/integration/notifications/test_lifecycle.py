"""A delivery through its lifecycle, over the real API and workers, with a real SMTP server and a
real HTTP receiver: exactly the configured e-mails, SMS requests, in-app notices and webhook calls,
in order, each webhook with a valid signature."""

from __future__ import annotations

import json
import uuid

import httpx

from activities.notifications.signing import SIGNATURE_HEADER, verify
from api.resources import Resources
from domain.roles import Role
from tests.integration.notifications.conftest import SMS_PATH, SMS_TOKEN, Org
from tests.integration.notifications.helpers import (
    delivery_body,
    notifications_done,
    post,
    run_lifecycle,
    unique_path,
)
from tests.integration.notifications.receivers import HttpReceiver, SmtpServer

WEBHOOK_EVENTS = ["created", "assigned", "out_for_delivery", "arrived", "delivered"]


async def test_lifecycle_sends_exactly_the_configured_messages_in_order(
    http: httpx.AsyncClient,
    org: Org,
    smtp: SmtpServer,
    receiver: HttpReceiver,
    notify_resources: Resources,
) -> None:
    tag = uuid.uuid4().hex[:8]
    email, phone = f"customer-{tag}@example.test", f"+49 30 {int(tag, 16) % 10**7:07d}"
    # The organization also wants an e-mail on arrival (the default is an SMS only).
    r = await http.put(
        "/api/v1/notifications/settings",
        headers=org.admin,
        json={"rules": {"arrived": {"customer": ["sms", "email"]}}, "locale": "en"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["rules"]["arrived"] == {"customer": ["email", "sms"]}
    path = unique_path()
    hook = await post(http, "/api/v1/webhooks", org.admin, {"url": receiver.url(path), "events": ["*"]})
    secret = hook["secret"]

    created = await post(
        http, "/api/v1/deliveries", org.dispatcher, delivery_body(f"ORD-{tag}", email, phone)
    )
    did = created["id"]
    await run_lifecycle(http, org, did)
    client = await notify_resources.temporal.get()
    assert await notifications_done(client, did) == len(WEBHOOK_EVENTS)

    # E-mail: created, out for delivery (ETA, tracking link), arrived (configured), delivered (proof).
    mails = smtp.to(email)
    assert [m["Subject"] for m in mails] == [
        f"Delivery ORD-{tag} received",
        f"Delivery ORD-{tag} is on its way",
        f"Delivery ORD-{tag} has arrived",
        f"Delivery ORD-{tag} delivered",
    ]
    assert f"https://track.example.test/{did}" in mails[1].get_content()
    assert "Received by Ms Recipient" in mails[3].get_content()
    assert len({m["Message-ID"] for m in mails}) == 4

    # SMS: out for delivery and arrived, through the provider's HTTP API with its token.
    sms = [q for q in receiver.at(SMS_PATH) if q.json()["to"] == phone]
    assert [q.json()["text"].split(",")[0] for q in sms] == [
        f"Your delivery ORD-{tag} is on its way",
        "Your driver has arrived at Unter den Linden 1",
    ]
    assert {q.headers["Authorization"] for q in sms} == {f"Bearer {SMS_TOKEN}"}

    # Webhooks: every event once, in order, signed with the subscription's secret.
    calls = receiver.at(path)
    assert [q.json()["type"] for q in calls] == [f"delivery.{e}" for e in WEBHOOK_EVENTS]
    assert [q.json()["delivery"]["sequence"] for q in calls] == sorted(
        q.json()["delivery"]["sequence"] for q in calls
    )
    for q in calls:
        assert verify(secret, q.body, q.headers[SIGNATURE_HEADER]), q.headers
        assert q.headers["Waybill-Event-Id"] == q.json()["id"]
        assert not verify("another-secret-0000", q.body, q.headers[SIGNATURE_HEADER])
    assert calls[-1].json()["delivery"]["proof"]["recipient_name"] == "Ms Recipient"
    assert json.loads(calls[2].body)["delivery"]["tracking_url"] == f"https://track.example.test/{did}"

    # In-app: the driver heard of the assignment; dispatchers of nothing (no alert in this lifecycle).
    mine = (await http.get("/api/v1/notifications", headers=org.driver)).json()["items"]
    assert [(n["event"], n["delivery_id"]) for n in mine] == [("assigned", did)]
    assert (await http.get("/api/v1/notifications", headers=org.dispatcher)).json()["items"] == []
    read = await post(http, f"/api/v1/notifications/{mine[0]['id']}/read", org.driver)
    assert read["read_at"] is not None

    # Recorded: each webhook delivery succeeded at its first attempt, with its response code.
    listed = (await http.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=org.admin)).json()["items"]
    assert [(d["status"], d["attempts"], d["last_response_code"]) for d in listed] == [
        ("succeeded", 1, 200)
    ] * 5
    one = (
        await http.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{listed[0]['id']}", headers=org.admin)
    ).json()
    assert one["attempt_log"][0]["response_code"] == 200
    assert one["attempt_log"][0]["latency_ms"] >= 0


async def test_customer_who_opted_out_gets_nothing(
    http: httpx.AsyncClient, org: Org, smtp: SmtpServer, receiver: HttpReceiver, notify_resources: Resources
) -> None:
    tag = uuid.uuid4().hex[:8]
    email, phone = f"quiet-{tag}@example.test", f"+49 40 {int(tag, 16) % 10**7:07d}"
    did = (await post(http, "/api/v1/deliveries", org.dispatcher, delivery_body(f"Q-{tag}", email, phone)))[
        "id"
    ]
    prefs = await http.put(
        f"/api/v1/notifications/deliveries/{did}", headers=org.dispatcher, json={"opted_out": True}
    )
    assert prefs.status_code == 200, prefs.text
    await post(
        http, f"/api/v1/deliveries/{did}/cancel", org.dispatcher, {"reason": "customer changed their mind"}
    )
    await notifications_done(await notify_resources.temporal.get(), did)
    # The created e-mail may have gone before the opt-out; the cancellation must not.
    assert all("cancelled" not in m["Subject"] for m in smtp.to(email))
    assert [q for q in receiver.at(SMS_PATH) if q.json()["to"] == phone] == []


async def test_dispatchers_are_alerted_of_failed_attempts(
    http: httpx.AsyncClient, org: Org, smtp: SmtpServer, notify_resources: Resources
) -> None:
    tag = uuid.uuid4().hex[:8]
    body = delivery_body(f"F-{tag}", attempt_policy={"max_attempts": 1})
    did = (await post(http, "/api/v1/deliveries", org.dispatcher, body))["id"]
    await post(http, f"/api/v1/deliveries/{did}/assign", org.dispatcher, {"vehicle_id": org.vehicle_id})
    await post(http, f"/api/v1/deliveries/{did}/pick-up", org.driver)
    await post(http, f"/api/v1/deliveries/{did}/fail", org.driver, {"reason": "recipient_absent"})
    await notifications_done(await notify_resources.temporal.get(), did)
    for role in (Role.ADMIN, Role.DISPATCHER):
        items = (await http.get("/api/v1/notifications", headers=org.headers[role])).json()["items"]
        assert [n["event"] for n in items if n["delivery_id"] == did] == ["failed_attempt", "returned"]
    staff_mail = smtp.to(org.tenant.emails[Role.DISPATCHER])
    assert [m["Subject"] for m in staff_mail] == [f"Delivery F-{tag}: we could not deliver"]
