"""Recently looked-up users, so that authenticating a request does not query the database each time.

An entry is trusted for at most `USER_CACHE_SECONDS`: a user who is deactivated, moved to another
organization or role, or whose password changes loses access within that time on every API process
(docs/operations.md, "Authentication"). Access tokens themselves live for minutes, so the bound is
small against their lifetime. `drop` forgets a user at once in this process.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

USER_CACHE_SECONDS = 5.0
USER_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class AuthUser:
    """The columns of a user that authentication checks and the request needs."""

    id: uuid.UUID
    organization_id: uuid.UUID
    role: str
    active: bool
    password_changed_at: datetime | None
    email: str
    name: str


class UserCache:
    def __init__(
        self,
        ttl_seconds: float = USER_CACHE_SECONDS,
        max_entries: int = USER_CACHE_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: dict[uuid.UUID, tuple[float, AuthUser]] = {}

    def get(self, user_id: uuid.UUID) -> AuthUser | None:
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[user_id]
            return None
        return entry[1]

    def put(self, user: AuthUser) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]  # the oldest insertion goes first
        self._entries.pop(user.id, None)
        self._entries[user.id] = (self._clock() + self._ttl, user)

    def drop(self, user_id: uuid.UUID) -> None:
        self._entries.pop(user_id, None)
