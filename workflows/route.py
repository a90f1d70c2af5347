"""RouteWorkflow (id `route-{vehicle}-{shift}`): one vehicle's ordered stops for one shift.

It follows progress (DeliveryWorkflows signal `stop_progress` when their stop on this route starts,
ends or leaves), recomputes ETAs and tells each delivery its new ETA, accepts new plans for the
stops not yet started (`set_plan`) and a dispatcher's new order (`resequence`). Every change is
projected to the database and published on the vehicle's channel, so the driver app hears of it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.interfaces.routing import RoutePlanningInterface
    from domain.delivery import EtaSignal
    from domain.reconcile import delivery_workflow_id
    from domain.routes import (
        FINISHED,
        EtaReport,
        PlanChange,
        ResequenceRequest,
        RouteInput,
        RouteState,
        RouteStatus,
        RouteStop,
        SequenceError,
        StopProgress,
        StopStatus,
        check_resequence,
        estimate_etas,
    )
    from domain.workflow_names import DELIVERY_ETA_SIGNAL

RS = RouteStatus
IO_TIMEOUT = timedelta(seconds=30)
IO_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
ETA_NOTICE = timedelta(minutes=2)  # tell a delivery its ETA only when it moved at least this much

# What a delivery transition means for its stops on this route.
STOP_DONE = {"picked_up": "pickup", "delivered": "delivery"}
STOP_FAILED = {"failed", "returned"}
LEFT_ROUTE = {"cancelled", "unassigned", "reassigned", "retry_scheduled"}


@workflow.defn
class RouteWorkflow:
    @workflow.init
    def __init__(self, inp: RouteInput) -> None:
        self._state = inp.resume or RouteState(
            route_id=inp.route_id,
            organization_id=inp.organization_id,
            vehicle_id=inp.vehicle_id,
            shift=inp.shift,
            driver_id=inp.driver_id,
            depot_id=inp.depot_id,
            plan_id=inp.plan_id,
            start_at=inp.start_at,
            stops=list(inp.stops),
            end_travel_s=inp.end_travel_s,
            start_lat=inp.start_lat,
            start_lon=inp.start_lon,
        )
        self._dirty = True
        self._eta_told: dict[str, datetime] = {}
        self._recorded = 0

    @workflow.run
    async def run(self, inp: RouteInput) -> RouteState:
        while True:
            await workflow.wait_condition(lambda: self._dirty)
            self._dirty = False
            self._state = estimate_etas(self._state, workflow.now())
            if self._state.stops and all(s.status in FINISHED for s in self._state.stops):
                if self._state.status is RS.IN_PROGRESS:
                    self._state = replace(self._state, status=RS.COMPLETED)
            await self._record()
            if self._state.status is RS.COMPLETED:
                break
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(replace(inp, resume=self._state))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _record(self) -> None:
        st = self._state = replace(self._state, version=self._state.version + 1, updated_at=workflow.now())
        await workflow.execute_activity_method(
            RoutePlanningInterface.project_route,
            st,
            start_to_close_timeout=IO_TIMEOUT,
            retry_policy=IO_RETRY,
        )
        self._recorded = st.version
        for stop in st.stops:
            if stop.kind != "delivery" or stop.status in FINISHED or stop.eta is None:
                continue
            told = self._eta_told.get(stop.delivery_id)
            if told is not None and abs(stop.eta - told) < ETA_NOTICE:
                continue
            self._eta_told[stop.delivery_id] = stop.eta
            handle = workflow.get_external_workflow_handle(delivery_workflow_id(stop.delivery_id))
            try:
                await handle.signal(DELIVERY_ETA_SIGNAL, EtaSignal(eta=stop.eta, source="route"))
            except FailureError:
                workflow.logger.info("delivery %s is gone; no ETA sent", stop.delivery_id)

    async def _recorded_now(self) -> RouteState:
        self._dirty = True
        target = self._state.version + 1
        await workflow.wait_condition(lambda: self._recorded >= target)
        return self._state

    # Updates ------------------------------------------------------------------------------

    @workflow.update
    async def set_plan(self, change: PlanChange) -> RouteState:
        st = self._state
        kept = [s for s in st.stops if s.status is not StopStatus.PLANNED]
        kept_keys = {s.key for s in kept}
        fresh = [s for s in change.stops if s.key not in kept_keys]
        self._state = replace(
            st,
            plan_id=change.plan_id,
            stops=kept + fresh,
            driver_id=change.driver_id or st.driver_id,
            start_at=change.start_at if change.start_at and st.status is RS.PLANNED else st.start_at,
            end_travel_s=change.end_travel_s,
        )
        return await self._recorded_now()

    @set_plan.validator
    def _validate_set_plan(self, change: PlanChange) -> None:
        self._require_open()
        keys = [s.key for s in change.stops]
        if len(keys) != len(set(keys)):
            raise _reject("InvalidPlan", "a stop appears twice in the plan", self._state)

    @workflow.update
    async def resequence(self, req: ResequenceRequest) -> RouteState:
        st = self._state
        by_key = {s.key: s for s in st.stops}
        fixed = [s for s in st.stops if s.status is not StopStatus.PLANNED]
        travel = req.travel_s or [by_key[k].travel_s for k in req.order]
        moved = [replace(by_key[k], travel_s=t) for k, t in zip(req.order, travel, strict=True)]
        self._state = replace(st, stops=fixed + moved, end_travel_s=req.end_travel_s or st.end_travel_s)
        return await self._recorded_now()

    @resequence.validator
    def _validate_resequence(self, req: ResequenceRequest) -> None:
        self._require_open()
        try:
            check_resequence(self._state, req.order)
        except SequenceError as exc:
            raise _reject("InvalidSequence", str(exc), self._state) from None
        if req.travel_s and len(req.travel_s) != len(req.order):
            raise _reject("InvalidSequence", "travel_s must have one entry per stop", self._state)

    def _require_open(self) -> None:
        if self._state.status is RS.COMPLETED:
            raise _reject("RouteCompleted", "the route is completed", self._state)

    # Progress -----------------------------------------------------------------------------

    @workflow.signal
    def stop_progress(self, p: StopProgress) -> None:
        st = self._state
        stops: list[RouteStop] = []
        changed = False
        for s in st.stops:
            new = _apply_progress(s, p)
            changed = changed or new is not s
            stops.append(new)
        ours = any(s.delivery_id == p.delivery_id for s in st.stops)
        started = ours and st.status is RS.PLANNED and p.event not in LEFT_ROUTE
        if not changed and not started:
            return
        status = RS.IN_PROGRESS if started else st.status
        self._state = replace(st, stops=stops, status=status)
        self._dirty = True

    @workflow.signal
    def report_eta(self, report: EtaReport) -> None:
        st = self._state
        nxt = st.next_stop
        if nxt is None or nxt.key != report.stop_key or nxt.status is not StopStatus.PLANNED:
            return  # stale: the vehicle has moved on since
        if st.tracked_stop == report.stop_key and st.tracked_eta is not None:
            if abs(report.eta - st.tracked_eta) < ETA_NOTICE:
                return  # not worth a new projection and notices
        self._state = replace(st, tracked_stop=report.stop_key, tracked_eta=report.eta)
        self._dirty = True

    @workflow.query
    def state(self) -> RouteState:
        return self._state


def _apply_progress(s: RouteStop, p: StopProgress) -> RouteStop:
    if s.delivery_id != p.delivery_id or s.status in FINISHED:
        return s
    if STOP_DONE.get(p.event) == s.kind:
        return replace(s, status=StopStatus.DONE, finished_at=p.at)
    if p.event == "arrived" and s.kind == "delivery":
        return replace(s, status=StopStatus.ARRIVED, eta=p.at)
    if p.event in STOP_FAILED and s.kind == "delivery":
        return replace(s, status=StopStatus.FAILED, finished_at=p.at)
    if p.event in LEFT_ROUTE:
        return replace(s, status=StopStatus.DROPPED, finished_at=p.at)
    return s


def _reject(kind: str, message: str, state: RouteState) -> ApplicationError:
    return ApplicationError(message, {"status": state.status.value}, type=kind, non_retryable=True)
