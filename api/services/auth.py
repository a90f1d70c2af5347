"""Sessions: login, refresh-token rotation with reuse detection, logout, password change, profile."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import CurrentUser
from api.errors import ProblemError
from api.resources import Resources
from api.schemas.auth import MeOut, TokenPair
from api.security.passwords import hash_password, verify_password
from api.security.tokens import TokenClaims, TokenError, TokenService, TokenType
from api.services.audit import AuditAction, audit, audit_user
from db.models import User
from db.repositories.accounts import OrganizationRepository, RefreshTokenRepository, find_login, user_by_id
from db.repositories.fleet import DriverRepository
from domain.ids import uuid7
from domain.roles import Role

log = logging.getLogger(__name__)


def refresh_failed(code: str, detail: str) -> ProblemError:
    return ProblemError(401, code, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def refresh_claims(tokens: TokenService, token: str) -> TokenClaims:
    try:
        return tokens.verify(token, TokenType.REFRESH)
    except TokenError as exc:
        raise refresh_failed(exc.code, exc.detail) from None


async def _issue_pair(
    tokens: TokenService, repo: RefreshTokenRepository, user: User, family: uuid.UUID
) -> TokenPair:
    # The access token names its session (the family), so that revoking the family ends it too.
    issue = partial(
        tokens.issue,
        user_id=user.id,
        organization_id=user.organization_id,
        role=Role(user.role),
        family_id=family,
    )
    access = issue(token_type=TokenType.ACCESS)
    refresh = issue(token_type=TokenType.REFRESH)
    await repo.add(refresh.jti, user.id, family, refresh.expires_at)
    return TokenPair(
        access_token=access.token,
        refresh_token=refresh.token,
        expires_in=int(tokens.ttl(TokenType.ACCESS).total_seconds()),
        refresh_expires_at=refresh.expires_at,
    )


def _audit_own(
    session: AsyncSession, request: Request, action: str, org: uuid.UUID, user_id: uuid.UUID, role: str
) -> None:
    """An event a user caused on their own account before any access token names them."""
    audit(
        session,
        request,
        action,
        organization_id=org,
        actor_user_id=user_id,
        actor=f"{role}:{user_id}",
        target_type="user",
        target_id=user_id,
    )


def _audit_refused(
    session: AsyncSession,
    request: Request,
    action: str,
    owner: User | None,
    user_id: uuid.UUID | None,
    **details: Any,
) -> None:
    """A refused attempt on a user's account, in the account owner's organization if there is one."""
    audit(
        session,
        request,
        action,
        organization_id=owner.organization_id if owner else None,
        target_type="user",
        target_id=user_id,
        **details,
    )


async def login(
    session: AsyncSession, request: Request, tokens: TokenService, email: str, password: str
) -> TokenPair:
    user = await find_login(session, email)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        reason = "unknown_email" if user is None else ("bad_password" if not ok else "inactive")
        log.info("login failed", extra={"reason": reason})
        _audit_refused(
            session, request, AuditAction.LOGIN_FAILED, user, user.id if user else None, reason=reason
        )
        await session.commit()
        raise ProblemError(401, "invalid_credentials", "the e-mail or password is wrong")
    pair = await _issue_pair(tokens, RefreshTokenRepository(session), user, uuid7())
    _audit_own(session, request, AuditAction.LOGIN, user.organization_id, user.id, user.role)
    await session.commit()
    log.info("login", extra={"user_id": str(user.id), "organization_id": str(user.organization_id)})
    return pair


async def refresh(session: AsyncSession, request: Request, resources: Resources, token: str) -> TokenPair:
    """A new pair for a refresh token used once; a second use revokes its whole family."""
    claims = refresh_claims(resources.tokens, token)
    repo = RefreshTokenRepository(session)
    now = datetime.now(UTC)
    if not await repo.mark_used(claims.jti, now):
        raise await _refused_refresh(session, request, resources, claims.jti, now)
    user = await user_by_id(session, claims.user_id)
    if user is None or not user.active or user.organization_id != claims.organization_id:
        await session.rollback()
        raise refresh_failed("invalid_token", "the token's user is no longer active")
    stored = await repo.get(claims.jti)
    assert stored is not None  # mark_used just matched it
    pair = await _issue_pair(resources.tokens, repo, user, stored.family_id)
    await session.commit()
    return pair


async def _refused_refresh(
    session: AsyncSession, request: Request, resources: Resources, jti: uuid.UUID, now: datetime
) -> ProblemError:
    """Why a refresh token that could not be claimed is refused; a rotated one that came back means
    someone holds a copy: its whole family is revoked (RFC 9700 4.14.2)."""
    repo = RefreshTokenRepository(session)
    stored = await repo.get(jti)
    if stored is None or stored.used_at is None or stored.revoked_at is not None:
        return refresh_failed("token_revoked", "this refresh token is no longer valid; sign in again")
    await repo.revoke_family(stored.family_id, now)
    owner = await user_by_id(session, stored.user_id)
    _audit_refused(
        session, request, AuditAction.REFRESH_REUSED, owner, stored.user_id, family_id=str(stored.family_id)
    )
    await session.commit()
    log.warning(
        "refresh token reuse detected; family revoked",
        extra={"user_id": str(stored.user_id), "family_id": str(stored.family_id)},
    )
    try:
        await resources.denylist.deny(stored.family_id)
    except Exception as exc:  # the refresh tokens are revoked; its access tokens run out
        log.warning("could not deny the reused family's access tokens", extra={"error": str(exc)})
    return refresh_failed("refresh_token_reused", "this refresh token was already used; sign in again")


async def logout(session: AsyncSession, request: Request, resources: Resources, token: str) -> None:
    """Revoke the refresh token's whole family (this device's session) and deny its access tokens
    until they expire (api/security/denylist.py). Idempotent."""
    claims = refresh_claims(resources.tokens, token)
    repo = RefreshTokenRepository(session)
    stored = await repo.get(claims.jti)
    if stored is None:
        return
    await repo.revoke_family(stored.family_id, datetime.now(UTC))
    _audit_own(
        session, request, AuditAction.LOGOUT, claims.organization_id, claims.user_id, claims.role.value
    )
    await session.commit()
    try:
        await resources.denylist.deny(stored.family_id)
    except Exception as exc:
        # Refresh tokens are revoked, but the access tokens would live on: say so; a retry denies.
        log.warning("could not deny the session's access tokens", extra={"error": str(exc)})
        raise ProblemError(
            503,
            "logout_incomplete",
            "signed out, but the session's access tokens could not be revoked yet; retry",
            headers={"Retry-After": "1"},
        ) from None


async def change_password(
    session: AsyncSession, request: Request, resources: Resources, user: CurrentUser, current: str, new: str
) -> None:
    """Every token issued before now stops working: access tokens at once (they predate the change),
    refresh tokens because their families are revoked."""
    row = await user_by_id(session, user.id)
    assert row is not None  # authenticated a moment ago
    if not verify_password(row.password_hash, current):
        raise ProblemError(403, "invalid_credentials", "the current password is wrong")
    now = datetime.now(UTC)
    row.password_hash = hash_password(new)
    row.password_changed_at = now  # tokens carry iat to the millisecond: those issued before are void
    await RefreshTokenRepository(session).revoke_user(user.id, now)
    audit_user(session, request, user, AuditAction.PASSWORD_CHANGED, user.id)
    await session.commit()
    resources.users.drop(user.id)


async def me(session: AsyncSession, user: CurrentUser) -> MeOut:
    org = await OrganizationRepository(session).get(user.organization_id)
    assert org is not None  # the user row references it
    driver = await DriverRepository(session, user.organization_id).by_user(user.id)
    return MeOut(
        id=user.id,
        organization_id=user.organization_id,
        organization_name=org.name,
        email=user.email,
        name=user.name,
        role=user.role,
        driver_id=driver.id if driver else None,
    )
