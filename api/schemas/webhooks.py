"""Webhook subscriptions and their recorded deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AnyHttpUrl, Field, StringConstraints, UrlConstraints, field_validator

from api.schemas.common import Input, Output
from domain.notifications import PUBLIC_EVENTS

Secret = Annotated[str, StringConstraints(min_length=16, max_length=200)]
# The column holds 2,000 characters. Where the URL may point is the egress policy's call (it needs
# the operator's allowlist): api/services/webhooks.py answers 422 webhook_url_forbidden.
HookUrl = Annotated[
    AnyHttpUrl,
    UrlConstraints(max_length=2000),
    Field(description="a public http(s) receiver; loopback, private and link-local addresses are refused"),
]


def _check_events(events: list[str] | None) -> list[str] | None:
    if events is None:
        return None
    unknown = [e for e in events if e != "*" and e not in PUBLIC_EVENTS]
    if unknown:
        raise ValueError(f"unknown event {unknown[0]!r}; known: *, {', '.join(PUBLIC_EVENTS)}")
    return sorted(set(events))


class WebhookCreate(Input):
    url: HookUrl
    events: Annotated[list[str], Field(min_length=1, max_length=20)] = Field(
        description="event names (e.g. out_for_delivery) or * for all"
    )
    secret: Secret | None = Field(default=None, description="signing secret; generated when absent")
    active: bool = True

    _events = field_validator("events")(_check_events)


class WebhookUpdate(Input):
    url: HookUrl | None = None
    events: Annotated[list[str], Field(min_length=1, max_length=20)] | None = None
    secret: Secret | None = None
    active: bool | None = Field(default=None, description="true re-enables a disabled endpoint")

    _events = field_validator("events")(_check_events)


class WebhookOut(Output):
    id: uuid.UUID
    url: str
    events: list[str]
    active: bool
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="shown once: keep it to verify signatures")


class AttemptOut(Output):
    attempted_at: datetime
    response_code: int | None
    latency_ms: float
    error: str | None
    succeeded: bool


class WebhookDeliveryOut(Output):
    id: uuid.UUID
    event_id: str
    event_type: str
    delivery_id: uuid.UUID | None
    status: str
    attempts: int
    last_response_code: int | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]
    attempt_log: list[AttemptOut] | None = None
