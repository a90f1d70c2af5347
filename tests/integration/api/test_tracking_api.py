"""The tracking REST API against real parts: positions go in through the live ingest pipeline
(api/sockets/ingest.py, the same one the driver sockets use) into the real history store and the
latest-position cache (the in-process bus, and Redis when REDIS_URL is set); routes come from a real
route plan run by the worker on the Temporal dev server; live ETAs reach the route workflow the way
live tracking sends them (`RouteWorkflow.report_eta`).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from api.security.tokens import TokenType
from api.sockets.ingest import Ingest
from api.sockets.position_json import VehicleRef
from domain.positions import FilterConfig, Fix
from domain.roles import Role
from domain.routes import EtaReport
from plumbing.temporal import TemporalConnector
from tests.conftest import REDIS_URL
from tests.integration.api.conftest import Fleet, LoginFn
from tests.integration.api.test_deliveries import body
from tests.integration.api.test_rate_limits import api_servers
from tests.integration.api.test_routing import DEPOT, noon_zone, poll
from tests.support import PASSWORD, Tenant, free_port, make_tenant
from waybill.services import ApiService
from workflows.route import RouteWorkflow

BUSES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set")),
]
M_PER_DEG = 111_320.0
_RESOURCES: dict[str, Resources] = {}  # the resources behind each API url of this module


@pytest.fixture(scope="module", params=BUSES)
async def api_url(
    request: pytest.FixtureRequest, api_url: str, api_resources: Resources, dev_env: WorkflowEnvironment
) -> AsyncIterator[str]:
    """The session's API (in-process bus), or a second API on the same database and task queues
    whose latest positions live in Redis."""
    if request.param == "memory":
        _RESOURCES[api_url] = api_resources
        yield api_url
        return
    assert REDIS_URL
    prefix = f"waybill-test-tracking-{uuid.uuid4().hex[:8]}:"
    settings = api_resources.settings.model_copy(update={"redis_url": REDIS_URL, "redis_prefix": prefix})
    resources = await Resources.open(settings, TemporalConnector(settings, dev_env.client))
    port = free_port()
    service = ApiService(resources, "127.0.0.1", port)
    await service.start()
    url = f"http://127.0.0.1:{port}"
    _RESOURCES[url] = resources
    try:
        yield url
    finally:
        await service.stop()
        await resources.close()
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
def res(api_url: str) -> Resources:
    return _RESOURCES[api_url]


# Helpers -------------------------------------------------------------------------------------


async def ingest(
    resources: Resources,
    org: uuid.UUID,
    vehicle: str | uuid.UUID,
    fixes: list[Fix],
    driver: str | None = None,
) -> None:
    """Through the live pipeline: filtered, stored in the history store, cached as the latest."""
    pipe = Ingest(
        resources.cache_bus, resources.history, FilterConfig(), batch=10_000, flush_s=0.05, publish_s=0.01
    )
    pipe.start()
    acks: list[tuple[list[int], list[tuple[int, str]]]] = []
    ref = VehicleRef(org, uuid.UUID(str(vehicle)), uuid.UUID(driver) if driver else None)
    await pipe.submit(ref, fixes, [], lambda seqs, filtered: acks.append((seqs, filtered)))
    await pipe.stop()
    assert [f for _, filtered in acks for f in filtered] == [], "the seed positions must all be accepted"
    assert sum(len(seqs) for seqs, _ in acks) == len(fixes)


def line(
    start: datetime,
    lat: float,
    lon: float,
    n: int,
    *,
    step_m: float = 10.0,
    every_s: float = 5.0,
    jitter_m: float = 0.0,
) -> list[Fix]:
    """n fixes heading east, `step_m` apart, alternating `jitter_m` north and south of the line."""
    out = []
    for i in range(n):
        north = jitter_m if i % 2 else -jitter_m
        out.append(
            Fix(
                seq=i,
                recorded_at=start + timedelta(seconds=i * every_s),
                lat=lat + north / M_PER_DEG,
                lon=lon + i * step_m / (M_PER_DEG * 0.6),  # cos(53°) ≈ 0.6
                accuracy_m=5.0,
                speed_mps=step_m / every_s,
                heading_deg=90.0,
            )
        )
    return out


def fix_at(lat: float, lon: float, seq: int = 1, ago_s: float = 5.0) -> Fix:
    return Fix(
        seq=seq, recorded_at=datetime.now(UTC) - timedelta(seconds=ago_s), lat=lat, lon=lon, accuracy_m=4.0
    )


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = r.json()
    assert doc["code"] == code, doc
    return doc


async def vehicle(http: httpx.AsyncClient, headers: dict[str, str], name: str, **extra: Any) -> str:
    r = await http.post("/api/v1/vehicles", headers=headers, json={"name": name, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


# Latest position -----------------------------------------------------------------------------


async def test_latest_position_is_scoped_to_the_organization_and_to_staff(
    http: httpx.AsyncClient,
    fleet: Fleet,
    login: LoginFn,
    res: Resources,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org, url = fleet.tenant.organization_id, f"/api/v1/vehicles/{fleet.vehicle_id}/position"
    viewer = await login(fleet.tenant, Role.VIEWER)
    problem(await http.get(url, headers=viewer), 404, "position_not_found")

    fixes = line(datetime.now(UTC) - timedelta(minutes=2), 52.5, 13.4, 5)
    await ingest(res, org, fleet.vehicle_id, fixes, fleet.driver_id)
    r = await http.get(url, headers=viewer)
    assert r.status_code == 200, r.text
    got, last = r.json(), fixes[-1]
    assert got["vehicle_id"] == fleet.vehicle_id
    assert got["driver_id"] == fleet.driver_id
    assert datetime.fromisoformat(got["recorded_at"]) == last.recorded_at
    assert got["location"] == {"lat": pytest.approx(last.lat), "lon": pytest.approx(last.lon)}
    assert (got["speed_mps"], got["heading_deg"], got["accuracy_m"]) == (2.0, 90.0, 5.0)
    assert 100 <= got["age_seconds"] < 300

    assert (await http.get(url, headers=fleet.dispatcher)).status_code == 200
    problem(await http.get(url, headers=fleet.driver), 403, "forbidden")
    problem(await http.get(url), 401, "unauthenticated")
    problem(
        await http.get(f"/api/v1/vehicles/{uuid.uuid4()}/position", headers=viewer), 404, "vehicle_not_found"
    )
    # Another organization's admin: the vehicle does not exist for them, whatever the cache holds.
    intruder = await login(await make_tenant(sessionmaker), Role.ADMIN)
    problem(await http.get(url, headers=intruder), 404, "vehicle_not_found")
    problem(
        await http.get(f"/api/v1/vehicles/{fleet.vehicle_id}/track", headers=intruder),
        404,
        "vehicle_not_found",
    )


# Nearby --------------------------------------------------------------------------------------


async def test_nearby_is_nearest_first_within_the_radius_and_capped(
    http: httpx.AsyncClient,
    fleet: Fleet,
    login: LoginFn,
    res: Resources,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org, centre = fleet.tenant.organization_id, (48.137, 11.575)
    # Created out of order: the answer is ordered by distance, not by id.
    far, near, mid = [await vehicle(http, fleet.dispatcher, name) for name in ("Far", "Near", "Mid")]
    for vid, metres in ((far, 3000.0), (near, 100.0), (mid, 500.0)):
        await ingest(res, org, vid, [fix_at(centre[0] + metres / M_PER_DEG, centre[1])])
    # Another organization's vehicle right at the centre never shows up.
    other = await make_tenant(sessionmaker)
    other_vehicle = await vehicle(http, await login(other, Role.DISPATCHER), "Theirs")
    await ingest(res, other.organization_id, other_vehicle, [fix_at(*centre)])

    viewer = await login(fleet.tenant, Role.VIEWER)

    async def nearby(**params: Any) -> list[dict[str, Any]]:
        r = await http.get(
            "/api/v1/vehicles/nearby", headers=viewer, params={"lat": centre[0], "lon": centre[1], **params}
        )
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    within = await nearby(radius_m=1000)
    assert [i["vehicle_id"] for i in within] == [near, mid]
    assert [i["name"] for i in within] == ["Near", "Mid"]
    assert [round(i["distance_m"]) for i in within] == [pytest.approx(100, abs=2), pytest.approx(500, abs=3)]
    assert within[0]["position"]["location"]["lat"] == pytest.approx(centre[0] + 100 / M_PER_DEG)
    assert [i["vehicle_id"] for i in await nearby(radius_m=5000)] == [near, mid, far]
    assert [i["vehicle_id"] for i in await nearby(radius_m=5000, limit=2)] == [near, mid]
    assert await nearby(radius_m=50) == []

    # A vehicle deleted since it reported is not answered, though the cache still has it.
    assert (await http.delete(f"/api/v1/vehicles/{near}", headers=fleet.dispatcher)).status_code == 204
    assert [i["vehicle_id"] for i in await nearby(radius_m=1000)] == [mid]

    base: dict[str, Any] = {"lat": centre[0], "lon": centre[1]}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**base, "radius_m": 1_000_000}, 400, "radius_too_large"),
        ({**base, "limit": 10_000}, 400, "limit_too_large"),
        ({**base, "radius_m": 0}, 422, "validation_error"),
        ({**base, "radius_m": "nan"}, 422, "validation_error"),
        ({"lat": 89.0, "lon": 0}, 422, "validation_error"),  # beyond the GEO index's latitudes
        ({"lat": 1.0}, 422, "validation_error"),
        ({**base, "limit": 0}, 422, "validation_error"),
    ]
    for params, status, code in cases:
        problem(await http.get("/api/v1/vehicles/nearby", headers=viewer, params=params), status, code)
    problem(await http.get("/api/v1/vehicles/nearby", headers=fleet.driver, params=base), 403, "forbidden")


# Track ---------------------------------------------------------------------------------------


async def test_track_returns_the_stored_history_simplified_on_request_within_limits(
    http: httpx.AsyncClient, fleet: Fleet, login: LoginFn, res: Resources
) -> None:
    org, url = fleet.tenant.organization_id, f"/api/v1/vehicles/{fleet.vehicle_id}/track"
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    fixes = line(start, 52.5, 13.4, 200, jitter_m=1.0)  # a straight line with 1 m of GPS noise
    await ingest(res, org, fleet.vehicle_id, fixes, fleet.driver_id)
    viewer = await login(fleet.tenant, Role.VIEWER)
    window: dict[str, Any] = {"from": start.isoformat(), "to": (start + timedelta(hours=1)).isoformat()}

    r = await http.get(url, headers=viewer, params=window)
    assert r.status_code == 200, r.text
    track = r.json()
    assert track["stored_points"] == len(track["points"]) == 200
    assert [datetime.fromisoformat(p["recorded_at"]) for p in track["points"]] == [
        f.recorded_at for f in fixes
    ]
    assert datetime.fromisoformat(track["from"]) == start

    # Half-open range: `to` is exclusive.
    half = await http.get(
        url, headers=viewer, params={"from": start.isoformat(), "to": fixes[100].recorded_at.isoformat()}
    )
    assert half.json()["stored_points"] == 100

    simple = (await http.get(url, headers=viewer, params={**window, "simplify_m": 5})).json()
    assert simple["stored_points"] == 200
    assert 2 <= len(simple["points"]) < 10  # the noise is within the tolerance: the line remains
    assert simple["points"][0] == track["points"][0]
    assert simple["points"][-1] == track["points"][-1]
    assert simple["simplify_m"] == 5
    exact = (await http.get(url, headers=viewer, params={**window, "simplify_m": 0.5})).json()
    assert len(exact["points"]) > 100  # below the noise, most points stay

    # Zones are required; ranges are checked before the store is read.
    t0 = start.replace(tzinfo=None).isoformat()
    for params, status, code in (
        ({"from": t0, "to": window["to"]}, 400, "naive_datetime"),
        ({"from": window["to"], "to": window["from"]}, 400, "invalid_range"),
        ({"from": (start - timedelta(days=2)).isoformat(), "to": window["to"]}, 400, "range_too_long"),
        ({"to": "0001-01-01T00:30:00+00:00"}, 400, "invalid_range"),
        ({"from": "0001-01-01T00:00:00+01:00", "to": window["to"]}, 400, "invalid_range"),
        ({**window, "simplify_m": -1}, 422, "validation_error"),
        ({"from": "yesterday"}, 422, "validation_error"),
    ):
        problem(await http.get(url, headers=viewer, params=params), status, code)
    problem(await http.get(url, headers=fleet.driver, params=window), 403, "forbidden")
    problem(
        await http.get(f"/api/v1/vehicles/{uuid.uuid4()}/track", headers=viewer), 404, "vehicle_not_found"
    )

    # Defaults: the last hour up to now (the seed is older, so nothing).
    recent = await http.get(url, headers=viewer)
    assert recent.status_code == 200
    assert recent.json()["stored_points"] == 0


async def test_a_range_holding_more_than_the_point_cap_is_refused(
    http: httpx.AsyncClient, fleet: Fleet, res: Resources
) -> None:
    cap = res.settings.tracking_track_max_points
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    await ingest(
        res, fleet.tenant.organization_id, fleet.vehicle_id, line(start, 52.5, 13.4, cap + 1, every_s=1)
    )
    url = f"/api/v1/vehicles/{fleet.vehicle_id}/track"
    params = {"from": start.isoformat(), "to": (start + timedelta(hours=2)).isoformat()}
    doc = problem(await http.get(url, headers=fleet.dispatcher, params=params), 400, "too_many_points")
    assert doc["max_points"] == cap
    params["to"] = (start + timedelta(seconds=cap)).isoformat()  # one point fewer
    r = await http.get(url, headers=fleet.dispatcher, params={**params, "simplify_m": 3})
    assert r.status_code == 200, r.text
    assert r.json()["stored_points"] == cap
    assert len(r.json()["points"]) == 2


# Delivery tracking and customer links ---------------------------------------------------------


class Routed:
    """A depot, a van driven by the tenant's driver, one delivery on the van's planned route."""

    def __init__(self, tenant: Tenant, dispatcher: dict[str, str], driver: dict[str, str]) -> None:
        self.tenant, self.dispatcher, self.driver = tenant, dispatcher, driver
        self.vehicle_id = self.driver_id = self.delivery_id = self.route_id = ""


@pytest.fixture
async def routed(http: httpx.AsyncClient, tenant: Tenant, login: LoginFn) -> Routed:
    s = Routed(tenant, await login(tenant, Role.DISPATCHER), await login(tenant, Role.DRIVER))
    r = await http.post(
        "/api/v1/depots",
        headers=s.dispatcher,
        json={
            "name": "Mitte",
            "location": {"lat": DEPOT[0], "lon": DEPOT[1]},
            "timezone": noon_zone(datetime.now(UTC)),
        },
    )
    assert r.status_code == 201, r.text
    depot = r.json()["id"]
    today = datetime.now(ZoneInfo(r.json()["timezone"])).date().isoformat()
    s.vehicle_id = await vehicle(
        http,
        s.dispatcher,
        "Van 1",
        capacity={"units": 8, "weight_kg": 500},
        home_depot_id=depot,
        shift={"start": "08:00", "end": "20:00"},
    )
    d = await http.post(
        "/api/v1/drivers",
        headers=s.dispatcher,
        json={"name": "Dario", "user_id": str(tenant.user_ids[Role.DRIVER]), "vehicle_id": s.vehicle_id},
    )
    assert d.status_code == 201, d.text
    s.driver_id = d.json()["id"]
    delivery = await http.post("/api/v1/deliveries", headers=s.dispatcher, json=body(depot_id=depot))
    assert delivery.status_code == 201, delivery.text
    s.delivery_id = delivery.json()["id"]
    plan = await http.post(
        "/api/v1/route-plans",
        headers=s.dispatcher,
        json={"depot_id": depot, "time_limit_seconds": 1, "date": today},
    )
    assert plan.status_code == 202, plan.text

    async def tracking() -> dict[str, Any]:
        got = await http.get(f"/api/v1/deliveries/{s.delivery_id}/tracking", headers=s.dispatcher)
        assert got.status_code == 200, got.text
        doc: dict[str, Any] = got.json()
        return doc

    view = await poll(
        tracking, lambda t: t["route_id"] is not None and t["stop_status"] is not None, timeout=90
    )
    s.route_id = view["route_id"]
    return s


async def test_delivery_tracking_shows_status_position_and_the_routes_eta(
    http: httpx.AsyncClient,
    routed: Routed,
    login: LoginFn,
    res: Resources,
    api_resources: Resources,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    url = f"/api/v1/deliveries/{routed.delivery_id}/tracking"
    view = (await http.get(url, headers=routed.dispatcher)).json()
    assert (view["status"], view["vehicle_id"], view["driver_id"]) == (
        "assigned",
        routed.vehicle_id,
        routed.driver_id,
    )
    assert (view["stop_status"], view["eta_source"]) == ("planned", "planned")
    assert datetime.fromisoformat(view["eta"]) >= datetime.now(UTC) - timedelta(seconds=5)
    assert view["position"] is None  # the van has not reported yet
    assert view["window_start"] is not None
    assert view["window_end"] is not None

    await ingest(res, routed.tenant.organization_id, routed.vehicle_id, [fix_at(*DEPOT)], routed.driver_id)
    view = (await http.get(url, headers=routed.dispatcher)).json()
    assert view["position"]["location"] == {"lat": DEPOT[0], "lon": DEPOT[1]}

    # Live tracking reports an ETA to the route workflow; the projection carries it to this endpoint.
    eta = (datetime.now(UTC) + timedelta(minutes=37)).replace(microsecond=0)
    client = await api_resources.temporal.get()
    await client.get_workflow_handle_for(RouteWorkflow.run, routed.route_id).signal(
        RouteWorkflow.report_eta, EtaReport(f"{routed.delivery_id}:delivery", eta, datetime.now(UTC))
    )

    async def fetch() -> dict[str, Any]:
        doc: dict[str, Any] = (await http.get(url, headers=routed.dispatcher)).json()
        return doc

    live = await poll(fetch, lambda v: v["eta_source"] == "live")
    assert datetime.fromisoformat(live["eta"]) == eta

    # Who may look: viewers; the assigned driver; not another driver's or another organization's.
    assert (await http.get(url, headers=await login(routed.tenant, Role.VIEWER))).status_code == 200
    assert (await http.get(url, headers=routed.driver)).status_code == 200
    unassigned = await http.post("/api/v1/deliveries", headers=routed.dispatcher, json=body())
    other_url = f"/api/v1/deliveries/{unassigned.json()['id']}/tracking"
    problem(await http.get(other_url, headers=routed.driver), 404, "delivery_not_found")
    pending = (await http.get(other_url, headers=routed.dispatcher)).json()
    assert (pending["status"], pending["eta"], pending["position"], pending["vehicle_id"]) == (
        "pending",
        None,
        None,
        None,
    )
    intruder = await login(await make_tenant(sessionmaker), Role.ADMIN)
    problem(await http.get(url, headers=intruder), 404, "delivery_not_found")
    problem(
        await http.get(f"/api/v1/deliveries/{uuid.uuid4()}/tracking", headers=routed.dispatcher),
        404,
        "delivery_not_found",
    )

    # The customer's link: no login, a safe subset; the position appears once the van heads there.
    shared = await http.post(f"{url}/share", headers=routed.dispatcher, json={})
    assert shared.status_code == 201, shared.text
    link = shared.json()
    expires = datetime.fromisoformat(link["expires_at"])
    assert abs(expires - datetime.now(UTC) - timedelta(hours=24)) < timedelta(minutes=1)
    assert link["url"].endswith(f"/api/v1/public/tracking/{link['token']}")
    public_url = f"/api/v1/public/tracking/{link['token']}"
    async with httpx.AsyncClient(base_url=str(http.base_url)) as anonymous:
        r = await anonymous.get(public_url)
        assert r.status_code == 200, r.text
        public = r.json()
        assert set(public) == {
            "status",
            "eta",
            "window_start",
            "window_end",
            "position",
            "updated_at",
            "expires_at",
        }
        assert (public["status"], public["position"]) == ("assigned", None)  # not yet on the way here
        assert datetime.fromisoformat(public["eta"]) == eta
        for action in ("accept", "pick-up", "depart"):
            assert (
                await http.post(
                    f"/api/v1/deliveries/{routed.delivery_id}/{action}", headers=routed.driver, json={}
                )
            ).status_code == 200
        on_the_way = await poll(
            lambda: _json(anonymous.get(public_url)), lambda p: p["status"] == "out_for_delivery"
        )
        assert on_the_way["position"]["location"] == {"lat": DEPOT[0], "lon": DEPOT[1]}
        assert set(on_the_way["position"]) == {"recorded_at", "location", "heading_deg"}
        text = json.dumps(on_the_way)
        for secret in (
            routed.vehicle_id,
            routed.driver_id,
            routed.delivery_id,
            routed.route_id,
            "+49 30 1234",
        ):
            assert secret not in text

    # Only dispatchers and admins hand out links, and not for longer than the cap.
    problem(
        await http.post(f"{url}/share", headers=await login(routed.tenant, Role.VIEWER), json={}),
        403,
        "forbidden",
    )
    problem(await http.post(f"{url}/share", headers=routed.driver, json={}), 403, "forbidden")
    problem(await http.post(f"{url}/share", headers=intruder, json={}), 404, "delivery_not_found")
    long_ttl = res.settings.tracking_share_max_ttl_seconds + 1
    problem(
        await http.post(f"{url}/share", headers=routed.dispatcher, json={"ttl_seconds": long_ttl}),
        400,
        "ttl_too_long",
    )
    problem(
        await http.post(f"{url}/share", headers=routed.dispatcher, json={"ttl_seconds": 5}),
        422,
        "validation_error",
    )
    short = await http.post(
        f"{url}/share", headers=await login(routed.tenant, Role.ADMIN), json={"ttl_seconds": 120}
    )
    assert short.status_code == 201, short.text
    left = datetime.fromisoformat(short.json()["expires_at"]) - datetime.now(UTC)
    assert timedelta(seconds=100) < left <= timedelta(seconds=121)
    audit = await http.get(
        "/api/v1/audit",
        headers=await login(routed.tenant, Role.ADMIN),
        params={"action": "tracking_link_shared"},
    )
    assert audit.status_code == 200, audit.text
    assert len(audit.json()["items"]) == 2


async def _json(response: Any) -> dict[str, Any]:
    r = await response
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def _tamper(token: str, change: Callable[[dict[str, Any]], None]) -> str:
    """The token with its payload changed but its signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    change(claims)
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{raw}.{signature}"


async def test_links_expire_resist_forgery_and_never_pass_for_access_tokens(
    http: httpx.AsyncClient, fleet: Fleet, login: LoginFn, res: Resources
) -> None:
    created = await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json=body())
    assert created.status_code == 201, created.text
    did = created.json()["id"]
    org = fleet.tenant.organization_id
    link = (await http.post(f"/api/v1/deliveries/{did}/tracking/share", headers=fleet.dispatcher)).json()
    token = link["token"]

    async def public(t: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=str(http.base_url)) as anonymous:
            return await anonymous.get(f"/api/v1/public/tracking/{t}")

    ok = await public(token)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "pending"

    # Expiry, with the clock moved back at issue time rather than waiting.
    old = res.tokens.issue_share(
        delivery_id=uuid.UUID(did),
        organization_id=org,
        ttl=timedelta(hours=1),
        now=datetime.now(UTC) - timedelta(hours=2),
    )
    problem(await public(old.token), 410, "tracking_link_expired")

    # Forged or tampered links are simply not found.
    other = str(uuid.uuid4())
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    foreign_key = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}),
        "not-our-key-" * 4,
        algorithm="HS256",
        headers={"kid": jwt.get_unverified_header(token)["kid"]},
    )
    for forged in (
        f"{header}.{payload}.{flipped}",
        _tamper(token, lambda c: c.update(sub=other)),
        _tamper(token, lambda c: c.update(exp=c["exp"] + 86_400 * 365)),
        foreign_key,
        "not-a-token",
        "a.b.c",
        "x" * 3000,
    ):
        problem(await public(forged), 404, "tracking_link_not_found")
    problem(await public("x" * 5000), 422, "validation_error")

    # A link is not an access token ...
    bearer = {"Authorization": f"Bearer {token}"}
    for path in (f"/api/v1/deliveries/{did}", f"/api/v1/deliveries/{did}/tracking", "/api/v1/auth/me"):
        problem(await http.get(path, headers=bearer), 401, "invalid_token")
    problem(await http.post("/api/v1/auth/refresh", json={"refresh_token": token}), 401, "invalid_token")
    # ... and neither an access nor a refresh token is a link, even for a delivery id of theirs.
    access = fleet.dispatcher["Authorization"].removeprefix("Bearer ")
    problem(await public(access), 404, "tracking_link_not_found")
    login_pair = await http.post(
        "/api/v1/auth/login", json={"email": fleet.tenant.emails[Role.VIEWER], "password": PASSWORD}
    )
    problem(await public(login_pair.json()["refresh_token"]), 404, "tracking_link_not_found")
    as_access = res.tokens.issue(
        user_id=uuid.UUID(did), organization_id=org, role=Role.VIEWER, token_type=TokenType.ACCESS
    )
    problem(await public(as_access.token), 404, "tracking_link_not_found")

    # A link whose delivery is gone (or another organization's id) is not found either.
    ghost = res.tokens.issue_share(delivery_id=uuid.uuid4(), organization_id=org, ttl=timedelta(hours=1))
    problem(await public(ghost.token), 404, "tracking_link_not_found")
    cross = res.tokens.issue_share(
        delivery_id=uuid.UUID(did), organization_id=uuid.uuid4(), ttl=timedelta(hours=1)
    )
    problem(await public(cross.token), 404, "tracking_link_not_found")


async def test_public_tracking_is_rate_limited_per_address(
    sqlite_url: str, dev_env: WorkflowEnvironment, tmp_path: Any
) -> None:
    async with api_servers(
        1, sqlite_url, dev_env, tmp_path, rate_limit_ip=3, rate_limit_window_seconds=30
    ) as (
        [url],
        _,
    ):
        async with httpx.AsyncClient(base_url=url) as anonymous:
            codes = [(await anonymous.get("/api/v1/public/tracking/guess")).status_code for _ in range(4)]
            assert codes == [404, 404, 404, 429]
            problem(await anonymous.get("/api/v1/public/tracking/guess"), 429, "rate_limited")
