"""The simulator's options, its per-vehicle report and result, its errors and its timing constants."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.seed import DEMO_DOMAIN, DEV_PASSWORD

CHUNK = 200  # positions per frame when resending a backlog (~40 KiB, under the 64 KiB frame limit)
MAX_BACKLOG = 100_000  # unacknowledged positions kept per vehicle while the socket is down
POLL_S = 2.0  # how often a parked vehicle asks the API whether its arrival was recorded
DRAIN_S = 5.0  # at the end: how long to wait for the last acknowledgements
BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
RETRIES = 5  # REST calls that failed on the way (transport errors, 502-504)
TRANSIENT = frozenset({502, 503, 504})
FINAL = frozenset({"delivered", "returned", "cancelled"})
Emit = Callable[[str], None]

# Close codes after which reconnecting cannot help (api/sockets/frames.py).
FATAL_CLOSE = {4401: "not authenticated", 4403: "forbidden", 4404: "this driver has no vehicle"}


class SimulationError(Exception):
    """Setup that cannot work (unreachable services, no drivers, no routes); the message says what to do."""


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class SimulateOptions:
    vehicles: int = 1
    rate_hz: float = 1.0
    api_url: str = "http://localhost:8000"
    sockets_url: str = "ws://localhost:8001"
    speed_kmh: float = 40.0
    duration_s: float | None = None  # stop after this long even if routes remain; None: until done
    driver_email: str = "driver{n}@" + DEMO_DOMAIN
    password: str = DEV_PASSWORD
    accuracy_m: float = 5.0
    arrival_timeout_s: float = 120.0  # parked at a drop-off without the arrival being detected
    keep_positions: bool = False  # remember every position sent (tests compare them with the stream)


@dataclass
class VehicleReport:
    driver: str
    vehicle: str = ""
    vehicle_id: str | None = None
    route_id: str | None = None
    stops: int = 0
    picked_up: int = 0
    arrived: int = 0
    delivered: int = 0
    missed_arrivals: int = 0  # drop-offs where geofencing did not report the arrival in time
    action_errors: int = 0
    sent: int = 0
    acked: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    unacked: int = 0
    distance_m: float = 0.0
    completed: bool = False
    error: str | None = None
    positions: list[dict[str, Any]] = field(default_factory=list)  # only with keep_positions
    filtered_seqs: set[int] = field(default_factory=set)


@dataclass
class SimulationResult:
    vehicles: list[VehicleReport]
    interrupted: bool  # stopped by Ctrl-C / SIGTERM (or the caller's `stopping`) before the routes ended
    elapsed_s: float
    timed_out: bool = False  # --duration ran out first

    @property
    def ok(self) -> bool:
        return all(v.error is None and v.missed_arrivals == 0 and v.action_errors == 0 for v in self.vehicles)


def stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
