"""`waybill simulate`: drive seeded drivers along their routes through the real API and driver socket.

Each simulated vehicle logs in as a driver over REST, reads its current route, loads its drop-offs at
the depot, then drives from stop to stop on straight great-circle legs at a constant speed, reporting
positions over /ws/driver like the driver app does (auth frame, `position` frames with a `seq`, resend
of everything not yet acknowledged after a reconnect). At a drop-off it parks and keeps reporting until
the server's geofencing reports the arrival (the delivery's `delivery.changed` frame on the driver
socket, or its status over REST): the simulator never calls the arrive action itself. Then it acts
through the REST driver actions: pick-up, depart, proof upload and deliver at the stop's position.

The package: options.py (options, reports, errors), driver_api.py (REST), link.py (the driver socket),
vehicle.py (one vehicle), fleet.py (`simulate` and the `waybill simulate` command).
"""

from __future__ import annotations

from tools.simulate.driver_api import DriverApi, proof_png
from tools.simulate.fleet import format_summary, run, simulate
from tools.simulate.link import DriverLink
from tools.simulate.options import (
    ApiError,
    SimulateOptions,
    SimulationError,
    SimulationResult,
    VehicleReport,
)

__all__ = [
    "ApiError",
    "DriverApi",
    "DriverLink",
    "SimulateOptions",
    "SimulationError",
    "SimulationResult",
    "VehicleReport",
    "format_summary",
    "proof_png",
    "run",
    "simulate",
]
