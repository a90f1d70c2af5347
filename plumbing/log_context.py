"""Correlation ids on every log line: whatever is bound here (request id, organization, workflow
and run id, activity type, delivery id) is added to each record logged in the same task, and
anything shaped like a bearer token is masked before a line is written."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_context: ContextVar[dict[str, Any]] = ContextVar("waybill_log_context", default={})  # noqa: B039 (never mutated)
# A JWT (three base64url parts, the first starting with '{"' encoded) or an Authorization value.
_TOKEN = re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*|(?i:bearer)\s+[\w.~+/=-]{16,}")


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add fields to every record logged inside the block (None values are left out)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields for the rest of the current task (a request handler after authentication)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def current() -> dict[str, Any]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def redact(line: str) -> str:
    return _TOKEN.sub("[redacted]", line)
