"""Users of the caller's organization (admins only, except reading yourself)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from api.deps import Admin, ResourcesDep, SessionDep, UserDep
from api.http.pagination import Page, PageDep
from api.schemas.users import UserCreate, UserOut, UserUpdate
from api.services import users as service
from api.services.crud import changes
from api.v1 import PREFIX

router = APIRouter(prefix=f"{PREFIX}/users", tags=["users"])


@router.get("", response_model=Page[UserOut])
async def list_users(user: Admin, session: SessionDep, page: PageDep) -> Page[UserOut]:
    return await service.list_users(session, user, page)


@router.post("", status_code=201, response_model=UserOut)
async def create_user(body: UserCreate, request: Request, user: Admin, session: SessionDep) -> UserOut:
    return await service.create_user(session, request, user, body)


@router.get("/{user_id}", response_model=UserOut)
async def get_user(user_id: uuid.UUID, user: UserDep, session: SessionDep) -> UserOut:
    return await service.read_user(session, user, user_id)


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    request: Request,
    user: Admin,
    session: SessionDep,
    resources: ResourcesDep,
) -> UserOut:
    return await service.update_user(session, request, user, resources, user_id, changes(body))
