"""DeliveryWorkflow (id `delivery-{id}`): the source of truth of one delivery.

Actions arrive as Updates whose validators reject illegal transitions before they enter history;
geofence arrivals and ETA changes arrive as Signals. Each transition is queued and recorded, in
order, by the main loop (projection, event log, bus, notifications); an Update returns once its
own transitions are recorded, so a client reading the projection afterwards sees its change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.interfaces.deliveries import DeliveryInterface
    from domain import search_attributes as sa
    from domain.delivery import (
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
        RescheduleRequest,
        Transition,
    )
    from domain.delivery_checks import (
        Rejected,
        check_actor,
        check_assign,
        check_cancel,
        check_deliver,
        check_reschedule,
    )
    from domain.delivery_steps import (
        DISPATCH_EVENTS,
        NOTIFY_EVENTS,
        Step,
        arrival_steps,
        assign_step,
        assignment_changed,
        cancel_step,
        created_step,
        deadlines,
        deliver_steps,
        due_alerts,
        eta_notice_step,
        eta_worth_telling,
        fail_steps,
        initial_state,
        late_predicted,
        late_prediction_step,
        reschedule_step,
        transition,
        unassign_step,
        where,
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
LINKS_PATCH = "route-and-dispatch-signals"
ETA_NOTICE_PATCH = "eta-change-notices"


@workflow.defn
class DeliveryWorkflow:
    @workflow.init
    def __init__(self, params: DeliveryInput) -> None:
        self._input = params
        self._state = initial_state(params)
        self._queue: list[Transition] = []
        self._recorded = self._state.sequence
        if params.resume is None:
            # Here, not in run(): an Update delivered with the start is handled before run() begins.
            self._upsert_search_attributes()
            self._apply(created_step(params))

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
            t = self._queue[0]
            await self._record(t)
            self._queue.pop(0)
            self._recorded = t.sequence

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

    def _next_timer(self) -> timedelta | None:
        due = deadlines(self._state, self._input.options)
        if not due:
            return None
        return max(timedelta(0), min(due.values()) - workflow.now())

    def _fire_timers(self) -> None:
        self._apply(*due_alerts(self._state, self._input.options, workflow.now()))

    # State changes ------------------------------------------------------------------------

    def _apply(self, *steps: Step) -> int:
        """Move the state through `steps` in order, queueing each one's record; the last sequence."""
        for step in steps:
            before = self._state
            now, workflow_id = workflow.now(), workflow.info().workflow_id
            self._state, record = transition(before, step, now, workflow_id)
            self._queue.append(record)
            if assignment_changed(before, self._state):
                self._upsert_search_attributes()
        return self._state.sequence

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

    # Dispatcher actions -------------------------------------------------------------------

    @workflow.update
    async def assign(self, req: AssignRequest) -> DeliveryState:
        return await self._recorded_up_to(self._apply(assign_step(self._state, req)))

    @assign.validator
    def _validate_assign(self, req: AssignRequest) -> None:
        with _refusals():
            check_assign(self._state, req)

    @workflow.update
    async def unassign(self, req: CancelRequest) -> DeliveryState:
        return await self._recorded_up_to(self._apply(unassign_step(self._state, req)))

    @unassign.validator
    def _validate_unassign(self, req: CancelRequest) -> None:
        self._check(Action.UNASSIGN, req)

    @workflow.update
    async def reschedule(self, req: RescheduleRequest) -> DeliveryState:
        return await self._recorded_up_to(self._apply(reschedule_step(self._state, req)))

    @reschedule.validator
    def _validate_reschedule(self, req: RescheduleRequest) -> None:
        with _refusals():
            check_reschedule(self._state, req, workflow.now())

    @workflow.update
    async def cancel(self, req: CancelRequest) -> DeliveryState:
        return await self._recorded_up_to(self._apply(cancel_step(self._state, req)))

    @cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        with _refusals():
            check_cancel(self._state, req)

    # Driver actions -----------------------------------------------------------------------

    @workflow.update
    async def accept(self, req: DriverRequest) -> DeliveryState:
        step = Step("accepted", req.actor.label, None, where(req.position), {"accepted": True})
        return await self._recorded_up_to(self._apply(step))

    @accept.validator
    def _validate_accept(self, req: DriverRequest) -> None:
        self._check(Action.ACCEPT, req)

    @workflow.update
    async def pick_up(self, req: DriverRequest) -> DeliveryState:
        step = Step("picked_up", req.actor.label, S.PICKED_UP, where(req.position), {"accepted": True})
        return await self._recorded_up_to(self._apply(step))

    @pick_up.validator
    def _validate_pick_up(self, req: DriverRequest) -> None:
        self._check(Action.PICK_UP, req)

    @workflow.update
    async def depart(self, req: DriverRequest) -> DeliveryState:
        step = Step("out_for_delivery", req.actor.label, S.OUT_FOR_DELIVERY, where(req.position))
        return await self._recorded_up_to(self._apply(step))

    @depart.validator
    def _validate_depart(self, req: DriverRequest) -> None:
        self._check(Action.DEPART, req)

    @workflow.update
    async def arrive(self, req: DriverRequest) -> DeliveryState:
        step = Step("arrived", req.actor.label, S.ARRIVED, where(req.position))
        return await self._recorded_up_to(self._apply(step))

    @arrive.validator
    def _validate_arrive(self, req: DriverRequest) -> None:
        self._check(Action.ARRIVE, req)

    @workflow.update
    async def deliver(self, req: DeliverRequest) -> DeliveryState:
        return await self._recorded_up_to(self._apply(*deliver_steps(self._state, req, self._input.options)))

    @deliver.validator
    def _validate_deliver(self, req: DeliverRequest) -> None:
        with _refusals():
            check_deliver(self._state, req, self._input.options)

    @workflow.update
    async def fail(self, req: FailRequest) -> DeliveryState:
        return await self._recorded_up_to(self._apply(*fail_steps(self._state, req)))

    @fail.validator
    def _validate_fail(self, req: FailRequest) -> None:
        self._check(Action.FAIL, req)

    def _check(self, action: Action, req: CancelRequest | DriverRequest | FailRequest) -> None:
        with _refusals():
            check_actor(self._state, action, req.actor.role, req.actor.driver_id)

    # Signals and query --------------------------------------------------------------------

    @workflow.signal
    def arrived(self, sig: ArrivalSignal) -> None:
        self._apply(*arrival_steps(self._state, sig))

    @workflow.signal
    def eta_changed(self, sig: EtaSignal) -> None:
        st, options = self._state, self._input.options
        if st.terminal:
            return
        predicted = late_predicted(st, sig.eta, options)
        if predicted and not st.late_predicted and not st.late:
            self._apply(late_prediction_step(st, sig))
        elif eta_worth_telling(st, sig.eta, options) and workflow.patched(ETA_NOTICE_PATCH):
            self._apply(eta_notice_step(st, sig, predicted))
        else:
            self._state = st.with_(eta=sig.eta, late_predicted=predicted and st.late_predicted)

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


@contextmanager
def _refusals() -> Iterator[None]:
    """A refusal of the rules (domain/delivery_checks.py) as the business failure callers see."""
    try:
        yield
    except Rejected as r:
        raise ApplicationError(r.message, r.details, type=r.kind, non_retryable=True) from None
