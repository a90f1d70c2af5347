"""The audit log, read by the organization's admins (newest first)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Admin, SessionDep
from api.http.pagination import Page, PageDep
from api.schemas.users import AuditEventOut
from api.services.audit import audit_page
from api.v1 import PREFIX

router = APIRouter(prefix=f"{PREFIX}/audit", tags=["audit"])
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
