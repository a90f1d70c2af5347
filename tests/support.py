"""Helpers for tests: tenants with a user per role, and settings pointing at the test stores."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.security.passwords import hash_password
from db.models import Organization, User
from domain.roles import Role
from plumbing.settings import Settings

PASSWORD = "correct-horse-battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "redis_url": None,
        "mongodb_url": None,
        "temporal_address": None,
        # Tests send thousands of requests from one address and a few users: limits high enough never
        # to trigger, but still checked on every request (tests/integration/api/test_rate_limits.py).
        "rate_limit_ip": 1_000_000,
        "rate_limit_user": 1_000_000,
        "rate_limit_login": 1_000_000,
        "rate_limit_refresh": 1_000_000,
        # Worker metrics ports are per host: tests that start workers pick their own.
        "worker_metrics_port": 0,
        "temporal_metrics_port": 0,
        # No reconciler schedule on the shared dev server: a scheduled run would reconcile every test's
        # rows (tests/integration/workflows/test_reconcile.py runs it per organization).
        "reconcile_interval_seconds": 0,
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]


@dataclass
class Tenant:
    organization_id: uuid.UUID
    slug: str
    emails: dict[Role, str] = field(default_factory=dict)
    user_ids: dict[Role, uuid.UUID] = field(default_factory=dict)


async def make_tenant(sessionmaker: async_sessionmaker[AsyncSession]) -> Tenant:
    """A fresh organization with one active user per role (password PASSWORD)."""
    tag = uuid.uuid4().hex[:10]
    async with sessionmaker() as session:
        org = Organization(name=f"Org {tag}", slug=f"org-{tag}")
        session.add(org)
        await session.flush()
        tenant = Tenant(org.id, org.slug)
        pw = hash_password(PASSWORD)
        for role in Role:
            email = f"{role.value}-{tag}@example.test"
            user = User(
                organization_id=org.id,
                email=email,
                name=f"{role.value} {tag}",
                role=role.value,
                password_hash=pw,
            )
            session.add(user)
            await session.flush()
            tenant.emails[role] = email
            tenant.user_ids[role] = user.id
        await session.commit()
    return tenant
