"""Customer tracking links: signed, expiring tokens naming one delivery, and the subset they reveal.

A link is a JWT from the API's key ring with its own type and audience (api/security/tokens.py), so it
can never stand in for an access token nor an access token for it. Nothing is stored per link:
it stops working when it expires or when its signing key is retired.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import CurrentUser
from api.errors import ProblemError
from api.resources import Resources
from api.schemas.tracking import DeliveryTrackingOut, PublicPositionOut, PublicTrackingOut, ShareOut
from api.security.tokens import ShareClaims, TokenError, TokenService
from api.services.audit import audit_by
from api.services.deliveries import load_row
from api.services.live_tracking import delivery_tracking
from db.repositories.deliveries import DeliveryRepository
from domain.delivery import DeliveryStatus
from plumbing.settings import Settings

PUBLIC_PATH = "/api/v1/public/tracking"
# The vehicle is shown only while it is on its way to this drop-off or there: before that it is
# serving other customers, whose addresses its position would give away.
POSITION_VISIBLE = frozenset({DeliveryStatus.OUT_FOR_DELIVERY, DeliveryStatus.ARRIVED})
SHARED = "tracking_link_shared"  # audit action


def share_ttl(settings: Settings, requested_s: int | None) -> timedelta:
    cap = settings.tracking_share_max_ttl_seconds
    if requested_s is None:
        return timedelta(seconds=min(settings.tracking_share_ttl_seconds, cap))
    if requested_s > cap:
        raise ProblemError(
            400, "ttl_too_long", f"ttl_seconds may be at most {cap} (WAYBILL_TRACKING_SHARE_MAX_TTL_SECONDS)"
        )
    return timedelta(seconds=requested_s)


def share_url(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}{PUBLIC_PATH}/{token}"


def link_not_found() -> ProblemError:
    # Forged, tampered, other-typed and unknown-delivery links answer alike: no oracle for guessing.
    return ProblemError(404, "tracking_link_not_found", "this tracking link is not valid")


def read_link(tokens: TokenService, token: str) -> ShareClaims:
    try:
        return tokens.verify_share(token)
    except TokenError as exc:
        if exc.code == "token_expired":
            raise ProblemError(
                410, "tracking_link_expired", "this tracking link has expired; ask the sender for a new one"
            ) from None
        raise link_not_found() from None


def public_view(full: DeliveryTrackingOut, claims: ShareClaims) -> PublicTrackingOut:
    """The customer-safe subset of the staff view: no ids, driver or route details."""
    position = full.position if full.status in POSITION_VISIBLE else None
    return PublicTrackingOut(
        status=full.status,
        eta=full.eta,
        window_start=full.window_start,
        window_end=full.window_end,
        position=PublicPositionOut(
            recorded_at=position.recorded_at, location=position.location, heading_deg=position.heading_deg
        )
        if position is not None
        else None,
        updated_at=full.updated_at,
        expires_at=claims.expires_at,
    )


async def share(
    session: AsyncSession,
    resources: Resources,
    request: Request,
    user: CurrentUser,
    delivery_id: uuid.UUID,
    ttl_seconds: int | None,
) -> ShareOut:
    """A link to the delivery for its customer, recorded in the audit log."""
    ttl = share_ttl(resources.settings, ttl_seconds)
    row = await load_row(session, user.organization_id, delivery_id)
    issued = resources.tokens.issue_share(delivery_id=row.id, organization_id=row.organization_id, ttl=ttl)
    # A link shows a vehicle's position to whoever holds it: record who handed one out.
    audit_by(
        session,
        request,
        user,
        SHARED,
        target_type="delivery",
        target_id=row.id,
        link_id=str(issued.jti),
        expires_at=issued.expires_at.isoformat(),
    )
    await session.commit()
    return ShareOut(
        token=issued.token, url=share_url(resources.settings, issued.token), expires_at=issued.expires_at
    )


async def public_tracking(session: AsyncSession, resources: Resources, token: str) -> PublicTrackingOut:
    claims = read_link(resources.tokens, token)
    row = await DeliveryRepository(session, claims.organization_id).owned(claims.delivery_id)
    if row is None:
        raise link_not_found()
    full = await delivery_tracking(session, resources.cache_bus, row, datetime.now(UTC))
    return public_view(full, claims)
