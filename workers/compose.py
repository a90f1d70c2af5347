"""Which workflows and activities run on which task queue.

`default` carries workflows and I/O activities; `routing` carries the CPU-heavy optimizer, which
solves in a process pool so it never stalls the worker's event loop; `analytics` carries the
pandas KPI activities: a backfill is a long batch of chunked reads and frame work, kept on its own
queue so that it never takes the activity slots delivery recording needs and can be scaled apart
(`waybill worker --queue analytics`). Its frame work runs on a thread (docs/analytics.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from activities.analytics.activities import AnalyticsActivities
from activities.deliveries import DeliveryActivities
from activities.notifications.activities import NotificationActivities
from activities.reconcile import ReconcileActivities
from activities.resources import ActivityResources, WorkflowCalls
from activities.routing.optimize import RoutingActivities
from activities.routing.planning import RoutePlanningActivities
from activities.system_check import SystemCheckActivities
from plumbing.temporal import TemporalConnector
from starters.calls import WorkflowStarters
from workers import code_cache
from workers.metrics import WorkerMetrics
from workflows.analytics import AnalyticsBackfillWorkflow, AnalyticsDailyWorkflow, AnalyticsHourlyWorkflow
from workflows.delivery import DeliveryWorkflow
from workflows.dispatch import DispatchWorkflow
from workflows.notifications import NotificationWorkflow, WebhookReplayWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.route import RouteWorkflow
from workflows.route_plan import RoutePlanWorkflow
from workflows.system_check import SystemCheckWorkflow

QUEUE_NAMES = ("default", "routing", "analytics")


class Resources(ActivityResources, Protocol):
    """What a worker is built with: the activities' stores and the Temporal connection, for the
    calls some activities make into workflows (starters/)."""

    @property
    def temporal(self) -> TemporalConnector: ...


@dataclass
class QueuePlan:
    task_queue: str
    workflows: list[type] = field(default_factory=list)
    activities: list[Callable[..., Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.workflows and not self.activities


DEFAULT_WORKFLOWS: list[type] = [
    SystemCheckWorkflow,
    DeliveryWorkflow,
    RoutePlanWorkflow,
    RouteWorkflow,
    DispatchWorkflow,
    NotificationWorkflow,
    WebhookReplayWorkflow,
    AnalyticsHourlyWorkflow,
    AnalyticsDailyWorkflow,
    AnalyticsBackfillWorkflow,
    ReconcileWorkflow,
]


def plan_queues(
    resources: Resources,
    queues: Sequence[str] = QUEUE_NAMES,
    metrics: WorkerMetrics | None = None,
    workflows: WorkflowCalls | None = None,
) -> dict[str, QueuePlan]:
    """`metrics`: the worker's registry, told of each reconciler run (its findings are gauges).
    `workflows`: the calls activities make into workflows; by default on `resources.temporal`."""
    s = resources.settings
    calls = workflows or WorkflowStarters(resources.temporal, s)
    return {
        "default": QueuePlan(
            task_queue=s.temporal_task_queue,
            workflows=list(DEFAULT_WORKFLOWS),
            activities=_io_activities(resources, calls, metrics),
        ),
        # The optimizer's process pool starts its processes on the first solve, and only where the
        # routing queue is polled; they end with the worker process.
        "routing": QueuePlan(
            task_queue=s.temporal_routing_task_queue,
            activities=[RoutingActivities.from_resources(resources).optimize_routes]
            if "routing" in queues
            else [],
        ),
        "analytics": QueuePlan(
            task_queue=s.temporal_analytics_task_queue,
            activities=[AnalyticsActivities(resources).compute_daily_report],
        ),
    }


def _io_activities(
    resources: Resources, calls: WorkflowCalls, metrics: WorkerMetrics | None
) -> list[Callable[..., Any]]:
    """The default queue's activities: recording, notifications, planning, checks."""
    system = SystemCheckActivities(resources)
    reconcile = ReconcileActivities(resources, calls, metrics.record_reconcile if metrics else None)
    deliveries = DeliveryActivities(resources, calls)
    notifications = NotificationActivities(resources)
    planning = RoutePlanningActivities(resources, calls)
    return [
        system.check_stores,
        reconcile.reconcile_deliveries,
        deliveries.project_delivery,
        deliveries.append_delivery_event,
        deliveries.publish_delivery_change,
        deliveries.notify,
        notifications.plan_event,
        notifications.send_message,
        notifications.mark_message_failed,
        notifications.deliver_webhook,
        notifications.mark_webhook_failed,
        notifications.alert_webhook_disabled,
        planning.load_routing_problem,
        planning.save_route_plan,
        planning.apply_route_plan,
        planning.project_route,
    ]


def build_workers(
    client: Client,
    resources: Resources,
    queues: Sequence[str] = QUEUE_NAMES,
    interceptors: Sequence[Interceptor] = (),
    metrics: WorkerMetrics | None = None,
    workflows: WorkflowCalls | None = None,
) -> list[Worker]:
    plans = plan_queues(resources, queues, metrics, workflows)
    # The sandbox imports a workflow's module again for every run: keep its compiled code.
    code_cache.install(cls.__module__ for name in queues for cls in plans[name].workflows)
    workers = []
    for name in queues:
        plan = plans[name]
        if plan.empty:
            continue
        workers.append(
            Worker(
                client,
                task_queue=plan.task_queue,
                workflows=plan.workflows,
                activities=plan.activities,
                graceful_shutdown_timeout=timedelta(seconds=10),
                interceptors=interceptors,
            )
        )
    return workers
