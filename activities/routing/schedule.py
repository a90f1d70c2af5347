"""Turning an engine's visit order into a timed route (arrival, wait, service, load, distance).

One forward pass per route, the same for every engine, so plans read the same whichever engine
made them. The engine's own service starts are lower bounds (OR-Tools knows them; PyVRP does not,
and gets the earliest schedule). Breaks interrupt the drive they fall into.
"""

from __future__ import annotations

from activities.routing.model import Prepared, Visit, earliest_in, pad
from domain.routing import Job, PlannedRoute, PlannedStop, StopKind, Vehicle

COST_ROUND = 6


def build_route(
    prep: Prepared, v: int, visits: list[Visit], depart_not_before: int | None = None
) -> PlannedRoute:
    problem, matrix = prep.problem, prep.matrix
    vehicle = problem.vehicles[v]
    jobs = {j.id: j for j in prep.jobs}
    dist, dur = matrix.distances, matrix.duration(vehicle.profile)
    load = _initial_load(prep, jobs, visits)
    start_loc = vehicle.start_location
    end_loc = vehicle.start_location if vehicle.end_location is None else vehicle.end_location
    shift_start = vehicle.shift.start if vehicle.shift else 0
    real = [x for x in visits if x.kind is not StopKind.BREAK]
    depart = shift_start if depart_not_before is None else max(shift_start, depart_not_before)
    if depart_not_before is None and real:
        # Leave as late as the first stop allows, so the driver does not wait there.
        first = real[0]
        travel = dur[start_loc][first.location]
        svc = earliest_in(_windows(jobs, first), depart + travel)
        if svc is not None:
            depart = max(depart, svc - travel)
    stops = [PlannedStop(StopKind.START, None, start_loc, depart, depart, depart, load, 0)]
    t, here, driven = depart, start_loc, 0
    pending_breaks: list[Visit] = []
    for x in [*visits, Visit(StopKind.END, None, end_loc)]:
        if x.kind is StopKind.BREAK:
            pending_breaks.append(x)
            continue
        travel, leg = dur[here][x.location], dist[here][x.location]
        arrival, breaks = _drive(t, travel, pending_breaks)
        for b_start, b in breaks:
            stops.append(
                PlannedStop(
                    StopKind.BREAK, None, here, b_start, b_start, b_start + b.duration_s, load, driven
                )
            )
        pending_breaks = []
        driven += leg
        if x.kind is StopKind.END:
            stops.append(PlannedStop(StopKind.END, None, x.location, arrival, arrival, arrival, load, driven))
            break
        job = jobs[x.job_id or ""]
        svc = earliest_in(_windows(jobs, x), arrival)
        svc = arrival if svc is None else svc
        if x.not_before is not None:
            svc = max(svc, x.not_before)
        stop = job.pickup if x.kind is StopKind.PICKUP and job.pickup else job.delivery
        sign = 1 if x.kind is StopKind.PICKUP else -1
        load = tuple(a + sign * d for a, d in zip(load, prep.demand(job), strict=True))
        stops.append(
            PlannedStop(x.kind, job.id, x.location, arrival, svc, svc + stop.service_s, load, driven)
        )
        t, here = svc + stop.service_s, x.location
    duration = stops[-1].arrival_s - depart
    return PlannedRoute(vehicle.id, tuple(stops), driven, duration, route_cost(vehicle, driven, duration))


def route_cost(vehicle: Vehicle, distance_m: int, duration_s: int) -> float:
    cost = (
        vehicle.fixed_cost
        + vehicle.cost_per_km * distance_m / 1000
        + vehicle.cost_per_hour * duration_s / 3600
    )
    return round(cost, COST_ROUND)


def _drive(t: int, travel: int, breaks: list[Visit]) -> tuple[int, list[tuple[int, Visit]]]:
    """Arrival after driving `travel` from time t, taking each break when it starts (or at once)."""
    taken = []
    left = travel
    for b in sorted(breaks, key=lambda b: b.not_before or 0):
        start = max(t, b.not_before or t)
        left -= min(left, start - t)  # drive until the break starts
        taken.append((start, b))
        t = start + b.duration_s
    return t + left, taken


def _windows(jobs: dict[str, Job], x: Visit) -> tuple:  # type: ignore[type-arg]
    job = jobs[x.job_id or ""]
    stop = job.pickup if x.kind is StopKind.PICKUP and job.pickup else job.delivery
    return stop.windows


def _initial_load(prep: Prepared, jobs: dict[str, Job], visits: list[Visit]) -> tuple[int, ...]:
    """Goods of the drop-offs without pickup on this route are on board at the start."""
    load = pad((), prep.dims, 0)
    for x in visits:
        if x.kind is StopKind.DELIVERY and x.job_id is not None and jobs[x.job_id].pickup is None:
            load = tuple(a + d for a, d in zip(load, prep.demand(jobs[x.job_id]), strict=True))
    return load
