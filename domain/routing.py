"""The routing problem and its solution: what the optimizer is asked and what it answers.

Pure, stdlib-only and deterministic, so workflows can carry these types. Everything is integer:
times are seconds from the problem's `origin`, distances are metres (the benchmark uses its own
scaled units; the solver does not care which unit, only that matrices and limits agree).
Places are indices into `RoutingProblem.locations`; the travel matrix for those places is
computed and cached by an activity and never enters workflow history.
"""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from domain.geo import LatLon


@dataclass(frozen=True)
class Window:
    """A closed interval [start, end] in seconds from the problem origin."""

    start: int
    end: int


@dataclass(frozen=True)
class Stop:
    """One place a job visits. Several windows mean "any one of these"; none means any time."""

    location: int
    windows: tuple[Window, ...] = ()
    service_s: int = 0


@dataclass(frozen=True)
class Job:
    """A drop-off, or a pickup→drop-off pair (same vehicle, pickup first) when `pickup` is set.

    Without a pickup the goods are loaded at the vehicle's start. `demand` has one entry per
    capacity dimension (missing trailing dimensions count as zero).
    """

    id: str
    delivery: Stop
    pickup: Stop | None = None
    demand: tuple[int, ...] = ()
    priority: int = 0  # 0..100: higher is worth more when not everything fits
    skills: frozenset[str] = frozenset()
    vehicle_id: str | None = None  # locked to this vehicle (a pinned assignment)


@dataclass(frozen=True)
class Break:
    window: Window
    duration_s: int


@dataclass(frozen=True)
class Vehicle:
    id: str
    start_location: int
    end_location: int | None = None  # None: the route ends where it started
    capacity: tuple[int, ...] = ()
    shift: Window | None = None  # None: no shift limit
    skills: frozenset[str] = frozenset()
    breaks: tuple[Break, ...] = ()
    max_duration_s: int | None = None
    max_distance_m: int | None = None
    cost_per_km: float = 0.0
    cost_per_hour: float = 0.0
    fixed_cost: float = 0.0
    profile: str = "car"
    # Stops already started, in the order driven; they stay first on this vehicle. Each entry is
    # a job id; a job whose pickup is done is listed in `loaded` instead (only its drop remains).
    started: tuple[str, ...] = ()
    loaded: tuple[str, ...] = ()


class Objective(StrEnum):
    DISTANCE = "distance"  # total distance only (the benchmark convention)
    COST = "cost"  # fixed + per-km + per-hour costs of the vehicles used


@dataclass(frozen=True)
class RoutingProblem:
    locations: tuple[LatLon, ...]
    vehicles: tuple[Vehicle, ...]
    jobs: tuple[Job, ...]
    origin: datetime | None = None  # what second 0 means; None for abstract problems
    objective: Objective = Objective.DISTANCE


# A matrix entry for a pair of places with no route between them (OSRM answers null).
UNREACHABLE = 10**12


@dataclass(frozen=True)
class TravelMatrix:
    """Distances (metres) and per-profile durations (seconds) between `locations`, row-major.

    A pair with no route holds `UNREACHABLE` in both.
    """

    distances: tuple[tuple[int, ...], ...]
    durations: dict[str, tuple[tuple[int, ...], ...]]

    def duration(self, profile: str) -> tuple[tuple[int, ...], ...]:
        return self.durations[profile]


class Engine(StrEnum):
    AUTO = "auto"  # the best engine that supports the whole problem
    ORTOOLS = "ortools"
    PYVRP = "pyvrp"


@dataclass(frozen=True)
class SolveOptions:
    time_limit_s: float = 5.0
    engine: Engine = Engine.AUTO
    seed: int = 1


class StopKind(StrEnum):
    START = "start"
    PICKUP = "pickup"
    DELIVERY = "delivery"
    BREAK = "break"
    END = "end"


@dataclass(frozen=True)
class PlannedStop:
    kind: StopKind
    job_id: str | None  # None for start, end and breaks
    location: int
    arrival_s: int
    service_start_s: int  # arrival plus any wait for the window
    departure_s: int
    load: tuple[int, ...]  # on board after this stop
    distance_m: int  # driven since the route start


@dataclass(frozen=True)
class PlannedRoute:
    vehicle_id: str
    stops: tuple[PlannedStop, ...]  # START first, END last
    distance_m: int
    duration_s: int
    cost: float


class UnassignedReason(StrEnum):
    CAPACITY = "capacity"  # heavier or bigger than any vehicle that could take it
    TIME_WINDOW = "time_window"  # no vehicle can reach it inside any of its windows
    SKILLS = "skills"  # no vehicle has every skill it needs
    SHIFT = "shift"  # reachable only outside every vehicle's shift or route limits
    UNREACHABLE = "unreachable"  # no route to or from it
    NOT_SERVED = "not_served"  # each alone is feasible, but not together with the rest


@dataclass(frozen=True)
class UnassignedJob:
    job_id: str
    reason: UnassignedReason
    detail: str


@dataclass(frozen=True)
class RoutePlan:
    routes: tuple[PlannedRoute, ...]
    unassigned: tuple[UnassignedJob, ...]
    distance_m: int
    duration_s: int
    cost: float
    engine: str  # which engine produced it, with version, e.g. "ortools 9.15.6755"
    solve_time_s: float
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class OptimizeRoutesInput:
    """The `optimize_routes` activity's argument (the matrix is built and cached by the activity)."""

    problem: RoutingProblem
    options: SolveOptions = field(default_factory=SolveOptions)
