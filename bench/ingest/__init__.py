"""Position ingest through the socket server, side by side with a bare `websockets` server.

    .venv/bin/python -m bench.ingest [--connections 2000] [--rate 5000] [--seconds 12]
                                     [--database-url URL] [--redis-url URL] [--loaders 2]
                                     [--servers bare,waybill] [--write-docs]

Sets up a PostgreSQL database (created if missing, migrated; one organization with K drivers bound
to K vehicles and a dispatcher, written directly; access tokens minted with the project's
TokenService), then for each server in turn:

  bare     a `websockets` asyncio server (same loop, same connection options) that parses each
           frame and acknowledges its seqs, nothing else, in a child process
  waybill  `waybill sockets` itself, as a child process, on that database and on Redis
           (`--redis-url`, a database number of its own; the bench's keys carry their own prefix)

and against each: K driver sockets (split over `--loaders` child processes) authenticate and sit idle
(the server's RSS before and after, divided by K, is the memory per idle connection), send one
position each (warm-up), then three runs:

  live max      each socket streams one position per frame and keeps `--window` frames unacknowledged
                (closed loop): the most the server sustains
  live RATE/s   RATE positions per second in all (default 5,000), one per frame, spread evenly over
                the sockets (open loop)
  backlog max   frames of `--batch` positions (default 100), as a phone uploads its backlog after a
                gap, `--batch-window` frames unacknowledged per socket (closed loop)

On the waybill server one dispatcher socket, in a child process of its own, is subscribed to the
fleet; for every position it receives it notes the time since the driver sent it (the send time is
encoded in the position's `seq`, see bench/wsload/). Rates count acknowledged positions between
the end of the ramp and the end of the run; latencies are of positions sent in that interval. The
server's CPU time per position comes from /proc. Bounded in time (each run `--seconds`, then at most
15 s for the last acknowledgements); everything stays on loopback.

The package: config.py (defaults, goals, server kinds), processes.py (the bare server, the server and
load-generator child processes), fleet.py (database and Redis set-up), results.py (what a run
measured), runs.py (one run), server_bench.py (one server's connections and runs), measure.py (the
whole benchmark), report.py and docs.py (tables, docs/benchmarks.md), cli.py (arguments and `main`).
"""
