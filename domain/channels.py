"""Bus channel names, shared by publishers (activities, the socket server's ingest and arrivals, the API's
sign-out) and subscribers (the socket servers' fan-out)."""

from __future__ import annotations


def org_deliveries(organization_id: str) -> str:
    return f"org:{organization_id}:deliveries"


def delivery(delivery_id: str) -> str:
    return f"delivery:{delivery_id}"


def vehicle(vehicle_id: str) -> str:
    return f"vehicle:{vehicle_id}"


def org_routes(organization_id: str) -> str:
    return f"org:{organization_id}:routes"


def org_positions(organization_id: str) -> str:
    """Accepted positions (batched per publish tick) and live-tracking events: ETAs, geofences."""
    return f"org:{organization_id}:positions"


def user_notifications(user_id: str) -> str:
    """In-app notifications for one user (driver or dispatcher)."""
    return f"user:{user_id}:notifications"


def org_notifications(organization_id: str) -> str:
    """Every in-app notification of an organization (dispatcher consoles)."""
    return f"org:{organization_id}:notifications"


def sessions_revoked() -> str:
    """Signed-out or revoked sessions (refresh-token families): socket servers close their connections."""
    return "auth:sessions-revoked"
