"""A vehicle's route for one shift: its ordered stops, their progress and the ETA model.

Pure and deterministic: RouteWorkflow (id `route-{vehicle}-{shift}`) holds a RouteState and
recomputes ETAs with `estimate_etas` whenever a stop finishes or the order changes. Travel times
between consecutive stops are carried per stop (`travel_s`, from the previous stop or the start),
so ETAs never need the travel matrix inside the workflow.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum


class StopStatus(StrEnum):
    PLANNED = "planned"
    ARRIVED = "arrived"  # the driver is there (the stop has started)
    DONE = "done"
    FAILED = "failed"  # an attempt failed here
    DROPPED = "dropped"  # cancelled, unassigned or moved to another route


FINISHED: frozenset[StopStatus] = frozenset({StopStatus.DONE, StopStatus.FAILED, StopStatus.DROPPED})


class RouteStatus(StrEnum):
    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


@dataclass(frozen=True)
class RouteStop:
    delivery_id: str
    kind: str  # "pickup" or "delivery"
    lat: float
    lon: float
    address: str = ""
    service_s: int = 0
    travel_s: int = 0  # from the previous stop (or the route start) in the current order
    window_start: datetime | None = None
    window_end: datetime | None = None
    planned_arrival: datetime | None = None
    eta: datetime | None = None
    status: StopStatus = StopStatus.PLANNED
    finished_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.delivery_id}:{self.kind}"


@dataclass(frozen=True)
class RouteState:
    route_id: str
    organization_id: str
    vehicle_id: str
    shift: str
    driver_id: str | None
    depot_id: str | None
    plan_id: str
    start_at: datetime
    stops: list[RouteStop]
    status: RouteStatus = RouteStatus.PLANNED
    version: int = 1  # bumped by every change; the projection only moves forward
    end_travel_s: int = 0
    estimated_end: datetime | None = None
    updated_at: datetime | None = None
    start_lat: float | None = None
    start_lon: float | None = None
    # The ETA live tracking computed for the next stop from the vehicle's position (key, eta).
    tracked_stop: str | None = None
    tracked_eta: datetime | None = None

    def stop(self, delivery_id: str, kind: str) -> RouteStop | None:
        return next((s for s in self.stops if s.delivery_id == delivery_id and s.kind == kind), None)

    @property
    def next_stop(self) -> RouteStop | None:
        return next((s for s in self.stops if s.status not in FINISHED), None)


@dataclass(frozen=True)
class RouteInput:
    route_id: str
    organization_id: str
    vehicle_id: str
    shift: str  # the service date, e.g. "2026-11-28"
    driver_id: str | None
    depot_id: str | None
    start_at: datetime  # when the route leaves its start
    plan_id: str
    stops: list[RouteStop]
    end_travel_s: int = 0  # from the last stop back to the end location
    start_lat: float | None = None  # where the route starts (the depot)
    start_lon: float | None = None
    resume: RouteState | None = None  # set by continue-as-new


@dataclass(frozen=True)
class PlanChange:
    """A new plan for the route's not-yet-started stops (from a plan or a re-optimisation)."""

    plan_id: str
    stops: list[RouteStop]
    driver_id: str | None = None
    start_at: datetime | None = None
    end_travel_s: int = 0


@dataclass(frozen=True)
class ResequenceRequest:
    """A dispatcher's new order for the open stops: their keys (`{delivery_id}:{kind}`).

    `travel_s` gives the travel time into each stop in that order (computed by an activity)."""

    actor: str
    order: list[str]
    travel_s: list[int] = field(default_factory=list)
    end_travel_s: int = 0


@dataclass(frozen=True)
class StopProgress:
    """Sent by a DeliveryWorkflow when one of its stops on this route starts, ends or leaves."""

    delivery_id: str
    event: str  # the delivery transition type: picked_up, arrived, delivered, failed, cancelled, ...
    at: datetime


@dataclass(frozen=True)
class EtaReport:
    """From live tracking: when the vehicle will reach its next stop, judged from its position."""

    stop_key: str
    eta: datetime
    at: datetime  # the fix time of the position it was computed from


class SequenceError(ValueError):
    pass


def check_resequence(state: RouteState, order: list[str]) -> None:
    """The new order must list every open stop once; started and finished stops cannot move."""
    open_keys = [s.key for s in state.stops if s.status is StopStatus.PLANNED]
    if sorted(order) != sorted(open_keys):
        missing = sorted(set(open_keys) - set(order))
        extra = sorted(set(order) - set(open_keys))
        raise SequenceError(f"order must list each planned stop once (missing {missing}, unknown {extra})")
    position = {k: i for i, k in enumerate(order)}
    for s in state.stops:
        if s.kind == "delivery" and s.status is StopStatus.PLANNED:
            pickup = f"{s.delivery_id}:pickup"
            if pickup in position and position[pickup] > position[s.key]:
                raise SequenceError(f"the pickup of {s.delivery_id} must come before its drop-off")


def estimate_etas(state: RouteState, now: datetime) -> RouteState:
    """Recompute the ETA of every open stop, driving on from the last finished stop.

    Arrival = departure from the previous stop + travel; service starts when the window opens;
    the route cannot be anywhere before `now` or before it starts.
    """
    t = max(state.start_at, now) if state.status is RouteStatus.PLANNED else state.start_at
    stops: list[RouteStop] = []
    for s in state.stops:
        if s.status in FINISHED:
            stops.append(s)
            if s.status is not StopStatus.DROPPED and s.finished_at is not None:
                t = max(t, s.finished_at)
            continue
        if s.status is StopStatus.ARRIVED:
            arrival = s.eta or t
        elif s.key == state.tracked_stop and state.tracked_eta is not None:
            arrival = max(state.tracked_eta, now)  # the vehicle's position beats the plan
        else:
            arrival = max(t + timedelta(seconds=s.travel_s), now)
        start = max(arrival, s.window_start) if s.window_start else arrival
        t = start + timedelta(seconds=s.service_s)
        stops.append(replace(s, eta=arrival))
    end = max(t, now) + timedelta(seconds=state.end_travel_s)
    return replace(state, stops=stops, estimated_end=end)


def route_workflow_id(vehicle_id: str, shift: str) -> str:
    return f"route-{vehicle_id}-{shift}"


ROUTE_PROGRESS_SIGNAL = "stop_progress"  # RouteWorkflow.stop_progress, by name (no import cycle)


def route_travel_s(
    state: RouteState, fixed: list[RouteStop], ordered: list[RouteStop], detour: float, speed_kmh: float
) -> tuple[list[int], int]:
    """Travel seconds into each of `ordered` (driving on from the last fixed stop) and back to the start.

    Great-circle distance times a detour factor at a constant speed: the default matrix model, used
    when a dispatcher re-orders stops by hand (the optimizer's own plan carries its own times).
    """
    from domain.geo import LatLon, haversine_m

    mps = speed_kmh / 3.6
    start = (
        LatLon(state.start_lat, state.start_lon)
        if state.start_lat is not None and state.start_lon is not None
        else None
    )
    here = LatLon(fixed[-1].lat, fixed[-1].lon) if fixed else start
    out: list[int] = []
    for s in ordered:
        there = LatLon(s.lat, s.lon)
        out.append(round(haversine_m(here, there) * detour / mps) if here else s.travel_s)
        here = there
    end = round(haversine_m(here, start) * detour / mps) if here and start else state.end_travel_s
    return out, end
