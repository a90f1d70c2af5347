"""Fleets for socket tests: an organization with vehicles, drivers bound to them, and tokens."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection, connect

from api.security.tokens import TokenService, TokenType
from db.models import Depot, Driver, User, Vehicle
from domain.roles import Role
from tests.support import Tenant, make_tenant


@dataclass
class Fleet:
    tenant: Tenant
    vehicles: list[uuid.UUID] = field(default_factory=list)
    drivers: list[uuid.UUID] = field(default_factory=list)  # Driver ids
    driver_users: list[uuid.UUID] = field(default_factory=list)
    driver_emails: list[str] = field(default_factory=list)
    depot: uuid.UUID | None = None

    @property
    def org(self) -> uuid.UUID:
        return self.tenant.organization_id


async def make_fleet(
    sessionmaker: async_sessionmaker[AsyncSession], n: int, depot: tuple[float, float] | None = None
) -> Fleet:
    from api.security.passwords import hash_password
    from tests.support import PASSWORD

    tenant = await make_tenant(sessionmaker)
    fleet = Fleet(tenant)
    pw = hash_password(PASSWORD)
    async with sessionmaker() as session:
        if depot is not None:
            d = Depot(organization_id=tenant.organization_id, name="Depot", lat=depot[0], lon=depot[1])
            session.add(d)
            await session.flush()
            fleet.depot = d.id
        for i in range(n):
            tag = uuid.uuid4().hex[:8]
            v = Vehicle(organization_id=tenant.organization_id, name=f"Van {tag}")
            email = f"drv-{tag}@example.test"
            u = User(
                organization_id=tenant.organization_id,
                email=email,
                name=f"Driver {i}",
                role=Role.DRIVER.value,
                password_hash=pw,
            )
            session.add_all([v, u])
            await session.flush()
            d = Driver(organization_id=tenant.organization_id, name=u.name, user_id=u.id, vehicle_id=v.id)
            session.add(d)
            await session.flush()
            fleet.vehicles.append(v.id)
            fleet.drivers.append(d.id)
            fleet.driver_users.append(u.id)
            fleet.driver_emails.append(email)
        await session.commit()
    return fleet


def access(tokens: TokenService, org: uuid.UUID, user: uuid.UUID, role: Role) -> str:
    return tokens.issue(user_id=user, organization_id=org, role=role, token_type=TokenType.ACCESS).token


def driver_token(tokens: TokenService, fleet: Fleet, i: int) -> str:
    return access(tokens, fleet.org, fleet.driver_users[i], Role.DRIVER)


def staff_token(tokens: TokenService, fleet: Fleet, role: Role = Role.DISPATCHER) -> str:
    return access(tokens, fleet.org, fleet.tenant.user_ids[role], role)


async def open_socket(url: str, token: str, **kwargs: Any) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url, **kwargs)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    ready = json.loads(await ws.recv())
    return ws, ready


def fix(seq: int, lat: float, lon: float, at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    at = at or datetime.now(UTC)
    return {"seq": seq, "recorded_at": at.isoformat(), "lat": lat, "lon": lon, "accuracy_m": 5.0, **extra}


def track(
    n: int, start: datetime | None = None, *, lat: float = 52.52, lon: float = 13.40
) -> list[dict[str, Any]]:
    """n fixes one second apart, moving ~10 m north each second (36 km/h)."""
    t0 = start or datetime.now(UTC) - timedelta(seconds=n)
    return [fix(i + 1, lat + i * 0.00009, lon, t0 + timedelta(seconds=i)) for i in range(n)]


async def recv_until(ws: ClientConnection, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == kind:
                return msg  # type: ignore[no-any-return]
