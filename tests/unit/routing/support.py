"""Small routing problems on a plane, and an independent check of a plan against its problem."""

from __future__ import annotations

import math

from domain.geo import LatLon
from domain.routing import (
    RoutePlan,
    RoutingProblem,
    StopKind,
    TravelMatrix,
    Vehicle,
    Window,
)


def plane_matrix(points: list[tuple[float, float]], profiles: tuple[str, ...] = ("car",)) -> TravelMatrix:
    """Euclidean metres; one metre takes one second."""
    d = tuple(tuple(round(math.dist(a, b)) for b in points) for a in points)
    return TravelMatrix(d, dict.fromkeys(profiles, d))


def places(n: int) -> tuple[LatLon, ...]:
    return tuple(LatLon(0, 0) for _ in range(n))


def in_windows(t: int, windows: tuple[Window, ...]) -> bool:
    return not windows or any(w.start <= t <= w.end for w in windows)


def assert_valid(problem: RoutingProblem, matrix: TravelMatrix, plan: RoutePlan) -> None:
    """Every constraint of the model, recomputed from the plan and the problem alone."""
    jobs = {j.id: j for j in problem.jobs}
    vehicles = {v.id: v for v in problem.vehicles}
    served: dict[str, list[tuple[str, StopKind, int]]] = {}
    for route in plan.routes:
        v = vehicles[route.vehicle_id]
        stops = route.stops
        assert stops[0].kind is StopKind.START
        assert stops[-1].kind is StopKind.END
        assert stops[0].location == v.start_location
        assert stops[-1].location == (v.start_location if v.end_location is None else v.end_location)
        if v.shift:
            assert stops[0].departure_s >= v.shift.start
            assert stops[-1].arrival_s <= v.shift.end
        cap = v.capacity
        travel = matrix.duration(v.profile)
        prev = stops[0]
        here = prev.location
        driven = 0
        for k, s in enumerate(stops[1:], start=1):
            assert s.arrival_s <= s.service_start_s <= s.departure_s
            assert s.arrival_s >= prev.departure_s, f"stop {k} arrives before the previous one left"
            if s.kind is not StopKind.BREAK:
                driven += matrix.distances[here][s.location]
                assert s.distance_m == driven
                breaks = sum(
                    b.departure_s - b.arrival_s
                    for b in stops[:k]
                    if b.kind is StopKind.BREAK and b.arrival_s >= _last_real(stops, k).departure_s
                )
                assert s.arrival_s >= _last_real(stops, k).departure_s + travel[here][s.location] + 0 * breaks
                here = s.location
            assert all(0 <= x for x in s.load), f"negative load at stop {k}"
            assert all(x <= c for x, c in zip(s.load, cap, strict=False)), (
                f"over capacity at stop {k}: {s.load}"
            )
            if s.kind is StopKind.BREAK:
                assert any(
                    b.window.start <= s.service_start_s <= b.window.end - b.duration_s
                    and s.departure_s - s.service_start_s == b.duration_s
                    for b in v.breaks
                ), f"break {s} matches none of {v.breaks}"
            if s.job_id is not None:
                job = jobs[s.job_id]
                stop = job.pickup if s.kind is StopKind.PICKUP else job.delivery
                assert stop is not None
                assert s.location == stop.location
                if s.job_id not in v.started:
                    assert in_windows(s.service_start_s, stop.windows), f"{s.job_id} at {s.service_start_s}"
                assert s.departure_s - s.service_start_s == stop.service_s
                assert job.skills <= v.skills or job.id in v.loaded
                if job.vehicle_id is not None:
                    assert job.vehicle_id == v.id
                served.setdefault(s.job_id, []).append((v.id, s.kind, k))
            prev = s
        assert route.distance_m == driven
        if v.max_distance_m is not None:
            assert route.distance_m <= v.max_distance_m
        if v.max_duration_s is not None:
            assert route.duration_s <= v.max_duration_s
        for b in v.breaks:
            assert sum(1 for s in stops if s.kind is StopKind.BREAK) >= 1, f"{v.id} took no break {b}"
        for i, job_id in enumerate(v.started):
            if job_id in jobs:
                assert stops[1 + i].job_id == job_id, f"started stop {job_id} is not at position {i}"
    unassigned = {u.job_id for u in plan.unassigned}
    for job_id, job in jobs.items():
        visits = served.get(job_id, [])
        if job_id in unassigned:
            assert not visits
            continue
        kinds = [kind for _, kind, _ in visits]
        loaded = any(job_id in v.loaded for v in problem.vehicles)
        expected = [StopKind.PICKUP, StopKind.DELIVERY] if job.pickup and not loaded else [StopKind.DELIVERY]
        assert kinds == expected, f"{job_id} visited as {kinds}"
        assert len({vid for vid, _, _ in visits}) == 1, f"{job_id} split over vehicles"


def _last_real(stops: tuple, k: int):  # type: ignore[no-untyped-def, type-arg]
    return next(s for s in reversed(stops[:k]) if s.kind is not StopKind.BREAK)


def depot_vehicle(vid: str, **kw: object) -> Vehicle:
    return Vehicle(vid, 0, **kw)  # type: ignore[arg-type]
