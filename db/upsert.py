"""Dialect-aware INSERT … ON CONFLICT DO NOTHING, for idempotent writes on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_ignoring(dialect: str, table: Table, key: list[str]) -> Any:
    """INSERT … ON CONFLICT (key) DO NOTHING for the dialect at hand.

    Naming the conflict target keeps every other integrity error loud.
    """
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=key)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=key)
    raise NotImplementedError(f"idempotent inserts do not support the {dialect!r} dialect")


def insert_ignoring_into(session: AsyncSession, model: Any, key: list[str]) -> Any:
    """`insert_ignoring` for an ORM model's table, on the dialect `session` is bound to."""
    table = model.__table__
    assert isinstance(table, Table)
    return insert_ignoring(session.get_bind().dialect.name, table, key)
