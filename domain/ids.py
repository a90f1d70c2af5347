"""Time-ordered identifiers (UUIDv7 layout, RFC 9562) so that cursors can paginate by id."""

from __future__ import annotations

import os
import time
import uuid


def uuid7(unix_ms: int | None = None, rand: bytes | None = None) -> uuid.UUID:
    """Return a UUIDv7: 48 bits of Unix milliseconds, then version, variant and 74 random bits.

    Workflows must not call this without both arguments (it reads the clock and os.urandom);
    they pass `workflow.now()` and bytes from `workflow.random()` instead.
    """
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    if not 0 <= ms < 1 << 48:
        raise ValueError("timestamp out of range for UUIDv7")
    tail = os.urandom(10) if rand is None else rand
    if len(tail) != 10:
        raise ValueError("UUIDv7 needs 10 random bytes")
    value = (ms << 80) | int.from_bytes(tail, "big")
    value &= ~(0xF << 76)
    value |= 0x7 << 76  # version 7
    value &= ~(0x3 << 62)
    value |= 0x2 << 62  # RFC 4122 variant
    return uuid.UUID(int=value)


def uuid7_time_ms(value: uuid.UUID) -> int:
    """The Unix millisecond timestamp embedded in a UUIDv7."""
    return value.int >> 80
