"""The benchmark's blocks in docs/benchmarks.md: the section's head, and a block per database backend."""

from __future__ import annotations

from pathlib import Path

from bench.common.output import DOCS_PATH, replace_block, say
from bench.deliveries.report import runs_table, summary_table, verdict
from bench.deliveries.runs import Outcome

INTRO = """# Benchmarks

Numbers measured with the scripts in `bench/`, on the machine named with each result. Each
section says what is measured and the exact command; re-run it to refresh the section
(`--write-docs` rewrites only its own marked blocks and leaves the rest of this file alone).
"""

SECTION_HEAD = """## Deliveries created per second: API vs raw `start_workflow`

`bench/deliveries/` compares, in one run and on one Temporal server, creating deliveries through
the REST API (`POST /api/v1/deliveries` over HTTP, each request with its own `Idempotency-Key`)
with starting the same workflow directly (`client.start_workflow(DeliveryWorkflow.run,
DeliveryInput(...))` on the API's own Temporal client, with the same task queue and workflow-id
policies). Goal: the API reaches at least **0.8x** the raw start rate.

How it runs:

- The benchmark process hosts the API (uvicorn on a free loopback port, the same app and
  resources as `waybill api`, access log off as there) and issues the raw starts. The HTTP
  requests come from a child process, so the load generator does not share the API's event loop:
  plain asyncio HTTP/1.1, one keep-alive connection per concurrent lane, the request pre-encoded
  (about 0.1–0.2 ms of CPU per request, reported as "load generator CPU"; httpx cost 2.4 ms, as
  much as a tenth of what it measured). The bundled Temporal dev server (in memory) is another
  process, and so is the worker unless `--worker inprocess|none`. On a small machine they all
  share its CPUs.
- `--api-processes N` spreads the lanes over N API processes (this one and N-1 children, each
  with its own engine and Temporal client, like replicas behind a load balancer; their CPU is
  counted as the API's). The raw starts stay in one process: its client needs under 1 ms of CPU
  per start and is not what limits the raw rate (the server is). The default and the figures
  below use one API process.
- The worker runs every started workflow as it arrives (four activities per new delivery:
  projection update, event append, bus publish, outbox insert): the same work per delivery on both
  sides. After each phase the benchmark waits until the worker has recorded every delivery started
  so far ("drained"), so no phase inherits the other's backlog.
- Phases alternate A B B A … (`--rounds`) against drift; 20 of each go first as warm-up and are not
  counted. Each side is summarised by the median over its runs.
- Latency is per operation as the client sees it: for the API the whole HTTP exchange, for raw
  the `start_workflow` call. Errors are counted and left out of the rate. "CPU ms/delivery" is the
  CPU time of the benchmark process (API server or raw client) per delivery created.
- Per request the API does more than the raw start: HTTP parsing and JSON/pydantic validation,
  JWT verification, the user check (`SELECT users` at most every 5 s per user and process), the
  idempotency claim and the projection row (on PostgreSQL one autocommit statement, `WITH claim
  AS (INSERT … ON CONFLICT DO NOTHING RETURNING) INSERT … SELECT FROM claim`; on SQLite two),
  then the same `start_workflow`, and the response (serialisation, metrics and request-id
  middleware). The API's connection pool is sized to the concurrency (`db_pool_size`).
- `--database-url` should name a database made for the run (for example `CREATE DATABASE
  waybill_bench`, dropped afterwards): the benchmark migrates it and adds an organization and
  thousands of deliveries. Without it, a temporary SQLite file is used and deleted.
"""

BEGIN, END = "<!-- bench:deliveries:{}:begin -->", "<!-- bench:deliveries:{}:end -->"


def backend_block(outcome: Outcome) -> str:
    title = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(outcome.backend, outcome.backend)
    lines = [f"### {title}", "", "```sh", outcome.command, "```", ""]
    lines += [f"- {key}: {value}" for key, value in outcome.facts.items()]
    lines += [
        "",
        *summary_table(outcome),
        "",
        verdict(outcome),
        "",
        "Every run:",
        "",
        *runs_table(outcome.runs),
    ]
    api_cpu, raw_cpu = outcome.median("api", "cpu_ms"), outcome.median("raw", "cpu_ms")
    if api_cpu == api_cpu and api_cpu > 0:  # not NaN
        lines += [
            "",
            f"The API process spent {api_cpu:.1f} ms of CPU per delivery (one event loop, so at most "
            f"about {1000 / api_cpu:.0f} deliveries/s per API process on this CPU if nothing else ran); "
            f"a raw start cost the client {raw_cpu:.1f} ms.",
        ]
    drains = [r.drain_s for r in outcome.runs]
    if drains and outcome.facts.get("worker", "").startswith("in "):
        lines += [
            "",
            f"After each phase the worker needed {min(drains):.1f}–{max(drains):.1f}s more to drain.",
        ]
    return "\n".join(lines) + "\n"


def write_docs(outcome: Outcome, path: Path = DOCS_PATH) -> None:
    """Rewrite this benchmark's marked blocks in `path`; everything else in the file stays."""
    doc = path.read_text() if path.exists() else INTRO
    doc = _replace(doc, "intro", SECTION_HEAD, None)
    # Backends keep a fixed order (SQLite, then PostgreSQL), each replaced only by its own run.
    previous = "intro"
    for backend in ("sqlite", "postgresql"):
        if backend == outcome.backend:
            doc = _replace(doc, backend, backend_block(outcome), previous)
        if BEGIN.format(backend) in doc:
            previous = backend
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    say(f"wrote {path}")


def _replace(doc: str, name: str, content: str, after: str | None) -> str:
    """The block `name` set to `content`; a new one goes after the block `after` when there is one."""
    anchor = END.format(after) if after is not None else None
    return replace_block(doc, BEGIN.format(name), END.format(name), content, anchor)
