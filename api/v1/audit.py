"""The audit log, read by the organization's admins (newest first)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from api.deps import CurrentUser, SessionDep, require_roles
from api.http.pagination import Page, PageDep, make_page
from api.schemas.users import AuditEventOut
from api.v1 import PREFIX
from db.models import AuditEvent
from domain.roles import Role

router = APIRouter(prefix=f"{PREFIX}/audit", tags=["audit"])
Admin = Annotated[CurrentUser, Depends(require_roles(Role.ADMIN))]
Action = Annotated[str | None, Query(max_length=64, description="Only this action, e.g. login_failed")]


@router.get("", response_model=Page[AuditEventOut])
async def list_audit_events(
    user: Admin,
    session: SessionDep,
    page: PageDep,
    action: Action = None,
    since: Annotated[datetime | None, Query(description="From this time (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="Before this time")] = None,
) -> Page[AuditEventOut]:
    q = select(AuditEvent).where(AuditEvent.organization_id == user.organization_id)
    if action:
        q = q.where(AuditEvent.action == action)
    if since is not None:
        q = q.where(AuditEvent.occurred_at >= since)
    if until is not None:
        q = q.where(AuditEvent.occurred_at < until)
    if page.after is not None:
        q = q.where(AuditEvent.id < page.after)
    rows = list((await session.scalars(q.order_by(AuditEvent.id.desc()).limit(page.limit + 1))).all())
    return make_page(
        rows,
        page,
        lambda e: AuditEventOut(
            id=e.id,
            occurred_at=e.occurred_at,
            action=e.action,
            actor=e.actor,
            actor_user_id=e.actor_user_id,
            target_type=e.target_type,
            target_id=e.target_id,
            ip=e.ip,
            request_id=e.request_id,
            details=e.details,
        ),
    )
