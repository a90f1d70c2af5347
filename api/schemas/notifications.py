"""In-app notifications, an organization's notification rules, a delivery's preferences."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.schemas.common import Input, Output

Channel = Literal["email", "sms", "in_app"]
Locale = Literal["en", "de"]


class NotificationOut(Output):
    id: uuid.UUID
    event: str
    channel: str
    delivery_id: uuid.UUID | None
    subject: str
    body: str
    status: str
    created_at: datetime
    read_at: datetime | None


class NotificationSettingsIn(Input):
    rules: dict[str, dict[str, list[Channel]]] = Field(
        default_factory=dict,
        description="per event, the channels of each audience (customer, dispatchers, driver); "
        "an event given here replaces its default",
    )
    locale: Locale = "en"


class NotificationSettingsOut(BaseModel):
    rules: dict[str, dict[str, list[str]]] = Field(description="the rules in force (defaults included)")
    overrides: dict[str, dict[str, list[str]]]
    locale: str


class DeliveryPrefsIn(Input):
    opted_out: bool = Field(default=False, description="the customer wants no messages about this delivery")
    channels: Annotated[list[Channel], Field(max_length=3)] | None = Field(
        default=None, description="only these of the organization's customer channels (null: all of them)"
    )
    locale: Locale | None = None


class DeliveryPrefsOut(BaseModel):
    delivery_id: uuid.UUID
    opted_out: bool
    channels: list[str] | None
    locale: str | None
