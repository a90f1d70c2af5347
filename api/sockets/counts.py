"""The plain counts the socket server keeps as it works, exported by api/sockets/metrics.py at scrape
time: integers bumped on the event loop (which also runs the scrape), no lock and no label lookup.

A leaf: the pipeline, the tracker and the protocols import it, and so does metrics.py, which therefore
needs none of them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class EndpointCounts:
    """Counts of one endpoint (`driver` or `dispatch`), kept by the protocols and outboxes."""

    connections: int = 0
    frames_in: int = 0
    frames_out: int = 0


@dataclass
class IngestStats:
    """Positions through the ingest pipeline (api/sockets/ingest.py)."""

    received: int = 0
    accepted: int = 0
    stored: int = 0
    filtered: dict[str, int] = field(default_factory=dict)


@dataclass
class TrackingStats:
    """Tracking events from the positions (api/sockets/arrivals.py)."""

    arrivals: int = 0
    etas: int = 0
    geofence: int = 0
    errors: int = 0
