"""Deliveries: the specification a dispatcher submits, the lifecycle state machine, and the
workflow's state and transition records. Pure and deterministic: used inside DeliveryWorkflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.geo import LatLon, haversine_m


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    ASSIGNED = "assigned"
    PICKED_UP = "picked_up"
    OUT_FOR_DELIVERY = "out_for_delivery"
    ARRIVED = "arrived"
    DELIVERED = "delivered"
    FAILED = "failed"  # transient: an attempt failed; the next status is pending or returned
    RETURNED = "returned"
    CANCELLED = "cancelled"


TERMINAL: frozenset[DeliveryStatus] = frozenset(
    {DeliveryStatus.DELIVERED, DeliveryStatus.RETURNED, DeliveryStatus.CANCELLED}
)
# Goods are on the vehicle: cancelling now needs compensation (bring them back, free capacity).
LOADED: frozenset[DeliveryStatus] = frozenset(
    {DeliveryStatus.PICKED_UP, DeliveryStatus.OUT_FOR_DELIVERY, DeliveryStatus.ARRIVED}
)


class Action(StrEnum):
    # dispatcher
    ASSIGN = "assign"
    UNASSIGN = "unassign"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"
    # driver (the assigned one)
    ACCEPT = "accept"
    PICK_UP = "pick_up"
    DEPART = "depart"
    ARRIVE = "arrive"
    DELIVER = "deliver"
    FAIL = "fail"


DISPATCHER_ACTIONS: frozenset[Action] = frozenset(
    {Action.ASSIGN, Action.UNASSIGN, Action.RESCHEDULE, Action.CANCEL}
)
DRIVER_ACTIONS: frozenset[Action] = frozenset(
    {Action.ACCEPT, Action.PICK_UP, Action.DEPART, Action.ARRIVE, Action.DELIVER, Action.FAIL}
)

_S = DeliveryStatus
# Which actions each status allows. `deliver` from out_for_delivery records the arrival implicitly.
ALLOWED: dict[DeliveryStatus, frozenset[Action]] = {
    _S.PENDING: frozenset({Action.ASSIGN, Action.RESCHEDULE, Action.CANCEL}),
    _S.ASSIGNED: frozenset(
        {Action.ASSIGN, Action.UNASSIGN, Action.RESCHEDULE, Action.CANCEL, Action.ACCEPT, Action.PICK_UP}
    ),
    _S.PICKED_UP: frozenset({Action.RESCHEDULE, Action.CANCEL, Action.DEPART, Action.FAIL}),
    _S.OUT_FOR_DELIVERY: frozenset(
        {Action.RESCHEDULE, Action.CANCEL, Action.ARRIVE, Action.DELIVER, Action.FAIL}
    ),
    _S.ARRIVED: frozenset({Action.CANCEL, Action.DELIVER, Action.FAIL}),
    _S.DELIVERED: frozenset(),
    _S.FAILED: frozenset(),
    _S.RETURNED: frozenset(),
    _S.CANCELLED: frozenset(),
}

NEXT_STATUS: dict[Action, DeliveryStatus] = {
    Action.ASSIGN: _S.ASSIGNED,
    Action.UNASSIGN: _S.PENDING,
    Action.CANCEL: _S.CANCELLED,
    Action.PICK_UP: _S.PICKED_UP,
    Action.DEPART: _S.OUT_FOR_DELIVERY,
    Action.ARRIVE: _S.ARRIVED,
    Action.DELIVER: _S.DELIVERED,
    Action.FAIL: _S.FAILED,
}


class FailureReason(StrEnum):
    RECIPIENT_ABSENT = "recipient_absent"
    ADDRESS_NOT_FOUND = "address_not_found"
    ACCESS_DENIED = "access_denied"
    REFUSED = "refused"
    DAMAGED = "damaged"
    VEHICLE_ISSUE = "vehicle_issue"
    OUT_OF_TIME = "out_of_time"
    OTHER = "other"


class AfterLastAttempt(StrEnum):
    RETURN_TO_DEPOT = "return_to_depot"


def allowed_actions(status: DeliveryStatus) -> list[str]:
    return sorted(a.value for a in ALLOWED[status])


class SpecError(ValueError):
    """A delivery specification that cannot be accepted; the message names the field."""


# Specification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Contact:
    name: str = ""
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class Stop:
    address: str
    lat: float
    lon: float
    windows: list[TimeWindow] = field(default_factory=list)
    service_minutes: float = 0.0
    contact: Contact = field(default_factory=Contact)
    notes: str = ""

    @property
    def location(self) -> LatLon:
        return LatLon(self.lat, self.lon)


@dataclass(frozen=True)
class Size:
    weight_kg: float = 0.0
    volume_m3: float = 0.0
    units: int = 1


@dataclass(frozen=True)
class AttemptPolicy:
    max_attempts: int = 3
    after_last: AfterLastAttempt = AfterLastAttempt.RETURN_TO_DEPOT


@dataclass(frozen=True)
class DeliverySpec:
    dropoff: Stop
    pickup: Stop | None = None
    size: Size = field(default_factory=Size)
    priority: int = 0
    required_skills: list[str] = field(default_factory=list)
    external_ref: str | None = None
    attempt_policy: AttemptPolicy = field(default_factory=AttemptPolicy)
    depot_id: str | None = None


def validate_spec(spec: DeliverySpec, now: datetime) -> None:
    """Raise SpecError naming the first problem: coordinates, windows (ordered, future), sizes."""
    stops = [("dropoff", spec.dropoff)] + ([("pickup", spec.pickup)] if spec.pickup else [])
    for name, stop in stops:
        try:
            LatLon(stop.lat, stop.lon)
        except ValueError as exc:
            raise SpecError(f"{name}: {exc}") from None
        if stop.service_minutes < 0 or not math.isfinite(stop.service_minutes):
            raise SpecError(f"{name}.service_minutes must be a non-negative number")
        validate_windows(stop.windows, now, f"{name}.windows")
    if spec.pickup and spec.pickup.windows and spec.dropoff.windows:
        if spec.pickup.windows[0].start > spec.dropoff.windows[-1].end:
            raise SpecError("pickup.windows: the pickup opens after the last drop-off window closes")
    for dim in ("weight_kg", "volume_m3", "units"):
        value = getattr(spec.size, dim)
        if value < 0 or not math.isfinite(value):
            raise SpecError(f"size.{dim} must be a non-negative number")
    if spec.attempt_policy.max_attempts < 1:
        raise SpecError("attempt_policy.max_attempts must be at least 1")


def validate_windows(windows: list[TimeWindow], now: datetime, where: str) -> None:
    previous_end: datetime | None = None
    for i, w in enumerate(windows):
        if w.start.tzinfo is None or w.end.tzinfo is None:
            raise SpecError(f"{where}[{i}]: times need a UTC offset")
        if w.end <= w.start:
            raise SpecError(f"{where}[{i}]: end must be after start")
        if w.end <= now:
            raise SpecError(f"{where}[{i}]: the window has already closed")
        if previous_end is not None and w.start < previous_end:
            raise SpecError(f"{where}[{i}]: windows must be in order and must not overlap")
        previous_end = w.end


def promised_by(spec: DeliverySpec) -> datetime | None:
    """When the delivery is late: the end of the last drop-off window (None: no promise)."""
    return spec.dropoff.windows[-1].end if spec.dropoff.windows else None


def distance_to_dropoff_m(spec: DeliverySpec, lat: float, lon: float) -> float:
    return haversine_m(spec.dropoff.location, LatLon(lat, lon))


# Workflow input, state and records ------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryOptions:
    """Organization configuration the workflow needs (it cannot read settings at replay time)."""

    pod_max_distance_m: float = 200.0
    unassigned_alert_minutes: float = 30.0
    eta_late_grace_minutes: float = 0.0
    eta_notice_minutes: float = 15.0  # tell the recipient when the ETA moves at least this much


@dataclass(frozen=True)
class DeliveryInput:
    delivery_id: str
    organization_id: str
    spec: DeliverySpec
    created_by: str
    created_at: datetime
    options: DeliveryOptions = field(default_factory=DeliveryOptions)
    resume: DeliveryState | None = None  # set by continue-as-new


@dataclass(frozen=True)
class Position:
    lat: float
    lon: float


@dataclass(frozen=True)
class ProofOfDelivery:
    recipient_name: str
    signature_sha256: str | None = None
    photo_sha256: str | None = None
    position: Position | None = None
    distance_m: float | None = None
    overridden_by: str | None = None


@dataclass(frozen=True)
class DeliveryState:
    delivery_id: str
    organization_id: str
    status: DeliveryStatus
    spec: DeliverySpec
    sequence: int = 0
    attempt: int = 1
    vehicle_id: str | None = None
    driver_id: str | None = None
    route_id: str | None = None  # the RouteWorkflow whose stops include this delivery
    accepted: bool = False
    eta: datetime | None = None
    eta_notified: datetime | None = None  # the ETA the recipient was last told
    late: bool = False
    late_predicted: bool = False
    proof: ProofOfDelivery | None = None
    failures: list[str] = field(default_factory=list)
    cancel_reason: str | None = None
    pending_since: datetime | None = None
    unassigned_alerted: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def with_(self, **changes: object) -> DeliveryState:
        return replace(self, **changes)  # type: ignore[arg-type]


def never_started(state: DeliveryState) -> bool:
    """A projection row its workflow has not written yet (sequence 0: the workflow's own first
    projection has sequence 1), so the workflow may never have been started: a create that
    stopped between its row and its start. Such a delivery is started from the row."""
    return state.sequence == 0 and not state.terminal


def start_input(state: DeliveryState, created_by: str, options: DeliveryOptions) -> DeliveryInput:
    """The start input of the delivery this (never started) projection describes."""
    if state.created_at is None:
        raise ValueError("a delivery's state carries its created_at")
    return DeliveryInput(
        delivery_id=state.delivery_id,
        organization_id=state.organization_id,
        spec=state.spec,
        created_by=created_by,
        created_at=state.created_at,
        options=options,
    )


@dataclass(frozen=True)
class Transition:
    """One entry of the timeline: what happened, who caused it, when and where."""

    delivery_id: str
    organization_id: str
    workflow_id: str
    sequence: int
    type: str
    occurred_at: datetime
    actor: str
    from_status: DeliveryStatus | None
    to_status: DeliveryStatus
    data: dict[str, Any] = field(default_factory=dict)
    state: DeliveryState | None = None  # the state after the transition (for the projection)
    route_id: str | None = None  # a route to tell of this transition (its stop started, ended or left)


# Actions (Update arguments) ------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who asks: `user:<id>` with role, and for drivers the driver record they act as."""

    user_id: str
    role: str
    driver_id: str | None = None

    @property
    def label(self) -> str:
        return f"{self.role}:{self.user_id}"


@dataclass(frozen=True)
class AssignRequest:
    actor: Actor
    vehicle_id: str
    driver_id: str | None = None
    route_id: str | None = None  # set when a route plan assigns it


@dataclass(frozen=True)
class RescheduleRequest:
    actor: Actor
    windows: list[TimeWindow]


@dataclass(frozen=True)
class CancelRequest:
    actor: Actor
    reason: str


@dataclass(frozen=True)
class DriverRequest:
    """accept, pick_up, depart, arrive: the driver and where they were."""

    actor: Actor
    position: Position | None = None


@dataclass(frozen=True)
class DeliverRequest:
    actor: Actor
    recipient_name: str
    position: Position | None = None
    signature_sha256: str | None = None
    photo_sha256: str | None = None
    override_distance: bool = False


@dataclass(frozen=True)
class FailRequest:
    actor: Actor
    reason: FailureReason
    notes: str = ""
    position: Position | None = None


@dataclass(frozen=True)
class ArrivalSignal:
    """From geofencing: the assigned vehicle entered the drop-off geofence."""

    vehicle_id: str
    at: datetime
    position: Position


@dataclass(frozen=True)
class EtaSignal:
    eta: datetime
    source: str = "route"
