"""GET /metrics on the socket port: every metric the dashboards and alert rules use that the socket
server owns is there, with values that follow the positions, frames and subscriptions driven through
it; and an outbox counts what it drops and whom it disconnects."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.protocol import State

from api.sockets.fanout import Outbox
from api.sockets.metrics import SocketMetrics
from tests.integration.sockets.conftest import Server
from tests.integration.sockets.support import (
    driver_token,
    fix,
    make_fleet,
    open_socket,
    recv_until,
    staff_token,
    track,
)
from tests.unit.test_monitoring_files import metric_names

# Metrics of the other processes (API, worker, Temporal SDK); everything else deploy/ uses is the
# socket server's to export (process_*, python_*, waybill_db_pool_* and waybill_dependency_up too).
OTHER_PROCESSES = (
    "temporal_",
    "waybill_http_",
    "waybill_activity_",
    "waybill_deliveries",
    "waybill_routes",
    "waybill_reconcile_",
)
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def socket_metric_names() -> set[str]:
    return {n for n in metric_names() if not n.startswith(OTHER_PROCESSES)}


async def scrape(server: Server) -> tuple[str, Samples]:
    base = server.url.replace("ws://", "http://")
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"{base}/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[s.name][tuple(sorted(s.labels.items()))] = s.value
    return r.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if want <= set(key))


async def acks(ws: Any, want: set[int]) -> None:
    seen: set[int] = set()
    while not want <= seen:
        seen.update((await recv_until(ws, "ack"))["seqs"])


async def test_metrics_endpoint_exports_what_deploy_uses_with_live_values(server: Server) -> None:
    res = server.resources
    _, before = await scrape(server)
    fleet = await make_fleet(res.sessionmaker, 1)
    disp, _ = await open_socket(f"{server.url}/ws/dispatch", staff_token(res.tokens, fleet))
    await disp.send(json.dumps({"type": "subscribe", "topic": "fleet"}))
    await recv_until(disp, "subscribed")
    drv, _ = await open_socket(f"{server.url}/ws/driver", driver_token(res.tokens, fleet, 0))

    points = track(20)
    for p in points[:10]:
        await drv.send(json.dumps({"type": "position", **p}))
    await drv.send(json.dumps({"type": "positions", "positions": points[10:]}))
    now = datetime.now(UTC)
    bad = [
        fix(21, 52.53, 13.40, now + timedelta(hours=1)),  # future
        fix(22, 52.53, 13.40, now, accuracy_m=900.0),  # inaccurate
        {"seq": 23, "recorded_at": "yesterday", "lat": 52.5, "lon": 13.4},  # invalid
    ]
    await drv.send(json.dumps({"type": "positions", "positions": bad}))
    await acks(drv, set(range(1, 24)))
    seen = 0
    while seen < 20:
        seen += len((await recv_until(disp, "positions"))["positions"])

    text, after = await scrape(server)
    for _ in range(50):  # the dependency check started with the server may still be running
        if value(after, "waybill_dependency_up", dependency="history"):
            break
        await asyncio.sleep(0.2)
        text, after = await scrape(server)

    served = set(after)
    missing = socket_metric_names() - served
    assert not missing, f"used in deploy/ but not served by the socket server: {sorted(missing)}"
    assert {"waybill_socket_connections", "waybill_positions_total", "waybill_fanout_seconds_bucket"} <= (
        socket_metric_names()
    )

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "waybill_socket_connections", endpoint="driver") >= 1
    assert value(after, "waybill_socket_connections", endpoint="dispatch") >= 1
    assert grew("waybill_socket_frames_total", endpoint="driver", direction="in") >= 12
    assert grew("waybill_socket_frames_total", endpoint="driver", direction="out") >= 1  # ready, acks
    assert grew("waybill_socket_frames_total", endpoint="dispatch", direction="in") >= 1  # subscribe
    assert grew("waybill_socket_frames_total", endpoint="dispatch", direction="out") >= 2
    assert grew("waybill_positions_total", outcome="accepted") == 20
    assert grew("waybill_positions_total", outcome="filtered", reason="future") == 1
    assert grew("waybill_positions_total", outcome="filtered", reason="inaccurate") == 1
    assert grew("waybill_positions_total", outcome="filtered", reason="invalid") == 1
    assert grew("waybill_positions_stored_total") == 20
    assert grew("waybill_position_ingest_seconds_count") >= 1
    assert grew("waybill_history_flush_seconds_count") >= 1
    assert grew("waybill_history_batch_size_sum") == 20
    assert grew("waybill_fanout_seconds_count") >= 1
    assert value(after, "waybill_ingest_vehicles") >= 1
    for dependency in ("database", "cache", "history"):
        assert value(after, "waybill_dependency_up", dependency=dependency) == 1, dependency
    assert value(after, "process_resident_memory_bytes") > 0
    assert "waybill_db_pool_size" in served

    await drv.close()
    await disp.close()
    for _ in range(50):
        _, closed = await scrape(server)
        if value(closed, "waybill_socket_connections") == value(before, "waybill_socket_connections"):
            break
        await asyncio.sleep(0.1)
    assert value(closed, "waybill_socket_connections") == value(before, "waybill_socket_connections")


class StalledSocket:
    """A client whose socket never drains: its buffer is not empty (so no frame is written at once,
    `Outbox._send_now`) and the first send blocks for good."""

    send_in_progress = None

    def __init__(self) -> None:
        self.closed_with: int | None = None
        self.protocol = SimpleNamespace(state=State.OPEN)
        self.transport = SimpleNamespace(is_closing=lambda: False, get_write_buffer_size=lambda: 65_536)

    async def send(self, text: str) -> None:  # noqa: ARG002
        await asyncio.Event().wait()

    async def close(self, code: int, reason: str) -> None:  # noqa: ARG002
        self.closed_with = code


async def test_outbox_counts_dropped_positions_and_disconnects() -> None:
    metrics = SocketMetrics()
    ws = StalledSocket()
    box = Outbox(ws, max_pending=3, max_lag_s=0.05, metrics=metrics, endpoint="dispatch")  # type: ignore[arg-type]
    box.start()
    box.frame("{}")  # the writer takes it and blocks on the full socket
    await asyncio.sleep(0.01)
    assert box.busy_since is not None
    for seq in range(6):  # one vehicle: past max_pending, only its newest position stays
        box.position({"vehicle_id": "v1", "seq": seq})
    assert metrics.registry.get_sample_value("waybill_subscriber_drops_total") == 3
    await asyncio.sleep(0.1)
    box.check()  # stuck longer than max_lag_s
    await asyncio.sleep(0.01)
    assert box.kicked
    assert ws.closed_with == 4429
    assert metrics.registry.get_sample_value("waybill_subscriber_disconnects_total") == 1
    await box.stop()
