"""Inbound integrations: API keys, shop/ERP orders, CSV import reports."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.common import (
    ContactEmail,
    ContactName,
    ContactPhone,
    Input,
    Name,
    Output,
    Place,
)
from api.schemas.deliveries import DeliveryOut, WindowIn

Text = Annotated[str, StringConstraints(max_length=1000)]


class ApiKeyCreate(Input):
    name: Name


class ApiKeyOut(Output):
    id: uuid.UUID
    name: str
    prefix: str
    active: bool
    created_at: datetime
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="shown once: send it as X-Api-Key")


class OrderCustomer(Input):
    name: ContactName = ""
    email: ContactEmail = ""
    phone: ContactPhone = ""


class OrderAddress(Place):
    pass


class OrderWindow(WindowIn):
    pass


class OrderItem(Input):
    sku: Annotated[str, StringConstraints(max_length=100)] = ""
    quantity: int = Field(default=1, ge=1, le=100_000)
    weight_kg: float = Field(default=0, ge=0, le=100_000, allow_inf_nan=False)


class OrderIn(Input):
    """An order from a shop or ERP. `external_id` makes it idempotent: sending it again answers
    with the delivery created the first time."""

    external_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    customer: OrderCustomer = Field(default_factory=OrderCustomer)
    shipping: OrderAddress
    delivery_window: OrderWindow | None = None
    items: Annotated[list[OrderItem], Field(max_length=1000)] = Field(default_factory=list)
    priority: int = Field(default=0, ge=0, le=100)
    notes: Text = ""


def order_to_delivery(order: OrderIn) -> dict[str, Any]:
    """The DeliveryCreate body for an order (validated by the caller as any API request is)."""
    units = sum(i.quantity for i in order.items) or 1
    return {
        "external_ref": order.external_id,
        "priority": order.priority,
        "size": {"units": units, "weight_kg": round(sum(i.weight_kg * i.quantity for i in order.items), 3)},
        "dropoff": {
            "address": order.shipping.address,
            "location": order.shipping.location.model_dump(),
            "windows": [order.delivery_window.model_dump(mode="json")] if order.delivery_window else [],
            "contact": order.customer.model_dump(),
            "notes": order.notes,
        },
    }


class OrderResult(BaseModel):
    created: bool
    delivery: DeliveryOut


class ImportRow(BaseModel):
    row: int = Field(description="line number in the file (the header is line 1)")
    outcome: str = Field(description="created, existing or rejected")
    external_ref: str | None = None
    delivery_id: uuid.UUID | None = None
    code: str | None = None
    reason: str | None = None


class ImportReport(BaseModel):
    created: int
    existing: int
    rejected: int
    rows: list[ImportRow]
