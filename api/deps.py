"""Request dependencies: the database session, the caller, role checks, the Temporal client.

FastAPI resolves each dependency anew on every request, at a cost: the busiest endpoint (creating a
delivery) takes only its role check and opens its session and Temporal client itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.errors import ProblemError, temporal_unavailable
from api.resources import Resources
from api.security.denylist import SESSION_REVOKED
from api.security.rate_limit import enforce
from api.security.token_user import load_user, refusal
from api.security.tokens import TokenError, TokenType
from domain.roles import ALL_ROLES, FLEET_WRITERS, Role
from plumbing.log_context import bind

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /api/v1/auth/login")


async def get_resources(request: Request) -> Resources:
    # async: FastAPI runs a plain `def` dependency in a worker thread, a thread hop on every request.
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    # Write endpoints commit explicitly; anything left uncommitted is rolled back on close.
    async with resources.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_temporal(resources: ResourcesDep) -> Client:
    return await temporal_client(resources)


async def temporal_client(resources: Resources) -> Client:
    """The Temporal client, or 503 while Temporal cannot be reached."""
    try:
        return await resources.temporal.get()
    except Exception:
        raise temporal_unavailable() from None


TemporalDep = Annotated[Client, Depends(get_temporal)]


@dataclass(frozen=True, slots=True)
class Backends:
    """What an endpoint that reads rows and then talks to a workflow needs: the request's session,
    the Temporal client and the resources (one dependency instead of three in its signature)."""

    session: AsyncSession
    client: Client
    resources: Resources


async def get_backends(session: SessionDep, client: TemporalDep, resources: ResourcesDep) -> Backends:
    return Backends(session, client, resources)


BackendsDep = Annotated[Backends, Depends(get_backends)]


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: uuid.UUID
    organization_id: uuid.UUID
    role: Role
    email: str
    name: str


def _unauthenticated(code: str, detail: str) -> ProblemError:
    return ProblemError(401, code, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def authenticate(request: Request, credentials: Credentials) -> CurrentUser:
    """The caller of a request with these bearer credentials, or 401/429. Once per request: an
    endpoint takes UserDep or one role dependency, never both (the rate limit counts each call).

    Not a dependency tree of its own (resources, session): FastAPI resolves every dependency anew on
    each request, at a cost, and a session is needed only when the user is not cached."""
    resources: Resources = request.app.state.resources
    if credentials is None:
        raise ProblemError(
            401,
            "unauthenticated",
            "send an access token as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        claims = resources.tokens.verify(credentials.credentials, TokenType.ACCESS)
    except TokenError as exc:
        raise _unauthenticated(exc.code, exc.detail) from None
    # Signed out, or its refresh family revoked after reuse (answered from this process when it can).
    if claims.family_id is not None and await resources.denylist.denied(claims.family_id):
        raise _unauthenticated("token_revoked", SESSION_REVOKED)
    user = await load_user(resources.users, resources.sessionmaker, claims.user_id)
    # A deactivated user, or one whose role or organization changed, loses access (within the cache TTL).
    if (refused := refusal(user, claims)) is not None:
        raise _unauthenticated(refused.code, refused.detail)
    assert user is not None  # refusal() refuses a missing user
    s = resources.settings
    await enforce(
        resources.cache_bus,
        f"user:{user.id}",
        s.rate_limit_user,
        s.rate_limit_window_seconds,
        "for this user",
    )
    bind(organization_id=str(user.organization_id), user_id=str(user.id))
    return CurrentUser(user.id, user.organization_id, Role(user.role), user.email, user.name)


UserDep = Annotated[CurrentUser, Depends(authenticate)]


def require_roles(*roles: Role) -> Callable[..., Coroutine[Any, Any, CurrentUser]]:
    """Dependency factory: the caller must hold one of `roles` (function-level authorization)."""
    allowed = frozenset(roles)

    async def _check(request: Request, credentials: Credentials) -> CurrentUser:
        user = await authenticate(request, credentials)  # directly: one dependency fewer per request
        if user.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise ProblemError(403, "forbidden", f"this action needs one of the roles: {names}")
        return user

    return _check


# Who may call an endpoint, by role; one dependency each, shared by the routers.
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]
Staff = Annotated[CurrentUser, Depends(require_roles(Role.ADMIN, Role.DISPATCHER, Role.VIEWER))]
Admin = Annotated[CurrentUser, Depends(require_roles(Role.ADMIN))]
DriverOnly = Annotated[CurrentUser, Depends(require_roles(Role.DRIVER))]
DriverOrStaff = Annotated[CurrentUser, Depends(require_roles(Role.DRIVER, *FLEET_WRITERS))]
