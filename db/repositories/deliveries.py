"""Delivery rows (the projection of each DeliveryWorkflow), scoped to an organization."""

from __future__ import annotations

from db.models import DeliveryRow
from db.repositories.base import OrgScopedRepository


class DeliveryRepository(OrgScopedRepository[DeliveryRow]):
    model = DeliveryRow
