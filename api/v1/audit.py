"""The audit log, read by the organization's admins (newest first)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import CurrentUser, SessionDep, require_roles
from api.http.pagination import Page, PageDep
from api.schemas.users import AuditEventOut
from api.services.audit import audit_page
from api.v1 import PREFIX
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
    return await audit_page(session, user.organization_id, page, action, since, until)
