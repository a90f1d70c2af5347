"""Cache, latest positions, pub/sub and rate limits (Redis in production, in-process by default)."""

from db.bus.base import (
    Bus,
    CacheBus,
    KeyValueCache,
    LatestItem,
    LatestPositions,
    Message,
    Nearby,
    RateDecision,
    RateLimiter,
    RawMessage,
    RawSubscription,
    Subscription,
)
from db.bus.factory import create_cache_bus
from db.bus.memory import MemoryCacheBus
from db.bus.redis import RedisCacheBus

__all__ = [
    "Bus",
    "CacheBus",
    "KeyValueCache",
    "LatestItem",
    "LatestPositions",
    "MemoryCacheBus",
    "Message",
    "Nearby",
    "RateDecision",
    "RateLimiter",
    "RawMessage",
    "RawSubscription",
    "RedisCacheBus",
    "Subscription",
    "create_cache_bus",
]
