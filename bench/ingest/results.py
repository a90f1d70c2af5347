"""What a run is and what it measured: per run, per server, and the whole outcome."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from bench.wsload.timing import hist_merge, hist_percentile

# The counters a load generator answers with, summed over the load generators.
SUMMED = ("sent", "acked", "acked_in_window", "filtered", "errors", "blocked", "unacked_frames", "closed")


@dataclass
class RunSpec:
    name: str  # live-max, live-rate, backlog-max
    label: str
    per_frame: int
    rate: float | None
    window: int


@dataclass
class RunResult:
    server: str
    spec: str
    label: str
    sent: int = 0
    acked: int = 0
    acked_in_window: int = 0
    window_s: float = 0.0
    filtered: int = 0
    errors: int = 0
    first_error: str | None = None
    blocked: int = 0
    unacked_frames: int = 0
    closed: int = 0
    ack_hist: dict[int, int] = field(default_factory=dict)
    dispatch_hist: dict[int, int] = field(default_factory=dict)
    dispatch_received: int = 0
    dispatch_closed: bool = False
    server_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.acked_in_window / self.window_s if self.window_s else 0.0

    def ack_ms(self, q: float) -> float:
        return hist_percentile(self.ack_hist, q)

    def dispatch_ms(self, q: float) -> float:
        return hist_percentile(self.dispatch_hist, q)

    @property
    def measured(self) -> int:
        return sum(self.ack_hist.values())

    @property
    def cpu_share(self) -> float:
        """The server's CPU time over the measured interval, in % of one core."""
        return self.server_cpu_s / self.window_s * 100 if self.window_s else float("nan")

    @property
    def cpu_us(self) -> float:
        return self.server_cpu_s / self.acked_in_window * 1e6 if self.acked_in_window else float("nan")

    def add_loader(self, answer: dict[str, Any]) -> None:
        """Count in one load generator's answer to the run."""
        for name in SUMMED:
            setattr(self, name, getattr(self, name) + answer[name])
        self.window_s = answer["window_s"]
        self.first_error = self.first_error or answer["first_error"]
        hist_merge(self.ack_hist, answer["ack_hist"])

    def add_dispatcher(self, answer: dict[str, Any]) -> None:
        """Count in what the dispatcher received."""
        hist_merge(self.dispatch_hist, answer["hist"])
        self.dispatch_received = answer["received"]
        self.dispatch_closed = answer["closed"]


@dataclass
class ServerResult:
    server: str
    connected: int = 0
    connect_s: float = 0.0
    rss_before: int = 0
    rss_after: int = 0
    runs: list[RunResult] = field(default_factory=list)
    exit_code: int | None = None
    exit_s: float = float("nan")

    @property
    def idle_kib(self) -> float:
        return (self.rss_after - self.rss_before) / self.connected / 1024 if self.connected else float("nan")


@dataclass
class Outcome:
    servers: list[ServerResult]
    facts: dict[str, str]
    command: str
    args: argparse.Namespace

    def server(self, kind: str) -> ServerResult | None:
        return next((s for s in self.servers if s.server == kind), None)

    def run(self, kind: str, spec: str) -> RunResult | None:
        s = self.server(kind)
        return next((r for r in s.runs if r.spec == spec), None) if s else None


def run_specs(args: argparse.Namespace) -> list[RunSpec]:
    specs = [
        RunSpec("live-max", "live, max throughput", 1, None, args.window),
        RunSpec("live-rate", f"live, {args.rate:,.0f} positions/s", 1, float(args.rate), 1000),
        RunSpec("backlog-max", f"backlog, {args.batch}/frame, max", args.batch, None, args.batch_window),
    ]
    return [spec for spec in specs if spec.name in args.runs]
