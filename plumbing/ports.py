"""Port checks before start-up, so a busy port is one clear line instead of a traceback."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class PortClaim:
    port: int
    what: str
    setting: str  # the variable that moves it


class PortInUse(Exception):
    pass


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port_range(n: int, host: str = "127.0.0.1") -> int:
    """The first of n consecutive ports free on `host` (e.g. the metrics ports of n socket replicas),
    chosen from the ephemeral range by the kernel; for tests and benchmarks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            base = int(sock.getsockname()[1])
        if base + n <= 65_535 and all(port_free(host, base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports on {host}")


def ensure_ports_free(host: str, claims: list[PortClaim]) -> None:
    for claim in claims:
        if not port_free(host, claim.port):
            raise PortInUse(
                f"port {claim.port} ({claim.what}) is already in use: stop the process holding it "
                f"(e.g. `lsof -i :{claim.port}`) or set {claim.setting} to another port"
            )
