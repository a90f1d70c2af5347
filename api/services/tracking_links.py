"""Customer tracking links: signed, expiring tokens naming one delivery, and the subset they reveal.

A link is a JWT from the API's key ring with its own type and audience (api/security/tokens.py), so it
can never stand in for an access token nor an access token for it. Nothing is stored per link:
it stops working when it expires or when its signing key is retired.
"""

from __future__ import annotations

from datetime import timedelta

from api.errors import ProblemError
from api.schemas.tracking import DeliveryTrackingOut, PublicPositionOut, PublicTrackingOut
from api.security.tokens import ShareClaims, TokenError, TokenService
from domain.delivery import DeliveryStatus
from plumbing.settings import Settings

PUBLIC_PATH = "/api/v1/public/tracking"
# The vehicle is shown only while it is on its way to this drop-off or there: before that it is
# serving other customers, whose addresses its position would give away.
POSITION_VISIBLE = frozenset({DeliveryStatus.OUT_FOR_DELIVERY, DeliveryStatus.ARRIVED})


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
