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
- If the supervisor itself dies (SIGKILL, the OOM killer), the kernel sends each replica SIGTERM
  (Linux `PR_SET_PDEATHSIG`), so none is left holding the port.

Replica i serves its metrics on `sockets_metrics_port + i` (counters from different processes
cannot be merged into one scrape target); the shared port's /metrics says where they are.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from plumbing.ports import PortClaim
from plumbing.settings import ConfigError, Settings

log = logging.getLogger(__name__)
POLL_S = 0.2
PR_SET_PDEATHSIG = 1  # prctl(2)
REPLICA_VAR = "WAYBILL_SOCKETS_REPLICA"  # set by the supervisor for each replica, not a user setting


def current_replica() -> int | None:
    """This process's index among the replicas of `waybill sockets --processes N`, None if it is not one."""
    value = os.environ.get(REPLICA_VAR)
    return int(value) if value else None


def replica_ports(settings: Settings, processes: int) -> list[PortClaim]:
    """The ports `waybill sockets --processes N` needs free before it starts."""
    first = settings.sockets_metrics_port
    last = first + processes - 1
    if last > 65_535 or first <= settings.sockets_port <= last:
        raise ConfigError(
            f"the replicas' metrics ports {first}..{last} (WAYBILL_SOCKETS_METRICS_PORT and up) must end "
            f"below 65536 and not include the socket port {settings.sockets_port}"
        )
    claims = [PortClaim(settings.sockets_port, "sockets", "WAYBILL_SOCKETS_PORT")]
    claims += [
        PortClaim(first + i, f"metrics of sockets replica {i}", "WAYBILL_SOCKETS_METRICS_PORT")
        for i in range(processes)
    ]
    return claims


def _die_with_parent() -> None:
    """In each replica before exec: SIGTERM when the supervisor dies, even by SIGKILL or the OOM killer,
    so no replica is left holding the port (it then stores and acknowledges what it has, as on any
    SIGTERM)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class _Replicas:
    """The running replicas: started together, watched, and stopped together."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stopping = False
        self.failed = False

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(sig)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("stopping the sockets replicas (%s)", signal.Signals(signum).name)
        self.stopping = True
        self.stop_all()

    def start(self, processes: int) -> None:
        cmd = [sys.executable, "-m", "waybill", "sockets"]
        preexec = _die_with_parent if sys.platform == "linux" else None
        for i in range(processes):
            env = {**os.environ, REPLICA_VAR: str(i)}  # a replica runs as one process (`current_replica`)
            self.procs.append(subprocess.Popen(cmd, env=env, preexec_fn=preexec))  # noqa: PLW1509
        if self.stopping:  # a signal came while they were being started: the later ones were not told yet
            self.stop_all()
        pids = ", ".join(str(p.pid) for p in self.procs)
        log.info("sockets: %d replicas started (pids %s)", processes, pids)

    def watch(self) -> None:
        """Until every replica has exited; the first to die unasked stops the others."""
        while True:
            alive = [p.poll() is None for p in self.procs]  # every one polled: reaped, and its exit seen
            if not any(alive):
                return
            if not self.stopping and not all(alive):
                i = alive.index(False)
                log.error(
                    "sockets replica %d (pid %d) exited with code %s: stopping the others",
                    i,
                    self.procs[i].pid,
                    self.procs[i].returncode,
                )
                self.failed = self.stopping = True
                self.stop_all()
            time.sleep(POLL_S)


def run_replicas(processes: int) -> int:
    """Run `processes` replicas of `waybill sockets` until a signal stops them or one of them dies."""
    replicas = _Replicas()
    previous = {sig: signal.signal(sig, replicas.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        replicas.start(processes)
        replicas.watch()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        replicas.stop_all(signal.SIGKILL)  # only if this loop was left by an exception
    if replicas.failed:
        return 1
    # A replica stopped by the signal before it had set up its own handlers died of it: nothing was lost.
    stopped = {0, -signal.SIGTERM, -signal.SIGINT}
    return 0 if all(p.returncode in stopped for p in replicas.procs) else 1
