"""What activities are built with: the stores (`ActivityResources`, a protocol, so that the composition
root hands in whatever bag it holds) and, for the few that start, signal, query or update workflows,
`WorkflowCalls`: the client-side calls they need, typed with domain types. starters/ implements them
(starters/calls.py); activities never import workflows/ nor hold a Temporal client themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.bus.base import CacheBus
from db.history.base import HistoryStore
from domain.delivery import AssignRequest, DeliveryState
from domain.notifications import NotificationEvent
from domain.routes import PlanChange, RouteInput, RouteState
from domain.workflow_status import RunStatus
from plumbing.settings import Settings


class ActivityResources(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def cache_bus(self) -> CacheBus: ...
    @property
    def history(self) -> HistoryStore: ...
    async def database_ok(self) -> bool: ...


class WorkflowCallError(Exception):
    """Temporal could not answer (unreachable, no such workflow, the query or result failed); the
    message is Temporal's."""


class UpdateRejected(Exception):
    """The workflow refused an Update (its validator or handler raised); the message is its reason."""


class DeliveryCalls(Protocol):
    """DeliveryWorkflow (`delivery-{id}`), for the reconciler and route planning."""

    async def start_delivery(self, state: DeliveryState, created_by: str) -> bool:
        """Start the workflow of a never-started delivery from its projected state, with the input and
        policies of the API's creates. False if a workflow of that id has closed (never started again)."""
        ...

    async def delivery_status(self, delivery_id: str) -> RunStatus | None:
        """The status of its latest run; None if Temporal knows of none."""
        ...

    async def running_deliveries(self, workflow_ids: list[str]) -> set[str]:
        """Which of the workflow ids run now, by one visibility query (it may lag behind)."""
        ...

    def deliveries_running_since(
        self, started_before: datetime, organization_id: str | None, page_size: int
    ) -> AsyncIterator[str]:
        """The ids of running DeliveryWorkflows started before the time (of one organization)."""
        ...

    async def delivery_state(self, delivery_id: str) -> DeliveryState:
        """Its state by query (raises WorkflowCallError)."""
        ...

    async def delivery_result(self, delivery_id: str) -> DeliveryState:
        """The result of its completed run (raises WorkflowCallError)."""
        ...

    async def assign_delivery(self, delivery_id: str, req: AssignRequest) -> DeliveryState:
        """The `assign` Update (raises UpdateRejected)."""
        ...


class RouteCalls(Protocol):
    async def set_route_plan(self, inp: RouteInput, change: PlanChange, task_queue: str) -> RouteState:
        """Hand the vehicle shift's RouteWorkflow its plan, starting it (from `inp`) if needed."""
        ...


class NotificationCalls(Protocol):
    async def notify_event(self, ev: NotificationEvent) -> None:
        """Hand the event to its delivery's NotificationWorkflow (signal-with-start: one RPC)."""
        ...


class WorkflowCalls(DeliveryCalls, RouteCalls, NotificationCalls, Protocol):
    """Every call into workflows an activity makes."""
