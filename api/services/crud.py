"""Small helpers the resource routers share: fetch-or-404, reference checks, conflict mapping."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
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


NAMED_IN_DETAIL, NAMED_IN_ERRORS = 10, 100  # a list may hold thousands of ids


def _invalid_reference(field: str, kind: str, bad: list[tuple[list[str | int], uuid.UUID]]) -> ProblemError:
    # Another organization's id and one that exists nowhere get the same answer: no existence oracle.
    named = ", ".join(str(ident) for _, ident in bad[:NAMED_IN_DETAIL])
    if len(bad) > NAMED_IN_DETAIL:
        named += f" and {len(bad) - NAMED_IN_DETAIL} more"
    return ProblemError(
        422,
        "invalid_reference",
        f"{field}: no such {kind} {named}",
        errors=[
            {"location": location, "message": "unknown id", "type": "reference"}
            for location, _ in bad[:NAMED_IN_ERRORS]
        ],
    )


async def require_reference(repo: OrgScopedRepository[Any], ident: uuid.UUID | None, field: str) -> None:
    """A body field that names another row must name one of the caller's organization."""
    if ident is not None and await repo.get(ident) is None:
        raise _invalid_reference(field, field.removesuffix("_id"), [(["body", field], ident)])


async def require_references(
    repo: OrgScopedRepository[Any], idents: Sequence[uuid.UUID] | None, field: str
) -> None:
    """Every id of a body list must name a row of the caller's organization: all checked in one
    query, each bad one named once, at its first position in the list."""
    if not idents:
        return
    found = await repo.existing(set(idents))
    first: dict[uuid.UUID, int] = {}
    for i, ident in enumerate(idents):
        first.setdefault(ident, i)
    bad: list[tuple[list[str | int], uuid.UUID]] = [
        (["body", field, i], ident) for ident, i in first.items() if ident not in found
    ]
    if bad:
        raise _invalid_reference(field, field.removesuffix("_ids"), bad)


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
