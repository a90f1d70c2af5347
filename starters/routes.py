"""Client-side calls into RouteWorkflow (`route-{vehicle}-{shift}`): a plan handed to the vehicle
shift's route, which is started if it is not running (update-with-start)."""

from __future__ import annotations

from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from domain.routes import PlanChange, RouteInput, RouteState
from starters.base import Starter
from workflows.route import RouteWorkflow


class RouteStarter(Starter):
    """activities.resources.RouteCalls on Temporal's client."""

    async def set_route_plan(self, inp: RouteInput, change: PlanChange, task_queue: str) -> RouteState:
        start = WithStartWorkflowOperation(
            RouteWorkflow.run,
            inp,
            id=inp.route_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        client = await self._client()
        return await client.execute_update_with_start_workflow(
            RouteWorkflow.set_plan, change, start_workflow_operation=start
        )
