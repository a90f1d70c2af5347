"""RoutePlanWorkflow (id `route-plan-{id}`): optimise a depot's deliveries for a date, store the
plan, and apply it: assign each delivery through its own workflow and hand every vehicle its stops
(one RouteWorkflow per vehicle shift). With `auto_apply=false` it waits for the `apply` Update.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.interfaces.routing import RoutePlanningInterface, RoutingInterface
    from domain.route_plans import (
        ApplyInput,
        ApplyPlanRequest,
        PlanRequest,
        PlanState,
        PlanStatus,
    )
    from domain.routing import OptimizeRoutesInput, SolveOptions

P = PlanStatus
IO_TIMEOUT = timedelta(seconds=60)
IO_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# The solver answers within its time limit; the margin covers the matrix and a slow worker.
SOLVE_MARGIN = timedelta(minutes=2)
SOLVE_HEARTBEAT = timedelta(seconds=30)
SOLVE_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=["InvalidProblem"])


@workflow.defn
class RoutePlanWorkflow:
    @workflow.init
    def __init__(self, req: PlanRequest) -> None:
        self._state = PlanState(plan_id=req.plan_id, status=P.OPTIMIZING, request=req)
        self._apply_requested = req.auto_apply

    @workflow.run
    async def run(self, req: PlanRequest) -> PlanState:
        try:
            await self._plan_and_apply(req)
        except ActivityError as exc:
            cause = exc.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
            self._set(P.FAILED, error=message)
            await self._save()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _plan_and_apply(self, req: PlanRequest) -> None:
        loaded = await workflow.execute_activity_method(
            RoutePlanningInterface.load_routing_problem,
            req,
            start_to_close_timeout=IO_TIMEOUT,
            retry_policy=IO_RETRY,
        )
        plan = await workflow.execute_activity_method(
            RoutingInterface.optimize_routes,
            OptimizeRoutesInput(problem=loaded.problem, options=SolveOptions(time_limit_s=req.time_limit_s)),
            task_queue=req.routing_task_queue,
            start_to_close_timeout=timedelta(seconds=req.time_limit_s) + SOLVE_MARGIN,
            heartbeat_timeout=SOLVE_HEARTBEAT,
            retry_policy=SOLVE_RETRY,
        )
        self._set(P.PLANNED, plan=plan, skipped=loaded.skipped, origin=loaded.origin, shift=loaded.shift)
        await self._save()
        if not self._apply_requested:
            try:
                await workflow.wait_condition(
                    lambda: self._apply_requested, timeout=timedelta(seconds=req.apply_expires_s)
                )
            except TimeoutError:
                self._set(P.DISCARDED, error="not applied in time")
                await self._save()
                return
        self._set(P.APPLYING)
        await self._save()
        result = await workflow.execute_activity_method(
            RoutePlanningInterface.apply_route_plan,
            ApplyInput(request=req, loaded=loaded, plan=plan),
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=IO_RETRY,
        )
        self._set(P.APPLIED, result=result)
        await self._save()

    def _set(self, status: PlanStatus, **changes: object) -> None:
        self._state = replace(self._state, status=status, updated_at=workflow.now(), **changes)  # type: ignore[arg-type]

    async def _save(self) -> None:
        await workflow.execute_activity_method(
            RoutePlanningInterface.save_route_plan,
            self._state,
            start_to_close_timeout=IO_TIMEOUT,
            retry_policy=IO_RETRY,
        )

    @workflow.update
    async def apply(self, req: ApplyPlanRequest) -> PlanState:
        self._apply_requested = True
        self._state = replace(self._state, applied_by=req.actor)
        await workflow.wait_condition(lambda: self._state.status in (P.APPLIED, P.FAILED))
        return self._state

    @apply.validator
    def _validate_apply(self, req: ApplyPlanRequest) -> None:  # noqa: ARG002 (validators mirror the update)
        if self._apply_requested or self._state.status not in (P.OPTIMIZING, P.PLANNED):
            raise ApplicationError(
                f"the plan is {self._state.status.value}; only a plan waiting to be applied can be applied",
                {"status": self._state.status.value},
                type="PlanNotApplicable",
                non_retryable=True,
            )

    @workflow.query
    def state(self) -> PlanState:
        return self._state
