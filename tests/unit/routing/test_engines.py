"""Each engine on small problems: every constraint type, checked on the routes it returns."""

from __future__ import annotations

import pytest

from activities.routing.engine import solve
from domain.routing import (
    UNREACHABLE,
    Break,
    Engine,
    Job,
    Objective,
    RoutingProblem,
    SolveOptions,
    StopKind,
    TravelMatrix,
    UnassignedReason,
    Vehicle,
    Window,
)
from domain.routing import Stop as S
from tests.unit.routing.support import assert_valid, places, plane_matrix

FAST = 0.5
R = UnassignedReason
# A depot in the middle of a 10 km square, stops around it.
POINTS = [(5000, 5000), (1000, 1000), (9000, 1000), (9000, 9000), (1000, 9000), (5000, 1000), (9000, 5000),
          (5000, 9000), (1000, 5000), (3000, 3000), (7000, 7000), (3000, 7000), (7000, 3000)]  # fmt: skip
MATRIX = plane_matrix(POINTS)
LOCS = places(len(POINTS))


def opts(engine: Engine = Engine.AUTO) -> SolveOptions:
    return SolveOptions(time_limit_s=FAST, engine=engine)


def run(problem: RoutingProblem, engine: Engine, matrix: TravelMatrix = MATRIX):  # type: ignore[no-untyped-def]
    plan = solve(problem, matrix, opts(engine))
    assert_valid(problem, matrix, plan)
    return plan


def route_of(plan, job_id: str):  # type: ignore[no-untyped-def]
    return next(r for r in plan.routes if any(s.job_id == job_id for s in r.stops))


def served(plan) -> set[str]:  # type: ignore[no-untyped-def]
    return {s.job_id for r in plan.routes for s in r.stops if s.job_id}


@pytest.mark.parametrize(
    ("engine", "expected"), [(Engine.AUTO, "pyvrp"), (Engine.ORTOOLS, "ortools"), (Engine.PYVRP, "pyvrp")]
)
def test_capacity_and_windows(engine: Engine, expected: str) -> None:
    jobs = tuple(
        Job(f"j{i}", S(i, (Window(0, 20000),) if i % 2 else (Window(9000, 30000),), 300), demand=(4, 1))
        for i in range(1, 13)
    )
    fleet = tuple(Vehicle(f"v{k}", 0, capacity=(16, 10), shift=Window(0, 50000)) for k in range(4))
    plan = run(RoutingProblem(LOCS, fleet, jobs), engine)
    assert plan.engine.startswith(expected)
    assert not plan.unassigned
    assert served(plan) == {j.id for j in jobs}
    assert len(plan.routes) >= 3  # 12 x 4 units in vehicles of 16
    assert plan.distance_m == sum(r.distance_m for r in plan.routes)


def test_pairs_mixed_with_dropoffs_carry_the_true_load() -> None:
    # v carries 2 drop-offs (3 each) from the depot and 2 pickup->drop pairs (4 each), capacity 10:
    # a pair can only be picked up once a drop-off has made room.
    jobs = (
        Job("d1", S(1), demand=(3,)),
        Job("d2", S(2), demand=(3,)),
        Job("p1", S(3), pickup=S(4), demand=(4,)),
        Job("p2", S(6), pickup=S(5), demand=(4,)),
    )
    plan = run(RoutingProblem(LOCS, (Vehicle("v", 0, capacity=(10,)),), jobs), Engine.AUTO)
    assert plan.engine.startswith("ortools")  # pairs: PyVRP is not used
    assert not plan.unassigned
    stops = plan.routes[0].stops
    assert stops[0].load == (6,)
    order = [(s.kind, s.job_id) for s in stops]
    for pair in ("p1", "p2"):
        assert order.index((StopKind.PICKUP, pair)) < order.index((StopKind.DELIVERY, pair))


def test_a_pair_too_big_alongside_the_dropoffs_waits_for_room() -> None:
    jobs = (Job("d", S(5), demand=(8,)), Job("p", S(2), pickup=S(6), demand=(5,)))
    plan = run(RoutingProblem(LOCS, (Vehicle("v", 0, capacity=(10,)),), jobs), Engine.ORTOOLS)
    assert not plan.unassigned
    kinds = [(s.kind, s.job_id) for s in plan.routes[0].stops]
    assert kinds.index((StopKind.DELIVERY, "d")) < kinds.index((StopKind.PICKUP, "p"))


@pytest.mark.parametrize("engine", [Engine.AUTO, Engine.ORTOOLS])
def test_several_windows_use_the_one_that_can_be_reached(engine: Engine) -> None:
    # Location 3 is ~5.7 km away: the first window closes before anyone gets there.
    job = Job("w", S(3, (Window(0, 1000), Window(20000, 21000)), 60))
    plan = run(RoutingProblem(LOCS, (Vehicle("v", 0),), (job,)), engine)
    assert plan.engine.startswith("ortools")  # two windows: PyVRP is not used
    stop = next(s for s in plan.routes[0].stops if s.job_id == "w")
    assert 20000 <= stop.service_start_s <= 21000


@pytest.mark.parametrize("engine", [Engine.AUTO, Engine.ORTOOLS])
def test_skills_put_jobs_on_the_vehicle_that_has_them(engine: Engine) -> None:
    jobs = tuple(
        Job(f"j{i}", S(i), skills=frozenset({"fridge"}) if i <= 3 else frozenset()) for i in range(1, 7)
    )
    fleet = (Vehicle("plain", 0), Vehicle("cold", 0, skills=frozenset({"fridge", "lift"})))
    plan = run(RoutingProblem(LOCS, fleet, jobs), engine)
    assert plan.engine.startswith("ortools")  # skills that separate vehicles: OR-Tools
    for i in (1, 2, 3):
        assert route_of(plan, f"j{i}").vehicle_id == "cold"


def test_breaks_are_taken_inside_their_window_between_stops() -> None:
    jobs = tuple(Job(f"j{i}", S(i, (), 1800)) for i in range(1, 9))
    vehicle = Vehicle("v", 0, shift=Window(0, 40000), breaks=(Break(Window(10000, 14000), 1800),))
    plan = run(RoutingProblem(LOCS, (vehicle,), jobs), Engine.AUTO)
    assert plan.engine.startswith("ortools")
    stops = plan.routes[0].stops
    breaks = [s for s in stops if s.kind is StopKind.BREAK]
    assert len(breaks) == 1
    b = breaks[0]
    assert 10000 <= b.service_start_s <= 12200
    assert b.departure_s - b.service_start_s == 1800
    for s in stops:  # no service overlaps the break
        if s.job_id:
            assert s.departure_s <= b.service_start_s or s.service_start_s >= b.departure_s


def test_started_and_loaded_jobs_stay_on_their_vehicle() -> None:
    jobs = (
        Job("s", S(9, (Window(0, 10),), 60)),  # under way: its window is past, it stays first anyway
        Job("l", S(3), pickup=S(4), demand=(5,)),  # picked up already: only the drop remains
        Job("x", S(10), demand=(5,)),
        Job("y", S(1), demand=(5,)),
    )
    fleet = (Vehicle("a", 0, capacity=(10,), started=("s",), loaded=("l",)), Vehicle("b", 0, capacity=(10,)))
    plan = run(RoutingProblem(LOCS, fleet, jobs), Engine.AUTO)
    a = next(r for r in plan.routes if r.vehicle_id == "a")
    assert a.stops[1].job_id == "s"
    assert route_of(plan, "l").vehicle_id == "a"
    assert [s.kind for s in a.stops if s.job_id == "l"] == [StopKind.DELIVERY]
    assert a.stops[0].load[0] >= 5  # the loaded parcel is on board from the start


@pytest.mark.parametrize("engine", [Engine.AUTO, Engine.ORTOOLS])
def test_locked_jobs_go_on_their_vehicle(engine: Engine) -> None:
    jobs = (Job("near", S(9), vehicle_id="far"), Job("other", S(3), vehicle_id="near"), Job("free", S(11)))
    fleet = (Vehicle("near", 0), Vehicle("far", 0))
    plan = run(RoutingProblem(LOCS, fleet, jobs), engine)
    assert route_of(plan, "near").vehicle_id == "far"
    assert route_of(plan, "other").vehicle_id == "near"


@pytest.mark.parametrize("engine", [Engine.AUTO, Engine.ORTOOLS])
def test_route_limits_and_end_location(engine: Engine) -> None:
    jobs = tuple(Job(f"j{i}", S(i)) for i in (9, 10, 11, 12))
    fleet = (
        Vehicle("short", 0, end_location=3, max_distance_m=16000),
        Vehicle("brief", 0, max_duration_s=12000),
    )
    plan = run(RoutingProblem(LOCS, fleet, jobs), engine)
    assert not plan.unassigned
    short = [r for r in plan.routes if r.vehicle_id == "short"]
    assert all(r.stops[-1].location == 3 for r in short)


def test_cost_objective_prefers_one_vehicle_when_fixed_costs_are_high() -> None:
    jobs = tuple(Job(f"j{i}", S(i)) for i in (1, 2, 3, 4))
    fleet = tuple(
        Vehicle(f"v{k}", 0, fixed_cost=1000.0, cost_per_km=1.0, cost_per_hour=20.0) for k in range(3)
    )
    problem = RoutingProblem(LOCS, fleet, jobs, objective=Objective.COST)
    for engine in (Engine.AUTO, Engine.ORTOOLS):
        plan = run(problem, engine)
        assert len(plan.routes) == 1
        r = plan.routes[0]
        assert r.cost == pytest.approx(1000 + r.distance_m / 1000 + 20 * r.duration_s / 3600, abs=1e-6)


# Infeasible requests: a plan with the reason, never an error -----------------------------------


@pytest.mark.parametrize("engine", [Engine.AUTO, Engine.ORTOOLS, Engine.PYVRP])
def test_infeasible_jobs_come_back_unassigned_with_their_reason(engine: Engine) -> None:
    d = [list(row) for row in MATRIX.distances]
    for k in range(len(d)):
        if k != 12:
            d[k][12] = d[12][k] = UNREACHABLE
    matrix = TravelMatrix(tuple(map(tuple, d)), {"car": tuple(map(tuple, d))})
    jobs = (
        Job("ok", S(1), demand=(5,)),
        Job("heavy", S(2), demand=(500,)),
        Job("late", S(3, (Window(0, 100),))),  # 5.7 km away: nobody is there within 100 s
        Job("special", S(4), skills=frozenset({"crane"})),
        Job("island", S(12)),
        Job("after_shift", S(5, (Window(90000, 99000),))),
        Job("ghost_vehicle", S(6), vehicle_id="nope"),
    )
    fleet = (Vehicle("a", 0, capacity=(100,), shift=Window(0, 50000)), Vehicle("b", 0, capacity=(50,)))
    plan = run(RoutingProblem(LOCS, fleet, jobs), engine, matrix)
    reasons = {u.job_id: u.reason for u in plan.unassigned}
    assert reasons == {
        "heavy": R.CAPACITY,
        "late": R.TIME_WINDOW,
        "special": R.SKILLS,
        "island": R.UNREACHABLE,
        "ghost_vehicle": R.SHIFT,
    } | ({} if "after_shift" in served(plan) else {"after_shift": R.SHIFT})
    assert "ok" in served(plan)
    assert all(u.detail for u in plan.unassigned)


def test_window_open_only_after_every_shift_is_a_shift_reason() -> None:
    job = Job("late", S(5, (Window(90000, 99000),)))
    plan = run(RoutingProblem(LOCS, (Vehicle("a", 0, shift=Window(0, 50000)),), (job,)), Engine.ORTOOLS)
    assert [(u.job_id, u.reason) for u in plan.unassigned] == [("late", R.SHIFT)]


@pytest.mark.parametrize("engine", [Engine.AUTO, Engine.ORTOOLS])
def test_jobs_that_fit_alone_but_not_together_are_not_served(engine: Engine) -> None:
    jobs = tuple(Job(f"j{i}", S(i), demand=(6,), priority=90 if i == 4 else 0) for i in (1, 2, 3, 4))
    plan = run(RoutingProblem(LOCS, (Vehicle("v", 0, capacity=(12,)),), jobs), engine)
    assert len(plan.unassigned) == 2
    assert {u.reason for u in plan.unassigned} == {R.NOT_SERVED}
    assert "j4" in served(plan)  # the high-priority job is kept


def test_no_vehicles_or_no_jobs() -> None:
    plan = solve(RoutingProblem(LOCS, (), (Job("a", S(1)),)), MATRIX, opts())
    assert [u.reason for u in plan.unassigned] == [R.SHIFT]
    assert not plan.routes
    plan = solve(RoutingProblem(LOCS, (Vehicle("v", 0),), ()), MATRIX, opts())
    assert not plan.routes
    assert not plan.unassigned


def test_a_matrix_of_the_wrong_size_is_an_error() -> None:
    with pytest.raises(ValueError, match="not 13x13"):
        solve(RoutingProblem(LOCS, (Vehicle("v", 0),), ()), plane_matrix(POINTS[:3]), opts())
