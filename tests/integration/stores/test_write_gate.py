"""SQLite write transactions of one process take turns in asyncio; other databases are not gated."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.session import write_gate


async def test_sqlite_sessions_of_one_engine_share_one_gate(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as first, sessionmaker() as second:
        if first.get_bind().dialect.name != "sqlite":
            assert not isinstance(write_gate(first), asyncio.Lock)
            return
        order: list[str] = []

        async def write(session: AsyncSession, name: str, hold: float) -> None:
            async with write_gate(session):
                order.append(f"{name} in")
                await asyncio.sleep(hold)
                order.append(f"{name} out")

        await asyncio.gather(write(first, "a", 0.05), write(second, "b", 0))
        assert order == ["a in", "a out", "b in", "b out"]
