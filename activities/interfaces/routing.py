"""Route planning's steps (activities/routing/planning.py) and the optimizer, on the `routing` task
queue (activities/routing/optimize.py)."""

from __future__ import annotations

from temporalio import activity

from domain.route_plans import ApplyInput, ApplyResult, LoadedProblem, PlanRequest, PlanState
from domain.routes import RouteState
from domain.routing import OptimizeRoutesInput, RoutePlan


class RoutePlanningInterface:
    @activity.defn(name="load_routing_problem")
    async def load_routing_problem(self, req: PlanRequest) -> LoadedProblem:
        """The depot's vehicles and open deliveries for the day, as a routing problem."""
        raise NotImplementedError

    @activity.defn(name="save_route_plan")
    async def save_route_plan(self, state: PlanState) -> None:
        """Store the plan's state (a retried save of an older state never overwrites a newer one)."""
        raise NotImplementedError

    @activity.defn(name="apply_route_plan")
    async def apply_route_plan(self, inp: ApplyInput) -> ApplyResult:
        """Assign each delivery through its workflow and hand each vehicle its stops (heartbeats)."""
        raise NotImplementedError

    @activity.defn(name="project_route")
    async def project_route(self, state: RouteState) -> None:
        """Write the route's state to its row (only ever forward) and publish it."""
        raise NotImplementedError


class RoutingInterface:
    @activity.defn(name="optimize_routes")
    async def optimize_routes(self, input: OptimizeRoutesInput) -> RoutePlan:  # noqa: A002 (the SDK's word)
        """Solve the problem within its time limit (heartbeats)."""
        raise NotImplementedError
