"""The benchmark's lines and tables: one line per phase, every run, the medians and the verdict."""

from __future__ import annotations

from collections.abc import Sequence

from bench.common.output import fmt, say
from bench.deliveries.config import GOAL_RATIO
from bench.deliveries.runs import Outcome, Run


def run_line(run: Run) -> str:
    return (
        f"  -> {run.ok} in {run.wall_s:.2f}s = {run.rate:.1f}/s, p50 {run.p50_ms:.1f} ms, "
        f"p99 {run.p99_ms:.1f} ms, errors {run.errors}, CPU {run.cpu_ms:.1f} ms/delivery"
        + (f" (+ load generator {run.load_cpu_ms:.1f})" if run.side == "api" else "")
        + f"; worker drained in {run.drain_s:.1f}s"
    )


def runs_table(runs: Sequence[Run]) -> list[str]:
    lines = [
        "| side | run | deliveries | errors | wall s | rate /s | p50 ms | p99 ms | CPU ms/delivery "
        "| load generator CPU ms/delivery |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in runs:
        load = fmt(r.load_cpu_ms) if r.side == "api" else "–"
        lines.append(
            f"| {r.side} | {r.round} | {r.ok} | {r.errors} | {r.wall_s:.2f} | {fmt(r.rate)} | "
            f"{fmt(r.p50_ms)} | {fmt(r.p99_ms)} | {fmt(r.cpu_ms)} | {load} |"
        )
    return lines


def summary_table(outcome: Outcome) -> list[str]:
    lines = [
        "| median of runs | API (`POST /api/v1/deliveries`) | raw `start_workflow` | API / raw |",
        "|---|--:|--:|--:|",
    ]
    rows = (("rate /s", "rate"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("CPU ms/delivery", "cpu_ms"))
    for label, attr in rows:
        a, b = outcome.median("api", attr), outcome.median("raw", attr)
        lines.append(f"| {label} | {fmt(a)} | {fmt(b)} | {fmt(a / b if b else float('nan'), 2)}x |")
    return lines


def verdict(outcome: Outcome) -> str:
    ratio = outcome.ratio
    met = "meets" if ratio >= GOAL_RATIO else "is below"
    return f"API/raw rate ratio **{ratio:.2f}x**, which {met} the goal of {GOAL_RATIO}x."


def print_report(outcome: Outcome) -> None:
    say()
    say(f"Results ({outcome.backend}):")
    for line in runs_table(outcome.runs):
        say(line)
    say()
    for line in summary_table(outcome):
        say(line)
    say()
    say(verdict(outcome).replace("**", ""))
