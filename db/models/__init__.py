"""ORM models; importing this package registers every table on Base.metadata."""

from db.models.analytics import AnalyticsReport
from db.models.audit import AuditEvent
from db.models.delivery import DeliveryRow, IdempotencyKey, NotificationOutbox, ProofFile
from db.models.depot import Depot
from db.models.driver import Driver
from db.models.history import DeliveryEventRow, PositionRow
from db.models.notification import (
    ApiKey,
    DeliveryNotificationPrefs,
    NotificationRow,
    NotificationSettingsRow,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from db.models.organization import Organization
from db.models.route import RoutePlanRow, RouteRow
from db.models.token import RefreshToken
from db.models.user import User
from db.models.vehicle import Vehicle

__all__ = [
    "AnalyticsReport",
    "AuditEvent",
    "ApiKey",
    "DeliveryNotificationPrefs",
    "NotificationRow",
    "NotificationSettingsRow",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
    "DeliveryEventRow",
    "DeliveryRow",
    "IdempotencyKey",
    "NotificationOutbox",
    "ProofFile",
    "Depot",
    "Driver",
    "Organization",
    "PositionRow",
    "RefreshToken",
    "RoutePlanRow",
    "RouteRow",
    "User",
    "Vehicle",
]
