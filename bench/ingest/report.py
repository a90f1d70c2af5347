"""The benchmark's lines and tables: one line per run as it ends, then results, memory and goals."""

from __future__ import annotations

import re
from collections.abc import Callable

from bench.common.output import fmt, say
from bench.ingest.config import GOAL_IDLE_KIB, GOAL_P99_MS, GOAL_RATE, is_waybill, label
from bench.ingest.results import Outcome, RunResult, run_specs


def run_line(r: RunResult) -> str:
    line = (
        f"  -> {r.rate:,.0f} positions/s acknowledged; ack p50 {fmt(r.ack_ms(50))} ms, p99 "
        f"{fmt(r.ack_ms(99))} ms; server CPU {fmt(r.cpu_us)} µs/position ({fmt(r.cpu_share, 0)}% of a "
        f"core); sent {r.sent:,}, acked {r.acked:,}, filtered {r.filtered:,}, errors {r.errors}"
    )
    if is_waybill(r.server):
        line += (
            f"; dispatcher p50 {fmt(r.dispatch_ms(50))} ms, p99 {fmt(r.dispatch_ms(99))} ms, "
            f"received {r.dispatch_received:,} of {r.measured:,}"
        )
    if r.blocked:
        line += f"; {r.blocked:,} not sent (every socket's window full)"
    if r.first_error:
        line += f"\n     first error: {r.first_error}"
    return line


def results_table(outcome: Outcome) -> list[str]:
    lines = [
        "| run | server | positions/s acked | ack p50 ms | ack p99 ms | dispatcher p50 ms "
        "| dispatcher p99 ms "
        "| dispatcher got | server CPU µs/position | server CPU % of a core |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for spec in run_specs(outcome.args):
        for kind in [s.server for s in outcome.servers]:
            r = outcome.run(kind, spec.name)
            if r is None:
                continue
            name = label(kind)
            ours = is_waybill(kind)
            got = f"{r.dispatch_received / r.measured:.1%}" if ours and r.measured else "—"
            d50 = fmt(r.dispatch_ms(50)) if ours else "—"
            d99 = fmt(r.dispatch_ms(99)) if ours else "—"
            lines.append(
                f"| {spec.label} | {name} | {r.rate:,.0f} | {fmt(r.ack_ms(50))} | {fmt(r.ack_ms(99))} | "
                f"{d50} | {d99} | {got} | {fmt(r.cpu_us)} | {fmt(r.cpu_share, 0)} |"
            )
    return lines


def memory_table(outcome: Outcome) -> list[str]:
    lines = [
        "| server | connections | RSS before MiB | RSS after MiB | KiB per idle connection |",
        "|---|--:|--:|--:|--:|",
    ]
    for s in outcome.servers:
        name = label(s.server)
        lines.append(
            f"| {name} | {s.connected:,} | {s.rss_before / 2**20:.1f} | {s.rss_after / 2**20:.1f} | "
            f"{fmt(s.idle_kib)} |"
        )
    return lines


def goals_table(outcome: Outcome) -> list[str]:
    """The goals, measured on every waybill configuration that ran (one column each)."""
    args = outcome.args
    bare_live = outcome.run("bare", "live-max")
    kinds = [s.server for s in outcome.servers if is_waybill(s.server)]
    ceiling = f" (bare server: {bare_live.rate:,.0f})" if bare_live else ""

    def measured(kind: str, spec: str, value: Callable[[RunResult], float]) -> float:
        r = outcome.run(kind, spec)
        return value(r) if r is not None else float("nan")

    def idle(kind: str) -> float:
        srv = outcome.server(kind)
        return srv.idle_kib if srv else float("nan")

    rows: list[tuple[str, str, Callable[[str], float], bool]] = [
        (
            f"sustained positions/s (live, one per frame, max){ceiling}",
            f"≥ {GOAL_RATE:,.0f}",
            lambda k: measured(k, "live-max", lambda r: r.rate),
            True,
        ),
        (
            f"sustained positions/s (backlog, {args.batch} per frame, max)",
            f"≥ {GOAL_RATE:,.0f}",
            lambda k: measured(k, "backlog-max", lambda r: r.rate),
            True,
        ),
        (
            f"dispatcher p99 ms at {args.rate:,.0f}/s",
            f"< {GOAL_P99_MS:.0f}",
            lambda k: measured(k, "live-rate", lambda r: r.dispatch_ms(99)),
            False,
        ),
        ("KiB per idle connection", f"< {GOAL_IDLE_KIB:.0f}", idle, False),
    ]
    lines = [
        "| goal | target | " + " | ".join(f"{label(k)} | met" for k in kinds) + " |",
        "|---|--:|" + "--:|---|" * len(kinds),
    ]
    for name, target, value_of, higher in rows:
        bound = float(re.sub(r"[^0-9.]", "", target))
        cells = []
        for kind in kinds:
            value = value_of(kind)
            met = (
                "n/a"
                if value != value
                else ("yes" if (value >= bound if higher else value < bound) else "**no**")
            )
            cells.append(f"{fmt(value, 0 if higher else 1)} | {met}")
        lines.append(f"| {name} | {target} | " + " | ".join(cells) + " |")
    return lines


def print_report(outcome: Outcome) -> None:
    say()
    for table in (results_table(outcome), memory_table(outcome), goals_table(outcome)):
        for line in table:
            say(line)
        say()
