"""What activities are built with: the stores and the Temporal connection (for the few that start or
signal workflows). A protocol, so that the composition root hands in whatever bag it holds."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.bus.base import CacheBus
from db.history.base import HistoryStore
from plumbing.settings import Settings
from plumbing.temporal import TemporalConnector


class ActivityResources(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def cache_bus(self) -> CacheBus: ...
    @property
    def history(self) -> HistoryStore: ...
    @property
    def temporal(self) -> TemporalConnector: ...
    async def database_ok(self) -> bool: ...
