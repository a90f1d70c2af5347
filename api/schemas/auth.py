from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, StringConstraints

from api.schemas.common import Email, Input
from api.security.passwords import MAX_PASSWORD_LENGTH
from domain.roles import Role


class LoginIn(Input):
    email: Email
    password: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH, strip_whitespace=False)
    ]


class PasswordChangeIn(Input):
    current_password: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH, strip_whitespace=False)
    ]
    new_password: Annotated[
        str, StringConstraints(min_length=12, max_length=MAX_PASSWORD_LENGTH, strip_whitespace=False)
    ]


class RefreshIn(Input):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_expires_at: datetime


class MeOut(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    organization_name: str
    email: str
    name: str
    role: Role
    driver_id: uuid.UUID | None = None
