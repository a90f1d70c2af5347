"""The whole fleet: sign every driver in, run a VehicleSim per open route, stop on time or signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

import httpx

from tools.simulate.driver_api import DriverApi
from tools.simulate.options import (
    ApiError,
    Emit,
    SimulateOptions,
    SimulationError,
    SimulationResult,
    stdout,
)
from tools.simulate.vehicle import VehicleSim, http_url


async def _reachable(http: httpx.AsyncClient, url: str, what: str, flag: str) -> None:
    try:
        r = await http.get(url, timeout=5)
    except httpx.TransportError as exc:
        raise SimulationError(
            f"cannot reach the {what} at {url} ({exc or type(exc).__name__}): is `waybill dev` running? "
            f"Point {flag} at it"
        ) from None
    if r.status_code != 200:
        raise SimulationError(f"the {what} at {url} answered {r.status_code}, not 200: check {flag}")


def _check(opts: SimulateOptions) -> None:
    if opts.vehicles < 1 or opts.rate_hz <= 0 or opts.speed_kmh <= 0:
        raise SimulationError("--vehicles, --rate and --speed-kmh must be positive")
    if opts.vehicles > 1 and "{n}" not in opts.driver_email:
        raise SimulationError("--driver-email needs {n} (the driver's number) to simulate several vehicles")


async def _sign_in(http: httpx.AsyncClient, opts: SimulateOptions) -> list[DriverApi]:
    """A signed-in session per driver; names the drivers that the password does not let in."""
    apis = [
        DriverApi(http, opts.driver_email.format(n=n), opts.password) for n in range(1, opts.vehicles + 1)
    ]
    missing: list[str] = []
    for api in apis:
        try:
            await api.login()
        except ApiError as exc:
            if exc.status != 401:
                raise SimulationError(f"login of {api.email} failed: {exc}") from None
            missing.append(api.email)
    if missing:
        names = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise SimulationError(
            f"cannot sign in as {names} with the given password: create the drivers with "
            f"`waybill seed --drivers {opts.vehicles}` (development passwords), or pass --driver-email "
            "and --password"
        )
    return apis


async def _vehicles(
    apis: list[DriverApi], opts: SimulateOptions, emit: Emit, stopping: asyncio.Event
) -> list[VehicleSim]:
    """A VehicleSim per driver with an open route; the others are skipped (and said so)."""
    sims: list[VehicleSim] = []
    without: list[str] = []
    for api in apis:
        route = await api.current_route()
        if route is None or route["status"] == "completed":
            without.append(api.email)
            continue
        sims.append(VehicleSim(opts, api, route, emit, stopping))
    for email in without:
        emit(f"{email} has no open route: skipped")
    return sims


async def _drive_all(
    sims: list[VehicleSim], duration_s: float | None, stopping: asyncio.Event, started: float
) -> SimulationResult:
    """Every vehicle to the end of its route, or until `duration_s` passed or `stopping` is set."""
    timed_out = asyncio.Event()

    def time_is_up() -> None:
        timed_out.set()
        stopping.set()

    loop = asyncio.get_running_loop()
    timer = loop.call_later(duration_s, time_is_up) if duration_s is not None else None
    try:
        reports = await asyncio.gather(*(s.run() for s in sims))
    finally:
        if timer is not None:
            timer.cancel()
    unfinished = stopping.is_set() and not all(r.completed for r in reports)
    return SimulationResult(
        list(reports),
        unfinished and not timed_out.is_set(),
        time.monotonic() - started,
        timed_out=unfinished and timed_out.is_set(),
    )


async def simulate(
    opts: SimulateOptions, emit: Emit = stdout, stopping: asyncio.Event | None = None
) -> SimulationResult:
    """Run the simulation until every route is done, `duration_s` passed or `stopping` is set."""
    _check(opts)
    stopping = stopping or asyncio.Event()
    started = time.monotonic()
    limits = httpx.Limits(max_connections=max(10, opts.vehicles * 2))
    async with httpx.AsyncClient(base_url=opts.api_url, timeout=30, limits=limits) as http:
        await _reachable(http, f"{opts.api_url.rstrip('/')}/health", "API", "--api")
        await _reachable(http, http_url(opts.sockets_url, "/health"), "socket server", "--sockets")
        sims = await _vehicles(await _sign_in(http, opts), opts, emit, stopping)
        if stopping.is_set():  # Ctrl-C while signing in
            return SimulationResult([], True, time.monotonic() - started)
        if not sims:
            raise SimulationError(
                "none of the drivers has an open route: create deliveries and plan them "
                "(POST /api/v1/route-plans, see docs/simulator.md), then run the simulator again"
            )
        return await _drive_all(sims, opts.duration_s, stopping, started)


def format_summary(result: SimulationResult) -> str:
    head = (
        "interrupted" if result.interrupted else ("stopped (--duration)" if result.timed_out else "finished")
    )
    lines = [f"Simulation {head} after {result.elapsed_s:.1f} s:"]
    for v in result.vehicles:
        filtered = sum(v.filtered.values())
        reasons = ", ".join(f"{k} {n}" for k, n in sorted(v.filtered.items()))
        state = "route complete" if v.completed else (f"error: {v.error}" if v.error else "not finished")
        lines.append(
            f"  {v.vehicle or v.driver:<10} {state}; stops {v.stops}, arrived {v.arrived}, "
            f"delivered {v.delivered}, missed arrivals {v.missed_arrivals}, "
            f"refused actions {v.action_errors}; positions sent {v.sent}, acked {v.acked}, "
            f"filtered {filtered}{f' ({reasons})' if reasons else ''}, "
            f"unacked {v.unacked}, reconnects {v.reconnects}; {v.distance_m / 1000:.1f} km"
        )
    return "\n".join(lines)


async def run(opts: SimulateOptions, emit: Emit = stdout) -> int:
    """The command: Ctrl-C (SIGINT) or SIGTERM stops driving, waits for the last acks, prints the summary;
    a second one stops at once."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(simulate(opts, emit, stopping))

    def on_signal() -> None:
        if stopping.is_set():
            task.cancel()
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    try:
        result = await task
    except SimulationError as exc:
        sys.stderr.write(f"waybill simulate: {exc}\n")
        return 1
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
        sys.stderr.write("waybill simulate: stopped at once; unacknowledged positions were dropped\n")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    emit(format_summary(result))
    if result.interrupted:
        return 130
    return 0 if result.ok else 1
