"""Workflows start, signal and query one another by the names in domain/ (they must not import each
other's modules, and activities must not import workflows): each name must be the workflow's own."""

from __future__ import annotations

from typing import Any

import pytest

from domain.notifications import NOTIFICATION_SIGNAL, NOTIFICATION_WORKFLOW
from domain.reconcile import DELIVERY_STATE_QUERY, DELIVERY_WORKFLOW_TYPE
from domain.route_plans import DISPATCH_NOTICE_SIGNAL
from domain.routes import ROUTE_PROGRESS_SIGNAL
from domain.workflow_names import DELIVERY_ETA_SIGNAL, ROUTE_PLAN_WORKFLOW
from workflows.delivery import DeliveryWorkflow
from workflows.dispatch import DispatchWorkflow
from workflows.notifications import NotificationWorkflow
from workflows.route import RouteWorkflow
from workflows.route_plan import RoutePlanWorkflow


def _definition(cls: type) -> Any:
    return cls.__temporal_workflow_definition  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (DeliveryWorkflow, DELIVERY_WORKFLOW_TYPE),
        (RoutePlanWorkflow, ROUTE_PLAN_WORKFLOW),
        (NotificationWorkflow, NOTIFICATION_WORKFLOW),
    ],
)
def test_workflow_names(cls: type, name: str) -> None:
    assert _definition(cls).name == name


@pytest.mark.parametrize(
    ("cls", "signal"),
    [
        (DeliveryWorkflow, DELIVERY_ETA_SIGNAL),
        (RouteWorkflow, ROUTE_PROGRESS_SIGNAL),
        (DispatchWorkflow, DISPATCH_NOTICE_SIGNAL),
        (NotificationWorkflow, NOTIFICATION_SIGNAL),
    ],
)
def test_signal_names(cls: type, signal: str) -> None:
    assert signal in _definition(cls).signals


def test_query_names() -> None:
    assert DELIVERY_STATE_QUERY in _definition(DeliveryWorkflow).queries
