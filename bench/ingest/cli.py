"""`python -m bench.ingest`: the arguments, the command line recorded in the docs, and `main`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench.common.output import DOCS_PATH, say
from bench.common.running import run_bounded
from bench.ingest.config import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, RUNS, SERVERS, server_kinds
from bench.ingest.processes import bare_role
from bench.wsload.role import client_role
from plumbing import eventloop


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description="Positions per second through `waybill sockets`."
    )
    parser.add_argument("--connections", type=int, default=2000, help="driver sockets (default 2000)")
    parser.add_argument("--rate", type=int, default=5000, help="positions/s of the fixed-rate run (5000)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each run (default 12)")
    parser.add_argument("--ramp", type=float, default=2.0, help="first seconds of a run not counted (2)")
    parser.add_argument("--window", type=int, default=4, help="live max: frames unacked per socket (4)")
    parser.add_argument("--batch", type=int, default=100, help="positions per backlog frame (100)")
    parser.add_argument("--batch-window", type=int, default=1, help="backlog: frames unacked per socket (1)")
    parser.add_argument("--loaders", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument(
        "--processes",
        default="1",
        help="waybill sockets replicas sharing the port (`waybill sockets --processes`); a comma-separated "
        "list measures each, e.g. 1,2 (default 1)",
    )
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL, help="PostgreSQL URL (created if missing)"
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help=f"Redis URL (default {DEFAULT_REDIS_URL})"
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="which servers, in order (default bare,waybill)"
    )
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"which runs, comma-separated (default {','.join(RUNS)})"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the waybill server for this run, e.g. tracking_history_batch=250 (repeatable)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update docs/{DOCS_PATH.name}")
    parser.add_argument("--role", choices=("client", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser


def _checked(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The comma-separated options as lists, `--set` as environment variables; bad values end in
    `parser.error`."""
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not args.runs or any(r not in RUNS for r in args.runs):
        parser.error(f"--runs takes a comma-separated subset of {', '.join(RUNS)}")
    if not args.servers or any(s not in SERVERS for s in args.servers):
        parser.error(f"--servers takes a comma-separated subset of {', '.join(SERVERS)}")
    if not 1 <= args.connections <= 20_000:
        parser.error("--connections must be 1..20000")
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be 1..1000 (the server's limit per frame)")
    try:
        args.settings = {f"WAYBILL_{n.strip().upper()}": v for n, v in (s.split("=", 1) for s in args.set)}
    except ValueError:
        parser.error("--set takes NAME=VALUE")
    try:
        args.processes = [int(n) for n in args.processes.split(",") if n.strip()]
    except ValueError:
        parser.error("--processes takes comma-separated counts, e.g. 1,2")
    if not args.processes or any(not 1 <= n <= 64 for n in args.processes):
        parser.error("--processes: each count must be 1..64")
    if args.loaders < 1 or args.window < 1 or args.batch_window < 1 or args.rate < 1:
        parser.error("--loaders, --window, --batch-window and --rate must be at least 1")
    if args.seconds <= args.ramp:
        parser.error("--seconds must be longer than --ramp")
    return args


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _parser()
    return _checked(parser, parser.parse_args(argv))


def command_line(args: argparse.Namespace) -> str:
    from plumbing.settings import redact_url  # not at the top: the child roles start without it

    parts = [".venv/bin/python -m bench.ingest", f"--connections {args.connections}", f"--rate {args.rate}"]
    parts.append(f"--seconds {args.seconds:g}")
    if args.database_url != DEFAULT_DATABASE_URL:
        parts.append(f"--database-url {redact_url(args.database_url)}")
    if args.servers != list(SERVERS):
        parts.append(f"--servers {','.join(args.servers)}")
    if args.runs != list(RUNS):
        parts.append(f"--runs {','.join(args.runs)}")
    if args.processes != [1]:
        parts.append(f"--processes {','.join(map(str, args.processes))}")
    for name, default in (("window", 4), ("batch", 100), ("batch_window", 1), ("loaders", 2)):
        if getattr(args, name) != default:
            parts.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    parts += [f"--set {setting}" for setting in args.set]
    if args.write_docs:
        parts.append("--write-docs")
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "client":
        eventloop.run(client_role())
        return 0
    if args.role == "bare":
        eventloop.run(bare_role(args.port, 64 * 1024))
        return 0
    # Only the parent loads the API's token service, SQLAlchemy and Redis: the children start light.
    from bench.ingest.docs import write_docs
    from bench.ingest.measure import benchmark
    from bench.ingest.report import print_report

    outcome = run_bounded(benchmark(args, command_line(args)), 600.0)
    if outcome is None:
        return 2
    print_report(outcome)
    failed = any(r.errors or r.closed for s in outcome.servers for r in s.runs)
    if args.write_docs:
        ran_all = len(outcome.servers) == len(server_kinds(args)) and args.servers == list(SERVERS)
        if failed or not ran_all or args.runs != list(RUNS):
            say("not writing the docs: a run had errors, or not every server and run ran")
            return 1
        write_docs(outcome)
    return 1 if failed else 0
