"""Why a job is unassigned: checks of each job alone against each vehicle, before and after a solve.

Before the solve, a job that no vehicle could serve even alone is left out of the model (with
the first reason that rules out every vehicle: skills, then capacity, then reachability, then
windows, then the shift and route limits). A job the engine drops although some vehicle could
serve it alone is `not_served`: it does not fit together with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from activities.routing.model import (
    UNLIMITED,
    Prepared,
    earliest_in,
    merged,
    num_dims,
    reachable,
    without_done_pickups,
)
from domain.routing import (
    Job,
    RoutingProblem,
    TravelMatrix,
    UnassignedJob,
    UnassignedReason,
    Vehicle,
)

R = UnassignedReason
ORDER = (R.SKILLS, R.CAPACITY, R.UNREACHABLE, R.TIME_WINDOW, R.SHIFT)
DETAIL = {
    R.SKILLS: "no vehicle has every skill it needs",
    R.CAPACITY: "its demand exceeds the capacity of every vehicle that could take it",
    R.UNREACHABLE: "no route to or from it for any vehicle that could take it",
    R.TIME_WINDOW: "no vehicle can reach it inside any of its windows",
    R.SHIFT: "no vehicle can serve it within its shift, maximum duration or maximum distance",
    R.NOT_SERVED: "each vehicle could serve it alone, but not together with the other jobs",
}


@dataclass(frozen=True)
class Check:
    reason: UnassignedReason | None  # None: this vehicle can serve the job alone
    detail: str = ""


def prepare(problem: RoutingProblem, matrix: TravelMatrix) -> tuple[Prepared, list[UnassignedJob]]:
    """Split the jobs into those worth solving (with the vehicles each may use) and the hopeless."""
    dims = num_dims(problem)
    index = {v.id: i for i, v in enumerate(problem.vehicles)}
    started = {j: i for i, v in enumerate(problem.vehicles) for j in v.started}
    loaded = {j: i for i, v in enumerate(problem.vehicles) for j in v.loaded}
    prep = Prepared(problem, matrix, [], {}, dims, {i: [] for i in range(len(problem.vehicles))})
    unassigned: list[UnassignedJob] = []
    for job in without_done_pickups(problem):
        if job.id in started:  # under way: it stays first on its vehicle whatever the checks say
            prep.jobs.append(job)
            prep.allowed[job.id] = [started[job.id]]
            continue
        pinned = loaded.get(job.id, index.get(job.vehicle_id) if job.vehicle_id else None)
        if job.vehicle_id is not None and pinned is None:
            unassigned.append(
                UnassignedJob(job.id, R.SHIFT, f"locked to vehicle {job.vehicle_id}, not in the fleet")
            )
            continue
        candidates = [pinned] if pinned is not None else list(range(len(problem.vehicles)))
        checks = {
            v: check_alone(prep, job, problem.vehicles[v], on_board=job.id in loaded) for v in candidates
        }
        ok = [v for v, c in checks.items() if c.reason is None]
        if ok:
            prep.jobs.append(job)
            prep.allowed[job.id] = ok
            continue
        unassigned.append(worst(job, list(checks.values())))
    for v, vehicle in enumerate(problem.vehicles):
        present = {j.id for j in prep.jobs}
        prep.forced[v] = [j for j in vehicle.started if j in present]
    return prep, unassigned


def worst(job: Job, checks: list[Check]) -> UnassignedJob:
    """The reason of the vehicle that got furthest through the checks (in ORDER): "skills" only
    when no vehicle has the skills, "capacity" when every vehicle with them is too small, ..."""
    failed = [c for c in checks if c.reason is not None]
    if not failed:
        return UnassignedJob(job.id, R.SHIFT, "there are no vehicles")
    best = max(failed, key=lambda c: ORDER.index(c.reason) if c.reason else -1)
    reason = best.reason or R.SHIFT
    return UnassignedJob(job.id, reason, best.detail or DETAIL[reason])


def not_served(job_id: str) -> UnassignedJob:
    return UnassignedJob(job_id, R.NOT_SERVED, DETAIL[R.NOT_SERVED])


def check_alone(prep: Prepared, job: Job, vehicle: Vehicle, on_board: bool = False) -> Check:
    """Can this vehicle serve this job and nothing else? (Breaks are not considered.)"""
    if not on_board and not job.skills <= vehicle.skills:
        missing = ", ".join(sorted(job.skills - vehicle.skills))
        return Check(R.SKILLS, f"needs skills no vehicle has together (e.g. {missing})")
    demand, cap = prep.demand(job), prep.capacity(vehicle)
    over = [i for i, (d, c) in enumerate(zip(demand, cap, strict=True)) if d > c]
    if over and not on_board:
        i = over[0]
        return Check(
            R.CAPACITY, f"demand {demand[i]} in dimension {i} exceeds every capacity (at most {cap[i]})"
        )
    dist, dur = prep.matrix.distances, prep.matrix.duration(vehicle.profile)
    end = vehicle.start_location if vehicle.end_location is None else vehicle.end_location
    path = [vehicle.start_location]
    stops = [s for s in (job.pickup, job.delivery) if s is not None]
    path += [s.location for s in stops] + [end]
    legs = list(zip(path, path[1:], strict=False))
    if not all(reachable(dist[a][b]) and reachable(dur[a][b]) for a, b in legs):
        return Check(R.UNREACHABLE, DETAIL[R.UNREACHABLE])
    # Earliest schedule: leave at the shift start, serve each stop as early as its windows allow.
    shift_start = vehicle.shift.start if vehicle.shift else 0
    shift_end = vehicle.shift.end if vehicle.shift else UNLIMITED
    t = shift_start
    for (a, b), stop in zip(legs, stops, strict=False):
        s = earliest_in(merged(stop.windows), t + dur[a][b])
        if s is None:
            return Check(R.TIME_WINDOW, DETAIL[R.TIME_WINDOW])
        if s > shift_end:
            return Check(R.SHIFT, "its windows open only after the shift ends")
        t = s + stop.service_s
    back = t + dur[path[-2]][end]
    if back > shift_end:
        return Check(R.SHIFT, "the vehicle could not be back before its shift ends")
    driven = sum(dist[a][b] for a, b in legs)
    if vehicle.max_distance_m is not None and driven > vehicle.max_distance_m:
        return Check(R.SHIFT, f"the round trip ({driven} m) is longer than the maximum route distance")
    busy = sum(dur[a][b] for a, b in legs) + sum(s.service_s for s in stops)
    if vehicle.max_duration_s is not None and busy > vehicle.max_duration_s:
        return Check(R.SHIFT, f"the round trip ({busy} s) is longer than the maximum route duration")
    return Check(None)
