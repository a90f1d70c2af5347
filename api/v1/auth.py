"""Login, refresh-token rotation with reuse detection, logout, and the caller's own profile."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from api.deps import ResourcesDep, SessionDep, UserDep
from api.errors import ProblemError
from api.schemas.auth import LoginIn, MeOut, PasswordChangeIn, RefreshIn, TokenPair
from api.security.passwords import hash_password, verify_password
from api.security.rate_limit import client_ip, enforce
from api.security.tokens import TokenError, TokenService, TokenType
from api.services.audit import AuditAction, audit, audit_by
from api.v1 import PREFIX
from db.models import Organization, RefreshToken, User
from db.repositories.accounts import RefreshTokenRepository, find_login
from db.repositories.fleet import DriverRepository
from domain.ids import uuid7
from domain.roles import Role

router = APIRouter(prefix=f"{PREFIX}/auth", tags=["auth"])
log = logging.getLogger(__name__)


def _refresh_failed(code: str, detail: str) -> ProblemError:
    return ProblemError(401, code, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def _issue_pair(
    tokens: TokenService, repo: RefreshTokenRepository, user: User, family: uuid.UUID
) -> TokenPair:
    role = Role(user.role)
    # The access token names its session (the family), so that revoking the family ends it too.
    access = tokens.issue(
        user_id=user.id,
        organization_id=user.organization_id,
        role=role,
        token_type=TokenType.ACCESS,
        family_id=family,
    )
    refresh = tokens.issue(
        user_id=user.id,
        organization_id=user.organization_id,
        role=role,
        token_type=TokenType.REFRESH,
        family_id=family,
    )
    await repo.add(
        RefreshToken(id=refresh.jti, user_id=user.id, family_id=family, expires_at=refresh.expires_at)
    )
    return TokenPair(
        access_token=access.token,
        refresh_token=refresh.token,
        expires_in=int(tokens.ttl(TokenType.ACCESS).total_seconds()),
        refresh_expires_at=refresh.expires_at,
    )


@router.post("/login", response_model=TokenPair)
async def login(body: LoginIn, request: Request, resources: ResourcesDep, session: SessionDep) -> TokenPair:
    # Per address and account, so one attacker cannot lock every account out from one address.
    s, ip = resources.settings, client_ip(request.scope)
    await enforce(
        resources.cache_bus,
        f"login:{ip}:{body.email}",
        s.rate_limit_login,
        s.rate_limit_window_seconds,
        "for this login",
    )
    user = await find_login(session, body.email)
    ok = verify_password(user.password_hash if user else None, body.password)
    if user is None or not ok or not user.active:
        reason = "unknown_email" if user is None else ("bad_password" if not ok else "inactive")
        log.info("login failed", extra={"reason": reason})
        audit(
            session,
            request,
            AuditAction.LOGIN_FAILED,
            organization_id=user.organization_id if user else None,
            target_type="user",
            target_id=user.id if user else None,
            reason=reason,
        )
        await session.commit()
        raise ProblemError(401, "invalid_credentials", "the e-mail or password is wrong")
    pair = await _issue_pair(resources.tokens, RefreshTokenRepository(session), user, uuid7())
    audit(
        session,
        request,
        AuditAction.LOGIN,
        organization_id=user.organization_id,
        actor_user_id=user.id,
        actor=f"{user.role}:{user.id}",
        target_type="user",
        target_id=user.id,
    )
    await session.commit()
    log.info("login", extra={"user_id": str(user.id), "organization_id": str(user.organization_id)})
    return pair


@router.post("/refresh", response_model=TokenPair)
async def refresh(
    body: RefreshIn, request: Request, resources: ResourcesDep, session: SessionDep
) -> TokenPair:
    s = resources.settings
    await enforce(
        resources.cache_bus,
        f"refresh:{client_ip(request.scope)}",
        s.rate_limit_refresh,
        s.rate_limit_window_seconds,
        "refreshing tokens from this address",
    )
    try:
        claims = resources.tokens.verify(body.refresh_token, TokenType.REFRESH)
    except TokenError as exc:
        raise _refresh_failed(exc.code, exc.detail) from None
    repo = RefreshTokenRepository(session)
    now = datetime.now(UTC)
    if not await repo.mark_used(claims.jti, now):
        stored = await repo.get(claims.jti)
        if stored is not None and stored.used_at is not None and stored.revoked_at is None:
            # A rotated token came back: someone holds a copy. Revoke the whole family (RFC 9700 4.14.2).
            await repo.revoke_family(stored.family_id, now)
            owner = await session.get(User, stored.user_id)
            audit(
                session,
                request,
                AuditAction.REFRESH_REUSED,
                organization_id=owner.organization_id if owner else None,
                target_type="user",
                target_id=stored.user_id,
                family_id=str(stored.family_id),
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
            raise _refresh_failed(
                "refresh_token_reused", "this refresh token was already used; sign in again"
            )
        raise _refresh_failed("token_revoked", "this refresh token is no longer valid; sign in again")
    user = await session.get(User, claims.user_id)
    if user is None or not user.active or user.organization_id != claims.organization_id:
        await session.rollback()
        raise _refresh_failed("invalid_token", "the token's user is no longer active")
    stored = await repo.get(claims.jti)
    assert stored is not None  # mark_used just matched it
    pair = await _issue_pair(resources.tokens, repo, user, stored.family_id)
    await session.commit()
    return pair


@router.post("/logout", status_code=204)
async def logout(body: RefreshIn, request: Request, resources: ResourcesDep, session: SessionDep) -> Response:
    """Revoke the refresh token's whole family (this device's session) and deny its access tokens
    until they expire (api/security/denylist.py). Idempotent."""
    try:
        claims = resources.tokens.verify(body.refresh_token, TokenType.REFRESH)
    except TokenError as exc:
        raise _refresh_failed(exc.code, exc.detail) from None
    repo = RefreshTokenRepository(session)
    stored = await repo.get(claims.jti)
    if stored is not None:
        await repo.revoke_family(stored.family_id, datetime.now(UTC))
        audit(
            session,
            request,
            AuditAction.LOGOUT,
            organization_id=claims.organization_id,
            actor_user_id=claims.user_id,
            actor=f"{claims.role.value}:{claims.user_id}",
            target_type="user",
            target_id=claims.user_id,
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
    return Response(status_code=204)


@router.post("/password", status_code=204)
async def change_password(
    body: PasswordChangeIn, request: Request, user: UserDep, resources: ResourcesDep, session: SessionDep
) -> Response:
    """Change your own password. Every token issued before now stops working: access tokens at
    once (they predate the change), refresh tokens because their families are revoked."""
    row = await session.get(User, user.id)
    assert row is not None  # authenticated a moment ago
    if not verify_password(row.password_hash, body.current_password):
        raise ProblemError(403, "invalid_credentials", "the current password is wrong")
    now = datetime.now(UTC)
    row.password_hash = hash_password(body.new_password)
    row.password_changed_at = now  # tokens carry iat to the millisecond: those issued before are void
    await RefreshTokenRepository(session).revoke_user(user.id, now)
    audit_by(session, request, user, AuditAction.PASSWORD_CHANGED, target_type="user", target_id=user.id)
    await session.commit()
    resources.users.drop(user.id)
    return Response(status_code=204)


@router.get("/me", response_model=MeOut)
async def me(user: UserDep, session: SessionDep) -> MeOut:
    org = await session.get(Organization, user.organization_id)
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
