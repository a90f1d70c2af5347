"""The optimize_routes activity: cached matrix, solve in a spawned process, heartbeats while waiting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from temporalio.testing import ActivityEnvironment

from activities.routing.matrix import CachedMatrices, HaversineProvider
from activities.routing.optimize import RoutingActivities
from db.bus.memory import MemoryCacheBus
from domain.geo import LatLon
from domain.routing import (
    Engine,
    Job,
    OptimizeRoutesInput,
    RoutingProblem,
    SolveOptions,
    Stop,
    UnassignedReason,
    Vehicle,
    Window,
)


@pytest.fixture(scope="module")
def routing() -> Iterator[RoutingActivities]:
    acts = RoutingActivities(CachedMatrices(HaversineProvider(), MemoryCacheBus()), processes=1)
    yield acts
    acts.close()


def _problem() -> RoutingProblem:
    depot = LatLon(52.52, 13.405)
    places = (depot, *(LatLon(52.52 + 0.01 * i, 13.405 + 0.013 * (i % 3)) for i in range(1, 7)))
    jobs = [Job(f"j{i}", Stop(i, (Window(8 * 3600, 12 * 3600),), 300), demand=(10,)) for i in range(1, 6)]
    jobs.append(Job("heavy", Stop(6), demand=(999,)))
    jobs.append(Job("night", Stop(6, (Window(23 * 3600, 23 * 3600 + 60),))))
    fleet = (Vehicle("v1", 0, capacity=(30,), shift=Window(8 * 3600, 18 * 3600), profile="van"),
             Vehicle("v2", 0, capacity=(30,), shift=Window(8 * 3600, 18 * 3600), profile="bike"))  # fmt: skip
    return RoutingProblem(places, fleet, tuple(jobs))


async def test_optimize_routes_in_a_process_with_heartbeats(routing: RoutingActivities) -> None:
    env = ActivityEnvironment()
    beats: list[object] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    inp = OptimizeRoutesInput(_problem(), SolveOptions(time_limit_s=3.0, engine=Engine.ORTOOLS))
    plan = await env.run(routing.optimize_routes, inp)
    served = {s.job_id for r in plan.routes for s in r.stops if s.job_id}
    assert served == {f"j{i}" for i in range(1, 6)}
    assert {u.job_id: u.reason for u in plan.unassigned} == {
        "heavy": UnassignedReason.CAPACITY,
        "night": UnassignedReason.SHIFT,
    }
    assert plan.engine.startswith("ortools")
    assert any(b == ("solving",) for b in beats), beats  # the event loop kept beating during the solve
    # The matrix is cached by place set: a second call does not recompute it.
    key = routing.matrices.cache_key(inp.problem.locations, ["van", "bike"])
    assert await routing.matrices.cache.get(key) is not None  # type: ignore[union-attr]


async def test_an_infeasible_problem_returns_a_plan(routing: RoutingActivities) -> None:
    problem = RoutingProblem(
        (LatLon(0, 0), LatLon(0, 1)),
        (Vehicle("v", 0, capacity=(1,)),),
        (Job("big", Stop(1), demand=(5,)), Job("never", Stop(1, (Window(0, 1),)))),
    )
    plan = await ActivityEnvironment().run(
        routing.optimize_routes, OptimizeRoutesInput(problem, SolveOptions(time_limit_s=1))
    )
    assert not plan.routes
    assert {u.reason for u in plan.unassigned} == {UnassignedReason.CAPACITY, UnassignedReason.TIME_WINDOW}
