"""Issue 17, defects 5 and 6 on the REST API, over a real server on each SQL backend: an integer literal
over Python's 4,300-digit limit in a JSON body, and NUL characters in any text a client sends (bodies
of every resource, query strings, paths, CSV cells) are 4xx problem documents with a code, never a
500 (PostgreSQL refuses NUL in text, SQLite stored it), and nothing is logged at error level."""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

import httpx
import pytest

from api.http.nul import NUL_MESSAGE
from domain.roles import Role
from tests.integration.api.conftest import Fleet, LoginFn
from tests.support import Tenant

HUGE = "9" * 5000  # over sys.get_int_max_str_digits() (4,300)
NUL = "a\x00b"
STOP = {"address": "Unter den Linden 1", "location": {"lat": 52.52, "lon": 13.405}}


def _problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    return body


def _no_error_records(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_a_huge_integer_in_a_json_body_is_invalid_json(
    http: httpx.AsyncClient, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {**fleet.dispatcher, "Content-Type": "application/json"}
    for path, raw in [
        (
            "/api/v1/deliveries",
            '{"dropoff": {"address": "x", "location": {"lat": 1, "lon": 2}}, "priority": %s}',
        ),
        ("/api/v1/vehicles", '{"name": "Van", "capacity": {"units": %s}}'),
        ("/api/v1/auth/login", '{"email": "a@b.cd", "password": %s}'),
    ]:
        r = await http.post(path, content=raw % HUGE, headers=headers)
        body = _problem(r, 422, "validation_error")
        assert body["errors"][0]["type"] == "json_invalid", body
        assert "4300" in body["detail"], body
    # Body bytes that are not UTF-8 are malformed JSON too.
    r = await http.post("/api/v1/vehicles", content=b'{"name": "\xff"}', headers=headers)
    assert _problem(r, 422, "validation_error")["errors"][0]["type"] == "json_invalid"
    _no_error_records(caplog)


async def test_nul_in_any_body_is_a_422_naming_the_field(
    http: httpx.AsyncClient, fleet: Fleet, login: LoginFn, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await login(fleet.tenant, Role.ADMIN)
    delivery = str(uuid.uuid4())  # never looked up: the body is refused first
    cases: list[tuple[str, str, dict[str, str], dict[str, Any], str]] = [
        ("POST", "/api/v1/auth/login", {}, {"email": f"{NUL}@x.test", "password": "p" * 12}, "body.email"),
        (
            "POST",
            "/api/v1/deliveries",
            fleet.dispatcher,
            {"dropoff": {**STOP, "address": NUL}},
            "body.dropoff.address",
        ),
        (
            "POST",
            "/api/v1/deliveries",
            fleet.dispatcher,
            {"dropoff": {**STOP, "contact": {"name": NUL}}, "external_ref": "ok"},
            "body.dropoff.contact.name",
        ),
        (
            "POST",
            "/api/v1/deliveries",
            fleet.dispatcher,
            {"dropoff": STOP, "external_ref": NUL},
            "body.external_ref",
        ),
        ("POST", f"/api/v1/deliveries/{delivery}/cancel", fleet.dispatcher, {"reason": NUL}, "body.reason"),
        ("POST", "/api/v1/vehicles", fleet.dispatcher, {"name": NUL}, "body.name"),
        ("PATCH", f"/api/v1/vehicles/{fleet.vehicle_id}", fleet.dispatcher, {"name": NUL}, "body.name"),
        ("POST", "/api/v1/drivers", fleet.dispatcher, {"name": NUL}, "body.name"),
        (
            "POST",
            "/api/v1/depots",
            fleet.dispatcher,
            {"name": "D", "location": STOP["location"], "address": NUL},
            "body.address",
        ),
        (
            "POST",
            "/api/v1/users",
            admin,
            {"email": "n@x.test", "name": NUL, "role": "viewer", "password": "p" * 12},
            "body.name",
        ),
        ("PUT", "/api/v1/notifications/settings", admin, {"rules": {NUL: {}}}, "body.rules"),
        ("POST", "/api/v1/integrations/api-keys", admin, {"name": NUL}, "body.name"),
    ]
    for method, path, headers, body, where in cases:
        r = await http.request(method, path, headers=headers, json=body)
        problem = _problem(r, 422, "validation_error")
        assert problem["detail"] == f"{where}: {NUL_MESSAGE}", (path, problem)
        assert problem["errors"][0]["type"] == "nul_character"
    # Nothing was stored: the vehicle kept its name.
    r = await http.get(f"/api/v1/vehicles/{fleet.vehicle_id}", headers=fleet.dispatcher)
    assert r.json()["name"] == "Van 1"
    _no_error_records(caplog)


async def test_nul_in_a_batch_item_rejects_that_item_alone(http: httpx.AsyncClient, fleet: Fleet) -> None:
    items = [{"dropoff": STOP}, {"dropoff": {**STOP, "notes": NUL}}]
    r = await http.post("/api/v1/deliveries:batch", headers=fleet.dispatcher, json={"items": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["created"], body["rejected"]) == (1, 1)
    assert body["items"][1]["error"] == {
        "code": "validation_error",
        "detail": f"dropoff.notes: {NUL_MESSAGE}",
    }


async def test_nul_in_a_query_string_or_path_is_a_422(
    http: httpx.AsyncClient, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    for path, params, where in [
        ("/api/v1/deliveries", {"q": NUL}, "query.q"),
        ("/api/v1/audit", {"action": NUL}, "query.action"),
        ("/api/v1/routes/route-a%00b", {}, "path"),
    ]:
        r = await http.get(path, params=params, headers=fleet.dispatcher)
        problem = _problem(r, 422, "validation_error")
        assert problem["detail"] == f"{where}: {NUL_MESSAGE}", problem
    # An encoded percent sign is not a NUL.
    r = await http.get("/api/v1/deliveries", params={"q": "%00"}, headers=fleet.dispatcher)
    assert r.status_code == 200, r.text
    _no_error_records(caplog)


async def test_csv_import_rejects_rows_with_nul_or_huge_numbers(
    http: httpx.AsyncClient, tenant: Tenant, login: LoginFn, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = await login(tenant, Role.DISPATCHER)
    text = (
        "external_ref,address,lat,lon,units,notes\n"
        f"ok-{unique},Unter den Linden 1,52.52,13.405,1,\n"
        f"nul-{unique},Unter den Linden 1,52.52,13.405,1,a\x00b\n"
        f"ref\x00{unique},Unter den Linden 1,52.52,13.405,1,\n"
        f"big-{unique},Unter den Linden 1,52.52,13.405,{HUGE},\n"
        f"lat-{unique},Unter den Linden 1,{HUGE},13.405,1,\n"
    )
    files = {"file": ("d.csv", text.encode(), "text/csv")}
    r = await http.post("/api/v1/integrations/deliveries:import", headers=headers, files=files)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["rejected"]) == (1, 4), report
    reasons = {
        row["row"]: (row["code"], row["reason"]) for row in report["rows"] if row["outcome"] == "rejected"
    }
    assert reasons[3] == ("validation_error", f"dropoff.notes: {NUL_MESSAGE}")
    assert reasons[4] == ("validation_error", f"external_ref: {NUL_MESSAGE}")
    assert reasons[5][0] == reasons[6][0] == "validation_error"
    # A NUL in the header row: the file is refused as a whole.
    bad = {"file": ("d.csv", b"external_ref,address,lat,lon,no\x00tes\nx,y,1,2,z\n", "text/csv")}
    r = await http.post("/api/v1/integrations/deliveries:import", headers=headers, files=bad)
    _problem(r, 422, "invalid_csv")
    _no_error_records(caplog)


async def test_huge_integers_in_query_strings_and_share_tokens_are_4xx(
    http: httpx.AsyncClient, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    for path, params in [
        ("/api/v1/deliveries", {"limit": HUGE}),
        ("/api/v1/vehicles/nearby", {"lat": "52.5", "lon": "13.4", "limit": HUGE}),
        ("/api/v1/vehicles/nearby", {"lat": HUGE, "lon": "13.4"}),
    ]:
        r = await http.get(path, params=params, headers=fleet.dispatcher)
        assert 400 <= r.status_code < 500, (path, r.text[:300])
        assert r.json()["code"], r.text[:300]
    # A share token is parsed (its JSON header) before its signature is checked.
    header = (
        base64.urlsafe_b64encode(b'{"alg": "HS256", "kid": ' + HUGE.encode() + b"}").rstrip(b"=").decode()
    )
    r = await http.get(f"/api/v1/public/tracking/{header}.e30.c2ln")
    assert 400 <= r.status_code < 500, r.text[:300]
    assert r.json()["code"], r.text[:300]
    _no_error_records(caplog)
