"""What `waybill doctor` (tools/doctor.py) asks the system-of-record database."""

from __future__ import annotations

from sqlalchemy import text

from db.session import create_engine


async def database_version(async_url: str) -> str:
    """The server's version banner ("PostgreSQL 16.4 on …", "SQLite 3.45.1"), on an engine of its own."""
    engine = create_engine(async_url)
    try:
        async with engine.connect() as conn:
            pg = engine.dialect.name == "postgresql"
            query = "SELECT version()" if pg else "SELECT 'SQLite ' || sqlite_version()"
            return str((await conn.execute(text(query))).scalar())
    finally:
        await engine.dispose()
