"""The PyVRP engine (hybrid genetic search): for the problems it supports, far stronger than
OR-Tools' guided local search at a few seconds (see docs/benchmarks.md).

Supported: drop-offs loaded at the start (no pickup→drop pairs), at most one window per stop, no
breaks, no started/loaded/locked jobs, every job open to every vehicle (so skills do not
separate vehicles), every pair of places reachable. Jobs are optional with a prize (the same
drop penalty OR-Tools uses), so a plan always exists. Identical vehicles share a vehicle type.
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import pyvrp
from pyvrp.stop import MaxRuntime

from activities.routing.model import UNLIMITED, EngineRoutes, Prepared, Visit, merged, reachable
from domain.routing import Objective, StopKind, Vehicle

NAME = f"pyvrp {version('pyvrp')}"
COST_SCALE = 100_000  # as in the OR-Tools engine
MAX_TIME = 2**62  # PyVRP's "no limit"


def supports(prep: Prepared) -> bool:
    problem = prep.problem
    if prep.has_pairs or any(prep.forced.values()) or not prep.jobs:
        return False
    if any(v.breaks or v.loaded or v.started for v in problem.vehicles):
        return False
    everyone = len(problem.vehicles)
    if any(j.vehicle_id is not None or len(prep.allowed[j.id]) < everyone for j in prep.jobs):
        return False
    if any(len(merged(j.delivery.windows)) > 1 for j in prep.jobs):
        return False
    used = _locations(prep)
    matrices = [prep.matrix.distances] + [
        prep.matrix.duration(p) for p in {v.profile for v in problem.vehicles}
    ]
    return all(reachable(m[a][b]) for m in matrices for a in used for b in used)


def _locations(prep: Prepared) -> list[int]:
    used = {v.start_location for v in prep.problem.vehicles}
    used |= {v.end_location for v in prep.problem.vehicles if v.end_location is not None}
    return sorted(used | {j.delivery.location for j in prep.jobs})


def _type_key(v: Vehicle) -> tuple[object, ...]:
    return (v.start_location, v.end_location, v.capacity, v.shift, v.max_duration_s, v.max_distance_m,
            v.cost_per_km, v.cost_per_hour, v.fixed_cost, v.profile)  # fmt: skip


def solve(prep: Prepared, time_limit_s: float, seed: int) -> EngineRoutes:
    problem, matrix = prep.problem, prep.matrix
    ends = {v.start_location if v.end_location is None else v.end_location for v in problem.vehicles}
    depots = sorted({v.start_location for v in problem.vehicles} | ends)
    # PyVRP numbers depots first, then clients; its locations follow the order they are added.
    order = depots + [j.delivery.location for j in prep.jobs]
    m = pyvrp.Model()
    profiles = sorted({v.profile for v in problem.vehicles})
    pv_profiles = {p: m.add_profile(name=p) for p in profiles}
    pv_locs = [m.add_location(x=0, y=0) for _ in order]
    depot_of = {loc: m.add_depot(pv_locs[i]) for i, loc in enumerate(depots)}
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, v in enumerate(problem.vehicles):
        groups.setdefault(_type_key(v), []).append(i)
    max_arc, max_fixed = _vehicle_types(m, prep, groups, depot_of, pv_profiles)
    for k, job in enumerate(prep.jobs):
        windows = merged(job.delivery.windows)
        m.add_client(
            pv_locs[len(depots) + k],
            delivery=list(prep.demand(job)),
            service_duration=job.delivery.service_s,
            tw_early=windows[0].start if windows else 0,
            tw_late=windows[0].end if windows else MAX_TIME,
            prize=prep.penalty(job, max_arc, max_fixed),
            required=False,
        )
    data = m.data()
    pick = np.array(order)
    dist = np.array(matrix.distances, dtype=np.int64)[np.ix_(pick, pick)]
    durs = [np.array(matrix.duration(p), dtype=np.int64)[np.ix_(pick, pick)] for p in profiles]
    data = data.replace(distance_matrices=[dist] * len(profiles), duration_matrices=durs)
    best = pyvrp.solve(data, MaxRuntime(time_limit_s), seed=seed, display=False).best
    if not best.is_feasible():
        return EngineRoutes(
            {}, [j.id for j in prep.jobs], [f"{NAME}: no feasible solution in {time_limit_s} s"]
        )
    return _routes(prep, best, list(groups.values()))


def _vehicle_types(
    m: pyvrp.Model,
    prep: Prepared,
    groups: dict[tuple[object, ...], list[int]],
    depot_of: dict[int, pyvrp.Depot],
    pv_profiles: dict[str, pyvrp.Profile],
) -> tuple[int, int]:
    """One vehicle type per group of identical vehicles; returns the largest arc cost and fixed
    cost (for the clients' prizes)."""
    problem, places = prep.problem, _locations(prep)
    cost = problem.objective is Objective.COST
    max_dist = max(prep.matrix.distances[a][b] for a in places for b in places)
    max_arc, max_fixed = max_dist, 0
    for members in groups.values():
        v = problem.vehicles[members[0]]
        end = v.start_location if v.end_location is None else v.end_location
        per_m = max(1, round(v.cost_per_km * COST_SCALE / 1000)) if cost else 1
        fixed = round(v.fixed_cost * COST_SCALE) if cost else 0
        max_arc, max_fixed = max(max_arc, per_m * max_dist), max(max_fixed, fixed)
        m.add_vehicle_type(
            num_available=len(members),
            capacity=[c if c < UNLIMITED else MAX_TIME for c in prep.capacity(v)],
            start_depot=depot_of[v.start_location],
            end_depot=depot_of[end],
            fixed_cost=fixed,
            tw_early=v.shift.start if v.shift else 0,
            tw_late=v.shift.end if v.shift else MAX_TIME,
            shift_duration=v.max_duration_s if v.max_duration_s is not None else MAX_TIME,
            max_distance=v.max_distance_m if v.max_distance_m is not None else MAX_TIME,
            unit_distance_cost=per_m,
            unit_duration_cost=round(v.cost_per_hour * COST_SCALE / 3600) if cost else 0,
            profile=pv_profiles[v.profile],
            name=",".join(str(i) for i in members),
        )
    return max_arc, max_fixed


def _routes(prep: Prepared, best: pyvrp.Solution, groups: list[list[int]]) -> EngineRoutes:
    """The solution's routes on the vehicles of their type, in order, and the jobs left out."""
    routes: dict[int, list[Visit]] = {}
    free = {k: list(members) for k, members in enumerate(groups)}
    served: set[str] = set()
    for route in best.routes():
        vi = free[route.vehicle_type()].pop(0)
        visits = []
        for act in route.schedule():
            if act.is_client():
                job = prep.jobs[act.idx]
                served.add(job.id)
                visits.append(Visit(StopKind.DELIVERY, job.id, job.delivery.location, int(act.start_time)))
        routes[vi] = visits
    return EngineRoutes(routes, [j.id for j in prep.jobs if j.id not in served])
