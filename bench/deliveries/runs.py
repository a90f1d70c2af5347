"""A phase's figures (one side, one round), the lanes that drive it, and the outcome of all phases."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bench.common.output import say


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Run:
    side: str
    round: int
    planned: int
    latencies: list[float] = field(default_factory=list)  # seconds, successful operations only
    errors: int = 0
    first_error: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU of the API/benchmark process during the phase
    load_cpu_s: float = 0.0  # api: CPU of the HTTP load generator (a child process) during the phase
    drain_s: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.side} #{self.round}" if self.round else f"{self.side} warm-up"

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / self.ok * 1000 if self.ok else float("nan")

    @property
    def load_cpu_ms(self) -> float:
        return self.load_cpu_s / self.ok * 1000 if self.ok else float("nan")


async def drive(
    run: Run,
    concurrency: int,
    op: Callable[[int], Awaitable[None]],
    deadline: float,
    progress: bool = True,
) -> Run:
    """Call `op(lane)` `run.planned` times over `concurrency` lanes, until done or `deadline` (monotonic)."""
    step = max(1, run.planned // 10)
    issued = done = 0
    start = time.perf_counter()

    async def lane(number: int) -> None:
        nonlocal issued, done
        while issued < run.planned and time.monotonic() < deadline:
            issued += 1
            t0 = time.perf_counter()
            try:
                await op(number)
            except Exception as exc:
                run.errors += 1
                run.first_error = run.first_error or f"{type(exc).__name__}: {exc}"[:300]
            else:
                run.latencies.append(time.perf_counter() - t0)
            done += 1
            if progress and (done % step == 0 or done == run.planned):
                elapsed = time.perf_counter() - start
                say(
                    f"  {run.label:<10} {done:>6}/{run.planned}  {done / elapsed:7.1f}/s  errors {run.errors}"
                )

    await asyncio.gather(*(lane(i) for i in range(min(concurrency, run.planned))))
    run.wall_s = time.perf_counter() - start
    if issued < run.planned:
        say(f"  {run.label}: time limit reached after {issued} of {run.planned}")
    return run


@dataclass
class Outcome:
    runs: list[Run]
    facts: dict[str, str]
    command: str
    backend: str

    def side(self, side: str) -> list[Run]:
        return [r for r in self.runs if r.side == side]

    def median(self, side: str, attr: str) -> float:
        runs = self.side(side)
        return statistics.median(float(getattr(r, attr)) for r in runs) if runs else float("nan")

    @property
    def ratio(self) -> float:
        raw = self.median("raw", "rate")
        return self.median("api", "rate") / raw if raw else float("nan")

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)
