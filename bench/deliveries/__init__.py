"""Deliveries created per second: through the REST API, and with raw `client.start_workflow`, in one run.

    .venv/bin/python -m bench.deliveries [--n 1000] [--concurrency 32] [--rounds 2]
                                         [--database-url URL] [--worker process|inprocess|none]
                                         [--time-limit SECONDS] [--write-docs]

Starts the bundled Temporal dev server (in memory; or uses TEMPORAL_ADDRESS), migrates a database (a
temporary SQLite file unless --database-url), makes a tenant with a dispatcher, runs the API (uvicorn
on a free loopback port) in this process and a worker on the benchmark's own task queue (by default
in a child process, as `waybill worker` runs beside `waybill api`). Then, alternating A B B A … so
that drift hits both sides alike:

  api  N x POST /api/v1/deliveries over HTTP, each with its own Idempotency-Key, sent by a child
       process (httpx, one keep-alive connection per concurrent lane), so that the load generator
       does not share the API's event loop
  raw  N x client.start_workflow(DeliveryWorkflow.run, DeliveryInput(...)) from this process, on
       the API's own Temporal client: same server, task queue and workflow-id policies

both with the same concurrency. After each phase it waits until the worker has recorded every
delivery started so far, so that no phase pays for the other's backlog. Reports count, errors, wall
time, rate, p50/p99 latency and this process's CPU per delivery for each phase, each side's median
over its runs, and the API/raw rate ratio (goal: at least GOAL_RATIO). Bounded in count and time;
all traffic stays on loopback unless TEMPORAL_ADDRESS or --database-url point elsewhere.

The package: config.py (constants, the settings every process of the run uses), runs.py (a phase's
figures and the lanes that drive it), http_load.py (the HTTP load generator), processes.py (the worker
and extra API children), fixture.py (tenant, drain, Temporal, versions), measure.py (the benchmark),
report.py and docs.py (tables, docs/benchmarks.md), cli.py (arguments and `main`).
"""
