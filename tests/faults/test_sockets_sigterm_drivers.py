"""`waybill sockets` stopped (SIGTERM) under 200 streaming drivers, then started again: every driver
is closed with 1001 (going away), every position acknowledged is stored, and every driver connects
to the restarted server and has its next position acknowledged and stored. The streaming drivers
are tests/e2e/test_sockets_sigterm.py's."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter

import pytest

from domain.roles import Role
from tests.e2e import test_sockets_sigterm as sigterm
from tests.e2e.test_sockets_sigterm import GRACE_S, Stream, drive
from tests.faults.report import Figures
from tests.faults.stack import FAULTS, Stack
from tests.integration.sockets.support import access, fix, make_fleet, open_socket, recv_until

pytestmark = FAULTS

DRIVERS = 200
RATE = 4.0  # positions per second and driver: 800/s in all, beside everything else on 2 cores
STREAM_S = 4.0


async def reconnect(url: str, stream: Stream, index: int) -> str:
    """Connect again and send the next position; "ok" once it is acknowledged, else what happened."""
    try:
        ws, ready = await open_socket(f"{url}/ws/driver", stream.token)
    except OSError as exc:
        return f"connect: {type(exc).__name__}"
    try:
        if ready["type"] != "ready":
            return f"{ready['type']}: {ready.get('code')}"
        seq = max(stream.sent, default=0) + 1
        # Where `drive` would have put it next: a jump would be filtered out (not stored) as implausible.
        await ws.send(json.dumps({"type": "position", **fix(seq, 52.40 + index * 0.001 + seq * 1e-5, 13.30)}))
        stream.sent[seq] = time.monotonic()
        ack = await recv_until(ws, "ack", timeout=15)
        stream.acked.update(ack["seqs"])
        if ack.get("filtered"):
            return "filtered"
        return "ok" if seq in ack["seqs"] else f"ack without {seq}"
    except (TimeoutError, json.JSONDecodeError) as exc:
        return type(exc).__name__
    finally:
        await ws.close()


async def test_sockets_sigterm_under_200_drivers_all_reconnect(
    up: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sigterm, "RATE", RATE)
    fleet = await make_fleet(up.sessionmaker, DRIVERS)
    figures = Figures("sockets SIGTERM, 200 drivers")
    streams = [
        Stream(access(up.tokens, fleet.org, user, Role.DRIVER), vehicle)
        for user, vehicle in zip(fleet.driver_users, fleet.vehicles, strict=True)
    ]
    drivers = [asyncio.create_task(drive(up.ws_url, s, i)) for i, s in enumerate(streams)]
    await asyncio.sleep(STREAM_S)
    assert up.sockets.proc is not None
    signal_at = time.monotonic()
    up.sockets.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(GRACE_S + 10):
        await asyncio.gather(*drivers)
        while up.sockets.running:
            await asyncio.sleep(0.05)
    exit_s = time.monotonic() - signal_at
    exit_code = up.sockets.proc.returncode

    up.sockets.start()
    await up.sockets.wait_ready()
    outcomes = Counter(await asyncio.gather(*(reconnect(up.ws_url, s, i) for i, s in enumerate(streams))))

    lost = await up.unstored(fleet.org, streams)
    figures.positions_lost = sum(len(v) for v in lost.values())
    figures.problems += [f"{v}: acknowledged, not stored {seqs[:10]}" for v, seqs in lost.items() if seqs]
    closes = Counter(s.close_code for s in streams)
    figures.extra["acknowledged"] = str(sum(len(s.acked) for s in streams))
    figures.extra["close codes"] = str(dict(closes))
    figures.extra["reconnected"] = f"{outcomes['ok']}/{DRIVERS}"
    figures.extra["exit"] = f"{exit_code} after {exit_s:.1f} s"

    assert exit_code == 0, up.sockets.output()[-3000:]
    assert closes == {1001: DRIVERS}, closes
    assert not [e for s in streams for e in s.errors][:5]
    assert outcomes == {"ok": DRIVERS}, outcomes
    figures.assert_clean()
