"""Revoked sessions reach open sockets: one bus subscription per socket server.

The API publishes each signed-out or revoked session (api/security/denylist.py); this server closes
the connections authenticated with one of its access tokens. Through Redis the message reaches every
replica within milliseconds. A message published while the subscription was down is not lost for
good: after each (re)subscription every session open here is looked up in the denylist itself, so a
revocation reaches an open socket at the latest `RESUBSCRIBE_S` after the bus is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable

from api.security.denylist import SessionDenylist
from db.bus.base import Bus
from domain import channels

log = logging.getLogger(__name__)
RESUBSCRIBE_S = 1.0


class Revocations:
    def __init__(
        self,
        bus: Bus,
        denylist: SessionDenylist,
        revoked: Callable[[uuid.UUID], None],
        open_sessions: Callable[[], Iterable[uuid.UUID]],
    ) -> None:
        self.bus, self.denylist = bus, denylist
        self._revoked, self._open = revoked, open_sessions
        self.ready = asyncio.Event()  # subscribed
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="session-revocations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with self.bus.subscribe(channels.sessions_revoked()) as messages:
                    self.ready.set()
                    await self._catch_up()
                    async for msg in messages:
                        self._revoke(msg.data.get("session_id"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("session revocation subscription failed, resubscribing: %s", exc)
            self.ready.clear()
            await asyncio.sleep(RESUBSCRIBE_S)

    def _revoke(self, value: object) -> None:
        try:
            session_id = uuid.UUID(str(value))
        except ValueError:
            log.warning("dropped a session revocation without a session id: %r", value)
            return
        self.denylist.remember(session_id)
        self._revoked(session_id)

    async def _catch_up(self) -> None:
        """Revocations published while this server was not subscribed."""
        for session_id in list(self._open()):
            if await self.denylist.denied(session_id, fresh=True):
                self._revoked(session_id)
