"""Facts about the machine and its processes, from /proc (Linux) and the standard library."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import socket
from datetime import UTC, datetime
from pathlib import Path


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine(unit: str) -> str:
    """E.g. "2 cores (AMD EPYC ...), Linux 6.1": `unit` names what os.cpu_count() counts."""
    return f"{os.cpu_count()} {unit} ({cpu_model()}), {platform.system()} {platform.release()}"


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def own_cpu_seconds() -> float:
    """CPU time of this process so far (user + system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """CPU time of another process so far (user + system, every thread); 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (`waybill sockets --processes N`: the supervisor and its replicas)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                pids += process_tree(int(child))
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of a process and its descendants."""
    return sum(process_cpu_seconds(p) for p in process_tree(pid))


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):  # gone since it was listed
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
