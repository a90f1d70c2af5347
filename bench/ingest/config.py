"""The benchmark's defaults and goals, and the server kinds it measures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODULE = "bench.ingest"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/waybill_ingest_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
REDIS_PREFIX = "waybill-bench-ingest:"
WAYBILL = str(Path(sys.executable).parent / "waybill")
GOAL_RATE = 20_000.0
GOAL_P99_MS = 100.0
GOAL_IDLE_KIB = 50.0
READY = "@ready"
SERVERS = ("bare", "waybill")
RUNS = ("live-max", "live-rate", "backlog-max")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def is_waybill(kind: str) -> bool:
    return kind.startswith("waybill")


def processes_of(kind: str) -> int:
    """`waybill-x2`: `waybill sockets --processes 2`."""
    return int(kind.split("-x", 1)[1]) if "-x" in kind else 1


def label(kind: str) -> str:
    if kind == "bare":
        return "bare `websockets`"
    n = processes_of(kind)
    return "`waybill sockets`" if n == 1 else f"`waybill sockets --processes {n}`"


def server_kinds(args: argparse.Namespace) -> list[str]:
    """The servers to measure, in order: `waybill` once per `--processes` count."""
    kinds: list[str] = []
    for server in args.servers:
        if server == "waybill":
            kinds += ["waybill" if n == 1 else f"waybill-x{n}" for n in args.processes]
        else:
            kinds.append(server)
    return kinds
