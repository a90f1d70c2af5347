"""Users of an organization, as admins manage them. Bodies forbid every other field, so neither
`organization_id`, `password_hash` nor `id` can be set through them (no mass assignment)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import StringConstraints

from api.schemas.common import Email, Input, Name, Output
from api.security.passwords import MAX_PASSWORD_LENGTH
from domain.roles import Role

Password = Annotated[
    str, StringConstraints(min_length=12, max_length=MAX_PASSWORD_LENGTH, strip_whitespace=False)
]


class UserCreate(Input):
    email: Email
    name: Name
    role: Role
    password: Password


class UserUpdate(Input):
    name: Name | None = None
    role: Role | None = None
    active: bool | None = None


class UserOut(Output):
    id: uuid.UUID
    email: str
    name: str
    role: Role
    active: bool
    created_at: datetime
    updated_at: datetime


class AuditEventOut(Output):
    id: uuid.UUID
    occurred_at: datetime
    action: str
    actor: str
    actor_user_id: uuid.UUID | None
    target_type: str | None
    target_id: str | None
    ip: str | None
    request_id: str | None
    details: dict[str, object]
