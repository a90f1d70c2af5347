"""Pick the history store from settings: MongoDB when MONGODB_URL is set, else the SQL tables."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.history.base import HistoryStore
from db.history.mongo import MongoHistoryStore
from db.history.sql import SqlHistoryStore
from plumbing.settings import Settings


def create_history_store(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> HistoryStore:
    """The configured store. No I/O here: MongoDB connects and ensures its indexes on first use."""
    if settings.mongodb_url:
        return MongoHistoryStore(settings.mongodb_url, settings.mongodb_database)
    return SqlHistoryStore(sessionmaker)
