"""JWT access and refresh tokens (RFC 8725 practices).

The algorithm is pinned server-side, every registered claim is required, the token type is a claim
so an access token never passes as a refresh token (nor the reverse), and keys are chosen by `kid`
from a key ring, so a new key can be added and an old one retired by configuration alone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt

from domain.ids import uuid7
from domain.roles import Role
from plumbing.settings import Settings


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"


class TokenError(Exception):
    """A token that cannot be accepted; `code` is the machine code clients see."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    role: Role
    type: TokenType
    jti: uuid.UUID
    issued_at: datetime
    expires_at: datetime
    family_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: uuid.UUID
    expires_at: datetime


_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti", "typ", "org", "role"]
LEEWAY_SECONDS = 5
# Access tokens verified before, by their exact text (see TokenService.verify): at most this many.
VERIFIED_CACHE_MAX = 10_000
# Customer tracking links: a type and an audience of their own, so a share token is refused wherever an
# access token is expected (and the reverse) even before the type claim is looked at.
SHARE_TYPE = "tracking_share"
_SHARE_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti", "typ", "org"]


@dataclass(frozen=True, slots=True)
class ShareClaims:
    delivery_id: uuid.UUID
    organization_id: uuid.UUID
    jti: uuid.UUID
    expires_at: datetime


class TokenService:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._keys = dict(settings.jwt_keys)
        self._kid = settings.active_kid
        self._alg = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._ttl = {
            TokenType.ACCESS: timedelta(seconds=settings.access_token_ttl_seconds),
            TokenType.REFRESH: timedelta(seconds=settings.refresh_token_ttl_seconds),
        }
        self._share_audience = f"{settings.jwt_audience}:tracking-share"
        self._clock = clock
        # token text -> (expiry as a POSIX timestamp, its claims); insertion order is age order.
        self._verified: dict[str, tuple[float, TokenClaims]] = {}

    def ttl(self, token_type: TokenType) -> timedelta:
        return self._ttl[token_type]

    def issue(
        self,
        *,
        user_id: uuid.UUID,
        organization_id: uuid.UUID,
        role: Role,
        token_type: TokenType,
        family_id: uuid.UUID | None = None,
        now: datetime | None = None,
    ) -> IssuedToken:
        issued = now or datetime.now(UTC)
        expires = issued + self._ttl[token_type]
        jti = uuid7()
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "org": str(organization_id),
            "role": role.value,
            "typ": token_type.value,
            "jti": str(jti),
            # Millisecond precision (RFC 7519 allows a fractional NumericDate): a password change
            # revokes exactly the tokens issued before it, even within the same second.
            "iat": round(issued.timestamp(), 3),
            "exp": int(expires.timestamp()),  # whole seconds: lifetimes are minutes
        }
        if family_id is not None:
            claims["fam"] = str(family_id)
        token = jwt.encode(claims, self._keys[self._kid], algorithm=self._alg, headers={"kid": self._kid})
        return IssuedToken(token=token, jti=jti, expires_at=expires)

    def verify(self, token: str, expected: TokenType) -> TokenClaims:
        """The claims of a token of type `expected`; TokenError if it cannot be accepted.

        Every request carries its access token, and checking the signature and claims again costs
        more than the rest of authentication. So an access token that passed is remembered by its
        exact text (any other text, a single changed character included, is checked in full)
        until it expires: the signature and claims of the same text cannot change, the key ring is
        fixed for the life of this service, and only the clock can make it invalid, which is
        checked on every use with the same leeway. Revocation (a password change, a deactivated
        user) is decided after this, from the user, and is unaffected. Refresh tokens are used
        once and always checked in full.
        """
        if expected is TokenType.ACCESS:
            hit = self._verified.get(token)
            if hit is not None:
                if hit[0] <= self._clock() - LEEWAY_SECONDS:
                    self._verified.pop(token, None)
                    raise TokenError("token_expired", "the token has expired")
                return hit[1]
        claims = self._verify(token, expected)
        if expected is TokenType.ACCESS:
            if len(self._verified) >= VERIFIED_CACHE_MAX:
                self._forget_expired_or_oldest()
            self._verified[token] = (claims.expires_at.timestamp(), claims)
        return claims

    def _forget_expired_or_oldest(self) -> None:
        cutoff = self._clock() - LEEWAY_SECONDS
        for token in [t for t, (exp, _) in self._verified.items() if exp <= cutoff]:
            del self._verified[token]
        while len(self._verified) >= VERIFIED_CACHE_MAX:
            del self._verified[next(iter(self._verified))]  # the oldest insertion goes first

    def _decode(
        self, token: str, audience: str, required: list[str], typ: str, wanted: str
    ) -> dict[str, Any]:
        """The verified claims: signature by a known `kid`, pinned algorithm, audience, issuer,
        required claims, expiry (with leeway) and `typ`; TokenError otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenError("invalid_token", "the token is malformed") from None
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("invalid_token", "the token was signed with an unknown or retired key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[self._alg],
                audience=audience,
                issuer=self._issuer,
                options={"require": required},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "the token has expired") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise TokenError("invalid_token", f"the token is not valid: {exc}") from None
        if claims.get("typ") != typ:
            raise TokenError("wrong_token_type", f"{wanted} is required here")
        return claims

    def _verify(self, token: str, expected: TokenType) -> TokenClaims:
        claims = self._decode(token, self._audience, _REQUIRED, expected.value, f"a {expected.value} token")
        try:
            return TokenClaims(
                user_id=uuid.UUID(claims["sub"]),
                organization_id=uuid.UUID(claims["org"]),
                role=Role(claims["role"]),
                type=expected,
                jti=uuid.UUID(claims["jti"]),
                issued_at=datetime.fromtimestamp(claims["iat"], UTC),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
                family_id=uuid.UUID(claims["fam"]) if "fam" in claims else None,
            )
        except (ValueError, TypeError, KeyError, OverflowError):
            raise TokenError("invalid_token", "the token's claims are malformed") from None

    # Customer tracking links ------------------------------------------------------------------

    def issue_share(
        self,
        *,
        delivery_id: uuid.UUID,
        organization_id: uuid.UUID,
        ttl: timedelta,
        now: datetime | None = None,
    ) -> IssuedToken:
        """A signed, expiring link token naming one delivery; it carries no user and no role."""
        issued = now or datetime.now(UTC)
        expires = issued + ttl
        jti = uuid7()
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._share_audience,
            "sub": str(delivery_id),
            "org": str(organization_id),
            "typ": SHARE_TYPE,
            "jti": str(jti),
            "iat": int(issued.timestamp()),
            "exp": int(expires.timestamp()),
        }
        token = jwt.encode(claims, self._keys[self._kid], algorithm=self._alg, headers={"kid": self._kid})
        return IssuedToken(token=token, jti=jti, expires_at=datetime.fromtimestamp(claims["exp"], UTC))

    def verify_share(self, token: str) -> ShareClaims:
        """The link's claims; TokenError(`token_expired` | `invalid_token` | `wrong_token_type`)."""
        claims = self._decode(
            token, self._share_audience, _SHARE_REQUIRED, SHARE_TYPE, "a tracking share token"
        )
        try:
            return ShareClaims(
                delivery_id=uuid.UUID(claims["sub"]),
                organization_id=uuid.UUID(claims["org"]),
                jti=uuid.UUID(claims["jti"]),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        except (ValueError, TypeError, KeyError, OverflowError):
            raise TokenError("invalid_token", "the token's claims are malformed") from None
