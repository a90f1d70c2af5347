"""The OR-Tools engine: supports the whole model.

Nodes: one per distinct depot place (vehicles share them), then each job's pickup and drop.
Every transit is a registered matrix or vector (no Python callbacks: the search stays in C++).
Dimensions: time (per profile, service included), capacity (one per dimension that some job
uses), distance (only when some vehicle has a maximum). Jobs are optional with a drop penalty far
above what serving them could cost, so a plan always exists; started stops are chained first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import ortools
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from activities.routing.model import UNLIMITED, EngineRoutes, Prepared, Visit, merged, reachable
from domain.routing import Job, Objective, Stop, StopKind

NAME = f"ortools {ortools.__version__}"
COST_SCALE = 100_000  # cost objective in 1e-5 currency units (integers for the solver)
BIG = 10**9  # stands for an unreachable arc in a matrix; such arcs are also removed


def supports(_prep: Prepared) -> bool:
    return True


@dataclass
class _Nodes:
    """The solver's nodes: the depots first (`depots` of them), then each job's pickup and drop."""

    location: list[int] = field(default_factory=list)
    service: list[int] = field(default_factory=list)
    stop: list[Stop | None] = field(default_factory=list)
    job: list[Job | None] = field(default_factory=list)
    kind: list[StopKind] = field(default_factory=list)
    depots: int = 0
    starts: list[int] = field(default_factory=list)  # per vehicle
    ends: list[int] = field(default_factory=list)  # per vehicle
    pickup_of: dict[str, int] = field(default_factory=dict)  # job id -> node
    drop_of: dict[str, int] = field(default_factory=dict)  # job id -> node

    def add(self, location: int, kind: StopKind, job: Job | None = None, stop: Stop | None = None) -> int:
        self.location.append(location)
        self.service.append(stop.service_s if stop else 0)
        self.stop.append(stop)
        self.job.append(job)
        self.kind.append(kind)
        return len(self.location) - 1


@dataclass
class _Model:
    """The routing model being built, with what its parts need to find their nodes."""

    prep: Prepared
    nodes: _Nodes
    manager: pywrapcp.RoutingIndexManager
    routing: pywrapcp.RoutingModel
    forced_ids: set[str]

    def index(self, node: int) -> int:
        return int(self.manager.NodeToIndex(node))


def solve(prep: Prepared, time_limit_s: float) -> EngineRoutes:
    started_at = time.monotonic()
    nodes = _layout(prep)
    manager = pywrapcp.RoutingIndexManager(
        len(nodes.location), len(prep.problem.vehicles), nodes.starts, nodes.ends
    )
    forced_ids = {j for js in prep.forced.values() for j in js}
    model = _Model(prep, nodes, manager, pywrapcp.RoutingModel(manager), forced_ids)
    routing = model.routing
    dist, dist_cb, time_cb, max_travel = _transits(model)
    tdim = _time_dimension(model, time_cb, _horizon(prep, nodes, max_travel))
    _capacities(prep, routing, nodes, nodes.depots)
    if any(v.max_distance_m is not None for v in prep.problem.vehicles):
        caps = [
            x.max_distance_m if x.max_distance_m is not None else UNLIMITED for x in prep.problem.vehicles
        ]
        routing.AddDimensionWithVehicleCapacity(dist_cb, 0, caps, True, "distance")
    max_arc, max_fixed = _costs(prep, routing, dist, dist_cb, tdim)
    _jobs(model, tdim, max_arc, max_fixed)
    break_vars = _breaks(prep, routing, routing.solver(), tdim, nodes)

    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PARALLEL_CHEAPEST_INSERTION
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    left = max(0.05, time_limit_s - (time.monotonic() - started_at))
    params.time_limit.FromMilliseconds(int(left * 1000))
    solution = routing.SolveWithParameters(params)
    if solution is None:
        return EngineRoutes({}, [j.id for j in prep.jobs], [f"{NAME}: no solution found in {time_limit_s} s"])
    return _routes(model, solution, tdim, break_vars)


def _layout(prep: Prepared) -> _Nodes:
    """One node per distinct depot place (vehicles share them), then each job's pickup and drop."""
    nodes = _Nodes()
    depot_node: dict[int, int] = {}
    vehicles = prep.problem.vehicles
    for veh in vehicles:
        for loc in (veh.start_location, veh.start_location if veh.end_location is None else veh.end_location):
            if loc not in depot_node:
                depot_node[loc] = nodes.add(loc, StopKind.START)
    nodes.depots = len(depot_node)
    nodes.starts = [depot_node[v.start_location] for v in vehicles]
    nodes.ends = [
        depot_node[v.start_location if v.end_location is None else v.end_location] for v in vehicles
    ]
    for job in prep.jobs:
        if job.pickup is not None:
            nodes.pickup_of[job.id] = nodes.add(job.pickup.location, StopKind.PICKUP, job, job.pickup)
        nodes.drop_of[job.id] = nodes.add(job.delivery.location, StopKind.DELIVERY, job, job.delivery)
    return nodes


def _transits(model: _Model) -> tuple[list[list[int]], int, dict[str, int], int]:
    """Registered distance and (per profile) time matrices, unreachable arcs removed.

    Returns the distance matrix, its transit, the time transit of each profile and the longest
    reachable travel time."""
    routing, location, service = model.routing, model.nodes.location, model.nodes.service
    matrix = model.prep.matrix
    dist = [[_arc(matrix.distances[a][b]) for b in location] for a in location]
    dist_cb = routing.RegisterTransitMatrix(dist)
    time_cb = {}
    time_rows: dict[str, list[list[int]]] = {}
    max_travel = 1
    for p in sorted({v.profile for v in model.prep.problem.vehicles}):
        d = matrix.duration(p)
        rows = [[_arc(d[a][b]) for b in location] for a in location]
        time_rows[p] = rows
        max_travel = max(max_travel, max((x for r in rows for x in r if x < BIG), default=1))
        # Service time of the node left is part of the transit (so waits and windows line up).
        time_cb[p] = routing.RegisterTransitMatrix(
            [[x + service[i] if x < BIG else BIG for x in row] for i, row in enumerate(rows)]
        )
    _remove_unreachable(routing, model.manager, [dist, *time_rows.values()])
    return dist, dist_cb, time_cb, max_travel


def _time_dimension(model: _Model, time_cb: dict[str, int], horizon: int) -> pywrapcp.RoutingDimension:
    """Time: stop windows (not for jobs under way), shifts and route durations per vehicle."""
    routing, nodes, vehicles = model.routing, model.nodes, model.prep.problem.vehicles
    routing.AddDimensionWithVehicleTransits(
        [time_cb[v.profile] for v in vehicles], horizon, horizon, False, "time"
    )
    tdim = routing.GetDimensionOrDie("time")
    for node in range(nodes.depots, len(nodes.location)):
        stop = nodes.stop[node]
        owner = nodes.job[node]
        assert stop is not None
        assert owner is not None
        if owner.id in model.forced_ids:
            continue  # under way: its windows no longer matter
        _windows(tdim.CumulVar(model.index(node)), merged(stop.windows), horizon)
    for i, veh in enumerate(vehicles):
        lo, hi = (veh.shift.start, veh.shift.end) if veh.shift else (0, horizon)
        tdim.CumulVar(routing.Start(i)).SetRange(lo, hi)
        tdim.CumulVar(routing.End(i)).SetRange(lo, hi)
        if veh.max_duration_s is not None:
            tdim.SetSpanUpperBoundForVehicle(veh.max_duration_s, i)
        routing.AddVariableMaximizedByFinalizer(tdim.CumulVar(routing.Start(i)))
        routing.AddVariableMinimizedByFinalizer(tdim.CumulVar(routing.End(i)))
    return tdim


def _jobs(model: _Model, tdim: pywrapcp.RoutingDimension, max_arc: int, max_fixed: int) -> None:
    """Per job: the vehicles it may use, its pickup before its drop, its drop penalty; started
    jobs are chained first on their vehicle and never dropped."""
    prep, routing, nodes, idx = model.prep, model.routing, model.nodes, model.index
    solver = routing.solver()
    pickup_of, drop_of = nodes.pickup_of, nodes.drop_of
    for job in prep.jobs:
        nodes_of = [idx(drop_of[job.id])] + ([idx(pickup_of[job.id])] if job.id in pickup_of else [])
        allowed = prep.allowed[job.id]
        forced = job.id in model.forced_ids
        if len(allowed) < len(prep.problem.vehicles) or forced:
            for node_index in nodes_of:
                routing.VehicleVar(node_index).SetValues(([] if forced else [-1]) + allowed)
        if job.id in pickup_of:
            p, d = idx(pickup_of[job.id]), idx(drop_of[job.id])
            routing.AddPickupAndDelivery(p, d)
            solver.Add(routing.VehicleVar(p) == routing.VehicleVar(d))
            solver.Add(tdim.CumulVar(p) <= tdim.CumulVar(d))
        if not forced:
            penalty = prep.penalty(job, max_arc, max_fixed)
            for node_index in nodes_of:
                routing.AddDisjunction([node_index], penalty)
    for vi, jobs in prep.forced.items():
        chain = [routing.Start(vi)] + [idx(pickup_of.get(j, drop_of[j])) for j in jobs]
        for a, b in zip(chain, chain[1:], strict=False):
            routing.NextVar(a).SetValues([b])


def _routes(
    model: _Model,
    solution: pywrapcp.Assignment,
    tdim: pywrapcp.RoutingDimension,
    break_vars: dict[int, list[pywrapcp.IntervalVar]],
) -> EngineRoutes:
    """The solution's visits per vehicle (breaks in time order among them) and the dropped jobs."""
    routing, nodes = model.routing, model.nodes
    routes: dict[int, list[Visit]] = {}
    departures: dict[int, int] = {}
    for v in range(len(model.prep.problem.vehicles)):
        visits: list[Visit] = []
        index = solution.Value(routing.NextVar(routing.Start(v)))
        while not routing.IsEnd(index):
            node = model.manager.IndexToNode(index)
            job = nodes.job[node]
            assert job is not None
            visits.append(
                Visit(nodes.kind[node], job.id, nodes.location[node], solution.Min(tdim.CumulVar(index)))
            )
            index = solution.Value(routing.NextVar(index))
        if visits:
            for start, duration in _break_times(solution, break_vars.get(v, [])):
                visits.append(Visit(StopKind.BREAK, None, -1, start, duration))
            visits.sort(key=lambda x: (x.not_before or 0, x.kind is not StopKind.BREAK))
            routes[v] = visits
            departures[v] = solution.Min(tdim.CumulVar(routing.Start(v)))
    drops = {job.id: model.index(nodes.drop_of[job.id]) for job in model.prep.jobs}
    dropped = [job_id for job_id, drop in drops.items() if solution.Value(routing.NextVar(drop)) == drop]
    return EngineRoutes(routes, dropped, departures=departures)


def _arc(value: int) -> int:
    return value if reachable(value) and value < BIG else BIG


def _remove_unreachable(
    routing: pywrapcp.RoutingModel, manager: pywrapcp.RoutingIndexManager, matrices: list[list[list[int]]]
) -> None:
    """Forbid the arcs with no route (their BIG entries alone might still be taken if nothing else fits)."""
    n = len(matrices[0])
    bad = {(a, b) for m in matrices for a in range(n) for b in range(n) if a != b and m[a][b] >= BIG}
    if not bad:
        return
    total = routing.Size() + routing.vehicles()
    node_of = [manager.IndexToNode(i) for i in range(total)]
    for i in range(routing.Size()):
        banned = [j for j in range(total) if (node_of[i], node_of[j]) in bad]
        if banned:
            routing.NextVar(i).RemoveValues(banned)


def _horizon(prep: Prepared, nodes: _Nodes, max_travel: int) -> int:
    ends = [w.end for j in prep.jobs for s in (j.pickup, j.delivery) if s for w in s.windows]
    ends += [v.shift.end for v in prep.problem.vehicles if v.shift]
    open_end = sum(nodes.service) + (len(nodes.location) + 1) * max_travel
    return max([0, *ends]) + open_end


def _windows(cumul: pywrapcp.IntVar, windows: list, horizon: int) -> None:  # type: ignore[type-arg]
    if not windows:
        return
    cumul.SetRange(max(0, windows[0].start), min(horizon, windows[-1].end))
    for a, b in zip(windows, windows[1:], strict=False):
        cumul.RemoveInterval(a.end + 1, b.start - 1)


def _capacities(prep: Prepared, routing: pywrapcp.RoutingModel, nodes: _Nodes, first_job_node: int) -> None:
    """One dimension per capacity dimension some job uses.

    Without pairs the cumul counts what was delivered so far (starts at 0). With pairs it is the
    load on board: it may start anywhere in [0, capacity] and must end at 0, which makes the start
    equal to the drop-offs carried from the depot, and each cumul the true load.
    """
    pairs = prep.has_pairs
    vehicles = prep.problem.vehicles
    for d in range(prep.dims):
        demand = [0] * len(nodes.location)
        for node in range(first_job_node, len(nodes.location)):
            job = nodes.job[node]
            assert job is not None
            amount = prep.demand(job)[d]
            if not pairs:
                demand[node] = amount
            else:
                demand[node] = amount if nodes.kind[node] is StopKind.PICKUP else -amount
        if not any(demand):
            continue
        caps = [prep.capacity(v)[d] for v in vehicles]
        cb = routing.RegisterUnaryTransitVector(demand)
        routing.AddDimensionWithVehicleCapacity(cb, 0, caps, not pairs, f"capacity{d}")
        if pairs:
            dim = routing.GetDimensionOrDie(f"capacity{d}")
            for v in range(len(vehicles)):
                dim.CumulVar(routing.End(v)).SetValue(0)


def _costs(
    prep: Prepared,
    routing: pywrapcp.RoutingModel,
    dist: list[list[int]],
    dist_cb: int,
    tdim: pywrapcp.RoutingDimension,
) -> tuple[int, int]:
    """Arc costs and fixed costs; returns the largest arc cost and fixed cost (for drop penalties)."""
    vehicles = prep.problem.vehicles
    max_dist = max((x for row in dist for x in row if x < BIG), default=1)
    if prep.problem.objective is Objective.DISTANCE:
        routing.SetArcCostEvaluatorOfAllVehicles(dist_cb)
        return max_dist, 0
    per_km: dict[int, int] = {}
    max_arc = max_fixed = 0
    for i, v in enumerate(vehicles):
        coef = max(1, round(v.cost_per_km * COST_SCALE / 1000))  # per metre
        if coef not in per_km:
            per_km[coef] = routing.RegisterTransitMatrix(
                [[x * coef if x < BIG else BIG for x in r] for r in dist]
            )
        routing.SetArcCostEvaluatorOfVehicle(per_km[coef], i)
        per_s = round(v.cost_per_hour * COST_SCALE / 3600)
        if per_s:
            tdim.SetSpanCostCoefficientForVehicle(per_s, i)
        fixed = round(v.fixed_cost * COST_SCALE)
        routing.SetFixedCostOfVehicle(fixed, i)
        max_arc = max(max_arc, coef * max_dist)
        max_fixed = max(max_fixed, fixed)
    return max_arc, max_fixed


def _breaks(
    prep: Prepared,
    routing: pywrapcp.RoutingModel,
    solver: pywrapcp.Solver,
    tdim: pywrapcp.RoutingDimension,
    nodes: _Nodes,
) -> dict[int, list[pywrapcp.IntervalVar]]:
    """Breaks never overlap a service; each falls inside its window and within the route."""
    out: dict[int, list[pywrapcp.IntervalVar]] = {}
    for v, vehicle in enumerate(prep.problem.vehicles):
        if not vehicle.breaks:
            continue
        intervals = []
        for k, b in enumerate(vehicle.breaks):
            latest = max(b.window.start, b.window.end - b.duration_s)
            iv = solver.FixedDurationIntervalVar(b.window.start, latest, b.duration_s, False, f"break{v}_{k}")
            solver.Add(iv.StartExpr() >= tdim.CumulVar(routing.Start(v)))
            solver.Add(iv.EndExpr() <= tdim.CumulVar(routing.End(v)))
            intervals.append(iv)
        tdim.SetBreakIntervalsOfVehicle(intervals, v, nodes.service)
        out[v] = intervals
    return out


def _break_times(
    solution: pywrapcp.Assignment, intervals: list[pywrapcp.IntervalVar]
) -> list[tuple[int, int]]:
    container = solution.IntervalVarContainer()
    wanted = {iv.Name() for iv in intervals}
    out = []
    for i in range(container.Size()):
        element = container.Element(i)
        if element.Var().Name() in wanted and element.PerformedValue():
            out.append((element.StartValue(), element.DurationValue()))
    return out
