"""One authenticated connection's session: its token's claims, the timer that closes it when the token
expires, and the last word (an error frame, then the close) that ends it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from api.security.tokens import TokenClaims
from api.sockets.frames import CLOSE_TOKEN_EXPIRED, error_frame

LAST_WORD_TIMEOUT_S = 1.0  # how long the error frame before a close may wait on a peer not reading


@dataclass(eq=False)  # hashable by identity: SocketServer.sessions holds it
class Session:
    path: str
    claims: TokenClaims
    expiry: asyncio.TimerHandle | None = None
    ending: asyncio.Task[None] | None = None  # closing: no more frames are processed

    def close_at_expiry(self, ws: ServerConnection) -> None:
        """(Re)arm the timer that closes the connection when the token expires."""
        if self.expiry is not None:
            self.expiry.cancel()
        loop = asyncio.get_running_loop()
        delay = self.claims.expires_at.timestamp() - time.time()
        self.expiry = loop.call_at(loop.time() + max(0.0, delay), self._expired, ws)

    def _expired(self, ws: ServerConnection) -> None:
        self.end(
            ws, "token_expired", "the token has expired; send a new one before it does", CLOSE_TOKEN_EXPIRED
        )

    def end(self, ws: ServerConnection, code: str, detail: str, close: int) -> None:
        if self.ending is None:
            self.ending = asyncio.create_task(last_word(ws, code, detail, close))

    def cancel(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()


async def last_word(ws: ServerConnection, code: str, detail: str, close: int) -> None:
    """An error frame, then the close: a peer that does not read gets the close without the frame."""
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        await asyncio.wait_for(ws.send(error_frame(code, detail)), LAST_WORD_TIMEOUT_S)
    with contextlib.suppress(ConnectionClosed):
        await ws.close(close, code)
