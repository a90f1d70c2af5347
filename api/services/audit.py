"""Audit events from request handlers (who did what to what, from where), and the log's pages.

Events are added to the request's session, so they commit (or roll back) with the change they
describe; events for refused actions (a failed login, a reused refresh token) are committed on
their own by the caller before it answers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.http.pagination import Page, PageParams, make_page
from api.schemas.users import AuditEventOut
from api.security.rate_limit import client_ip
from db.models import AuditEvent
from db.repositories.audit import add_event, events_page
from plumbing.log_context import current

if TYPE_CHECKING:
    from api.deps import CurrentUser


class AuditAction:
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    REFRESH_REUSED = "refresh_token_reused"
    PASSWORD_CHANGED = "password_changed"
    USER_CREATED = "user_created"
    ROLE_CHANGED = "role_changed"
    USER_DEACTIVATED = "user_deactivated"
    USER_REACTIVATED = "user_reactivated"
    DELIVERY_OVERRIDE = "delivery_override"


def audit(
    session: AsyncSession,
    request: Request | None,
    action: str,
    *,
    organization_id: uuid.UUID | None,
    actor_user_id: uuid.UUID | None = None,
    actor: str = "anonymous",
    target_type: str | None = None,
    target_id: object | None = None,
    **details: Any,
) -> AuditEvent:
    return add_event(
        session,
        organization_id=organization_id,
        action=action,
        actor_user_id=actor_user_id,
        actor=actor,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        ip=client_ip(request.scope) if request is not None else None,
        request_id=current().get("request_id"),
        details={k: v for k, v in details.items() if v is not None},
    )


def audit_by(
    session: AsyncSession, request: Request | None, user: CurrentUser, action: str, **kwargs: Any
) -> AuditEvent:
    """An event an authenticated user caused, in their organization."""
    return audit(
        session,
        request,
        action,
        organization_id=user.organization_id,
        actor_user_id=user.id,
        actor=f"{user.role.value}:{user.id}",
        **kwargs,
    )


def audit_user(
    session: AsyncSession,
    request: Request | None,
    by: CurrentUser,
    action: str,
    user_id: uuid.UUID,
    **details: Any,
) -> AuditEvent:
    """An event an authenticated user caused on a user's account (their own or another's)."""
    return audit_by(session, request, by, action, target_type="user", target_id=user_id, **details)


async def audit_page(
    session: AsyncSession,
    organization_id: uuid.UUID,
    page: PageParams,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Page[AuditEventOut]:
    """A page of the organization's log, newest first (the cursor is the last, oldest, event seen)."""
    rows = await events_page(
        session,
        organization_id,
        action=action,
        since=since,
        until=until,
        before=page.after,
        limit=page.limit + 1,
    )
    return make_page(rows, page, AuditEventOut.model_validate)
