"""Hypothesis over every parser a client reaches (issue 17), beside test_api_fuzz.py's schema-driven
pass: JSON bodies of the main endpoints, socket frames on /ws/driver and /ws/dispatch before and after
authentication, and the CSV import, against real servers on loopback over each SQL backend.

Each example is a valid request with one part replaced by hostile JSON (integer literals over the
4,300-digit limit, NUL, lone surrogates, NaN, deep nesting, out-of-range numbers, wrong types), an
added field, or raw bytes. Properties: no 5xx and every error a problem document with a `code`; every
frame the server sends is JSON with a `type`, and a connection is closed only with a documented 44xx
code, never 1011; no error-level log record anywhere in the process. WAYBILL_PARSER_FUZZ_EXAMPLES
scales the examples per target (default 20)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from api.resources import Resources
from api.services.delivery_import import COLUMNS
from domain.roles import Role
from tests.integration.api.conftest import Fleet, LoginFn
from tests.integration.sockets.support import driver_token, fix, make_fleet, staff_token
from tests.support import free_port, test_settings
from waybill.services import SocketService

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("WAYBILL_PARSER_FUZZ_EXAMPLES", "20"))
HUGE = "9" * 5000  # over sys.get_int_max_str_digits() (4,300)
MARK = "\ue000huge\ue000"  # a string the encoder turns into the HUGE integer literal
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
STOP = {"address": "Unter den Linden 1", "location": {"lat": 52.52, "lon": 13.405}}

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", MARK, "9" * 400, "", "  ", "2026-13-45T99:00"]),
    st.sampled_from([2**63, -(2**63) - 1, 10**300, 1e308, -0.0, float("nan"), float("inf")]),
)
json_value = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
raw_bytes = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"[" * 5000, b'{"a":' * 3000, HUGE.encode(), b"\xef\xbb\xbf{}", b"NaN", b"{}" * 10]),
)


def encode(value: Any) -> bytes:
    """JSON as json.dumps writes it (NaN and Infinity literals too), with MARK as the huge literal."""
    return json.dumps(value).replace(json.dumps(MARK), HUGE).encode()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, (*prefix, key))


def _like(value: Any) -> st.SearchStrategy[Any]:
    """Values of the same JSON type as `value`, hostile ones included: these get past type checks."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers() | st.sampled_from([2**63, 10**300, MARK])
    if isinstance(value, float):
        return st.floats() | st.integers()
    if isinstance(value, str):
        return st.text(max_size=30) | st.sampled_from(
            [f"{value}\x00", f"{value}\ud800", value * 100, f" {value} "]
        )
    return json_value


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> bytes:
    """`base` with one value replaced (by any JSON or by one of its own type) or one field added, or
    (sometimes) raw bytes instead."""
    how = draw(st.sampled_from(["replace", "like", "like", "add", "raw"]))
    if how == "raw":
        return draw(raw_bytes)
    doc = copy.deepcopy(base)
    path = draw(st.sampled_from(list(_paths(doc))))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    value = draw(_like(parent[path[-1]] if path else doc) if how == "like" else json_value)
    if not path:
        return encode(value)
    if how == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=8) | st.just(MARK))] = value
    else:
        parent[path[-1]] = value
    return encode(doc)


def check_response(r: httpx.Response, what: str) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert r.headers.get("content-type", "").startswith("application/problem+json"), (what, r.text[:300])
        assert r.json().get("code"), (what, r.text[:300])


def no_error_records(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()[:300]}" for r in errors[:5]]


# REST ------------------------------------------------------------------------------------------


def _fuzz_endpoint(client: httpx.Client, method: str, path: str, headers: dict[str, str], base: Any) -> None:
    @FUZZ
    @given(body=mutated(base))
    def one(body: bytes) -> None:
        r = client.request(
            method, path, content=body, headers={**headers, "Content-Type": "application/json"}
        )
        check_response(r, f"{method} {path} {body[:200]!r}")

    one()


async def test_json_bodies_of_the_main_endpoints(
    api_url: str, http: httpx.AsyncClient, fleet: Fleet, login: LoginFn, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await login(fleet.tenant, Role.ADMIN)
    made = await http.post("/api/v1/deliveries", headers=fleet.dispatcher, json={"dropoff": STOP})
    assert made.status_code == 201, made.text
    delivery = f"/api/v1/deliveries/{made.json()['id']}"
    depot = await http.post(
        "/api/v1/depots", headers=admin, json={"name": "Fuzz depot", "location": STOP["location"]}
    )
    assert depot.status_code == 201, depot.text
    create = {
        "dropoff": {**STOP, "windows": [{"start": "2030-01-01T09:00:00Z", "end": "2030-01-01T17:00:00Z"}]},
        "size": {"weight_kg": 2.5, "units": 1},
        "priority": 1,
        "required_skills": ["cold"],
        "external_ref": "fuzz",
        "attempt_policy": {"max_attempts": 3},
    }
    targets: list[tuple[str, str, dict[str, str], Any]] = [
        ("POST", "/api/v1/deliveries", fleet.dispatcher, create),
        ("POST", "/api/v1/deliveries:batch", fleet.dispatcher, {"items": [create, {"dropoff": STOP}]}),
        (
            "POST",
            f"{delivery}/assign",
            fleet.dispatcher,
            {"vehicle_id": fleet.vehicle_id, "driver_id": fleet.driver_id},
        ),
        ("POST", f"{delivery}/reschedule", fleet.dispatcher, {"windows": create["dropoff"]["windows"]}),
        (
            "POST",
            f"{delivery}/fail",
            fleet.driver,
            {"reason": "no_access", "notes": "gate", "location": STOP["location"]},
        ),
        ("POST", f"{delivery}/deliver", fleet.driver, {"recipient_name": "R", "location": STOP["location"]}),
        ("POST", f"{delivery}/cancel", fleet.dispatcher, {"reason": "customer"}),
        (
            "POST",
            "/api/v1/auth/login",
            {},
            {"email": fleet.tenant.emails[Role.VIEWER], "password": "wrong-password"},
        ),
        (
            "POST",
            "/api/v1/vehicles",
            fleet.dispatcher,
            {"name": "V", "capacity": {"units": 3}, "skills": ["cold"]},
        ),
        (
            "PATCH",
            f"/api/v1/vehicles/{fleet.vehicle_id}",
            fleet.dispatcher,
            {"name": "Van 1", "active": True},
        ),
        (
            "POST",
            "/api/v1/drivers",
            fleet.dispatcher,
            {"name": "D", "phone": "+49 30 1234", "email": "d@x.test"},
        ),
        ("PATCH", f"/api/v1/drivers/{fleet.driver_id}", fleet.dispatcher, {"name": "Dario"}),
        (
            "POST",
            "/api/v1/depots",
            admin,
            {"name": "P", "address": "A", "location": STOP["location"], "timezone": "UTC"},
        ),
        (
            "PATCH",
            f"/api/v1/depots/{depot.json()['id']}",
            admin,
            {"name": "Fuzz depot", "timezone": "Europe/Berlin"},
        ),
    ]

    def run() -> None:
        with httpx.Client(base_url=api_url, timeout=30) as client:
            for method, path, headers, base in targets:
                _fuzz_endpoint(client, method, path, headers, base)

    await asyncio.to_thread(run)
    no_error_records(caplog)


async def test_csv_import(
    api_url: str, tenant: Any, login: LoginFn, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = await login(tenant, Role.DISPATCHER)
    cell = st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            ["\x00", HUGE, "1e999", "nan", "-1", "52.52", "2030-01-01T09:00:00Z", '"', "\r\n", ","]
        ),
    )
    csv_text = st.builds(
        lambda cols, rows: ",".join(cols) + "\n" + "\n".join(",".join(r) for r in rows),
        st.just(["external_ref", "address", "lat", "lon"])
        | st.lists(st.sampled_from(COLUMNS) | st.text(max_size=6), min_size=1, max_size=6),
        st.lists(st.lists(cell, min_size=1, max_size=6), max_size=3),
    )
    body = csv_text.map(lambda t: t.encode("utf-8", "surrogatepass")) | raw_bytes

    def run() -> None:
        with httpx.Client(base_url=api_url, timeout=60) as client:

            @FUZZ
            @given(data=body)
            def one(data: bytes) -> None:
                files = {"file": (f"{unique}.csv", data, "text/csv")}
                r = client.post("/api/v1/integrations/deliveries:import", headers=headers, files=files)
                check_response(r, f"CSV {data[:200]!r}")

            one()

    await asyncio.to_thread(run)
    no_error_records(caplog)


# Sockets ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def socket_url(database_url: str) -> AsyncIterator[tuple[str, Resources]]:
    s = test_settings(
        database_url=database_url,
        tracking_history_flush_ms=30,
        tracking_publish_ms=10,
        ws_driver_frames_per_second=0,  # the fuzzer sends frames as fast as it can
        ws_dispatch_frames_per_second=0,
        ws_driver_max_connections=100,
        ws_staff_max_connections=100,
        ws_auth_timeout_seconds=2.0,
    )
    resources = await Resources.open(s)
    port = free_port()
    service = SocketService(resources, "127.0.0.1", port)
    await service.start()
    yield f"ws://127.0.0.1:{port}", resources
    await asyncio.wait_for(service.stop(), 30)  # bounded: a poisoned history write would block it
    await resources.close()


DOCUMENTED_CLOSES = {4401, 4403, 4404, 4408, 4409, 4419, 4420, 4429, 1000, 1009}


def _read_until_pong(ws: ClientConnection, ping_id: str, what: str) -> None:
    """Every frame up to our pong is JSON with a `type`; an error frame has a `code`."""
    while True:
        msg = json.loads(ws.recv(timeout=10))
        assert isinstance(msg.get("type"), str), (what, msg)
        if msg["type"] == "error":
            assert msg.get("code"), (what, msg)
        if msg == {"type": "pong", "id": ping_id}:
            return


def _fuzz_socket(url: str, token: str, frames: st.SearchStrategy[bytes]) -> None:
    """After authentication: each frame, then a ping that must be answered; a connection the server
    closes must have been closed with a documented code, and the next example reconnects."""
    state: dict[str, ClientConnection | None] = {"ws": None}
    stack = contextlib.ExitStack()

    def socket() -> ClientConnection:
        if state["ws"] is None:
            ws = stack.enter_context(connect(url, open_timeout=10))
            ws.send(json.dumps({"type": "auth", "token": token}))
            ready = json.loads(ws.recv(timeout=10))
            assert ready["type"] == "ready", ready
            state["ws"] = ws
        return state["ws"]

    @FUZZ
    @given(raw=frames, as_text=st.booleans())
    def one(raw: bytes, as_text: bool) -> None:
        ws = socket()
        ping = uuid.uuid4().hex
        what = f"{url} {raw[:200]!r}"
        try:
            ws.send(raw.decode("utf-8", "replace") if as_text else raw)
            ws.send(json.dumps({"type": "ping", "id": ping}))
            _read_until_pong(ws, ping, what)
        except ConnectionClosed:
            state["ws"] = None
            assert ws.close_code in DOCUMENTED_CLOSES, (what, ws.close_code, ws.close_reason)

    with stack:
        one()


def _fuzz_first_frame(url: str, frames: st.SearchStrategy[bytes]) -> None:
    @FUZZ
    @given(raw=frames)
    def one(raw: bytes) -> None:
        with connect(url, open_timeout=10) as ws:
            ws.send(raw.decode("utf-8", "replace"))
            try:
                while True:
                    msg = json.loads(ws.recv(timeout=10))
                    assert isinstance(msg.get("type"), str), (raw[:200], msg)
            except ConnectionClosed:
                pass
            assert ws.close_code in DOCUMENTED_CLOSES, (raw[:200], ws.close_code, ws.close_reason)

    one()


async def _in_thread(fn: Callable[[], None]) -> None:
    await asyncio.to_thread(fn)


async def test_socket_frames_before_authentication(
    socket_url: tuple[str, Resources], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = socket_url
    first = mutated({"type": "auth", "token": "x.y.z"})
    await _in_thread(lambda: _fuzz_first_frame(f"{url}/ws/driver", first))
    await _in_thread(lambda: _fuzz_first_frame(f"{url}/ws/dispatch", first))
    no_error_records(caplog)


async def test_driver_frames_after_authentication(
    socket_url: tuple[str, Resources],
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, resources = socket_url
    fleet = await make_fleet(sessionmaker, 1)
    position = {"type": "position", **fix(1, 52.52, 13.405, speed_mps=3.0, heading_deg=90.0)}
    batch = {"type": "positions", "positions": [fix(2, 52.52, 13.405), fix(3, 52.5201, 13.405)]}
    frames = mutated(position) | mutated(batch) | mutated({"type": "auth", "token": "x"})
    await _in_thread(
        lambda: _fuzz_socket(f"{url}/ws/driver", driver_token(resources.tokens, fleet, 0), frames)
    )
    no_error_records(caplog)


async def test_dispatch_frames_after_authentication(
    socket_url: tuple[str, Resources],
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, resources = socket_url
    fleet = await make_fleet(sessionmaker, 1)
    subscribe = {"type": "subscribe", "topic": "vehicle", "id": str(fleet.vehicles[0])}
    frames = (
        mutated(subscribe)
        | mutated({"type": "subscribe", "topic": "route", "id": "route-x"})
        | mutated({"type": "unsubscribe", "topic": "fleet"})
        | mutated({"type": "ping", "id": 1})
    )
    token = staff_token(resources.tokens, fleet, Role.DISPATCHER)
    await _in_thread(lambda: _fuzz_socket(f"{url}/ws/dispatch", token, frames))
    no_error_records(caplog)
