"""`python -m bench.deliveries`: the arguments, the command line recorded in the docs, and `main`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench.common.output import DOCS_PATH, say
from bench.common.running import run_bounded
from bench.deliveries.config import DRAIN_TIMEOUT_S, WORKER_MODES
from bench.deliveries.docs import write_docs
from bench.deliveries.http_load import http_load_role
from bench.deliveries.measure import benchmark
from bench.deliveries.processes import api_role, worker_role
from bench.deliveries.report import print_report
from plumbing import eventloop
from plumbing.settings import redact_url


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.deliveries",
        description="Deliveries per second through the API vs raw client.start_workflow.",
    )
    parser.add_argument("--n", type=int, default=1000, help="deliveries per run and side (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, alternating (default 2)")
    parser.add_argument("--database-url", help="PostgreSQL or SQLite URL (default: a temporary SQLite file)")
    parser.add_argument(
        "--worker", choices=WORKER_MODES, default="process", help="where the worker runs (default: process)"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=900.0,
        help="start no new phase after this many seconds (900: room for 2 rounds and their drains)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update docs/{DOCS_PATH.name}")
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="API processes (replicas) the requests are spread over; raw starts stay in one (default 1)",
    )
    parser.add_argument("--role", choices=("http", "worker", "api"), help=argparse.SUPPRESS)  # children
    args = parser.parse_args(argv)
    for name in ("n", "concurrency", "rounds", "api_processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.n > 100_000 or args.concurrency > 1000:
        parser.error("--n is capped at 100000 and --concurrency at 1000")
    return args


def command_line(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python -m bench.deliveries", f"--n {args.n}", f"--concurrency {args.concurrency}"]
    parts.append(f"--rounds {args.rounds}")
    if args.database_url:
        parts.append(f"--database-url {redact_url(args.database_url)}")
    if args.worker != "process":
        parts.append(f"--worker {args.worker}")
    if args.api_processes != 1:
        parts.append(f"--api-processes {args.api_processes}")
    if args.write_docs:
        parts.append("--write-docs")
    return " ".join(parts)


_ROLES = {"http": http_load_role, "api": api_role, "worker": worker_role}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role is not None:
        eventloop.run(_ROLES[args.role]())
        return 0
    # A safety net above --time-limit: set-up, drains and requests in flight are bounded as well.
    hard_limit = args.time_limit + 2 * DRAIN_TIMEOUT_S + 120
    # The event loop `waybill api` uses (uvloop when installed): the API is hosted in this process.
    outcome = run_bounded(benchmark(args, command_line(args)), hard_limit)
    if outcome is None:
        return 2
    print_report(outcome)
    if args.write_docs:
        if outcome.errors or not outcome.side("api") or not outcome.side("raw"):
            say("not writing the docs: a run had errors or a side did not run")
            return 1
        write_docs(outcome)
    return 1 if outcome.errors else 0
