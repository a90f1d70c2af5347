"""One run against a started server: the job for the load generators, the dispatcher's count, the
server's CPU time over the measured interval, and a line per second while it goes."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common.machine import tree_cpu_seconds
from bench.common.output import say
from bench.ingest.processes import Child
from bench.ingest.results import RunResult, RunSpec
from bench.wsload.timing import DRAIN_S, QUIET_S

Ticks = asyncio.Queue[tuple[str, dict[str, Any]]]


async def progress(ticks: Ticks, label: str, loaders: int) -> None:
    """Print one line per second: sent, acknowledged and received by the dispatcher."""
    second = 0
    sent = acked = received = 0
    seen = 0
    while True:
        kind, data = await ticks.get()
        if kind == "@dtick":
            received += data["received"]
            continue
        sent += data["sent"]
        acked += data["acked"]
        seen += 1
        if seen == loaders:
            second += 1
            say(
                f"  {label:<32} {second:>3}s  sent {sent:>8,}/s  acked {acked:>8,}/s"
                f"  dispatcher {received:>8,}/s"
            )
            sent = acked = received = seen = 0


def _job(spec: RunSpec, args: argparse.Namespace, loaders: int, start: float) -> dict[str, Any]:
    """What each load generator is asked to do; the warm-up sends one frame per socket and waits."""
    warm = spec.name == "warm-up"
    job = {
        "op": "run",
        "name": spec.name,
        "start": start,
        "ramp": 0.0 if warm else args.ramp,
        "seconds": 1.0 if warm else args.seconds,
        "per_frame": spec.per_frame,
        "rate": None if spec.rate is None else spec.rate / loaders,
        "window": spec.window,
    }
    if warm:
        job["rate"], job["window"] = 1e9, 1  # one frame per socket, then wait for the acks
        job["seconds"] = 0.05
    return job


async def one_run(
    kind: str,
    spec: RunSpec,
    args: argparse.Namespace,
    loaders: list[Child],
    dispatcher: Child | None,
    ticks: Ticks,
    pid: int,
) -> RunResult:
    warm = spec.name == "warm-up"
    seconds = 1.0 if warm else args.seconds
    ramp = 0.0 if warm else args.ramp
    start = time.monotonic() + 0.3
    say(f"[{kind}] {spec.label}: {seconds:.0f}s" + ("" if warm else f" (first {ramp:.0f}s not counted)"))
    job = _job(spec, args, len(loaders), start)
    printer = None if warm else asyncio.create_task(progress(ticks, f"{kind} {spec.label}", len(loaders)))
    cpu_task = asyncio.create_task(_cpu_between(pid, start + ramp, start + seconds))
    collect = None
    if dispatcher is not None and not warm:
        window = {"op": "collect", "from": start + ramp, "to": start + seconds}
        window["until"] = start + seconds + DRAIN_S + QUIET_S
        collect = asyncio.create_task(dispatcher.ask(window, timeout=seconds + 60))
    try:
        answers = await asyncio.gather(*(child.ask(job, timeout=seconds + 90) for child in loaders))
        dispatched = await collect if collect is not None else None
        cpu = await cpu_task
    finally:
        if printer is not None:
            printer.cancel()
        while not ticks.empty():
            ticks.get_nowait()
    run = RunResult(kind, spec.name, spec.label, server_cpu_s=cpu)
    for answer in answers:
        run.add_loader(answer)
    if dispatched is not None:
        run.add_dispatcher(dispatched)
    return run


async def _cpu_between(pid: int, t1: float, t2: float) -> float:
    await asyncio.sleep(max(0.0, t1 - time.monotonic()))
    c1 = tree_cpu_seconds(pid)
    await asyncio.sleep(max(0.0, t2 - time.monotonic()))
    return tree_cpu_seconds(pid) - c1
