"""Bus channel names, shared by publishers (activities) and subscribers (socket servers)."""

from __future__ import annotations


def org_deliveries(organization_id: str) -> str:
    return f"org:{organization_id}:deliveries"


def delivery(delivery_id: str) -> str:
    return f"delivery:{delivery_id}"


def vehicle(vehicle_id: str) -> str:
    return f"vehicle:{vehicle_id}"


def org_routes(organization_id: str) -> str:
    return f"org:{organization_id}:routes"
