"""SQLite write transactions of one process take turns in asyncio; other databases are not gated."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from db.session import create_sessionmaker, write_gate


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


async def test_a_session_holding_a_connection_never_waits_at_the_gate(tmp_path: Path) -> None:
    # One connection in the pool: had `holder` waited for the gate while keeping it, `writer`
    # (inside the gate) could never get a connection.
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'gate.db'}", pool_size=1, max_overflow=0, pool_timeout=2
    )
    sessions = create_sessionmaker(engine)
    try:
        async with sessions() as holder, sessions() as writer:
            await holder.execute(text("SELECT 1"))

            async def finish_holder() -> None:
                async with write_gate(holder):
                    await holder.commit()

            async with write_gate(writer):
                await asyncio.wait_for(finish_holder(), 1)
                assert (await writer.execute(text("SELECT 2"))).scalar_one() == 2
    finally:
        await engine.dispose()
