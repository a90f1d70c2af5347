"""/ws/driver: a driver, bound to their vehicle, streams positions and hears of route changes and
assignments."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection

from api.security.tokens import TokenClaims
from api.sockets.context import Context
from api.sockets.fanout import Listener
from api.sockets.frames import CLOSE_NO_VEHICLE, FrameError, error_frame
from api.sockets.position_json import VehicleRef
from db.repositories.vehicle_bindings import driver_binding
from domain.positions import Fix

MAX_BATCH = 1000
# The history's BIGINT: a larger seq could never be stored, and its write would be retried forever.
MAX_SEQ = 2**63 - 1
SEQ_DETAIL = "every position needs an integer `seq` from 0 to 2**63-1"


def parse_fix(raw: Any) -> Fix:
    """A position object from a frame, with `recorded_at` in UTC.

    Raises FrameError (`invalid_position`) if `seq` is missing or not an integer in 0..2**63-1, and for
    anything else malformed KeyError (a missing field), TypeError (a field of the wrong type), ValueError
    (a timestamp that does not parse or has no time zone) or OverflowError (an integer too large for a
    float, or a timestamp out of range once converted to UTC).
    """
    if not isinstance(raw, dict):
        raise TypeError("a position is an object")
    return _parse_fix(raw, _seq(raw))


def _parse_fix(raw: dict[str, Any], seq: int) -> Fix:
    at = datetime.fromisoformat(raw["recorded_at"])
    tz = at.tzinfo
    if tz is not UTC:
        if tz is None:
            raise ValueError("recorded_at needs a time zone")
        at = at.astimezone(UTC)
    get = raw.get
    lat, lon = raw["lat"], raw["lon"]
    if (type(lat) is not float and not _is_number(lat)) or (type(lon) is not float and not _is_number(lon)):
        raise TypeError("lat and lon must be numbers")
    return Fix(
        seq,
        at,
        float(lat),
        float(lon),
        _optional(get("accuracy_m"), "accuracy_m"),
        _optional(get("speed_mps"), "speed_mps"),
        _optional(get("heading_deg"), "heading_deg"),
    )


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _optional(value: Any, name: str) -> float | None:
    if value is None or type(value) is float:
        return value
    if not _is_number(value):
        raise TypeError(f"{name} must be a number")
    return float(value)


def _seq(raw: dict[str, Any]) -> int:
    seq = raw.get("seq")
    if type(seq) is not int and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise FrameError("invalid_position", SEQ_DETAIL)
    if not 0 <= seq <= MAX_SEQ:
        raise FrameError("invalid_position", SEQ_DETAIL)
    return seq


class DriverProtocol:
    def __init__(self, ctx: Context, ws: ServerConnection, ref: VehicleRef) -> None:
        self.ctx, self.ws, self.ref = ctx, ws, ref
        self.vehicle_id = str(ref.vehicle_id)
        self.listener: Listener | None = None
        self.counts = ctx.metrics.endpoints["driver"]

    @classmethod
    async def bind(cls, ctx: Context, ws: ServerConnection, claims: TokenClaims) -> DriverProtocol | None:
        async with ctx.resources.sessionmaker() as session:
            bound = await driver_binding(session, claims.organization_id, claims.user_id)
        if bound is None or bound.vehicle_id is None or not bound.user_active:
            await ws.send(error_frame("no_vehicle", "this driver has no vehicle to report positions for"))
            await ws.close(CLOSE_NO_VEHICLE, "no vehicle")
            return None
        return cls(ctx, ws, VehicleRef(claims.organization_id, bound.vehicle_id, bound.driver_id))

    def send(self, text: str) -> None:
        assert self.listener is not None
        self.listener.outbox.frame(text)

    async def open(self) -> None:
        self.listener = Listener(self.ctx.outbox(self.ws, "driver"), vehicle_id=self.vehicle_id)
        await self.ctx.hub.join(self.ref.organization_id, self.listener)
        self.counts.connections += 1

    async def close(self) -> None:
        if self.listener is not None:
            self.counts.connections -= 1
            await self.ctx.hub.leave(self.ref.organization_id, self.listener)
            await self.ctx.drop(self.listener.outbox)

    async def handle(self, msg: dict[str, Any]) -> None:
        self.counts.frames_in += 1
        kind = msg["type"]
        if kind == "position":
            raws: list[Any] = [msg]
        elif kind == "positions":
            raws = msg.get("positions")  # type: ignore[assignment]
            if not isinstance(raws, list) or not 0 < len(raws) <= MAX_BATCH:
                raise FrameError("invalid_frame", f"`positions` is a list of 1..{MAX_BATCH} positions")
        else:
            raise FrameError("unsupported_type", f"frame type {kind!r} is not supported on /ws/driver")
        fixes: list[Fix] = []
        invalid: list[tuple[int, str]] = []
        for raw in raws:
            seq = _seq(raw) if isinstance(raw, dict) else _seq({})
            try:
                fix = _parse_fix(raw, seq)
            except (KeyError, TypeError, ValueError, OverflowError):
                invalid.append((seq, "invalid"))
                continue
            if not (math.isfinite(fix.lat) and math.isfinite(fix.lon)):
                invalid.append((seq, "out_of_range"))
                continue
            fixes.append(fix)
        await self.ctx.ingest.submit(self.ref, fixes, invalid, self._ack)

    def _ack(self, seqs: list[int], filtered: list[tuple[int, str]]) -> None:
        self.send(ack_frame(seqs, filtered))


def ack_frame(seqs: list[int], filtered: list[tuple[int, str]]) -> str:
    """`json.dumps({"type": "ack", "seqs": seqs[, "filtered": [...]]})`. The common ack (plain ints
    from `_seq`, nothing filtered) is written directly: one goes out per frame, and json.dumps was a
    few percent of the server's CPU at 5,000 frames/s."""
    if filtered:
        ack: dict[str, Any] = {"type": "ack", "seqs": seqs}
        ack["filtered"] = [{"seq": seq, "reason": reason} for seq, reason in filtered]
        return json.dumps(ack, separators=(",", ":"))  # ints and strings only: no `default=`
    return '{"type":"ack","seqs":[' + ",".join(map(str, seqs)) + "]}"
