"""Live tracking's arrival detection (api/sockets/arrivals.py) across routes: once per stop of a route,
again for the same delivery on a later route (a re-attempt), and nothing remembered for old routes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from api.sockets.arrivals import Tracker
from api.sockets.position_json import VehicleRef
from db.models import RouteRow, Vehicle
from domain.positions import Fix
from domain.routes import RouteState, RouteStatus, RouteStop, StopStatus
from plumbing.codec import to_jsonable
from plumbing.temporal import TemporalConnector
from tests.support import make_tenant, test_settings

STOP = (52.5259, 13.4132)


@pytest.fixture
async def resources(sqlite_url: str, dev_env: WorkflowEnvironment) -> AsyncIterator[Resources]:
    settings = test_settings(database_url=sqlite_url, tracking_arrival_dwell_seconds=1.0)
    res = await Resources.open(settings, TemporalConnector(settings, dev_env.client))
    yield res
    await res.close()


async def _route(res: Resources, org: uuid.UUID, vehicle: uuid.UUID, shift: str, delivery: str) -> RouteState:
    state = RouteState(
        route_id=f"route-{vehicle}-{shift}",
        organization_id=str(org),
        vehicle_id=str(vehicle),
        shift=shift,
        driver_id=None,
        depot_id=None,
        plan_id=f"plan-{shift}",
        start_at=datetime.now(UTC),
        stops=[RouteStop(delivery_id=delivery, kind="delivery", lat=STOP[0], lon=STOP[1])],
        status=RouteStatus.IN_PROGRESS,
    )
    async with res.sessionmaker() as s:
        s.add(
            RouteRow(
                id=state.route_id,
                organization_id=org,
                vehicle_id=vehicle,
                shift=shift,
                plan_id=state.plan_id,
                status=state.status.value,
                version=1,
                start_at=state.start_at,
                state=to_jsonable(state),
            )
        )
        await s.commit()
    return state


async def _complete(res: Resources, state: RouteState) -> None:
    done = [replace(s, status=StopStatus.FAILED, finished_at=datetime.now(UTC)) for s in state.stops]
    async with res.sessionmaker() as s:
        row = await s.get(RouteRow, state.route_id)
        assert row is not None
        row.status = RouteStatus.COMPLETED.value
        row.state = to_jsonable(replace(state, stops=done, status=RouteStatus.COMPLETED))
        await s.commit()


async def test_a_delivery_reattempted_on_a_later_route_is_detected_again(resources: Resources) -> None:
    tenant = await make_tenant(resources.sessionmaker)
    async with resources.sessionmaker() as s:
        van = Vehicle(organization_id=tenant.organization_id, name=f"Van {uuid.uuid4().hex[:6]}")
        s.add(van)
        await s.commit()
    delivery = str(uuid.uuid4())
    first = await _route(resources, tenant.organization_id, van.id, "2026-11-27", delivery)
    tracker = Tracker(resources)
    ref = VehicleRef(tenant.organization_id, van.id, None)
    t0 = datetime.now(UTC)
    seq = 0

    async def park(seconds: float, start: datetime) -> None:
        nonlocal seq
        for i in range(int(seconds) + 1):
            seq += 1
            await tracker.evaluate(ref, Fix(seq, start + timedelta(seconds=i), STOP[0], STOP[1], 5.0))

    await park(3, t0)
    assert tracker.stats.arrivals == 1
    await park(3, t0 + timedelta(seconds=5))
    assert tracker.stats.arrivals == 1  # once per stop

    # The attempt failed; the delivery is planned again for the next day on the same van.
    await _complete(resources, first)
    second = await _route(resources, tenant.organization_id, van.id, "2026-11-28", delivery)
    tracker.route_changed(tenant.organization_id, str(van.id))
    await park(3, t0 + timedelta(seconds=20))
    assert tracker.stats.arrivals == 2
    # Only the current route's arrivals are remembered: the set does not grow with every stop ever served.
    fired = tracker._vehicles[van.id].dwell.fired
    assert len(fired) == 1
    assert all(second.route_id in key for key in fired)
    await tracker.stop()
