"""What the DeliveryWorkflow's Update validators check, pure: the action is allowed in the status
and to the actor, and the request carries what it must. A refusal is `Rejected`; the workflow raises
it as a non-retryable ApplicationError of the same type, message and details, before the Update
enters history.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from domain.delivery import (
    ALLOWED,
    DISPATCHER_ACTIONS,
    Action,
    AssignRequest,
    CancelRequest,
    DeliverRequest,
    DeliveryOptions,
    DeliveryState,
    RescheduleRequest,
    SpecError,
    allowed_actions,
    distance_to_dropoff_m,
    validate_windows,
)

STAFF_ROLES = ("admin", "dispatcher")


class Rejected(Exception):
    """A request the delivery refuses: `kind` is the error type callers see, `details` its data."""

    def __init__(self, kind: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.kind, self.message, self.details = kind, message, details


def rejection(kind: str, message: str, state: DeliveryState, **extra: object) -> Rejected:
    details = {"status": state.status.value, "allowed_actions": allowed_actions(state.status), **extra}
    return Rejected(kind, message, details)


def check_actor(state: DeliveryState, action: Action, role: str, driver_id: str | None) -> None:
    """The action is allowed in this status, and to this actor."""
    if action not in ALLOWED[state.status]:
        raise rejection(
            "InvalidTransition", f"cannot {action.value} a delivery that is {state.status.value}", state
        )
    if action in DISPATCHER_ACTIONS:
        if role not in STAFF_ROLES:
            raise rejection("Forbidden", f"only dispatchers may {action.value}", state)
        return
    if role in STAFF_ROLES and action is Action.DELIVER:
        return  # a dispatcher may complete on the driver's behalf (recorded as an override)
    if role != "driver" or driver_id is None or driver_id != state.driver_id:
        raise rejection("NotAssignedDriver", "only the driver assigned to this delivery may do this", state)


def check_assign(state: DeliveryState, req: AssignRequest) -> None:
    check_actor(state, Action.ASSIGN, req.actor.role, req.actor.driver_id)
    for name, value in (("vehicle_id", req.vehicle_id), ("driver_id", req.driver_id)):
        if value is not None and not is_uuid(value):
            raise rejection("InvalidId", f"{name} must be a UUID", state)


def check_reschedule(state: DeliveryState, req: RescheduleRequest, now: datetime) -> None:
    check_actor(state, Action.RESCHEDULE, req.actor.role, req.actor.driver_id)
    try:
        validate_windows(req.windows, now, "windows")
    except SpecError as exc:
        raise rejection("InvalidWindows", str(exc), state) from None
    if not req.windows:
        raise rejection("InvalidWindows", "give at least one window", state)


def check_cancel(state: DeliveryState, req: CancelRequest) -> None:
    check_actor(state, Action.CANCEL, req.actor.role, req.actor.driver_id)
    if not req.reason.strip():
        raise rejection("ReasonRequired", "give a reason for the cancellation", state)


def check_deliver(state: DeliveryState, req: DeliverRequest, options: DeliveryOptions) -> None:
    check_actor(state, Action.DELIVER, req.actor.role, req.actor.driver_id)
    if not req.recipient_name.strip():
        raise rejection("ProofRequired", "proof of delivery needs the recipient's name", state)
    staff = req.actor.role in STAFF_ROLES
    if staff and not req.override_distance:
        raise rejection("OverrideRequired", "a dispatcher completes a delivery only as an override", state)
    if req.position is None:
        if not staff:
            raise rejection("ProofRequired", "proof of delivery needs the position where it was taken", state)
        return
    distance = distance_to_dropoff_m(state.spec, req.position.lat, req.position.lon)
    limit = options.pod_max_distance_m
    if distance > limit and not staff:
        raise rejection(
            "ProofTooFar",
            f"proof taken {distance:.0f} m from the drop-off (limit {limit:.0f} m); "
            "a dispatcher can override",
            state,
            distance_m=round(distance, 1),
            limit_m=limit,
        )


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
