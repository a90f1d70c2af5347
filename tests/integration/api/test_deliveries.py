"""Deliveries over the REST API, against the real dev server and a real worker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from api.schemas.deliveries import DeliveryCreate
from api.services.deliveries import request_hash
from db.models import IdempotencyKey
from tests.integration.api.conftest import Fleet, LoginFn
from tests.integration.api.test_auth import assert_problem

DROP = {"lat": 52.52, "lon": 13.405}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def body(**over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "dropoff": {
            "address": "Unter den Linden 1, Berlin",
            "location": DROP,
            "windows": [{"start": now.isoformat(), "end": (now + timedelta(hours=4)).isoformat()}],
            "contact": {"name": "Ms Recipient", "phone": "+49 30 1234"},
        },
        "size": {"weight_kg": 2.5, "units": 1},
    }
    base.update(over)
    return base


async def act(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    did: str,
    action: str,
    payload: dict[str, Any] | None = None,
    status: int = 200,
) -> dict[str, Any]:
    r = await http.post(f"/api/v1/deliveries/{did}/{action}", headers=headers, json=payload or {})
    assert r.status_code == status, f"{action}: {r.text}"
    result: dict[str, Any] = r.json()
    return result


async def test_every_state_through_the_api(http: httpx.AsyncClient, fleet: Fleet) -> None:
    created = await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body(external_ref="ORD-1"))
    assert created.status_code == 201, created.text
    did = created.json()["id"]
    assert created.headers["location"] == f"/api/v1/deliveries/{did}"
    assert created.json()["status"] == "pending"

    assigned = await act(http, fleet.dispatcher, did, "assign", {"vehicle_id": fleet.vehicle_id})
    assert (assigned["status"], assigned["driver_id"]) == ("assigned", fleet.driver_id)
    at = {"location": DROP}
    await act(http, fleet.driver, did, "accept")
    await act(http, fleet.driver, did, "pick-up", at)
    await act(http, fleet.driver, did, "depart")
    await act(http, fleet.driver, did, "arrive", at)
    upload = await http.post(
        f"/api/v1/deliveries/{did}/proof", headers=fleet.driver, files={"file": ("sig.png", PNG, "image/png")}
    )
    assert upload.status_code == 201, upload.text
    sha = upload.json()["sha256"]
    done = await act(
        http,
        fleet.driver,
        did,
        "deliver",
        {"recipient_name": "Ms Recipient", "location": DROP, "signature_sha256": sha},
    )
    assert done["status"] == "delivered"
    assert done["proof"]["signature_sha256"] == sha
    assert done["allowed_actions"] == []

    # The projection is what lists and reads serve; it caught up before the update returned.
    projected = (await http.get(f"/api/v1/deliveries/{did}", headers=fleet.dispatcher)).json()
    assert projected["status"] == "delivered"
    consistent = await http.get(
        f"/api/v1/deliveries/{did}", headers=fleet.dispatcher, params={"consistent": True}
    )
    assert consistent.json()["sequence"] == projected["sequence"]
    events = (await http.get(f"/api/v1/deliveries/{did}/events", headers=fleet.dispatcher)).json()
    assert [e["type"] for e in events] == [
        "created",
        "assigned",
        "accepted",
        "picked_up",
        "out_for_delivery",
        "arrived",
        "delivered",
    ]
    assert [e["to_status"] for e in events][-1] == "delivered"
    assert events[1]["actor"].startswith("dispatcher:")
    assert events[3]["data"] == {"lat": DROP["lat"], "lon": DROP["lon"]}
    # Finished: any further action is a 409 that says why.
    r = await http.post(f"/api/v1/deliveries/{did}/cancel", headers=fleet.dispatcher, json={"reason": "late"})
    problem = assert_problem(r, 409, "invalid_transition")
    assert (problem["current_status"], problem["allowed_actions"]) == ("delivered", [])


async def test_failed_attempt_then_successful_retry(http: httpx.AsyncClient, fleet: Fleet) -> None:
    did = (await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body())).json()["id"]
    await act(http, fleet.dispatcher, did, "assign", {"vehicle_id": fleet.vehicle_id})
    await act(http, fleet.driver, did, "pick-up")
    await act(http, fleet.driver, did, "depart")
    retry = await act(http, fleet.driver, did, "fail", {"reason": "recipient_absent", "location": DROP})
    assert (retry["status"], retry["attempt"], retry["vehicle_id"]) == ("pending", 2, None)
    await act(http, fleet.dispatcher, did, "assign", {"vehicle_id": fleet.vehicle_id})
    await act(http, fleet.driver, did, "pick-up")
    await act(http, fleet.driver, did, "depart")
    done = await act(http, fleet.driver, did, "deliver", {"recipient_name": "Neighbour", "location": DROP})
    assert (done["status"], done["attempt"], done["failures"]) == ("delivered", 2, ["recipient_absent"])
    types = [
        e["type"]
        for e in (await http.get(f"/api/v1/deliveries/{did}/events", headers=fleet.dispatcher)).json()
    ]
    assert types.count("failed") == 1
    assert "retry_scheduled" in types


async def test_last_failed_attempt_returns(http: httpx.AsyncClient, fleet: Fleet) -> None:
    did = (
        await http.post(
            "/api/v1/deliveries", headers=fleet.dispatcher, json=body(attempt_policy={"max_attempts": 1})
        )
    ).json()["id"]
    await act(http, fleet.dispatcher, did, "assign", {"vehicle_id": fleet.vehicle_id})
    await act(http, fleet.driver, did, "pick-up")
    returned = await act(http, fleet.driver, did, "fail", {"reason": "refused"})
    assert returned["status"] == "returned"
    events = (await http.get(f"/api/v1/deliveries/{did}/events", headers=fleet.dispatcher)).json()
    assert events[-1]["data"]["compensation"] == ["return_to_depot", "release_capacity"]


async def test_same_idempotency_key_concurrently_makes_one_delivery(
    http: httpx.AsyncClient, fleet: Fleet, api_resources: Any
) -> None:
    key = f"idem-{uuid.uuid4()}"
    payload = body()
    headers = {**fleet.dispatcher, "Idempotency-Key": key}
    responses = await asyncio.gather(
        *(http.post("/api/v1/deliveries", headers=headers, json=payload) for _ in range(8))
    )
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    assert sum(r.status_code == 201 for r in responses) >= 1
    did = ids.pop()
    client = await api_resources.temporal.get()
    runs = [w async for w in client.list_workflows(f"WorkflowId = 'delivery-{did}'")]
    assert len(runs) == 1
    # A different body under the same key is refused rather than silently ignored.
    other = await http.post("/api/v1/deliveries", headers=headers, json=body(priority=9))
    assert_problem(other, 422, "idempotency_key_reused")


async def test_a_new_delivery_is_readable_and_listed_at_once(http: httpx.AsyncClient, fleet: Fleet) -> None:
    """The create writes the pending row itself: a read or list right after never misses it."""
    for headers in (fleet.dispatcher, {**fleet.dispatcher, "Idempotency-Key": f"rw-{uuid.uuid4()}"}):
        created = await http.post("/api/v1/deliveries", headers=headers, json=body())
        assert created.status_code == 201, created.text
        did = created.json()["id"]
        read = await http.get(f"/api/v1/deliveries/{did}", headers=fleet.dispatcher)
        assert read.status_code == 200, read.text
        assert read.json()["status"] in ("pending", "assigned")
        listed = await http.get("/api/v1/deliveries", headers=fleet.dispatcher, params={"limit": 100})
        assert did in {d["id"] for d in listed.json()["items"]}


async def test_a_claimed_key_without_its_row_is_completed_by_a_retry(
    http: httpx.AsyncClient, fleet: Fleet, api_resources: Any
) -> None:
    """A request that stopped between its claim and its row (SQLite writes them one after the other):
    the retry with the same key writes the row and starts the one workflow, under the claimed id."""
    payload = body()
    key = f"half-{uuid.uuid4()}"
    claimed = uuid.uuid4()
    async with api_resources.sessionmaker() as session:
        session.add(
            IdempotencyKey(
                organization_id=fleet.tenant.organization_id,
                key=key,
                request_hash=request_hash(DeliveryCreate.model_validate(payload)),
                delivery_id=claimed,
            )
        )
        await session.commit()
    headers = {**fleet.dispatcher, "Idempotency-Key": key}
    retry = await http.post("/api/v1/deliveries", headers=headers, json=payload)
    assert retry.status_code in (200, 201), retry.text
    assert retry.json()["id"] == str(claimed)
    again = await http.post("/api/v1/deliveries", headers=headers, json=payload)
    assert again.status_code == 200
    assert again.json()["id"] == str(claimed)
    read = await http.get(f"/api/v1/deliveries/{claimed}", headers=fleet.dispatcher)
    assert read.status_code == 200, read.text
    client = await api_resources.temporal.get()
    runs = [w async for w in client.list_workflows(f"WorkflowId = 'delivery-{claimed}'")]
    assert len(runs) == 1


async def test_external_ref_returns_the_same_delivery(http: httpx.AsyncClient, fleet: Fleet) -> None:
    ref = f"SHOP-{uuid.uuid4().hex[:6]}"
    first = await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body(external_ref=ref))
    again = await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body(external_ref=ref))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]


async def test_validation_and_rejections(http: httpx.AsyncClient, fleet: Fleet, login: LoginFn) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    stale = body()
    stale["dropoff"]["windows"] = [
        {"start": past.isoformat(), "end": (past + timedelta(hours=1)).isoformat()}
    ]
    problem = assert_problem(
        await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=stale), 422, "invalid_delivery"
    )
    assert "already closed" in str(problem["detail"])
    bad = body()
    bad["dropoff"]["location"] = {"lat": 91, "lon": 0}
    assert_problem(
        await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=bad), 422, "validation_error"
    )
    assert_problem(
        await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body(status="delivered")),
        422,
        "validation_error",
    )
    assert_problem(await http.post("/api/v1/deliveries", headers=fleet.driver, json=body()), 403, "forbidden")

    did = (await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body())).json()["id"]
    problem = assert_problem(
        await http.post(f"/api/v1/deliveries/{did}/pick-up", headers=fleet.driver, json={}),
        404,
        "delivery_not_found",
    )  # not assigned to this driver: invisible
    await act(http, fleet.dispatcher, did, "assign", {"vehicle_id": fleet.vehicle_id})
    problem = assert_problem(
        await http.post(f"/api/v1/deliveries/{did}/arrive", headers=fleet.driver, json={}),
        409,
        "invalid_transition",
    )
    assert problem["current_status"] == "assigned"
    assert problem["allowed_actions"] == ["accept", "assign", "cancel", "pick_up", "reschedule", "unassign"]
    await act(http, fleet.driver, did, "pick-up")
    await act(http, fleet.driver, did, "depart")
    far = {"lat": DROP["lat"] + 0.02, "lon": DROP["lon"]}
    r = await http.post(
        f"/api/v1/deliveries/{did}/deliver",
        headers=fleet.driver,
        json={"recipient_name": "X", "location": far},
    )
    problem = assert_problem(r, 422, "proof_too_far")
    assert problem["distance_m"] > 2000
    done = await act(
        http,
        fleet.dispatcher,
        did,
        "deliver",
        {"recipient_name": "X", "location": far, "override_distance": True},
    )
    assert done["proof"]["overridden_by"].startswith("dispatcher:")
    assert_problem(
        await http.get(f"/api/v1/deliveries/{uuid.uuid4()}", headers=fleet.dispatcher),
        404,
        "delivery_not_found",
    )


async def test_cancel_after_pickup_and_reschedule(http: httpx.AsyncClient, fleet: Fleet) -> None:
    did = (await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body())).json()["id"]
    later = datetime.now(UTC) + timedelta(days=1)
    moved = await act(
        http,
        fleet.dispatcher,
        did,
        "reschedule",
        {"windows": [{"start": later.isoformat(), "end": (later + timedelta(hours=2)).isoformat()}]},
    )
    assert moved["dropoff"]["windows"][0]["start"].startswith(later.date().isoformat())
    await act(http, fleet.dispatcher, did, "assign", {"vehicle_id": fleet.vehicle_id})
    await act(http, fleet.driver, did, "pick-up")
    cancelled = await act(http, fleet.dispatcher, did, "cancel", {"reason": "customer cancelled"})
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "customer cancelled")


async def test_batch_reports_per_item(http: httpx.AsyncClient, fleet: Fleet) -> None:
    ref = f"B-{uuid.uuid4().hex[:6]}"
    items = [
        body(external_ref=f"{ref}-1"),
        body(external_ref=f"{ref}-2"),
        {"dropoff": {"address": "x"}},
        body(external_ref=f"{ref}-1"),
    ]
    r = await http.post("/api/v1/deliveries:batch", headers=fleet.dispatcher, json={"items": items})
    assert r.status_code == 200, r.text
    result = r.json()
    outcomes = [i["outcome"] for i in result["items"]]
    assert outcomes[1:3] == ["created", "rejected"]
    # Items 0 and 3 share an external_ref and race each other: one creates, the other finds it.
    assert sorted([outcomes[0], outcomes[3]]) == ["created", "existing"]
    assert result["items"][3]["delivery"]["id"] == result["items"][0]["delivery"]["id"]
    assert (result["created"], result["existing"], result["rejected"]) == (2, 1, 1)
    assert result["items"][2]["error"]["code"] == "validation_error"


async def test_list_filters(http: httpx.AsyncClient, fleet: Fleet) -> None:
    tag = uuid.uuid4().hex[:6]
    a = (
        await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body(external_ref=f"F-{tag}-a"))
    ).json()
    await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body(external_ref=f"F-{tag}-b"))
    await act(http, fleet.dispatcher, a["id"], "assign", {"vehicle_id": fleet.vehicle_id})
    found = (
        await http.get(
            "/api/v1/deliveries", headers=fleet.dispatcher, params={"q": tag, "status": "assigned"}
        )
    ).json()["items"]
    assert [d["external_ref"] for d in found] == [f"F-{tag}-a"]
    mine = (await http.get("/api/v1/deliveries", headers=fleet.driver)).json()["items"]
    assert {d["id"] for d in mine} == {a["id"]}
    by_vehicle = (
        await http.get(
            "/api/v1/deliveries", headers=fleet.dispatcher, params={"vehicle_id": fleet.vehicle_id, "q": tag}
        )
    ).json()["items"]
    assert len(by_vehicle) == 1
