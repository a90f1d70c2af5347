"""What the DeliveryWorkflow records, pure: the transitions (`Step`s) of each action, signal and
timer, the state and timeline entry a step leads to, which alerts are due, and which ETA changes are
worth telling. The workflow (workflows/delivery.py) applies the steps in order and records each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from domain.delivery import (
    LOADED,
    ArrivalSignal,
    AssignRequest,
    CancelRequest,
    DeliverRequest,
    DeliveryInput,
    DeliveryOptions,
    DeliveryState,
    DeliveryStatus,
    EtaSignal,
    FailRequest,
    ProofOfDelivery,
    RescheduleRequest,
    Transition,
    distance_to_dropoff_m,
    promised_by,
)
from domain.delivery_checks import STAFF_ROLES

S = DeliveryStatus
# Transitions the delivery's route hears of: its stop started, ended or left the route.
ROUTE_EVENTS = frozenset(
    {"picked_up", "out_for_delivery", "arrived", "delivered", "failed", "returned", "cancelled"}
)
DISPATCH_EVENTS = frozenset({"created", "cancelled"})  # what a depot's auto-dispatch hears of
# Transitions whose recipients are told (channels and rules arrive with notifications).
NOTIFY_EVENTS = frozenset(
    {
        "created",
        "assigned",
        "out_for_delivery",
        "arrived",
        "delivered",
        "failed",
        "returned",
        "cancelled",
        "late",
        "late_predicted",
        "eta_changed",
        "unassigned_too_long",
    }
)
# Goods on the vehicle that will not be delivered: they go back to the depot, the capacity is freed.
COMPENSATION = ("return_to_depot", "release_capacity")


@dataclass(frozen=True)
class Step:
    """One transition to record; `to` None keeps the status (an event: alerts, ETA notices)."""

    kind: str
    actor: str
    to: DeliveryStatus | None
    data: Mapping[str, object] = field(default_factory=dict)
    changes: Mapping[str, Any] = field(default_factory=dict)


def initial_state(params: DeliveryInput) -> DeliveryState:
    return params.resume or DeliveryState(
        delivery_id=params.delivery_id,
        organization_id=params.organization_id,
        status=S.PENDING,
        spec=params.spec,
        created_at=params.created_at,
        updated_at=params.created_at,
        pending_since=params.created_at,
    )


def transition(
    before: DeliveryState, step: Step, now: datetime, workflow_id: str
) -> tuple[DeliveryState, Transition]:
    """The state after `step` (next sequence; a fresh pending clock on a return to pending) and its
    timeline entry, which names the delivery's route if the route hears of it."""
    to = before.status if step.to is None else step.to
    changes = dict(step.changes)
    if to is S.PENDING and before.status is not S.PENDING:
        changes.setdefault("pending_since", now)
        changes.setdefault("unassigned_alerted", False)
    after = before.with_(status=to, sequence=before.sequence + 1, updated_at=now, **changes)
    route = before.route_id
    tell_route = route is not None and (step.kind in ROUTE_EVENTS or after.route_id != route)
    record = Transition(
        delivery_id=before.delivery_id,
        organization_id=before.organization_id,
        workflow_id=workflow_id,
        sequence=after.sequence,
        type=step.kind,
        occurred_at=now,
        actor=step.actor,
        from_status=None if step.kind == "created" else before.status,
        to_status=to,
        data=dict(step.data),
        state=after,
        route_id=route if tell_route else None,
    )
    return after, record


def assignment_changed(before: DeliveryState, after: DeliveryState) -> bool:
    """Status, vehicle or driver moved: the search attributes need an update."""
    return (before.status, before.vehicle_id, before.driver_id) != (
        after.status,
        after.vehicle_id,
        after.driver_id,
    )


def where(position: object) -> dict[str, object]:
    lat, lon = getattr(position, "lat", None), getattr(position, "lon", None)
    return {"lat": lat, "lon": lon} if lat is not None else {}


def _off_vehicle() -> dict[str, Any]:
    return {"vehicle_id": None, "driver_id": None, "route_id": None, "accepted": False}


# Dispatcher actions ----------------------------------------------------------------------------


def created_step(params: DeliveryInput) -> Step:
    return Step("created", params.created_by, S.PENDING, {"external_ref": params.spec.external_ref})


def assign_step(state: DeliveryState, req: AssignRequest) -> Step:
    return Step(
        "reassigned" if state.status is S.ASSIGNED else "assigned",
        req.actor.label,
        S.ASSIGNED,
        {"vehicle_id": req.vehicle_id, "driver_id": req.driver_id, "previous_vehicle_id": state.vehicle_id},
        {
            "vehicle_id": req.vehicle_id,
            "driver_id": req.driver_id,
            "route_id": req.route_id,
            "accepted": False,
        },
    )


def unassign_step(state: DeliveryState, req: CancelRequest) -> Step:
    data = {"reason": req.reason, "vehicle_id": state.vehicle_id}
    return Step("unassigned", req.actor.label, S.PENDING, data, _off_vehicle())


def reschedule_step(state: DeliveryState, req: RescheduleRequest) -> Step:
    spec = state.spec
    dropoff = replace(spec.dropoff, windows=list(req.windows))
    return Step(
        "rescheduled",
        req.actor.label,
        None,
        {"windows": [[w.start.isoformat(), w.end.isoformat()] for w in req.windows]},
        {"spec": replace(spec, dropoff=dropoff), "late": False, "late_predicted": False},
    )


def cancel_step(state: DeliveryState, req: CancelRequest) -> Step:
    data: dict[str, object] = {"reason": req.reason}
    if state.status in LOADED:
        data.update(compensation=list(COMPENSATION), vehicle_id=state.vehicle_id)
    return Step("cancelled", req.actor.label, S.CANCELLED, data, {"cancel_reason": req.reason})


# Driver actions and signals ------------------------------------------------------------------


def proof_of_delivery(state: DeliveryState, req: DeliverRequest, options: DeliveryOptions) -> ProofOfDelivery:
    """The proof as recorded: its distance from the drop-off, and who overrode the checks if staff did."""
    distance = distance_to_dropoff_m(state.spec, req.position.lat, req.position.lon) if req.position else None
    too_far = distance is not None and distance > options.pod_max_distance_m
    return ProofOfDelivery(
        recipient_name=req.recipient_name,
        signature_sha256=req.signature_sha256,
        photo_sha256=req.photo_sha256,
        position=req.position,
        distance_m=round(distance, 1) if distance is not None else None,
        overridden_by=req.actor.label
        if req.actor.role in STAFF_ROLES and (too_far or req.position is None)
        else None,
    )


def deliver_steps(state: DeliveryState, req: DeliverRequest, options: DeliveryOptions) -> list[Step]:
    """Delivered, after an implicit arrival if the driver was still on the way."""
    proof = proof_of_delivery(state, req, options)
    at = where(req.position)
    steps = []
    if state.status is S.OUT_FOR_DELIVERY:
        steps.append(Step("arrived", req.actor.label, S.ARRIVED, {**at, "implicit": True}))
    data = {
        **at,
        "recipient_name": req.recipient_name,
        "distance_m": proof.distance_m,
        "overridden_by": proof.overridden_by,
    }
    steps.append(Step("delivered", req.actor.label, S.DELIVERED, data, {"proof": proof}))
    return steps


def fail_steps(state: DeliveryState, req: FailRequest) -> list[Step]:
    """The failed attempt, then another attempt or, after the last one, the return to the depot."""
    data = {**where(req.position), "reason": req.reason.value, "notes": req.notes, "attempt": state.attempt}
    failed = Step(
        "failed", req.actor.label, S.FAILED, data, {"failures": [*state.failures, req.reason.value]}
    )
    actor = "system:attempt_policy"
    if state.attempt < state.spec.attempt_policy.max_attempts:
        changes = {"attempt": state.attempt + 1, **_off_vehicle()}
        return [
            failed,
            Step("retry_scheduled", actor, S.PENDING, {"next_attempt": state.attempt + 1}, changes),
        ]
    data = {
        "after_attempts": state.attempt,
        "compensation": list(COMPENSATION),
        "vehicle_id": state.vehicle_id,
    }
    return [failed, Step("returned", actor, S.RETURNED, data)]


def arrival_steps(state: DeliveryState, sig: ArrivalSignal) -> list[Step]:
    """A geofence arrival of the assigned vehicle on its way (implicitly out for delivery if it was
    only picked up); a stale or foreign one records nothing."""
    if sig.vehicle_id != state.vehicle_id or state.status not in (S.PICKED_UP, S.OUT_FOR_DELIVERY):
        return []
    data = {"lat": sig.position.lat, "lon": sig.position.lon, "at": sig.at.isoformat()}
    steps = []
    if state.status is S.PICKED_UP:
        steps.append(
            Step("out_for_delivery", "system:geofence", S.OUT_FOR_DELIVERY, {**data, "implicit": True})
        )
    steps.append(Step("arrived", "system:geofence", S.ARRIVED, data))
    return steps


# Timers and ETAs -------------------------------------------------------------------------------


def deadlines(state: DeliveryState, options: DeliveryOptions) -> dict[str, datetime]:
    """The alerts still to come and when: `late` (the promise passed) and `unassigned_too_long`."""
    out: dict[str, datetime] = {}
    promised = promised_by(state.spec)
    if promised is not None and not state.late and not state.terminal:
        out["late"] = promised
    if state.status is S.PENDING and not state.unassigned_alerted and state.pending_since is not None:
        out["unassigned_too_long"] = state.pending_since + timedelta(minutes=options.unassigned_alert_minutes)
    return out


def due_alerts(state: DeliveryState, options: DeliveryOptions, now: datetime) -> list[Step]:
    steps = []
    for kind, at in deadlines(state, options).items():
        if at > now:
            continue
        if kind == "late":
            steps.append(Step("late", "system:timer", None, {"promised_by": at.isoformat()}, {"late": True}))
        else:
            data = {"pending_since": at.isoformat()}
            steps.append(
                Step("unassigned_too_long", "system:timer", None, data, {"unassigned_alerted": True})
            )
    return steps


def late_predicted(state: DeliveryState, eta: datetime, options: DeliveryOptions) -> bool:
    promised = promised_by(state.spec)
    grace = timedelta(minutes=options.eta_late_grace_minutes)
    return promised is not None and eta > promised + grace


def late_prediction_step(state: DeliveryState, sig: EtaSignal) -> Step:
    promised = promised_by(state.spec)
    data = {"eta": sig.eta.isoformat(), "promised_by": promised.isoformat() if promised else None}
    return Step(
        "late_predicted", f"system:{sig.source}", None, data, {"eta": sig.eta, "late_predicted": True}
    )


def eta_worth_telling(state: DeliveryState, eta: datetime, options: DeliveryOptions) -> bool:
    """A first ETA once the goods are on their way, then only moves of the notice threshold."""
    if state.status not in (S.ASSIGNED, S.PICKED_UP, S.OUT_FOR_DELIVERY):
        return False
    notice = timedelta(minutes=options.eta_notice_minutes)
    return state.eta_notified is None or abs(eta - state.eta_notified) >= notice


def eta_notice_step(state: DeliveryState, sig: EtaSignal, predicted: bool) -> Step:
    previous = state.eta_notified.isoformat() if state.eta_notified else None
    changes = {"eta": sig.eta, "eta_notified": sig.eta, "late_predicted": predicted and state.late_predicted}
    return Step(
        "eta_changed",
        f"system:{sig.source}",
        None,
        {"eta": sig.eta.isoformat(), "previous": previous},
        changes,
    )
