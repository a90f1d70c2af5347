"""What every engine shares: the problem as engines see it, and their common answer.

`Prepared` is the problem after the pre-checks: the jobs worth giving to an engine, capacity
dimensions padded to one length, `loaded` jobs reduced to their drop, and the vehicle each
job may use. Engines answer with `EngineRoutes`: per vehicle the visits in order (with the
service start they planned, when they know it) and the jobs they left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from domain.routing import UNREACHABLE, Job, RoutingProblem, StopKind, TravelMatrix, Vehicle, Window

UNLIMITED = 2**40  # a capacity dimension a vehicle leaves open


@dataclass(frozen=True)
class Visit:
    kind: StopKind
    job_id: str | None
    location: int
    not_before: int | None = None  # the service start the engine planned, if it knows
    duration_s: int = 0  # breaks only


@dataclass
class EngineRoutes:
    routes: dict[int, list[Visit]]  # vehicle index -> visits (no START/END)
    dropped: list[str]
    notes: list[str] = field(default_factory=list)
    departures: dict[int, int] = field(default_factory=dict)  # vehicle index -> planned departure


@dataclass
class Prepared:
    problem: RoutingProblem
    matrix: TravelMatrix
    jobs: list[Job]  # the jobs the engine should try to serve, pickups of loaded jobs removed
    allowed: dict[str, list[int]]  # job id -> vehicle indices it may use
    dims: int  # number of capacity dimensions
    forced: dict[int, list[str]]  # vehicle index -> started job ids, in order (never dropped)

    def demand(self, job: Job) -> tuple[int, ...]:
        return pad(job.demand, self.dims, 0)

    def capacity(self, vehicle: Vehicle) -> tuple[int, ...]:
        return pad(vehicle.capacity, self.dims, UNLIMITED)

    @property
    def has_pairs(self) -> bool:
        return any(j.pickup is not None for j in self.jobs)

    def penalty(self, job: Job, max_arc_cost: int, max_fixed: int) -> int:
        """What dropping a job costs: far more than serving it could, scaled by priority."""
        base = 10 * (2 * max_arc_cost + max_fixed) + 1000
        loaded = any(job.id in v.loaded for v in self.problem.vehicles)
        return base * (10 + job.priority) // 10 * (10 if loaded else 1)


def pad(values: tuple[int, ...], n: int, fill: int) -> tuple[int, ...]:
    return tuple(values[:n]) + (fill,) * (n - len(values))


def reachable(value: int) -> bool:
    return value < UNREACHABLE


def merged(windows: tuple[Window, ...]) -> list[Window]:
    """Windows sorted, overlapping ones joined (an empty tuple stays empty: any time)."""
    out: list[Window] = []
    for w in sorted(windows, key=lambda w: (w.start, w.end)):
        if out and w.start <= out[-1].end + 1:
            out[-1] = Window(out[-1].start, max(out[-1].end, w.end))
        else:
            out.append(w)
    return out


def earliest_in(windows: tuple[Window, ...] | list[Window], t: int) -> int | None:
    """The earliest service start at or after t inside one of the windows; None if all closed."""
    if not windows:
        return t
    best = None
    for w in windows:
        if w.end >= t:
            s = max(t, w.start)
            best = s if best is None else min(best, s)
    return best


def without_done_pickups(problem: RoutingProblem) -> list[Job]:
    """Jobs, with the pickup of every `loaded` job dropped (it is on board already)."""
    loaded = {j for v in problem.vehicles for j in v.loaded}
    return [replace(j, pickup=None) if j.id in loaded and j.pickup is not None else j for j in problem.jobs]


def num_dims(problem: RoutingProblem) -> int:
    sizes = [len(v.capacity) for v in problem.vehicles] + [len(j.demand) for j in problem.jobs]
    return max(sizes, default=0)
