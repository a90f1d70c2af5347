"""Socket frames: JSON text with a `type`. Parsing never raises anything but FrameError."""

from __future__ import annotations

import json
from typing import Any

# Close codes in the private range (4000-4999), documented in docs/sockets.md.
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOKEN_EXPIRED = 4419
CLOSE_NO_VEHICLE = 4404  # a driver with no vehicle has nothing to report positions for
CLOSE_TOO_SLOW = 4429  # a dispatcher that fell too far behind the stream
CLOSE_TOO_MANY_CONNECTIONS = 4409  # the user already holds the most sockets they may open
CLOSE_FLOOD = 4420  # kept sending frames while they were refused over the rate limit
# Standard codes the websockets library sends by itself: 1009 (a frame over WAYBILL_WS_MAX_FRAME_BYTES),
# 1011 (a server error), 1001 (the server is going away).


class FrameError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def parse_frame(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise FrameError("binary_not_supported", "send JSON text frames")
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError, not only JSONDecodeError: an integer literal over Python's 4,300-digit limit.
        raise FrameError("invalid_json", "the frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise FrameError("invalid_frame", "a frame is a JSON object")
    kind = frame.get("type")
    if not isinstance(kind, str) or not kind:
        raise FrameError("missing_type", "every frame needs a string `type`")
    return frame


def error_frame(code: str, detail: str, **extra: Any) -> str:
    return json.dumps({"type": "error", "code": code, "detail": detail, **extra})


def frame(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, default=str)
