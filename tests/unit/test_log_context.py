"""Correlation ids reach every log line of their task, and tokens never reach a log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from plumbing.log_context import ContextFilter, bind, bound, current
from plumbing.logging import JsonFormatter, TextFormatter

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(f"test.{id(out)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_bound_fields_reach_each_line_and_leave_with_the_block() -> None:
    logger, out = capture(JsonFormatter())
    with bound(request_id="r1", organization_id=None):
        with bound(workflow_id="delivery-1"):
            logger.info("inner", extra={"workflow_id": "explicit wins"})
        logger.info("outer")
    logger.info("after")
    inner, outer, after = (json.loads(line) for line in out.getvalue().splitlines())
    assert (inner["request_id"], inner["workflow_id"]) == ("r1", "explicit wins")
    assert "organization_id" not in inner
    assert outer["request_id"] == "r1"
    assert "workflow_id" not in outer
    assert "request_id" not in after


async def test_bind_stays_in_its_own_task() -> None:
    async def handler(name: str) -> dict[str, object]:
        bind(user_id=name)
        await asyncio.sleep(0)
        return current()

    a, b = await asyncio.gather(handler("a"), handler("b"))
    assert (a["user_id"], b["user_id"]) == ("a", "b")
    assert "user_id" not in current()


def test_tokens_are_masked_in_both_formats() -> None:
    for formatter in (JsonFormatter(), TextFormatter()):
        logger, out = capture(formatter)
        logger.info("got %s", f"Authorization: Bearer {JWT}", extra={"token": JWT})
        line = out.getvalue()
        assert JWT not in line
        assert "eyJ" not in line
        assert "[redacted]" in line
