"""Users of an organization as its admins manage them: create, read, rename, change role, (de)activate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import CurrentUser
from api.errors import ProblemError
from api.http.pagination import Page, PageParams, make_page
from api.resources import Resources
from api.schemas.users import UserCreate, UserOut
from api.security.passwords import hash_password
from api.services.audit import AuditAction, audit_user
from api.services.crud import fetch
from db.models import User
from db.repositories.accounts import RefreshTokenRepository, UserRepository, find_login
from domain.roles import Role


async def list_users(session: AsyncSession, caller: CurrentUser, page: PageParams) -> Page[UserOut]:
    rows = await UserRepository(session, caller.organization_id).list(after=page.after, limit=page.limit + 1)
    return make_page(rows, page, UserOut.model_validate)


async def read_user(session: AsyncSession, caller: CurrentUser, user_id: uuid.UUID) -> UserOut:
    """Admins read anyone of their organization, everyone else only themselves."""
    if caller.role is not Role.ADMIN and user_id != caller.id:
        raise ProblemError(404, "user_not_found", f"user {user_id} was not found")
    return UserOut.model_validate(
        await fetch(UserRepository(session, caller.organization_id), user_id, "user")
    )


async def create_user(
    session: AsyncSession, request: Request, caller: CurrentUser, body: UserCreate
) -> UserOut:
    if await find_login(session, body.email) is not None:
        raise ProblemError(409, "email_taken", "a user with this e-mail already exists")
    repo = UserRepository(session, caller.organization_id)
    new = repo.new(
        email=body.email, name=body.name, role=body.role.value, password_hash=hash_password(body.password)
    )
    await repo.add(new)
    audit_user(session, request, caller, AuditAction.USER_CREATED, new.id, role=new.role)
    await session.commit()
    return UserOut.model_validate(new)


async def update_user(
    session: AsyncSession,
    request: Request,
    caller: CurrentUser,
    resources: Resources,
    user_id: uuid.UUID,
    update: dict[str, Any],
) -> UserOut:
    """A PATCH of name, role and active; an admin can neither deactivate nor demote themselves."""
    target: User = await fetch(UserRepository(session, caller.organization_id), user_id, "user")
    role, active = update.get("role"), update.get("active")
    if target.id == caller.id and (active is False or (role is not None and role is not Role.ADMIN)):
        raise ProblemError(409, "cannot_demote_self", "an admin cannot deactivate or demote themselves")
    if update.get("name") is not None:
        target.name = update["name"]
    if role is not None and role.value != target.role:
        audit_user(
            session,
            request,
            caller,
            AuditAction.ROLE_CHANGED,
            target.id,
            previous=target.role,
            role=role.value,
        )
        target.role = role.value
    if active is not None and active != target.active:
        target.active = active
        action = AuditAction.USER_REACTIVATED if active else AuditAction.USER_DEACTIVATED
        audit_user(session, request, caller, action, target.id)
        if not active:  # sessions end now; access tokens within the user cache's few seconds
            await RefreshTokenRepository(session).revoke_user(target.id, datetime.now(UTC))
    await session.commit()
    resources.users.drop(target.id)
    return UserOut.model_validate(target)
