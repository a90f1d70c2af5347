"""`solve`: pre-checks, engine choice, the engine's run, and a timed plan with reasons.

AUTO picks PyVRP when it supports the whole problem (it is much stronger at a few seconds on
plain capacitated / time-windowed delivery problems) and OR-Tools otherwise; OR-Tools supports
everything. If PyVRP finds no feasible plan, OR-Tools gets the rest of the time.
"""

from __future__ import annotations

import time

from activities.routing import ortools_engine, pyvrp_engine
from activities.routing.model import EngineRoutes, Prepared
from activities.routing.reasons import not_served, prepare
from activities.routing.schedule import build_route
from domain.routing import Engine, RoutePlan, RoutingProblem, SolveOptions, TravelMatrix, UnassignedJob

MIN_FALLBACK_S = 0.5


def choose(prep: Prepared, requested: Engine) -> Engine:
    if requested is Engine.AUTO:
        return Engine.PYVRP if pyvrp_engine.supports(prep) else Engine.ORTOOLS
    if requested is Engine.PYVRP and not pyvrp_engine.supports(prep):
        return Engine.ORTOOLS  # asked for, but it cannot express this problem
    return requested


def solve(problem: RoutingProblem, matrix: TravelMatrix, options: SolveOptions) -> RoutePlan:
    """The best plan found within options.time_limit_s; never raises on an infeasible problem."""
    began = time.monotonic()
    _check_matrix(problem, matrix)
    prep, hopeless = prepare(problem, matrix)
    notes: list[str] = []
    engine = choose(prep, options.engine)
    if options.engine is Engine.PYVRP and engine is not Engine.PYVRP:
        notes.append("pyvrp does not support this problem; solved with ortools")
    result, name = EngineRoutes({}, []), "none"
    if prep.jobs and problem.vehicles:
        if engine is Engine.PYVRP:
            left = max(options.time_limit_s - (time.monotonic() - began), MIN_FALLBACK_S)
            result, name = pyvrp_engine.solve(prep, left, options.seed), pyvrp_engine.NAME
        left = options.time_limit_s - (time.monotonic() - began)
        if engine is Engine.ORTOOLS or (not result.routes and result.notes):
            notes += result.notes
            result = ortools_engine.solve(prep, max(left, MIN_FALLBACK_S))
            name = ortools_engine.NAME
    notes += result.notes
    routes = tuple(
        build_route(prep, v, visits, result.departures.get(v)) for v, visits in sorted(result.routes.items())
    )
    unassigned: list[UnassignedJob] = hopeless + [not_served(j) for j in result.dropped]
    order = {j.id: i for i, j in enumerate(problem.jobs)}
    unassigned.sort(key=lambda u: order.get(u.job_id, 0))
    return RoutePlan(
        routes=routes,
        unassigned=tuple(unassigned),
        distance_m=sum(r.distance_m for r in routes),
        duration_s=sum(r.duration_s for r in routes),
        cost=round(sum(r.cost for r in routes), 6),
        engine=name,
        solve_time_s=round(time.monotonic() - began, 3),
        notes=tuple(notes),
    )


def _check_matrix(problem: RoutingProblem, matrix: TravelMatrix) -> None:
    n = len(problem.locations)
    if len(matrix.distances) != n or any(len(row) != n for row in matrix.distances):
        raise ValueError(f"the distance matrix is not {n}x{n}")
    missing = {v.profile for v in problem.vehicles} - set(matrix.durations)
    if missing:
        raise ValueError(f"no durations for profiles {sorted(missing)}")
