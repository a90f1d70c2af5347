"""`waybill seed`: a demo organization with a user per role, a depot, vehicles and drivers.

`--drivers N` makes sure drivers driver1..driverN exist, each with a vehicle of their own (for
`waybill simulate --vehicles N`); it also adds missing ones to an organization seeded earlier.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.security.passwords import hash_password
from db.models import Depot, Driver, Organization, User, Vehicle
from db.repositories.accounts import OrganizationRepository
from db.repositories.seeding import add_rows, email_taken, first_depot_id, vehicles_by_name
from domain.roles import Role

DEMO_SLUG = "demo"
DEMO_DOMAIN = "demo.waybill.test"
DEV_PASSWORD = "waybill-demo"  # only in development; production seeds get random passwords
DEMO_DRIVERS = 2  # driver1 and driver2 are part of ACCOUNTS
MAX_DRIVERS = 1000


@dataclass(frozen=True)
class Credential:
    role: Role
    email: str
    password: str | None  # None: already seeded, password not recoverable


@dataclass(frozen=True)
class SeedResult:
    created: bool
    organization: str
    credentials: list[Credential]


ACCOUNTS = [
    (Role.ADMIN, "admin", "Ada Admin"),
    (Role.DISPATCHER, "dispatcher", "Dana Dispatcher"),
    (Role.VIEWER, "viewer", "Vic Viewer"),
    (Role.DRIVER, "driver1", "Dario Driver"),
    (Role.DRIVER, "driver2", "Dora Driver"),
]


def _van(org: Organization, depot_id: uuid.UUID | None, n: int) -> Vehicle:
    return Vehicle(
        organization_id=org.id,
        name=f"Van {n}",
        plate=f"B-WB {100 + n}",
        profile="van",
        capacity_weight_kg=800,
        capacity_volume_m3=6,
        capacity_units=60,
        skills=["fragile"] if n == 1 else [],
        home_depot_id=depot_id,
        shift_start=time(8, 0),
        shift_end=time(17, 0),
    )


async def seed_demo(
    sessionmaker: async_sessionmaker[AsyncSession], *, dev: bool, drivers: int = DEMO_DRIVERS
) -> SeedResult:
    if not DEMO_DRIVERS <= drivers <= MAX_DRIVERS:
        raise ValueError(f"drivers must be between {DEMO_DRIVERS} and {MAX_DRIVERS}")
    async with sessionmaker() as session:
        orgs = OrganizationRepository(session)
        existing = await orgs.by_slug(DEMO_SLUG)
        if existing is not None:
            known = [
                Credential(role, f"{local}@{DEMO_DOMAIN}", DEV_PASSWORD if dev else None)
                for role, local, _ in ACCOUNTS
            ]
            known += await _more_drivers(session, existing, drivers, dev)
            await session.commit()
            return SeedResult(False, existing.name, known)
        org = await orgs.add(Organization(name="Demo Logistics", slug=DEMO_SLUG))
        creds = await _demo_fleet(session, org, dev)
        creds += await _more_drivers(session, org, drivers, dev)
        await session.commit()
        return SeedResult(True, org.name, creds)


async def _demo_fleet(session: AsyncSession, org: Organization, dev: bool) -> list[Credential]:
    """A user per account, the depot, three vans, and a driver for driver1 and driver2."""
    creds: list[Credential] = []
    users: dict[str, User] = {}
    for role, local, name in ACCOUNTS:
        password = DEV_PASSWORD if dev else secrets.token_urlsafe(12)
        email = f"{local}@{DEMO_DOMAIN}"
        users[local] = User(
            organization_id=org.id,
            email=email,
            name=name,
            role=role.value,
            password_hash=hash_password(password),
        )
        creds.append(Credential(role, email, password))
    depot = Depot(
        organization_id=org.id,
        name="Berlin Mitte",
        address="Alexanderplatz 1, 10178 Berlin",
        lat=52.5219,
        lon=13.4132,
        timezone="Europe/Berlin",
    )
    await add_rows(session, [*users.values(), depot])
    vehicles = [_van(org, depot.id, n) for n in (1, 2, 3)]
    await add_rows(session, vehicles)
    drivers = [
        Driver(
            organization_id=org.id,
            name=users[local].name,
            email=users[local].email,
            phone=f"+49 30 5550{i}01",
            user_id=users[local].id,
            vehicle_id=vehicles[i].id,
        )
        for i, local in enumerate(("driver1", "driver2"))
    ]
    await add_rows(session, drivers)
    return creds


async def _more_drivers(session: AsyncSession, org: Organization, count: int, dev: bool) -> list[Credential]:
    """Drivers 3..count, each with the van of the same number (created when missing)."""
    if count <= DEMO_DRIVERS:
        return []
    depot_id = await first_depot_id(session, org.id)
    vans = await vehicles_by_name(session, org.id)
    creds: list[Credential] = []
    dev_hash = hash_password(DEV_PASSWORD) if dev else None  # argon2 is slow on purpose: hash once
    for n in range(DEMO_DRIVERS + 1, count + 1):
        email = f"driver{n}@{DEMO_DOMAIN}"
        if await email_taken(session, email):
            creds.append(Credential(Role.DRIVER, email, DEV_PASSWORD if dev else None))
            continue
        van = vans.get(f"Van {n}")
        if van is None:
            van = _van(org, depot_id, n)
            session.add(van)
        password = DEV_PASSWORD if dev else secrets.token_urlsafe(12)
        user = User(
            organization_id=org.id,
            email=email,
            name=f"Driver {n}",
            role=Role.DRIVER.value,
            password_hash=dev_hash or hash_password(password),
        )
        await add_rows(session, [user])
        session.add(
            Driver(
                organization_id=org.id,
                name=user.name,
                email=email,
                phone=f"+49 30 555{n:04d}",
                user_id=user.id,
                vehicle_id=van.id,
            )
        )
        creds.append(Credential(Role.DRIVER, email, password))
    await session.flush()
    return creds


def format_credentials(result: SeedResult) -> str:
    head = "Seeded" if result.created else "Already seeded"
    lines = [f"{head}: organization '{result.organization}'", ""]
    width = max(len(c.email) for c in result.credentials)
    for c in result.credentials:
        pw = c.password if c.password is not None else "(set when first seeded)"
        lines.append(f"  {c.role.value:<10}  {c.email:<{width}}  {pw}")
    return "\n".join(lines)
