"""Structured logging: JSON lines in production, readable text in a terminal. Never log secrets."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from plumbing.log_context import ContextFilter, redact

# color_message: uvicorn's ANSI-coloured copy of msg.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _RESERVED}
        return redact(base + ("  " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else ""))


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Quiet chatty libraries; their warnings still come through.
    # aiosqlite and httpcore log every statement's parameters or every header at DEBUG: stored
    # secrets (webhook signing keys) and bearer tokens would reach the log.
    for noisy in (
        "uvicorn.access",
        "websockets.server",
        "alembic",
        "temporalio.activity",
        "aiosqlite",
        "httpcore",
        "httpx",
        "hpack",
        "sqlalchemy.engine",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
