"""Running a benchmark to its end, or to a hard limit."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from bench.common.output import say
from plumbing import eventloop

T = TypeVar("T")


def run_bounded(benchmark: Coroutine[Any, Any, T], hard_limit: float) -> T | None:
    """Run `benchmark` on the event loop the `waybill` processes use (uvloop when installed) for at
    most `hard_limit` seconds: its outcome, or None (said on stdout) when the time ran out."""
    try:
        return eventloop.run(asyncio.wait_for(benchmark, hard_limit))
    except TimeoutError:
        say(f"gave up after {hard_limit:.0f}s")
        return None
