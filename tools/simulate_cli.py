"""The `waybill simulate` arguments; the simulator itself (tools/simulate.py) is imported when it runs."""

from __future__ import annotations

import argparse
from typing import Any

from plumbing.settings import Settings


def add_simulate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="drive the seeded drivers along their routes over the real API and driver socket",
        description="Log in as drivers, follow each one's current route, stream positions over /ws/driver, "
        "wait for geofencing to detect each arrival, then pick up and deliver over REST (docs/simulator.md).",
    )
    p.add_argument("--vehicles", type=int, default=1, help="how many drivers to simulate (default: 1)")
    p.add_argument("--rate", type=float, default=1.0, help="positions per second per vehicle (default: 1)")
    p.add_argument("--api", default=None, help="API base URL (default: http://localhost:WAYBILL_API_PORT)")
    p.add_argument(
        "--sockets", default=None, help="socket server URL (default: ws://localhost:WAYBILL_SOCKETS_PORT)"
    )
    p.add_argument("--speed-kmh", type=float, default=40.0, help="driving speed (default: 40)")
    p.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: when done)"
    )
    p.add_argument(
        "--driver-email",
        default=None,
        help="e-mail template with {n} for driver n (default: driver{n}@demo.waybill.test)",
    )
    p.add_argument("--password", default=None, help="the drivers' password (default: the dev password)")
    p.add_argument(
        "--arrival-timeout",
        type=float,
        default=120.0,
        help="seconds to wait at a drop-off for the arrival to be detected (default: 120)",
    )


async def run_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from tools.simulate import SimulateOptions, run

    defaults = SimulateOptions()
    opts = SimulateOptions(
        vehicles=args.vehicles,
        rate_hz=args.rate,
        api_url=args.api or f"http://localhost:{settings.api_port}",
        sockets_url=args.sockets or f"ws://localhost:{settings.sockets_port}",
        speed_kmh=args.speed_kmh,
        duration_s=args.duration,
        driver_email=args.driver_email or defaults.driver_email,
        password=args.password or defaults.password,
        arrival_timeout_s=args.arrival_timeout,
    )
    return await run(opts)
