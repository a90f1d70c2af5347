"""Users of the caller's organization (admins only, except reading yourself)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from api.deps import CurrentUser, ResourcesDep, SessionDep, UserDep, require_roles
from api.errors import ProblemError
from api.http.pagination import Page, PageDep, make_page
from api.schemas.users import UserCreate, UserOut, UserUpdate
from api.security.passwords import hash_password
from api.services.audit import AuditAction, audit_by
from api.v1 import PREFIX
from api.services.crud import changes, fetch
from db.models import User
from db.repositories.accounts import RefreshTokenRepository, UserRepository, find_login
from domain.roles import Role

router = APIRouter(prefix=f"{PREFIX}/users", tags=["users"])
Admin = Annotated[CurrentUser, Depends(require_roles(Role.ADMIN))]


def to_out(u: User) -> UserOut:
    return UserOut(
        id=u.id,
        email=u.email,
        name=u.name,
        role=Role(u.role),
        active=u.active,
        created_at=u.created_at,
        updated_at=u.updated_at,
    )


@router.get("", response_model=Page[UserOut])
async def list_users(user: Admin, session: SessionDep, page: PageDep) -> Page[UserOut]:
    rows = await UserRepository(session, user.organization_id).list(after=page.after, limit=page.limit + 1)
    return make_page(rows, page, to_out)


@router.post("", status_code=201, response_model=UserOut)
async def create_user(body: UserCreate, request: Request, user: Admin, session: SessionDep) -> UserOut:
    if await find_login(session, body.email) is not None:
        raise ProblemError(409, "email_taken", "a user with this e-mail already exists")
    new = User(
        organization_id=user.organization_id,
        email=body.email,
        name=body.name,
        role=body.role.value,
        password_hash=hash_password(body.password),
    )
    await UserRepository(session, user.organization_id).add(new)
    audit_by(
        session, request, user, AuditAction.USER_CREATED, target_type="user", target_id=new.id, role=new.role
    )
    await session.commit()
    return to_out(new)


@router.get("/{user_id}", response_model=UserOut)
async def get_user(user_id: uuid.UUID, user: UserDep, session: SessionDep) -> UserOut:
    if user.role is not Role.ADMIN and user_id != user.id:
        raise ProblemError(404, "user_not_found", f"user {user_id} was not found")
    return to_out(await fetch(UserRepository(session, user.organization_id), user_id, "user"))


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    request: Request,
    user: Admin,
    session: SessionDep,
    resources: ResourcesDep,
) -> UserOut:
    target: User = await fetch(UserRepository(session, user.organization_id), user_id, "user")
    update = changes(body)
    role, active = update.get("role"), update.get("active")
    if target.id == user.id and (active is False or (role is not None and role is not Role.ADMIN)):
        raise ProblemError(409, "cannot_demote_self", "an admin cannot deactivate or demote themselves")
    if update.get("name") is not None:
        target.name = update["name"]
    if role is not None and role.value != target.role:
        audit_by(
            session,
            request,
            user,
            AuditAction.ROLE_CHANGED,
            target_type="user",
            target_id=target.id,
            previous=target.role,
            role=role.value,
        )
        target.role = role.value
    if active is not None and active != target.active:
        target.active = active
        action = AuditAction.USER_REACTIVATED if active else AuditAction.USER_DEACTIVATED
        audit_by(session, request, user, action, target_type="user", target_id=target.id)
        if not active:  # sessions end now; access tokens within the user cache's few seconds
            await RefreshTokenRepository(session).revoke_user(target.id, datetime.now(UTC))
    await session.commit()
    resources.users.drop(target.id)
    return to_out(target)
