"""Signed-out sessions: the access tokens of a revoked refresh-token family are refused until they expire.

Every access token names its session, the refresh-token family it was issued in (claim `fam`).
Logout and refresh-token reuse revoke the family's refresh tokens in the database and deny the
session here: a key in the cache that outlives every access token the session can hold (in Redis,
seen by every API replica and socket server), and a message on the bus so that socket servers close
the session's open connections at once (api/sockets/revocations.py). One key per session, whatever
the number of access tokens it was given, and nothing written at login or refresh.

`denied` runs on every authenticated request, so it answers from this process when it can: a denial
seen here is remembered until every token it covers has expired; "not denied" from a shared (Redis)
cache is trusted for `recheck_s` per session, which bounds how late another replica learns of a
logout. If the cache cannot be read the token is accepted and a warning logged, as the rate limits
fail open (docs/security.md, "Tokens").
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from api.security.tokens import LEEWAY_SECONDS
from db.bus.base import Bus, KeyValueCache
from domain import channels

log = logging.getLogger(__name__)

RECHECK_S = 1.0
MAX_ENTRIES = 10_000
# A refresh racing the logout may issue one more access token just after the denial: keep the key a
# little longer than a token issued at the moment of the denial lives.
MARGIN_S = 60.0
SESSION_REVOKED = "this token's session was signed out or revoked; sign in again"  # the clients' detail


def _key(session_id: uuid.UUID) -> str:
    return f"denied-session:{session_id}"


def revocation_message(session_id: uuid.UUID) -> dict[str, str]:
    return {"type": "session.revoked", "session_id": str(session_id)}


class SessionDenylist:
    def __init__(
        self,
        cache: KeyValueCache,
        bus: Bus,
        access_ttl_seconds: float,
        *,
        recheck_s: float = RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache, self._bus = cache, bus
        self._ttl = access_ttl_seconds + LEEWAY_SECONDS + MARGIN_S
        self._recheck = recheck_s
        self._clock = clock
        self._denied: dict[uuid.UUID, float] = {}  # session -> when this process may forget it
        self._clear: dict[uuid.UUID, float] = {}  # session -> until when "not denied" is trusted

    async def deny(self, session_id: uuid.UUID) -> None:
        """Refuse the session's access tokens from now until they have all expired, everywhere.
        Raises if the cache or the bus cannot take it: the caller decides what the client hears."""
        self.remember(session_id)
        await self._cache.set(_key(session_id), b"1", ttl_seconds=self._ttl)
        await self._bus.publish(channels.sessions_revoked(), revocation_message(session_id))

    def remember(self, session_id: uuid.UUID) -> None:
        """Note a denial learnt here or from the bus, without asking the cache again."""
        self._clear.pop(session_id, None)
        if len(self._denied) >= MAX_ENTRIES:
            self._forget_expired()
        self._denied[session_id] = self._clock() + self._ttl

    def known(self, session_id: uuid.UUID) -> bool:
        """Denied as far as this process knows, without I/O."""
        until = self._denied.get(session_id)
        return until is not None and until > self._clock()

    async def denied(self, session_id: uuid.UUID, *, fresh: bool = False) -> bool:
        """Whether the session was signed out or revoked; `fresh` asks the cache even when a recent
        answer said no."""
        if self.known(session_id):
            return True
        now = self._clock()
        if not fresh and self._clear.get(session_id, 0.0) > now:
            return False
        try:
            found = await self._cache.get(_key(session_id)) is not None
        except Exception as exc:  # fail open, see the module docstring
            log.warning("token denylist unavailable; token accepted", extra={"error": str(exc)})
            return False
        if found:
            self.remember(session_id)
        else:
            if len(self._clear) >= MAX_ENTRIES:
                self._clear.clear()  # only a cache of answers: the next lookups ask again
            self._clear[session_id] = now + self._recheck
        return found

    def _forget_expired(self) -> None:
        now = self._clock()
        for session_id in [s for s, until in self._denied.items() if until <= now]:
            del self._denied[session_id]
        while len(self._denied) >= MAX_ENTRIES:
            # The oldest goes first; the cache still holds it, so forgetting costs a lookup, not safety.
            del self._denied[next(iter(self._denied))]
