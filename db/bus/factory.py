"""Pick the cache and bus from settings: Redis when REDIS_URL is set, else in-process."""

from __future__ import annotations

from db.bus.base import CacheBus
from db.bus.memory import MemoryCacheBus
from db.bus.redis import RedisCacheBus
from plumbing.settings import Settings


def create_cache_bus(settings: Settings) -> CacheBus:
    """The configured cache and bus. No I/O here: Redis connects on first use."""
    if settings.redis_url:
        return RedisCacheBus(settings.redis_url, prefix=settings.redis_prefix)
    return MemoryCacheBus()
