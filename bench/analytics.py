"""Analytics backfill over synthetic history: 30 days x 50 vehicles by default.

Writes the history through the stores (tools/analytics_demo.py), then runs the real backfill:
AnalyticsBackfillWorkflow on the bundled Temporal dev server with an in-process worker, whose
activity reads the projection and the history store in chunks. Reports wall time, the Python
heap peak during the backfill (tracemalloc, which numpy and pandas buffers report to) and the
process's peak RSS. `--write-docs` rewrites the analytics block of docs/benchmarks.md.

    flock /tmp/waybill-bench.lock .venv/bin/python -m bench.analytics --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.resources import Resources
from bench.common.machine import cpu_model
from bench.common.output import DOCS_PATH, say, write_block
from db.migrate import upgrade
from db.repositories.bench_fixtures import add_depot_fleet
from domain.analytics import BackfillInput, BackfillResult
from plumbing.converter import DATA_CONVERTER
from plumbing.settings import Settings
from plumbing.temporal import TemporalConnector
from starters.analytics import start_backfill, target_for
from tools.analytics_demo import FleetVehicle, Written, generate
from waybill.temporal_dev import temporal_binary
from workers.compose import plan_queues

BEGIN, END = "<!-- bench:analytics:begin -->", "<!-- bench:analytics:end -->"
TZ = "Europe/Berlin"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def make_fleet(resources: Resources, vehicles: int) -> tuple[uuid.UUID, list[FleetVehicle]]:
    async with resources.sessionmaker() as session:
        return await add_depot_fleet(session, vehicles, TZ)


async def write_history(
    args: argparse.Namespace, resources: Resources
) -> tuple[uuid.UUID, list[date], Written, float]:
    """The synthetic history of `args.days` days up to yesterday: (organization, days, counts, seconds)."""
    org, fleet = await make_fleet(resources, args.vehicles)
    last = date.today() - timedelta(days=1)
    days = [last - timedelta(days=i) for i in reversed(range(args.days))]
    t0 = time.perf_counter()
    written = await generate(
        resources.sessionmaker, resources.history, org, fleet, days, TZ, stops=args.stops, ping_s=args.ping_s
    )
    gen_s = time.perf_counter() - t0
    say(f"history: {written.deliveries} deliveries, {written.events} events, {written.positions} positions")
    return org, days, written, gen_s


async def backfill(
    env: WorkflowEnvironment, resources: Resources, org: uuid.UUID, days: list[date]
) -> tuple[BackfillResult, float, int]:
    """The backfill of `days` through in-process workers: (result, seconds, peak traced heap bytes)."""
    plans = plan_queues(resources, ["default", "analytics"])
    workers = [
        Worker(env.client, task_queue=p.task_queue, workflows=p.workflows, activities=p.activities)
        for name, p in plans.items()
        if name in ("default", "analytics")
    ]
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        target = await target_for(resources, org)
        tracemalloc.start()
        t1 = time.perf_counter()
        handle = await start_backfill(
            env.client, resources.settings, BackfillInput(target, days[0].isoformat(), days[-1].isoformat())
        )
        result = await handle.result()
        backfill_s = time.perf_counter() - t1
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    say(f"backfill: {result.days} days, {result.deliveries} deliveries in {backfill_s:.1f}s")
    return result, backfill_s, peak


async def run(args: argparse.Namespace, database_url: str) -> dict[str, str]:
    settings = Settings(
        env="test", database_url=database_url, data_dir=Path(tempfile.mkdtemp()), worker_metrics_port=0
    )
    upgrade(settings.sync_database_url)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), data_converter=DATA_CONVERTER
    )
    resources = await Resources.open(settings, TemporalConnector(settings, env.client))
    try:
        org, days, written, gen_s = await write_history(args, resources)
        rss_before = rss_mb()
        result, backfill_s, peak = await backfill(env, resources, org, days)
        return {
            "data": f"{args.days} days x {args.vehicles} vehicles, {args.stops} stops per vehicle-day, "
            f"a fix every {args.ping_s:g} s: {written.deliveries:,} deliveries, {written.events:,} events, "
            f"{written.positions:,} positions",
            "database": settings.database_label + " (history store: SQL tables)",
            "machine": cpu_model(),
            "history written in": f"{gen_s:.0f} s",
            "backfill": f"{result.days} daily reports ({result.deliveries:,} delivered) in "
            f"{backfill_s:.0f} s ({backfill_s / result.days:.1f} s per day), under tracemalloc",
            "peak Python heap during the backfill (tracemalloc)": f"{peak / 2**20:.1f} MiB",
            "peak RSS of the process": f"{rss_before:.0f} MiB before the backfill, {rss_mb():.0f} MiB after "
            "(high-water mark; includes writing the history, the worker and pandas)",
        }
    finally:
        await resources.close()
        await env.shutdown()


def block(facts: dict[str, str], command: str) -> str:
    lines = [
        "## Analytics backfill (`bench/analytics.py`)",
        "",
        "Synthetic history written through the stores (`tools/analytics_demo.py`), then the real backfill:",
        "`AnalyticsBackfillWorkflow` on the bundled dev server, an in-process worker, one daily report after",
        "another (each reads the projection in 500-row chunks and one vehicle-day of positions at a time).",
        "",
        "```sh",
        command,
        "```",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
    ]
    return "\n".join(lines)


def write_docs(content: str, path: Path = DOCS_PATH) -> None:
    write_block(path, BEGIN, END, content, empty="")
    say(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--vehicles", type=int, default=50)
    p.add_argument("--stops", type=int, default=12, help="deliveries per vehicle-day (default 12)")
    p.add_argument("--ping-s", type=float, default=30.0, help="seconds between fixes (default 30)")
    p.add_argument("--database-url", help="default: a temporary SQLite file")
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        facts = asyncio.run(run(args, url))
    command = "flock /tmp/waybill-bench.lock .venv/bin/python -m bench.analytics" + (
        "" if (args.days, args.vehicles) == (30, 50) else f" --days {args.days} --vehicles {args.vehicles}"
    )
    for k, v in facts.items():
        say(f"{k}: {v}")
    if args.write_docs:
        write_docs(block(facts, command + " --write-docs"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
