"""The rows the benchmarks (bench/) set up and count: fleets written in bulk, their positions removed
afterwards, the count of deliveries the worker has recorded, the server's version.

Organizations here are made for one run (`tag` makes their names and e-mails unique); nothing
commits but the functions that open their own engine.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db.models import Depot, Driver, NotificationOutbox, Organization, User, Vehicle
from db.models.history import PositionRow
from db.repositories.demo_data import FleetVehicle
from domain.ids import uuid7
from domain.roles import Role

# Nobody logs in with a password in a bulk fleet: one placeholder hash for every user.
PLACEHOLDER_HASH = "$argon2id$v=19$m=65536,t=3,p=4$bench$bench"


def ensure_database(url: str) -> str | None:
    """Create the PostgreSQL database named in `url` if it does not exist: its name when it was created."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return None
    name = parsed.database
    assert name, "the database URL names no database"
    admin = parsed.set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None:
            return None
        conn.execute(f'CREATE DATABASE "{name}"')
        return name


@dataclass
class DriverFleet:
    organization_id: uuid.UUID
    driver_users: list[uuid.UUID]
    dispatcher: uuid.UUID


def _user(
    org: uuid.UUID, user: uuid.UUID, email: str, name: str, role: Role, now: datetime
) -> dict[str, Any]:
    return {
        "id": user,
        "organization_id": org,
        "email": email,
        "name": name,
        "role": role.value,
        "password_hash": PLACEHOLDER_HASH,
        "active": True,
        "created_at": now,
        "updated_at": now,
    }


async def insert_driver_fleet(session: AsyncSession, count: int, tag: str) -> DriverFleet:
    """One organization, `count` vehicles each with a driver (a user with role `driver`), one dispatcher;
    written with one bulk INSERT per table and committed."""
    org, dispatcher = uuid7(), uuid7()
    users = [uuid7() for _ in range(count)]
    vehicles = [uuid7() for _ in range(count)]
    now = datetime.now(UTC)
    stamp = {"created_at": now, "updated_at": now}
    await session.execute(
        insert(Organization).values(id=org, name=f"Bench ingest {tag}", slug=f"bench-{tag}", **stamp)
    )
    user_rows = [
        _user(org, u, f"bench-driver-{i}-{tag}@example.test", f"Driver {i}", Role.DRIVER, now)
        for i, u in enumerate(users)
    ]
    user_rows.append(
        _user(org, dispatcher, f"bench-dispatcher-{tag}@example.test", "Dispatcher", Role.DISPATCHER, now)
    )
    await session.execute(insert(User), user_rows)
    vehicle_rows = [
        {"id": v, "organization_id": org, "name": f"Van {i}", "skills": [], "active": True, **stamp}
        for i, v in enumerate(vehicles)
    ]
    await session.execute(insert(Vehicle), vehicle_rows)
    driver_rows = [
        {
            "id": uuid7(),
            "organization_id": org,
            "name": f"Driver {i}",
            "user_id": u,
            "vehicle_id": v,
            "skills": [],
            "active": True,
            **stamp,
        }
        for i, (u, v) in enumerate(zip(users, vehicles, strict=True))
    ]
    await session.execute(insert(Driver), driver_rows)
    await session.commit()
    return DriverFleet(org, users, dispatcher)


async def delete_positions(engine: AsyncEngine, organization_id: uuid.UUID) -> int:
    """Delete an organization's position history (committed): how many rows went."""
    async with engine.begin() as conn:
        result = await conn.execute(delete(PositionRow).where(PositionRow.organization_id == organization_id))
        return int(result.rowcount or 0)


async def add_dispatcher_organization(
    session: AsyncSession, tag: str, email: str, password_hash: str
) -> uuid.UUID:
    """A fresh organization with one dispatcher (committed): the organization's id."""
    org = Organization(name=f"Bench {tag}", slug=f"bench-{tag}")
    session.add(org)
    await session.flush()
    session.add(
        User(
            organization_id=org.id,
            email=email,
            name="Bench dispatcher",
            role=Role.DISPATCHER.value,
            password_hash=password_hash,
        )
    )
    await session.commit()
    return org.id


async def add_depot_fleet(
    session: AsyncSession, vehicles: int, timezone: str
) -> tuple[uuid.UUID, list[FleetVehicle]]:
    """A fresh organization with one depot and `vehicles` vans, each with a driver (committed)."""
    org = Organization(name="Bench fleet", slug=f"bench-{uuid.uuid4().hex[:8]}")
    session.add(org)
    await session.flush()
    depot = Depot(organization_id=org.id, name="Depot", lat=52.52, lon=13.40, timezone=timezone)
    session.add(depot)
    await session.flush()
    fleet = []
    for n in range(vehicles):
        v = Vehicle(organization_id=org.id, name=f"Van {n}", capacity_units=60, home_depot_id=depot.id)
        session.add(v)
        await session.flush()
        d = Driver(organization_id=org.id, name=f"Driver {n}", vehicle_id=v.id)
        session.add(d)
        await session.flush()
        fleet.append(FleetVehicle(v.id, d.id, depot.id, depot.lat, depot.lon))
    await session.commit()
    return org.id, fleet


async def recorded_count(session: AsyncSession, organization_id: uuid.UUID) -> int:
    """Deliveries of the organization whose "created" transition the worker has fully recorded (the
    notification outbox row is written last)."""
    stmt = select(func.count()).where(
        NotificationOutbox.organization_id == organization_id, NotificationOutbox.event == "created"
    )
    return int((await session.execute(stmt)).scalar_one())


async def postgresql_version(engine: AsyncEngine) -> str:
    """`SHOW server_version` of a PostgreSQL engine, e.g. "16.4 (Debian 16.4-1)"."""
    async with engine.connect() as conn:
        return str((await conn.execute(text("SHOW server_version"))).scalar_one())
