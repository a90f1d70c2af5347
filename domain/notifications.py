"""Notification and webhook fan-out types, shared by the notify activity, the per-delivery
NotificationWorkflow and the API. Stdlib only (workflow sandbox safe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Transition types (DeliveryWorkflow) -> public event names (rules, templates, webhooks).
EVENT_NAMES: dict[str, str] = {
    "created": "created",
    "assigned": "assigned",
    "out_for_delivery": "out_for_delivery",
    "late_predicted": "eta_changed",  # the ETA moved past the promise plus the grace threshold
    "eta_changed": "eta_changed",  # the ETA moved by at least the organization's notice threshold
    "arrived": "arrived",
    "delivered": "delivered",
    "failed": "failed_attempt",
    "returned": "returned",
    "cancelled": "cancelled",
    "late": "late",
    "unassigned_too_long": "unassigned_too_long",
}
PUBLIC_EVENTS: tuple[str, ...] = tuple(EVENT_NAMES.values())
# After these the delivery has nothing more to say: its notification workflow ends once drained.
TERMINAL_TYPES = frozenset({"delivered", "returned", "cancelled"})

CHANNELS: tuple[str, ...] = ("email", "sms", "in_app")
AUDIENCES: tuple[str, ...] = ("customer", "dispatchers", "driver")

NOTIFICATION_WORKFLOW = "NotificationWorkflow"  # by name: activities must not import workflows
NOTIFICATION_SIGNAL = "notification_event"  # NotificationWorkflow's signal
WEBHOOK_DISABLED = "WebhookDisabled"  # ApplicationError type: the endpoint failed too long


def webhook_event_type(public_name: str) -> str:
    return f"delivery.{public_name}"


def notification_workflow_id(delivery_id: str) -> str:
    return f"notifications-{delivery_id}"


def event_id(workflow_id: str, sequence: int) -> str:
    """Stable across activity retries and worker restarts: receivers de-duplicate by it."""
    return f"{workflow_id}:{sequence}"


@dataclass(frozen=True)
class NotificationEvent:
    event_id: str
    workflow_id: str
    organization_id: str
    delivery_id: str
    sequence: int
    type: str  # the transition type
    occurred_at: datetime


@dataclass(frozen=True)
class NotificationConfig:
    """Retry shape of sends; comes from settings through the input (never read at replay time)."""

    message_retry_period_seconds: float = 3600.0
    webhook_retry_initial_seconds: float = 5.0
    webhook_retry_max_interval_seconds: float = 3600.0
    webhook_retry_period_seconds: float = 86400.0


@dataclass(frozen=True)
class NotificationInput:
    delivery_id: str
    organization_id: str
    config: NotificationConfig = field(default_factory=NotificationConfig)


@dataclass(frozen=True)
class Send:
    """One send to make. `lane` orders sends: one lane per channel and one per webhook subscription,
    so a slow receiver holds back only its own lane."""

    kind: str  # "message" | "webhook"
    ident: str  # notifications.id or webhook_deliveries.id
    lane: str


@dataclass(frozen=True)
class EventPlan:
    sends: list[Send] = field(default_factory=list)


@dataclass(frozen=True)
class ReplayInput:
    webhook_delivery_id: str
    config: NotificationConfig = field(default_factory=NotificationConfig)
