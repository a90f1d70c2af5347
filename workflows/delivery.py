"""DeliveryWorkflow (id `delivery-{id}`): the source of truth of one delivery.

Actions arrive as Updates whose validators reject illegal transitions before they enter history;
geofence arrivals and ETA changes arrive as Signals. Each transition is queued and recorded, in
order, by the main loop (projection, event log, bus, notifications); an Update returns once its
own transitions are recorded, so a client reading the projection afterwards sees its change.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.interfaces.deliveries import DeliveryInterface
    from domain import search_attributes as sa
    from domain.delivery import (
        ALLOWED,
        DISPATCHER_ACTIONS,
        LOADED,
        Action,
        ArrivalSignal,
        AssignRequest,
        CancelRequest,
        DeliverRequest,
        DeliveryInput,
        DeliveryState,
        DeliveryStatus,
        DriverRequest,
        EtaSignal,
        FailRequest,
        ProofOfDelivery,
        RescheduleRequest,
        SpecError,
        Transition,
        allowed_actions,
        distance_to_dropoff_m,
        promised_by,
        validate_windows,
    )
    from domain.route_plans import DISPATCH_NOTICE_SIGNAL, DeliveryNotice, dispatch_workflow_id
    from domain.routes import ROUTE_PROGRESS_SIGNAL, StopProgress

S = DeliveryStatus
STATUS_KEY = SearchAttributeKey.for_keyword(sa.DELIVERY_STATUS)
ORG_KEY = SearchAttributeKey.for_keyword(sa.ORGANIZATION_ID)
VEHICLE_KEY = SearchAttributeKey.for_keyword(sa.VEHICLE_ID)
DRIVER_KEY = SearchAttributeKey.for_keyword(sa.DRIVER_ID)
REF_KEY = SearchAttributeKey.for_keyword(sa.EXTERNAL_REF)

# Recording is a few quick writes; if the worker running one dies, Temporal gives the activity to
# another worker only after this timeout, so it bounds how long a crash stalls the delivery.
RECORD_TIMEOUT = timedelta(seconds=10)
RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
STAFF_ROLES = ("admin", "dispatcher")
# Transitions the delivery's route hears of: its stop started, ended or left the route.
ROUTE_EVENTS = frozenset(
    {"picked_up", "out_for_delivery", "arrived", "delivered", "failed", "returned", "cancelled"}
)
DISPATCH_EVENTS = frozenset({"created", "cancelled"})  # what a depot's auto-dispatch hears of
LINKS_PATCH = "route-and-dispatch-signals"
ETA_NOTICE_PATCH = "eta-change-notices"


def delivery_workflow_id(delivery_id: str) -> str:
    return f"delivery-{delivery_id}"


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


def _reject(kind: str, message: str, state: DeliveryState) -> ApplicationError:
    return ApplicationError(
        message,
        {"status": state.status.value, "allowed_actions": allowed_actions(state.status)},
        type=kind,
        non_retryable=True,
    )


@workflow.defn
class DeliveryWorkflow:
    @workflow.init
    def __init__(self, params: DeliveryInput) -> None:
        self._input = params
        self._state = params.resume or DeliveryState(
            delivery_id=params.delivery_id,
            organization_id=params.organization_id,
            status=S.PENDING,
            spec=params.spec,
            created_at=params.created_at,
            updated_at=params.created_at,
            pending_since=params.created_at,
        )
        self._queue: list[Transition] = []
        self._recorded = self._state.sequence
        if params.resume is None:
            # Here, not in run(): an Update delivered with the start is handled before run() begins.
            self._upsert_search_attributes()
            self._transition(
                "created", params.created_by, S.PENDING, {"external_ref": params.spec.external_ref}
            )

    # Run loop -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, params: DeliveryInput) -> DeliveryState:
        while not self._state.terminal or self._queue:
            if not self._queue:
                delay = self._next_timer()
                try:
                    await workflow.wait_condition(lambda: bool(self._queue), timeout=delay)
                except TimeoutError:
                    self._fire_timers()
            await self._drain()
            if workflow.info().is_continue_as_new_suggested() and not self._queue:
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._queue:
                    workflow.continue_as_new(replace(params, resume=self._state))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _drain(self) -> None:
        while self._queue:
            transition = self._queue[0]
            await self._record(transition)
            self._queue.pop(0)
            self._recorded = transition.sequence

    async def _record(self, t: Transition) -> None:
        await asyncio.gather(
            _act(DeliveryInterface.project_delivery, t), _act(DeliveryInterface.append_delivery_event, t)
        )
        await _act(DeliveryInterface.publish_delivery_change, t)
        if t.type in NOTIFY_EVENTS:
            await _act(DeliveryInterface.notify, t)
        depot = self._state.spec.depot_id
        if (t.route_id or (depot and t.type in DISPATCH_EVENTS)) and workflow.patched(LINKS_PATCH):
            if t.route_id:
                await _tell(
                    t.route_id, ROUTE_PROGRESS_SIGNAL, StopProgress(t.delivery_id, t.type, t.occurred_at)
                )
            if depot and t.type in DISPATCH_EVENTS:
                await _tell(
                    dispatch_workflow_id(depot),
                    DISPATCH_NOTICE_SIGNAL,
                    DeliveryNotice(t.delivery_id, t.type, t.organization_id),
                )

    async def _recorded_up_to(self, sequence: int) -> DeliveryState:
        await workflow.wait_condition(lambda: self._recorded >= sequence)
        return self._state

    # Timers -------------------------------------------------------------------------------

    def _deadlines(self) -> dict[str, datetime]:
        st, opts = self._state, self._input.options
        out: dict[str, datetime] = {}
        promised = promised_by(st.spec)
        if promised is not None and not st.late and not st.terminal:
            out["late"] = promised
        if st.status is S.PENDING and not st.unassigned_alerted and st.pending_since is not None:
            out["unassigned_too_long"] = st.pending_since + timedelta(minutes=opts.unassigned_alert_minutes)
        return out

    def _next_timer(self) -> timedelta | None:
        deadlines = self._deadlines()
        if not deadlines:
            return None
        return max(timedelta(0), min(deadlines.values()) - workflow.now())

    def _fire_timers(self) -> None:
        now = workflow.now()
        for kind, at in self._deadlines().items():
            if at > now:
                continue
            if kind == "late":
                self._event("late", "system:timer", {"promised_by": at.isoformat()}, late=True)
            else:
                self._event(
                    "unassigned_too_long",
                    "system:timer",
                    {"pending_since": at.isoformat()},
                    unassigned_alerted=True,
                )

    # State changes ------------------------------------------------------------------------

    def _transition(
        self,
        kind: str,
        actor: str,
        to: DeliveryStatus,
        data: dict[str, object] | None = None,
        **changes: object,
    ) -> int:
        before = self._state
        now = workflow.now()
        if to is S.PENDING and before.status is not S.PENDING:
            changes.setdefault("pending_since", now)
            changes.setdefault("unassigned_alerted", False)
        self._state = before.with_(status=to, sequence=before.sequence + 1, updated_at=now, **changes)
        route = before.route_id
        tell_route = route is not None and (kind in ROUTE_EVENTS or self._state.route_id != route)
        self._queue.append(
            Transition(
                delivery_id=before.delivery_id,
                organization_id=before.organization_id,
                workflow_id=workflow.info().workflow_id,
                sequence=self._state.sequence,
                type=kind,
                occurred_at=now,
                actor=actor,
                from_status=None if kind == "created" else before.status,
                to_status=to,
                data=data or {},
                state=self._state,
                route_id=route if tell_route else None,
            )
        )
        if (before.status, before.vehicle_id, before.driver_id) != (
            to,
            self._state.vehicle_id,
            self._state.driver_id,
        ):
            self._upsert_search_attributes()
        return self._state.sequence

    def _event(self, kind: str, actor: str, data: dict[str, object], **changes: object) -> int:
        """A timeline entry that does not change the status (alerts, ETA predictions)."""
        return self._transition(kind, actor, self._state.status, data, **changes)

    def _upsert_search_attributes(self) -> None:
        st = self._state
        updates: list[SearchAttributeUpdate[Any]] = [
            STATUS_KEY.value_set(st.status.value),
            ORG_KEY.value_set(st.organization_id),
            VEHICLE_KEY.value_set(st.vehicle_id) if st.vehicle_id else VEHICLE_KEY.value_unset(),
            DRIVER_KEY.value_set(st.driver_id) if st.driver_id else DRIVER_KEY.value_unset(),
        ]
        if st.spec.external_ref:
            updates.append(REF_KEY.value_set(st.spec.external_ref))
        workflow.upsert_search_attributes(updates)

    # Validation shared by the Update validators ----------------------------------------------

    def _check(self, action: Action, actor_role: str, actor_driver: str | None) -> None:
        st = self._state
        if action not in ALLOWED[st.status]:
            raise _reject(
                "InvalidTransition", f"cannot {action.value} a delivery that is {st.status.value}", st
            )
        if action in DISPATCHER_ACTIONS:
            if actor_role not in STAFF_ROLES:
                raise _reject("Forbidden", f"only dispatchers may {action.value}", st)
            return
        if actor_role in STAFF_ROLES and action is Action.DELIVER:
            return  # a dispatcher may complete on the driver's behalf (recorded as an override)
        if actor_role != "driver" or actor_driver is None or actor_driver != st.driver_id:
            raise _reject("NotAssignedDriver", "only the driver assigned to this delivery may do this", st)

    # Dispatcher actions -------------------------------------------------------------------

    @workflow.update
    async def assign(self, req: AssignRequest) -> DeliveryState:
        before = self._state
        kind = "reassigned" if before.status is S.ASSIGNED else "assigned"
        seq = self._transition(
            kind,
            req.actor.label,
            S.ASSIGNED,
            {
                "vehicle_id": req.vehicle_id,
                "driver_id": req.driver_id,
                "previous_vehicle_id": before.vehicle_id,
            },
            vehicle_id=req.vehicle_id,
            driver_id=req.driver_id,
            route_id=req.route_id,
            accepted=False,
        )
        return await self._recorded_up_to(seq)

    @assign.validator
    def _validate_assign(self, req: AssignRequest) -> None:
        self._check(Action.ASSIGN, req.actor.role, req.actor.driver_id)
        for name, value in (("vehicle_id", req.vehicle_id), ("driver_id", req.driver_id)):
            if value is not None and not _is_uuid(value):
                raise _reject("InvalidId", f"{name} must be a UUID", self._state)

    @workflow.update
    async def unassign(self, req: CancelRequest) -> DeliveryState:
        seq = self._transition(
            "unassigned",
            req.actor.label,
            S.PENDING,
            {"reason": req.reason, "vehicle_id": self._state.vehicle_id},
            vehicle_id=None,
            driver_id=None,
            route_id=None,
            accepted=False,
        )
        return await self._recorded_up_to(seq)

    @unassign.validator
    def _validate_unassign(self, req: CancelRequest) -> None:
        self._check(Action.UNASSIGN, req.actor.role, req.actor.driver_id)

    @workflow.update
    async def reschedule(self, req: RescheduleRequest) -> DeliveryState:
        spec = self._state.spec
        dropoff = replace(spec.dropoff, windows=list(req.windows))
        seq = self._event(
            "rescheduled",
            req.actor.label,
            {"windows": [[w.start.isoformat(), w.end.isoformat()] for w in req.windows]},
            spec=replace(spec, dropoff=dropoff),
            late=False,
            late_predicted=False,
        )
        return await self._recorded_up_to(seq)

    @reschedule.validator
    def _validate_reschedule(self, req: RescheduleRequest) -> None:
        self._check(Action.RESCHEDULE, req.actor.role, req.actor.driver_id)
        try:
            validate_windows(req.windows, workflow.now(), "windows")
        except SpecError as exc:
            raise _reject("InvalidWindows", str(exc), self._state) from None
        if not req.windows:
            raise _reject("InvalidWindows", "give at least one window", self._state)

    @workflow.update
    async def cancel(self, req: CancelRequest) -> DeliveryState:
        st = self._state
        if st.status in LOADED:
            # Compensation: the goods go back to the depot and the vehicle's capacity is freed.
            data: dict[str, object] = {
                "reason": req.reason,
                "compensation": ["return_to_depot", "release_capacity"],
                "vehicle_id": st.vehicle_id,
            }
        else:
            data = {"reason": req.reason}
        seq = self._transition("cancelled", req.actor.label, S.CANCELLED, data, cancel_reason=req.reason)
        return await self._recorded_up_to(seq)

    @cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        self._check(Action.CANCEL, req.actor.role, req.actor.driver_id)
        if not req.reason.strip():
            raise _reject("ReasonRequired", "give a reason for the cancellation", self._state)

    # Driver actions -----------------------------------------------------------------------

    @workflow.update
    async def accept(self, req: DriverRequest) -> DeliveryState:
        seq = self._event("accepted", req.actor.label, _where(req.position), accepted=True)
        return await self._recorded_up_to(seq)

    @accept.validator
    def _validate_accept(self, req: DriverRequest) -> None:
        self._check(Action.ACCEPT, req.actor.role, req.actor.driver_id)

    @workflow.update
    async def pick_up(self, req: DriverRequest) -> DeliveryState:
        seq = self._transition("picked_up", req.actor.label, S.PICKED_UP, _where(req.position), accepted=True)
        return await self._recorded_up_to(seq)

    @pick_up.validator
    def _validate_pick_up(self, req: DriverRequest) -> None:
        self._check(Action.PICK_UP, req.actor.role, req.actor.driver_id)

    @workflow.update
    async def depart(self, req: DriverRequest) -> DeliveryState:
        seq = self._transition("out_for_delivery", req.actor.label, S.OUT_FOR_DELIVERY, _where(req.position))
        return await self._recorded_up_to(seq)

    @depart.validator
    def _validate_depart(self, req: DriverRequest) -> None:
        self._check(Action.DEPART, req.actor.role, req.actor.driver_id)

    @workflow.update
    async def arrive(self, req: DriverRequest) -> DeliveryState:
        seq = self._transition("arrived", req.actor.label, S.ARRIVED, _where(req.position))
        return await self._recorded_up_to(seq)

    @arrive.validator
    def _validate_arrive(self, req: DriverRequest) -> None:
        self._check(Action.ARRIVE, req.actor.role, req.actor.driver_id)

    @workflow.update
    async def deliver(self, req: DeliverRequest) -> DeliveryState:
        distance = (
            distance_to_dropoff_m(self._state.spec, req.position.lat, req.position.lon)
            if req.position
            else None
        )
        too_far = distance is not None and distance > self._input.options.pod_max_distance_m
        proof = ProofOfDelivery(
            recipient_name=req.recipient_name,
            signature_sha256=req.signature_sha256,
            photo_sha256=req.photo_sha256,
            position=req.position,
            distance_m=round(distance, 1) if distance is not None else None,
            overridden_by=req.actor.label
            if req.actor.role in STAFF_ROLES and (too_far or req.position is None)
            else None,
        )
        if self._state.status is S.OUT_FOR_DELIVERY:
            self._transition(
                "arrived", req.actor.label, S.ARRIVED, {**_where(req.position), "implicit": True}
            )
        seq = self._transition(
            "delivered",
            req.actor.label,
            S.DELIVERED,
            {
                **_where(req.position),
                "recipient_name": req.recipient_name,
                "distance_m": proof.distance_m,
                "overridden_by": proof.overridden_by,
            },
            proof=proof,
        )
        return await self._recorded_up_to(seq)

    @deliver.validator
    def _validate_deliver(self, req: DeliverRequest) -> None:
        st = self._state
        self._check(Action.DELIVER, req.actor.role, req.actor.driver_id)
        if not req.recipient_name.strip():
            raise _reject("ProofRequired", "proof of delivery needs the recipient's name", st)
        staff = req.actor.role in STAFF_ROLES
        if staff and not req.override_distance:
            raise _reject("OverrideRequired", "a dispatcher completes a delivery only as an override", st)
        if req.position is None:
            if not staff:
                raise _reject("ProofRequired", "proof of delivery needs the position where it was taken", st)
            return
        distance = distance_to_dropoff_m(st.spec, req.position.lat, req.position.lon)
        limit = self._input.options.pod_max_distance_m
        if distance > limit and not staff:
            raise ApplicationError(
                f"proof taken {distance:.0f} m from the drop-off (limit {limit:.0f} m); "
                "a dispatcher can override",
                {
                    "status": st.status.value,
                    "allowed_actions": allowed_actions(st.status),
                    "distance_m": round(distance, 1),
                    "limit_m": limit,
                },
                type="ProofTooFar",
                non_retryable=True,
            )

    @workflow.update
    async def fail(self, req: FailRequest) -> DeliveryState:
        st = self._state
        base = {**_where(req.position), "reason": req.reason.value, "notes": req.notes, "attempt": st.attempt}
        self._transition("failed", req.actor.label, S.FAILED, base, failures=[*st.failures, req.reason.value])
        if st.attempt < st.spec.attempt_policy.max_attempts:
            seq = self._transition(
                "retry_scheduled",
                "system:attempt_policy",
                S.PENDING,
                {"next_attempt": st.attempt + 1},
                attempt=st.attempt + 1,
                vehicle_id=None,
                driver_id=None,
                route_id=None,
                accepted=False,
            )
        else:
            seq = self._transition(
                "returned",
                "system:attempt_policy",
                S.RETURNED,
                {
                    "after_attempts": st.attempt,
                    "compensation": ["return_to_depot", "release_capacity"],
                    "vehicle_id": st.vehicle_id,
                },
            )
        return await self._recorded_up_to(seq)

    @fail.validator
    def _validate_fail(self, req: FailRequest) -> None:
        self._check(Action.FAIL, req.actor.role, req.actor.driver_id)

    # Signals and query --------------------------------------------------------------------

    @workflow.signal
    def arrived(self, sig: ArrivalSignal) -> None:
        st = self._state
        if sig.vehicle_id != st.vehicle_id or st.status not in (S.PICKED_UP, S.OUT_FOR_DELIVERY):
            return  # a stale or foreign geofence event: nothing to do
        data = {"lat": sig.position.lat, "lon": sig.position.lon, "at": sig.at.isoformat()}
        if st.status is S.PICKED_UP:
            self._transition(
                "out_for_delivery", "system:geofence", S.OUT_FOR_DELIVERY, {**data, "implicit": True}
            )
        self._transition("arrived", "system:geofence", S.ARRIVED, data)

    @workflow.signal
    def eta_changed(self, sig: EtaSignal) -> None:
        st = self._state
        if st.terminal:
            return
        promised = promised_by(st.spec)
        grace = timedelta(minutes=self._input.options.eta_late_grace_minutes)
        predicted = promised is not None and sig.eta > promised + grace
        if predicted and not st.late_predicted and not st.late:
            self._event(
                "late_predicted",
                f"system:{sig.source}",
                {"eta": sig.eta.isoformat(), "promised_by": promised.isoformat() if promised else None},
                eta=sig.eta,
                late_predicted=True,
            )
        elif self._eta_worth_telling(sig.eta) and workflow.patched(ETA_NOTICE_PATCH):
            self._event(
                "eta_changed",
                f"system:{sig.source}",
                {
                    "eta": sig.eta.isoformat(),
                    "previous": st.eta_notified.isoformat() if st.eta_notified else None,
                },
                eta=sig.eta,
                eta_notified=sig.eta,
                late_predicted=predicted and st.late_predicted,
            )
        else:
            self._state = st.with_(eta=sig.eta, late_predicted=predicted and st.late_predicted)

    def _eta_worth_telling(self, eta: datetime) -> bool:
        """A first ETA once the goods are on their way, then only moves of the notice threshold."""
        st = self._state
        if st.status not in (S.ASSIGNED, S.PICKED_UP, S.OUT_FOR_DELIVERY):
            return False
        notice = timedelta(minutes=self._input.options.eta_notice_minutes)
        return st.eta_notified is None or abs(eta - st.eta_notified) >= notice

    @workflow.query
    def state(self) -> DeliveryState:
        return self._state


def _act(
    method: Callable[[DeliveryInterface, Transition], Awaitable[None]], t: Transition
) -> Awaitable[None]:
    return workflow.execute_activity_method(
        method, t, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY
    )


async def _tell(workflow_id: str, signal: str, arg: object) -> None:
    """Signal another workflow that may not exist (no route, no auto-dispatch): a miss is fine."""
    try:
        await workflow.get_external_workflow_handle(workflow_id).signal(signal, arg)
    except FailureError:
        workflow.logger.debug("no %s to tell of %s", workflow_id, signal)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _where(position: object) -> dict[str, object]:
    lat, lon = getattr(position, "lat", None), getattr(position, "lon", None)
    return {"lat": lat, "lon": lon} if lat is not None else {}
