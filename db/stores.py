"""The stores one process holds open: the database engine and sessions, cache and bus, history store
and proof-of-delivery blobs. Opened once per process (once for all roles under `waybill dev`, where
the in-process bus must be shared) and closed once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.blobs import FileBlobStore
from db.bus.base import CacheBus
from db.bus.factory import create_cache_bus
from db.history.base import HistoryStore
from db.history.factory import create_history_store
from db.repositories.delivery_writes import close_writes
from db.session import create_engine, create_sessionmaker
from plumbing.settings import Settings


@dataclass
class Stores:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    cache_bus: CacheBus
    history: HistoryStore
    blobs: FileBlobStore

    @staticmethod
    def open_fields(settings: Settings) -> dict[str, object]:
        """The fields of a new `Stores` (or of a subclass that adds its own), opened from `settings`."""
        engine = create_engine(settings.async_database_url, pool_size=settings.db_pool_size)
        sessionmaker = create_sessionmaker(engine)
        return {
            "settings": settings,
            "engine": engine,
            "sessionmaker": sessionmaker,
            "cache_bus": create_cache_bus(settings),
            "history": create_history_store(settings, sessionmaker),
            "blobs": FileBlobStore(settings.data_dir / "blobs"),
        }

    async def database_ok(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.history.close()
        await self.cache_bus.close()
        await close_writes(self.engine)
        await self.engine.dispose()
