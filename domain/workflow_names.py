"""Names Temporal knows workflows and their handlers by, for workflows that start, signal or update
one another without importing each other's module (tests/unit/test_workflow_names.py checks each
against its workflow). Other modules of domain/ hold the rest beside their types: DELIVERY_WORKFLOW_TYPE
and DELIVERY_STATE_QUERY (domain/reconcile.py), ROUTE_PROGRESS_SIGNAL (domain/routes.py),
DISPATCH_NOTICE_SIGNAL (domain/route_plans.py), NOTIFICATION_WORKFLOW and NOTIFICATION_SIGNAL
(domain/notifications.py)."""

from __future__ import annotations

ROUTE_PLAN_WORKFLOW = "RoutePlanWorkflow"  # DispatchWorkflow runs one as its child per batch
DELIVERY_ETA_SIGNAL = "eta_changed"  # DeliveryWorkflow.eta_changed, sent by RouteWorkflow


def plan_workflow_id(plan_id: str) -> str:
    return f"route-plan-{plan_id}"
