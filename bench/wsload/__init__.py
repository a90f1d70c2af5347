"""The load generator of `bench.ingest`: many driver sockets and one dispatcher, in a child process.

The sockets speak plain RFC 6455 over an `asyncio.Protocol`, not through a WebSocket library: a frame
is built with one `bytes` concatenation (client frames carry the all-zero mask key, which the
protocol allows and which makes masking a no-op) and acknowledgements are parsed in
`data_received`, with no task or future per frame. On a small machine the load generator shares the
CPUs with the server under test, so the less it costs the more the figures say about the server.
The same client drives the real server and the bare `websockets` server.

Send times travel inside the positions: `seq = microseconds since the run's epoch * 1000 + index in
the frame`, where the epoch is a `time.monotonic()` reading of the parent (CLOCK_MONOTONIC, one
clock for every process on the host). An ack or a position a dispatcher receives therefore says
when it was sent, without a table shared between processes.

Jobs arrive as JSON lines on stdin; answers go to stdout as lines starting with "@".

The package: protocol.py (the RFC 6455 client), timing.py (send times in seqs, latency histograms),
drivers.py (driver sockets and the runs), dispatcher.py (the dispatcher socket), role.py (the child).
"""
