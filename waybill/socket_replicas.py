"""`waybill sockets --processes N`: N socket-server processes sharing one port on one host.

One Python process handles about one core's worth of frames. Each replica binds the socket port
with SO_REUSEPORT, so the kernel spreads new connections over them; each runs the whole pipeline
(filters, history, latest positions, tracking) for its own sockets, and the replicas meet on Redis
exactly as replicas on different hosts do: positions and state changes reach every dispatcher
through the bus, and per-user connection caps are counted with Redis leases.

This supervisor only starts the replicas and watches them:

- SIGTERM or SIGINT is passed on to every replica, which then stores and acknowledges what it
  received before closing its sockets, as a single server does; the supervisor exits when all have
  (code 0 if every replica exited with 0).
- If a replica dies on its own, the supervisor stops the others and exits with code 1, so the
  process manager (systemd, Kubernetes) restarts the whole set with a clean slate.

Replica i serves its metrics on `sockets_metrics_port + i` (counters from different processes
cannot be merged into one scrape target); the shared port's /metrics says where they are.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import FrameType

from waybill.ports import PortClaim
from waybill.settings import Settings

log = logging.getLogger(__name__)
POLL_S = 0.2
REPLICA_VAR = "WAYBILL_SOCKETS_REPLICA"  # set by the supervisor for each replica, not a user setting


def current_replica() -> int | None:
    """This process's index among the replicas of `waybill sockets --processes N`, None if it is not one."""
    value = os.environ.get(REPLICA_VAR)
    return int(value) if value else None


def replica_ports(settings: Settings, processes: int) -> list[PortClaim]:
    """The ports `waybill sockets --processes N` needs free before it starts."""
    claims = [PortClaim(settings.sockets_port, "sockets", "WAYBILL_SOCKETS_PORT")]
    claims += [
        PortClaim(
            settings.sockets_metrics_port + i,
            f"metrics of sockets replica {i}",
            "WAYBILL_SOCKETS_METRICS_PORT",
        )
        for i in range(processes)
    ]
    return claims


def replica_env(base: Mapping[str, str], index: int) -> dict[str, str]:
    return {**base, "WAYBILL_SOCKETS_PROCESSES": "1", REPLICA_VAR: str(index)}


def run_replicas(processes: int, env: Mapping[str, str] | None = None) -> int:
    """Run `processes` replicas of `waybill sockets` until a signal stops them or one of them dies."""
    base = dict(os.environ if env is None else env)
    cmd = [sys.executable, "-m", "waybill", "sockets"]
    stopping = False
    procs: list[subprocess.Popen[bytes]] = []

    def stop_all(sig: int = signal.SIGTERM) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            log.info("stopping %d sockets replicas (%s)", len(procs), signal.Signals(signum).name)
        stopping = True
        stop_all()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    failed = False
    try:
        procs.extend(subprocess.Popen(cmd, env=replica_env(base, i)) for i in range(processes))
        log.info("sockets: %d replicas started (pids %s)", processes, ", ".join(str(p.pid) for p in procs))
        while any(p.poll() is None for p in procs):
            if not stopping:
                for i, p in enumerate(procs):
                    if p.returncode is not None:
                        log.error(
                            "sockets replica %d (pid %d) exited with code %s: stopping the others",
                            i,
                            p.pid,
                            p.returncode,
                        )
                        failed = stopping = True
                        stop_all()
                        break
            time.sleep(POLL_S)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_all(signal.SIGKILL)  # only if this loop was left by an exception
    if failed:
        return 1
    return next((p.returncode for p in procs if p.returncode), 0)
