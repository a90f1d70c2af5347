"""Small helpers the resource routers share: fetch-or-404, reference checks, conflict mapping."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from pydantic import BaseModel

from api.errors import ProblemError, not_found
from db.repositories.base import IntegrityConflict, OrgScopedRepository

M = TypeVar("M")


async def fetch(repo: OrgScopedRepository[Any], ident: uuid.UUID, kind: str) -> Any:
    obj = await repo.get(ident)
    if obj is None:
        raise not_found(kind, ident)
    return obj


async def require_reference(repo: OrgScopedRepository[Any], ident: uuid.UUID | None, field: str) -> None:
    """A body field that names another row must name one of the caller's organization."""
    if ident is not None and await repo.get(ident) is None:
        raise ProblemError(
            422,
            "invalid_reference",
            f"{field}: no such {field.removesuffix('_id')} {ident}",
            errors=[{"location": ["body", field], "message": "unknown id", "type": "reference"}],
        )


def conflict_from(exc: IntegrityConflict, kind: str) -> ProblemError:
    if "name" in exc.constraint:
        return ProblemError(409, f"{kind}_name_taken", f"a {kind} with this name already exists")
    if "user_id" in exc.constraint:
        return ProblemError(409, "user_already_linked", "this user is already linked to another driver")
    return ProblemError(409, "conflict", f"the {kind} conflicts with existing data ({exc.constraint})")


async def add_or_conflict(repo: OrgScopedRepository[Any], obj: Any, kind: str) -> None:
    try:
        await repo.add(obj)
    except IntegrityConflict as exc:
        raise conflict_from(exc, kind) from None


async def flush_or_conflict(repo: OrgScopedRepository[Any], kind: str) -> None:
    try:
        await repo.flush()
    except IntegrityConflict as exc:
        raise conflict_from(exc, kind) from None


def changes(body: BaseModel) -> dict[str, Any]:
    """The fields a PATCH body actually set (null clears a nullable field)."""
    return body.model_dump(exclude_unset=True)
