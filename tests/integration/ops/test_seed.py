"""`waybill seed --drivers N`: every driver gets a van of their own, also in an organization seeded
earlier (what `waybill simulate --vehicles N` signs in as)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.security.passwords import verify_password
from db.migrate import upgrade
from db.models import Driver, User, Vehicle
from db.session import create_engine, create_sessionmaker
from tools.seed import DEMO_DOMAIN, DEV_PASSWORD, seed_demo


@pytest.fixture
async def fresh(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """An empty database of its own: the demo organization is one per database."""
    url = f"sqlite:///{tmp_path}/seed.db"
    upgrade(url)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/seed.db")
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _fleet(sm: async_sessionmaker[AsyncSession]) -> dict[str, tuple[str, str]]:
    """Driver e-mail -> (vehicle name, password hash)."""
    async with sm() as s:
        rows = await s.execute(
            select(Driver.email, Vehicle.name, User.password_hash)
            .join(Vehicle, Vehicle.id == Driver.vehicle_id)
            .join(User, User.id == Driver.user_id)
        )
        return {r.email: (r.name, r.password_hash) for r in rows}


async def test_more_drivers_are_added_to_an_existing_demo(fresh: async_sessionmaker[AsyncSession]) -> None:
    first = await seed_demo(fresh, dev=True)
    assert first.created
    assert [c.email for c in first.credentials][-2:] == [f"driver1@{DEMO_DOMAIN}", f"driver2@{DEMO_DOMAIN}"]
    assert len(await _fleet(fresh)) == 2

    again = await seed_demo(fresh, dev=True, drivers=4)
    assert not again.created
    drivers = [c for c in again.credentials if c.role.value == "driver"]
    assert [(c.email, c.password) for c in drivers] == [
        (f"driver{n}@{DEMO_DOMAIN}", DEV_PASSWORD) for n in (1, 2, 3, 4)
    ]
    fleet = await _fleet(fresh)
    assert {email: van for email, (van, _) in fleet.items()} == {
        f"driver{n}@{DEMO_DOMAIN}": f"Van {n}" for n in (1, 2, 3, 4)
    }
    assert all(verify_password(h, DEV_PASSWORD) for _, h in fleet.values())
    async with fresh() as s:
        assert len((await s.scalars(select(Vehicle))).all()) == 4  # Van 3 was reused, Van 4 added

    await seed_demo(fresh, dev=True, drivers=4)  # idempotent
    assert len(await _fleet(fresh)) == 4


async def test_production_seeds_get_random_passwords(fresh: async_sessionmaker[AsyncSession]) -> None:
    result = await seed_demo(fresh, dev=False, drivers=3)
    driver3 = next(c for c in result.credentials if c.email == f"driver3@{DEMO_DOMAIN}")
    assert driver3.password is not None
    assert driver3.password != DEV_PASSWORD
    _, hashed = (await _fleet(fresh))[driver3.email]
    assert verify_password(hashed, driver3.password)


async def test_driver_count_is_checked(fresh: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(ValueError, match="between 2 and 1000"):
        await seed_demo(fresh, dev=True, drivers=1)
