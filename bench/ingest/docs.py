"""The benchmark's section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from bench.common.output import DOCS_PATH, say, write_block
from bench.ingest.report import goals_table, memory_table, results_table
from bench.ingest.results import Outcome

SECTION = "## Position ingest"
BEGIN, END = "<!-- bench:ingest:begin -->", "<!-- bench:ingest:end -->"


def section(outcome: Outcome) -> str:
    args = outcome.args
    lines = [
        f"{SECTION} (`bench/ingest/`)",
        "",
        "Driver sockets streaming GPS positions into `waybill sockets` (the real server, a child process,",
        "on PostgreSQL and Redis), side by side with a bare `websockets` server that only parses each frame",
        "and acknowledges it: same frames, same client, same connection options. The load generator is a",
        f"minimal RFC 6455 client in {args.loaders} child processes; one dispatcher socket (its own process)",
        "is subscribed to the fleet on the waybill server. Latency is from the driver's send to the ack",
        "(ack) and to the dispatcher's receipt (dispatcher); the send time travels in each position's",
        "`seq`. Rates count acknowledged positions after a ramp of "
        f"{args.ramp:.0f} s of each {args.seconds:.0f} s run.",
        "",
        "```sh",
        outcome.command,
        "```",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in outcome.facts.items()]
    lines += ["", *goals_table(outcome), "", *results_table(outcome), "", *memory_table(outcome), ""]
    lines += [
        "Runs: *live, max throughput*: each socket sends one position per frame and keeps "
        f"{args.window} frames unacknowledged; *live, {args.rate:,.0f} positions/s*: that total rate spread "
        "evenly over the sockets (open loop); *backlog*: frames of "
        f"{args.batch} positions, {args.batch_window} frame(s) unacknowledged per socket. "
        '"dispatcher got" is the share of the measured positions the dispatcher received (its outbox '
        'keeps only each vehicle\'s newest position when it falls behind). "server CPU µs/position" is '
        "the server process's CPU time over the measured interval per acknowledged position, \"% of a "
        'core" that CPU time over the interval: well below 100 % while the server falls behind means it '
        "was waiting for the CPU (or for PostgreSQL), not busy. PostgreSQL, Redis, the load generator "
        "and whatever else runs on the machine share the same cores.",
        "",
        "`waybill sockets --processes N` runs N replicas that share the port (the kernel spreads the "
        "connections) and meet on Redis, as replicas on separate hosts do; one Python process uses at "
        "most one core, so on a 2-core machine this is how the server uses both. Their CPU time and "
        "memory are summed in these tables.",
        "",
        "When the bare server itself does not reach the rate goal with one position per frame (it parses "
        "and acknowledges nothing else), that row measures the machine and the `websockets` library more "
        "than the pipeline, and the goal is judged on the backlog run.",
        "",
        "Memory per idle connection: the server's RSS after the dispatcher connected, and again 2 s after "
        f"all {args.connections:,} driver sockets had authenticated (the waybill server also looked up "
        "each driver's vehicle), divided by the number of sockets.",
    ]
    return "\n".join(lines) + "\n"


def write_docs(outcome: Outcome, path: Path = DOCS_PATH) -> None:
    """Replace this benchmark's marked section in `path`; everything else in the file stays."""
    write_block(path, BEGIN, END, section(outcome))
    say(f"wrote the {SECTION!r} section of {path}")
