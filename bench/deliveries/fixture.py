"""What the benchmark sets up and asks: a tenant with a dispatcher, the request body, the worker's
progress, the Temporal server, and the versions it reports."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import secrets
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from api.resources import Resources
from api.security.passwords import hash_password
from bench.common.output import say
from db.repositories.bench_fixtures import add_dispatcher_organization, postgresql_version, recorded_count
from domain.search_attributes import KEYWORD_ATTRIBUTES
from plumbing import eventloop
from plumbing.converter import DATA_CONVERTER
from waybill.temporal_dev import temporal_binary
from workers.search_attributes import ensure_search_attributes


def delivery_body() -> dict[str, Any]:
    """The request body every create sends (no external_ref, so no by-reference lookup)."""
    start = datetime.now(UTC) + timedelta(hours=1)
    return {
        "dropoff": {
            "address": "Unter den Linden 1, Berlin",
            "location": {"lat": 52.52, "lon": 13.405},
            "windows": [{"start": start.isoformat(), "end": (start + timedelta(hours=4)).isoformat()}],
            "contact": {"name": "Ms Recipient", "phone": "+49 30 1234"},
        },
        "size": {"weight_kg": 2.5, "units": 1},
    }


async def make_dispatcher(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[uuid.UUID, str, str]:
    """A fresh organization with one dispatcher: (organization id, e-mail, password)."""
    tag = uuid.uuid4().hex[:10]
    password = secrets.token_urlsafe(16)
    email = f"bench-dispatcher-{tag}@example.test"
    async with sessionmaker() as session:
        org = await add_dispatcher_organization(session, tag, email, hash_password(password))
    return org, email, password


async def drain(
    sessionmaker: async_sessionmaker[AsyncSession], org: uuid.UUID, expected: int, timeout: float
) -> float:
    """Wait until the worker has recorded `expected` deliveries; the seconds it took."""
    start = time.perf_counter()
    seen = 0
    while time.perf_counter() - start < timeout:
        async with sessionmaker() as session:
            seen = await recorded_count(session, org)
        if seen >= expected:
            return time.perf_counter() - start
        await asyncio.sleep(0.2)
    say(f"  drain: the worker recorded {seen} of {expected} within {timeout:.0f}s; going on")
    return time.perf_counter() - start


@contextlib.asynccontextmanager
async def temporal_client(address: str | None, namespace: str) -> AsyncIterator[tuple[Client, str]]:
    """A client on TEMPORAL_ADDRESS, or on a fresh in-memory dev server: (client, description)."""
    if address:
        client = await Client.connect(address, namespace=namespace, data_converter=DATA_CONVERTER)
        await ensure_search_attributes(client, namespace)
        yield client, f"server at {address}"
        return
    binary = temporal_binary()
    env = await WorkflowEnvironment.start_local(
        namespace=namespace,
        dev_server_existing_path=str(binary),
        dev_server_log_format="json",
        data_converter=DATA_CONVERTER,
        search_attributes=[SearchAttributeKey.for_keyword(name) for name in KEYWORD_ATTRIBUTES],
    )
    try:
        yield env.client, f"bundled dev server, in memory ({cli_version(binary)})"
    finally:
        await env.shutdown()


def cli_version(binary: Path) -> str:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "temporal CLI"
    return out.strip().splitlines()[0] if out.strip() else "temporal CLI"


async def database_version(resources: Resources) -> str:
    """What the docs say of the database: PostgreSQL's version, or SQLite's."""
    if resources.engine.dialect.name == "postgresql":
        version = await postgresql_version(resources.engine)
        return f"PostgreSQL {version.split()[0]} (same machine)"
    return f"SQLite {sqlite3.sqlite_version} (temporary file, WAL)"


def package_versions() -> str:
    found = []
    for name in ("temporalio", "fastapi", "uvicorn", "sqlalchemy", "httpx"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    return ", ".join(found) + f"; uvicorn runs on the {eventloop.loop_name()} loop + {http}"
