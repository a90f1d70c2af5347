"""The authenticated-user cache forgets entries after its TTL, on drop, and when full."""

from __future__ import annotations

import uuid

from api.security.user_cache import AuthUser, UserCache


def _user() -> AuthUser:
    return AuthUser(uuid.uuid4(), uuid.uuid4(), "viewer", True, None, "a@example.test", "A")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = UserCache(ttl_seconds=5, clock=clock)
    user = _user()
    cache.put(user)
    clock.now += 4.9
    assert cache.get(user.id) == user
    clock.now += 0.1
    assert cache.get(user.id) is None


def test_drop_forgets_at_once_and_zero_ttl_caches_nothing() -> None:
    cache = UserCache(ttl_seconds=5)
    user = _user()
    cache.put(user)
    cache.drop(user.id)
    assert cache.get(user.id) is None
    off = UserCache(ttl_seconds=0)
    off.put(user)
    assert off.get(user.id) is None


def test_a_full_cache_evicts_the_oldest_entry() -> None:
    cache = UserCache(ttl_seconds=5, max_entries=2)
    first, second, third = _user(), _user(), _user()
    for user in (first, second, third):
        cache.put(user)
    assert cache.get(first.id) is None
    assert cache.get(second.id) == second
    assert cache.get(third.id) == third
