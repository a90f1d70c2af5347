"""The outbox writes a frame at once when nothing is ahead of it, and never lets a frame jump the queue.

Over a real loopback websocket (the `websockets` server and client), with the outbox on the server side.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from api.sockets.fanout import Outbox


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[ServerConnection, ClientConnection]]:
    """A server-side connection and the client connected to it."""
    accepted: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        accepted.set_result(ws)
        await done.wait()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as client:
            server_ws = await asyncio.wait_for(accepted, 5)
            try:
                yield server_ws, client
            finally:
                done.set()


async def test_a_frame_with_nothing_ahead_is_written_without_the_writer_task() -> None:
    async with pair() as (ws, client):
        box = Outbox(ws, max_pending=10, max_lag_s=5.0)  # writer task not started
        box.frame('{"type":"ack","seqs":[1]}')
        assert box.frames == []
        assert json.loads(await asyncio.wait_for(client.recv(), 5)) == {"type": "ack", "seqs": [1]}


async def test_a_frame_never_overtakes_one_queued_before_it() -> None:
    async with pair() as (ws, client):
        box = Outbox(ws, max_pending=10, max_lag_s=5.0)  # writer task started below
        filler = 0
        while not ws.transport.get_write_buffer_size():  # the client reads nothing yet: fill the socket
            ws.protocol.send_text(b"x" * 65_536)
            ws.send_data()
            filler += 1
        box.frame('{"type":"ack","seqs":[1]}')  # the socket's buffer is not empty: queued
        assert box.frames == ['{"type":"ack","seqs":[1]}']
        for _ in range(filler):
            assert await asyncio.wait_for(client.recv(), 5) == "x" * 65_536
        assert not ws.transport.get_write_buffer_size()
        box.frame('{"type":"ack","seqs":[2]}')  # the socket is free now, but the first frame is ahead
        box.start()
        try:
            received = [json.loads(await asyncio.wait_for(client.recv(), 5)) for _ in range(2)]
            assert [r["seqs"] for r in received] == [[1], [2]]
        finally:
            await box.stop()


async def test_a_closed_socket_gets_nothing_written_at_once() -> None:
    async with pair() as (ws, client):
        await client.close()
        await asyncio.wait_for(ws.wait_closed(), 5)
        box = Outbox(ws, max_pending=10, max_lag_s=5.0)
        box.frame('{"type":"ack","seqs":[1]}')
        # Left to the writer task, which ends on ConnectionClosed.
        assert box.frames == ['{"type":"ack","seqs":[1]}']
