"""One driver's REST session: login, token refresh and the calls the simulator makes."""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from datetime import UTC, datetime
from typing import Any

import httpx

from domain.geo import LatLon
from tools.simulate.options import RETRIES, TRANSIENT, ApiError


class DriverApi:
    """One driver's REST session: login, token refresh, and the calls the simulator needs."""

    def __init__(self, http: httpx.AsyncClient, email: str, password: str) -> None:
        self.http, self.email, self.password = http, email, password
        self._access = ""
        self._refresh = ""
        self._expires = 0.0  # monotonic

    async def login(self) -> None:
        r = await self.http.post("/api/v1/auth/login", json={"email": self.email, "password": self.password})
        self._store(r)

    def _store(self, r: httpx.Response) -> None:
        body = _body(r)
        self._access, self._refresh = body["access_token"], body["refresh_token"]
        self._expires = time.monotonic() + float(body.get("expires_in", 900))

    async def token(self) -> str:
        """A valid access token, refreshed a minute before it expires (sockets re-authenticate with it)."""
        if time.monotonic() > self._expires - 60:
            r = await self.http.post("/api/v1/auth/refresh", json={"refresh_token": self._refresh})
            if r.status_code == 401:
                await self.login()  # the refresh token went stale (e.g. a long pause): sign in again
            else:
                self._store(r)
        return self._access

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; an API restart or a Temporal hiccup (502-504, no connection) is retried a few
        times. Actions are retried only when nothing reached the server or it answered 5xx."""
        for attempt in range(RETRIES + 1):
            try:
                headers = {"Authorization": f"Bearer {await self.token()}"}
                r = await self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt == RETRIES or (method != "GET" and not isinstance(exc, httpx.ConnectError)):
                    raise
            else:
                if r.status_code not in TRANSIENT or attempt == RETRIES:
                    return _body(r)
            await asyncio.sleep(min(4.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")

    async def current_route(self) -> dict[str, Any] | None:
        try:
            route: dict[str, Any] = await self.call("GET", "/api/v1/routes/current")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return route

    async def action(self, delivery_id: str, name: str, at: LatLon | None = None) -> dict[str, Any]:
        body = {"location": {"lat": at.lat, "lon": at.lon}} if at else None
        out: dict[str, Any] = await self.call("POST", f"/api/v1/deliveries/{delivery_id}/{name}", json=body)
        return out

    async def deliver(self, delivery: dict[str, Any], at: LatLon) -> dict[str, Any]:
        """Proof of delivery: a photo (unique per delivery: files belong to one delivery) and the position."""
        delivery_id = delivery["id"]
        photo = proof_png(f"waybill simulate {delivery_id} {datetime.now(UTC).isoformat()}")
        proof = await self.call(
            "POST",
            f"/api/v1/deliveries/{delivery_id}/proof",
            files={"file": ("proof.png", photo, "image/png")},
        )
        contact = (delivery.get("dropoff") or {}).get("contact") or {}
        body = {
            "recipient_name": contact.get("name") or "Simulated Recipient",
            "location": {"lat": at.lat, "lon": at.lon},
            "photo_sha256": proof["sha256"],
        }
        out: dict[str, Any] = await self.call("POST", f"/api/v1/deliveries/{delivery_id}/deliver", json=body)
        return out


def _body(r: httpx.Response) -> Any:
    if r.is_success:
        return r.json() if r.content else None
    try:
        problem = r.json()
        code, detail = str(problem.get("code", "error")), str(problem.get("detail", r.text))
    except ValueError:
        code, detail = "error", r.text[:200]
    raise ApiError(r.status_code, code, detail)


def proof_png(text: str) -> bytes:
    """A 1x1 PNG carrying `text`, so every proof photo has its own SHA-256."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", b"Comment\x00" + text.encode())
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )
