"""`WorkflowStarters`: every call activities make into workflows (activities.resources.WorkflowCalls),
on one Temporal connection. The composition root builds it and hands it to the activities."""

from __future__ import annotations

from starters.deliveries import DeliveryStarter
from starters.notifications import NotificationStarter
from starters.routes import RouteStarter


class WorkflowStarters(DeliveryStarter, RouteStarter, NotificationStarter):
    pass
