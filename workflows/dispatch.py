"""DispatchWorkflow (id `dispatch-{depot}`): auto-dispatch for one depot, running until stopped.

DeliveryWorkflows signal it when a delivery of the depot is created or cancelled. It waits a
debounce period to batch what arrives together, then re-optimises the depot's open work for today
in a child RoutePlanWorkflow with assigned deliveries included and started stops pinned; applying
that plan changes only what moved. It continues as new every `BATCHES_PER_RUN` batches.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from domain.route_plans import DeliveryNotice, DispatchInput, DispatchState, PlanRequest, PlanState
    from domain.workflow_names import ROUTE_PLAN_WORKFLOW, plan_workflow_id

BATCHES_PER_RUN = 50


@workflow.defn
class DispatchWorkflow:
    @workflow.init
    def __init__(self, inp: DispatchInput) -> None:
        self._state = DispatchState(depot_id=inp.depot_id, pending=list(inp.pending), batches=inp.batches)
        self._organization_id = inp.organization_id

    @workflow.run
    async def run(self, inp: DispatchInput) -> DispatchState:
        batches_this_run = 0
        while True:
            await workflow.wait_condition(lambda: bool(self._state.pending) or self._state.stopping)
            if self._state.stopping:
                break
            await workflow.sleep(timedelta(seconds=inp.debounce_s))
            await self._replan(inp)
            batches_this_run += 1
            if batches_this_run >= BATCHES_PER_RUN or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                st = self._state
                workflow.continue_as_new(replace(inp, pending=st.pending, batches=st.batches))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _replan(self, inp: DispatchInput) -> None:
        self._state = replace(self._state, pending=[])
        plan_id = str(workflow.uuid4())
        request = PlanRequest(
            organization_id=inp.organization_id,
            plan_id=plan_id,
            depot_id=inp.depot_id,
            service_date=None,
            requested_by="system:dispatch",
            time_limit_s=inp.time_limit_s,
            include_assigned=True,
            routing_task_queue=inp.routing_task_queue,
        )
        try:
            result = await workflow.execute_child_workflow(
                ROUTE_PLAN_WORKFLOW, request, id=plan_workflow_id(plan_id), result_type=PlanState
            )
            status, error = result.status.value, result.error
        except ChildWorkflowError as exc:
            status, error = "failed", str(exc.cause or exc)
        self._state = replace(
            self._state,
            batches=self._state.batches + 1,
            last_plan_id=plan_id,
            last_status=status,
            last_error=error,
        )

    @workflow.signal
    def delivery_notice(self, notice: DeliveryNotice) -> None:
        if notice.organization_id and notice.organization_id != self._organization_id:
            # A delivery of another organization naming this depot: never queued, never shown here
            # (the API refuses such a depot_id; this does not rely on it).
            workflow.logger.warning("ignoring a notice of %s from another organization", notice.delivery_id)
            return
        if notice.delivery_id not in self._state.pending:
            self._state = replace(self._state, pending=[*self._state.pending, notice.delivery_id])

    @workflow.signal
    def stop(self) -> None:
        self._state = replace(self._state, stopping=True)

    @workflow.query
    def state(self) -> DispatchState:
        return self._state
