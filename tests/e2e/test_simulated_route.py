"""`waybill simulate` against the real system: `waybill dev` as a user runs it (bundled Temporal dev
server, worker, API and socket server in one process, SQLite, in-process bus), a route planned over
the REST API, a dispatcher console on /ws/dispatch, and the simulator driving the route.

Fast on purpose: 600 km/h between stops ~400 m apart (the speed filter is raised to let that pass),
10 positions a second and a 1 s arrival dwell, so the whole module takes well under a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from websockets.asyncio.client import connect

from domain.geo import LatLon, haversine_m
from tests.e2e.test_dev_command import WAYBILL, DevProcess, login_dispatcher
from tests.support import free_port
from tools.seed import DEMO_DOMAIN, DEV_PASSWORD
from tools.simulate import (
    DriverApi,
    DriverLink,
    SimulateOptions,
    SimulationError,
    VehicleReport,
    simulate,
)

DWELL_S = 1.0
ARRIVAL_RADIUS_M = 50.0
# North, north-east and east of the depot, about 400-600 m apart.
OFFSETS = [(0.0036, 0.0), (0.0036, 0.0060), (0.0, 0.0060)]


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    ports = {name: free_port() for name in ("api", "sockets", "temporal", "ui")}
    process = DevProcess(tmp_path_factory.mktemp("simulate") / "data", ports)
    process.env.update(
        {
            "WAYBILL_TRACKING_ARRIVAL_DWELL_SECONDS": str(DWELL_S),
            "WAYBILL_TRACKING_ARRIVAL_RADIUS_M": str(ARRIVAL_RADIUS_M),
            "WAYBILL_TRACKING_MAX_SPEED_MPS": "400",
        }
    )
    process.start()
    yield process
    process.kill()


def _urls(dev: DevProcess) -> tuple[str, str]:
    return f"http://127.0.0.1:{dev.ports['api']}", f"ws://127.0.0.1:{dev.ports['sockets']}"


def _track(api: str, headers: dict[str, str], vehicle_id: str, since: datetime) -> list[tuple[Any, ...]]:
    """The vehicle's stored positions from GET /api/v1/vehicles/{id}/track, as comparable tuples."""
    r = httpx.get(
        f"{api}/api/v1/vehicles/{vehicle_id}/track",
        headers=headers,
        params={"from": since.isoformat(), "to": datetime.now(UTC).isoformat()},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stored_points"] == len(body["points"])
    return [
        (datetime.fromisoformat(p["recorded_at"]), p["location"]["lat"], p["location"]["lon"])
        for p in body["points"]
    ]


def _as_stored(sent: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(datetime.fromisoformat(p["recorded_at"]), p["lat"], p["lon"]) for p in sent]


async def _plan_route(
    api: str, headers: dict[str, str], van_name: str = "Van 1", stops: int = 3, tag: str = "a"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Drop-offs around the depot, planned onto a seeded van (Van n is driver n's) through the API."""
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http:
        depot = (await http.get("/api/v1/depots")).json()["items"][0]
        vans = (await http.get("/api/v1/vehicles")).json()["items"]
        van = next(v for v in vans if v["name"] == van_name)
        # Its seeded shift (08:00-17:00 Berlin) would leave nothing to plan outside office hours.
        r = await http.patch(
            f"/api/v1/vehicles/{van['id']}", json={"shift": {"start": "00:00", "end": "23:59"}}
        )
        assert r.status_code == 200, r.text
        lat, lon = depot["location"]["lat"], depot["location"]["lon"]
        deliveries = []
        for i, (dlat, dlon) in enumerate(OFFSETS[:stops]):
            r = await http.post(
                "/api/v1/deliveries",
                json={
                    "external_ref": f"SIM-{van_name}-{tag}-{i}",
                    "depot_id": depot["id"],
                    "dropoff": {
                        "address": f"Simulated stop {i}",
                        "location": {"lat": lat + dlat, "lon": lon + dlon},
                        "contact": {"name": f"Recipient {i}"},
                    },
                },
            )
            assert r.status_code == 201, r.text
            deliveries.append(r.json())
        r = await http.post(
            "/api/v1/route-plans",
            json={
                "depot_id": depot["id"],
                "vehicle_ids": [van["id"]],
                "delivery_ids": [d["id"] for d in deliveries],
                "time_limit_seconds": 1,
            },
        )
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60
        while (plan := (await http.get(f"/api/v1/route-plans/{r.json()['id']}")).json())["status"] not in (
            "applied",
            "failed",
        ):
            assert time.monotonic() < deadline, plan
            await asyncio.sleep(0.3)
        assert plan["status"] == "applied", plan
        assert set(plan["outcomes"].values()) == {"assigned"}, plan
        (route,) = plan["routes"]
        return {**route, "vehicle": van}, deliveries


async def _signals(dev: DevProcess, workflow_id: str) -> list[str]:
    """The names of the signals in a workflow's history, from the dev server `waybill dev` started."""
    client = await Client.connect(f"127.0.0.1:{dev.ports['temporal']}")
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]


class Console:
    """A dispatcher on /ws/dispatch subscribed to the whole fleet, recording every frame."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.subscribed = asyncio.Event()

    def positions(self, vehicle_id: str) -> list[dict[str, Any]]:
        return [
            p
            for f in self.frames
            if f["type"] == "positions"
            for p in f["positions"]
            if p["vehicle_id"] == vehicle_id
        ]

    async def run(self, url: str, token: str) -> None:
        async with connect(f"{url}/ws/dispatch") as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(json.dumps({"type": "subscribe", "topic": "fleet"}))
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "subscribed":
                    self.subscribed.set()
                self.frames.append(msg)


@contextlib.asynccontextmanager
async def console(url: str, token: str) -> AsyncIterator[Console]:
    c = Console()
    task = asyncio.create_task(c.run(url, token))
    try:
        await asyncio.wait_for(c.subscribed.wait(), 10)
        yield c
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_simulator_drives_a_planned_route_to_the_end(dev: DevProcess) -> None:
    api, sockets = _urls(dev)
    headers = login_dispatcher(api)
    route, deliveries = await _plan_route(api, headers)
    vehicle_id = route["vehicle_id"]
    started = datetime.now(UTC)

    async with console(sockets, headers["Authorization"].split()[1]) as dispatcher:
        lines: list[str] = []
        result = await asyncio.wait_for(
            simulate(
                SimulateOptions(
                    vehicles=1,
                    rate_hz=10,
                    api_url=api,
                    sockets_url=sockets,
                    speed_kmh=600,
                    arrival_timeout_s=20,
                    keep_positions=True,
                ),
                emit=lines.append,
            ),
            90,
        )
        output = "\n".join(lines)
        (report,) = result.vehicles
        sent = report.positions
        # The last positions reach the console one publish tick after their ack.
        deadline = time.monotonic() + 10
        while len(dispatcher.positions(vehicle_id)) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        streamed = dispatcher.positions(vehicle_id)

    # The simulator finished the route on its own: every arrival came from geofencing, nothing was refused.
    assert not result.interrupted, output
    assert result.ok, output
    assert report.completed, output
    assert (report.stops, report.arrived, report.delivered, report.missed_arrivals) == (3, 3, 3, 0), output
    assert (report.unacked, report.filtered) == (0, {}), output
    assert report.vehicle_id == vehicle_id
    assert report.acked == report.sent == len(sent) > 30

    # The dispatcher saw exactly the vehicle's positions, once each, in the order they were recorded.
    assert [p["seq"] for p in streamed] == [p["seq"] for p in sent]
    times = [datetime.fromisoformat(p["recorded_at"]) for p in streamed]
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    assert [(p["lat"], p["lon"]) for p in streamed] == [(p["lat"], p["lon"]) for p in sent]
    # ...and live tracking's arrival events, one per stop, in the route's order.
    arrivals = [f["delivery_id"] for f in dispatcher.frames if f["type"] == "arrival"]
    assert arrivals == [s["delivery_id"] for s in route["stops"] if s["kind"] == "delivery"]

    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http:
        for d in deliveries:
            got = (await http.get(f"/api/v1/deliveries/{d['id']}")).json()
            assert got["status"] == "delivered", got
            assert got["proof"]["recipient_name"] == d["dropoff"]["contact"]["name"]
            assert got["proof"]["photo_sha256"]
            assert got["proof"]["distance_m"] <= 1.0
            events = (await http.get(f"/api/v1/deliveries/{d['id']}/events")).json()
            arrived = [e for e in events if e["type"] == "arrived"]
            # Exactly once, by the geofence (never the driver's arrive action nor deliver's implicit one).
            assert len(arrived) == 1, events
            assert arrived[0]["actor"] == "system:geofence", arrived
            stop = LatLon(d["dropoff"]["location"]["lat"], d["dropoff"]["location"]["lon"])
            where = LatLon(arrived[0]["data"]["lat"], arrived[0]["data"]["lon"])
            assert haversine_m(stop, where) <= ARRIVAL_RADIUS_M
            kinds = [e["type"] for e in events]
            assert kinds.index("picked_up") < kinds.index("arrived") < kinds.index("delivered")
            # And the workflow itself was signalled once: tracking never repeats an arrival the workflow
            # would ignore (its timeline alone could not tell).
            signals = await _signals(dev, f"delivery-{d['id']}")
            assert signals.count("arrived") == 1, signals
        final = (await http.get(f"/api/v1/routes/{route['route_id']}")).json()
        assert final["status"] == "completed", final
        assert {s["status"] for s in final["stops"]} == {"done"}

    # The history store holds every position, once, read back through the tracking API.
    assert _track(api, headers, vehicle_id, started - timedelta(minutes=1)) == _as_stored(sent)


class Proxy:
    """A TCP relay to the socket server whose network can fail: `blackhole()` silently drops what the
    client sends (a phone in a tunnel), `cut()` then kills every connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dropping = False
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if not (upstream and self.dropping):
                        dst.write(data)
                        await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    def blackhole(self) -> None:
        self.dropping = True

    def cut(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()
        self.dropping = False

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


async def _until(check: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_positions_lost_with_the_connection_are_resent_after_reconnecting(dev: DevProcess) -> None:
    api, _ = _urls(dev)
    headers = login_dispatcher(api)
    proxy = Proxy(dev.ports["sockets"])
    port = await proxy.start()
    lines: list[str] = []
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        driver = DriverApi(http, f"driver2@{DEMO_DOMAIN}", DEV_PASSWORD)
        await driver.login()
        report = VehicleReport(driver=driver.email)
        link = DriverLink(
            f"ws://127.0.0.1:{port}/ws/driver", driver, report, lines.append, lambda _: None, True
        )
        started = datetime.now(UTC)
        link.start()
        try:
            await asyncio.wait_for(link.ready.wait(), 15)
            here = LatLon(52.5219, 13.4132)
            for i in range(5):
                link.send(LatLon(here.lat + i * 2e-5, here.lon), 5.0, 0.0, 5.0)
                await asyncio.sleep(0.02)
            await _until(lambda: report.acked == 5)

            proxy.blackhole()
            for i in range(5, 10):
                link.send(LatLon(here.lat + i * 2e-5, here.lon), 5.0, 0.0, 5.0)
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
            assert sorted(link.unacked) == [6, 7, 8, 9, 10]  # sent into the void: kept
            proxy.cut()

            await _until(lambda: not link.unacked and report.reconnects == 1)
        finally:
            await link.close()
            await proxy.stop()
    assert (report.sent, report.acked, report.filtered) == (10, 10, {}), lines
    assert any("reconnected; resending 5 unacknowledged positions" in line for line in lines), lines

    assert _track(api, headers, str(report.vehicle_id), started) == _as_stored(report.positions)


def _simulate_cmd(dev: DevProcess, *extra: str) -> list[str]:
    api, sockets = _urls(dev)
    return [WAYBILL, "simulate", "--api", api, "--sockets", sockets, *extra]


async def test_ctrl_c_stops_cleanly_with_a_summary(dev: DevProcess) -> None:
    api, _ = _urls(dev)
    # Van 1's second route of the day (its first was completed above): a new run of the same route
    # workflow, which must replace the completed one in the routes projection for the driver to see it.
    route, _ = await _plan_route(api, login_dispatcher(api), "Van 1", stops=2, tag="b")
    proc = subprocess.Popen(
        _simulate_cmd(dev, "--vehicles", "1", "--rate", "5", "--speed-kmh", "30"),
        env=dev.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if "driving to drop-off" in line:
                break
        await asyncio.sleep(1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(seen) + out
    assert proc.returncode == 130, output + err
    assert f"route {route['route_id']}, 2 open stops of 2" in output
    assert "Simulation interrupted" in output
    assert "Van 1      not finished; stops 2, arrived 0, delivered 0" in output
    assert "unacked 0, reconnects 0" in output
    assert "Traceback" not in err, err


async def test_setup_errors_are_one_clear_line(dev: DevProcess) -> None:
    api, sockets = _urls(dev)
    dead = f"http://127.0.0.1:{free_port()}"
    cli = subprocess.run(
        [WAYBILL, "simulate", "--api", dead, "--sockets", sockets],
        env=dev.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 1
    assert cli.stderr.startswith(f"waybill simulate: cannot reach the API at {dead}/health"), cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr

    def opts(**kw: Any) -> SimulateOptions:
        return SimulateOptions(**{"api_url": api, "sockets_url": sockets, **kw})

    with pytest.raises(SimulationError, match="cannot reach the socket server"):
        await simulate(opts(sockets_url=dead.replace("http", "ws")), emit=lambda _: None)
    missing = "cannot sign in as driver3@demo.waybill.test, driver4@demo.waybill.test, driver5@demo.waybill"
    with pytest.raises(SimulationError, match=rf"{missing}.test and 4 more .*waybill seed --drivers 9"):
        await simulate(opts(vehicles=9), emit=lambda _: None)
    with pytest.raises(SimulationError, match="none of the drivers has an open route"):
        await simulate(opts(driver_email=f"driver2@{DEMO_DOMAIN}"), emit=lambda _: None)  # never had one
