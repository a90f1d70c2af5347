"""Child processes that run a benchmark module in a role: JSON lines in on stdin, lines out on stdout."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from bench.common.output import REPO, say

# The stores and Temporal a child must not pick up from this shell unless told (`clean=True`).
STORE_VARS = ("DATABASE_URL", "REDIS_URL", "MONGODB_URL", "TEMPORAL_ADDRESS", "TEST_DATABASE_URL")


def role_command(module: str, role: str, *more: str) -> list[str]:
    """`python -m <module> --role <role> ...` with this interpreter."""
    return [sys.executable, "-m", module, "--role", role, *more]


def child_env(extra: dict[str, str] | None = None, *, clean: bool = False) -> dict[str, str]:
    """This environment, with the checkout on PYTHONPATH and `extra` on top; `clean` first drops the
    store URLs and every WAYBILL_* setting, so that the child gets only what `extra` says."""
    env = dict(os.environ)
    if clean:
        env = {k: v for k, v in env.items() if k not in STORE_VARS and not k.startswith("WAYBILL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


async def send_json(proc: asyncio.subprocess.Process, message: dict[str, Any]) -> None:
    """One JSON line on the child's stdin."""
    assert proc.stdin is not None
    proc.stdin.write((json.dumps(message) + "\n").encode())
    await proc.stdin.drain()


async def read_line(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    return (await stream.readline()).decode()


async def close_and_wait(proc: asyncio.subprocess.Process, timeout: float) -> int:
    """EOF on the child's stdin (every role here shuts down gracefully on it), then its exit code;
    killed when it takes longer than `timeout` seconds."""
    if proc.returncode is not None:
        return proc.returncode
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        return await proc.wait()


def emit(kind: str, data: dict[str, Any]) -> None:
    """A child's answer line on stdout: `@<kind> <json>` (the parent tells answers from logs by the @)."""
    say(f"@{kind} " + json.dumps(data))
