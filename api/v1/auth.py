"""Login, refresh-token rotation with reuse detection, logout, and the caller's own profile."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import ResourcesDep, SessionDep, UserDep
from api.schemas.auth import LoginIn, MeOut, PasswordChangeIn, RefreshIn, TokenPair
from api.security.rate_limit import client_ip, enforce
from api.services import auth as service
from api.v1 import PREFIX

router = APIRouter(prefix=f"{PREFIX}/auth", tags=["auth"])


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
    return await service.login(session, request, resources.tokens, body.email, body.password)


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
    return await service.refresh(session, request, resources, body.refresh_token)


@router.post("/logout", status_code=204)
async def logout(body: RefreshIn, request: Request, resources: ResourcesDep, session: SessionDep) -> Response:
    """Revoke the refresh token's whole family (this device's session) and deny its access tokens
    until they expire (api/security/denylist.py). Idempotent."""
    await service.logout(session, request, resources, body.refresh_token)
    return Response(status_code=204)


@router.post("/password", status_code=204)
async def change_password(
    body: PasswordChangeIn, request: Request, user: UserDep, resources: ResourcesDep, session: SessionDep
) -> Response:
    """Change your own password. Every token issued before now stops working: access tokens at
    once (they predate the change), refresh tokens because their families are revoked."""
    await service.change_password(session, request, resources, user, body.current_password, body.new_password)
    return Response(status_code=204)


@router.get("/me", response_model=MeOut)
async def me(user: UserDep, session: SessionDep) -> MeOut:
    return await service.me(session, user)
