"""The long-lived handles a process needs: database engine, cache and bus, history store, Temporal.

Built once per process (or once for all three roles under `waybill dev`, where the in-process bus
must be shared) and passed to the API, the socket server and the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.security.denylist import SessionDenylist
from api.security.tokens import TokenService
from api.security.user_cache import UserCache
from db.blobs import FileBlobStore
from db.bus.base import CacheBus
from db.bus.factory import create_cache_bus
from db.history.base import HistoryStore
from db.history.factory import create_history_store
from db.repositories.delivery_writes import close_writes
from db.session import create_engine, create_sessionmaker
from plumbing.settings import Settings
from plumbing.temporal import TemporalConnector


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    cache_bus: CacheBus
    history: HistoryStore
    temporal: TemporalConnector
    tokens: TokenService
    blobs: FileBlobStore
    denylist: SessionDenylist  # signed-out sessions (API and sockets)
    users: UserCache = field(default_factory=UserCache)  # authenticated users, briefly (API)

    @classmethod
    async def open(cls, settings: Settings, temporal: TemporalConnector | None = None) -> Resources:
        engine = create_engine(settings.async_database_url, pool_size=settings.db_pool_size)
        sessionmaker = create_sessionmaker(engine)
        cache_bus = create_cache_bus(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            cache_bus=cache_bus,
            history=create_history_store(settings, sessionmaker),
            temporal=temporal or TemporalConnector(settings),
            tokens=TokenService(settings),
            blobs=FileBlobStore(settings.data_dir / "blobs"),
            denylist=SessionDenylist(cache_bus, cache_bus, settings.access_token_ttl_seconds),
        )

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
