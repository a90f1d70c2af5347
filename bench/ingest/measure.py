"""The whole benchmark: the database, the fleet and its tokens, then each server in turn."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import tempfile
import time
import uuid
from pathlib import Path

from api.security.tokens import TokenService, TokenType
from bench.common.children import child_env
from bench.common.machine import load_average, machine, python_version, utc_now
from bench.common.output import say
from bench.ingest.config import REDIS_PREFIX, is_waybill, label, server_kinds
from bench.ingest.fleet import clear_redis, forget_positions, make_database, make_fleet
from bench.ingest.results import Outcome, ServerResult
from bench.ingest.server_bench import Setup, bench_server
from db.migrate import upgrade
from db.repositories.bench_fixtures import DriverFleet
from domain.roles import Role
from plumbing.settings import Settings, redact_url, to_async_url, to_sync_url


def _facts(args: argparse.Namespace) -> dict[str, str]:
    facts = {
        "machine": machine("cores"),
        "python": python_version(),
        "load average before the run (1, 5, 15 min)": load_average(),
        "date": utc_now(),
    }
    if args.processes != [1]:
        facts["`waybill sockets --processes N`"] = (
            "N replicas sharing the port and meeting on Redis; their CPU and memory are summed"
        )
    if args.settings:
        facts["waybill sockets settings (--set)"] = ", ".join(f"{k}={v}" for k, v in args.settings.items())
    return facts


def _tokens(fleet: DriverFleet, key: str) -> tuple[list[str], str]:
    """An access token per driver, and the dispatcher's, signed with `key` (valid for an hour)."""
    settings = Settings(env="test", jwt_keys={"bench": key}, access_token_ttl_seconds=3600, redis_url=None)
    tokens_service = TokenService(settings)

    def token(user: uuid.UUID, role: Role) -> str:
        issued = tokens_service.issue(
            user_id=user, organization_id=fleet.organization_id, role=role, token_type=TokenType.ACCESS
        )
        return issued.token

    return [token(u, Role.DRIVER) for u in fleet.driver_users], token(fleet.dispatcher, Role.DISPATCHER)


def _server_env(args: argparse.Namespace, key: str, tmp: str) -> dict[str, str]:
    """The waybill server's environment: the bench database and Redis prefix, nothing from this shell."""
    return child_env(
        {
            "DATABASE_URL": to_async_url(args.database_url),
            "REDIS_URL": args.redis_url,
            "WAYBILL_REDIS_PREFIX": REDIS_PREFIX,
            "WAYBILL_ENV": "test",
            "WAYBILL_JWT_KEYS": json.dumps({"bench": key}),
            "WAYBILL_DATA_DIR": tmp,
            "WAYBILL_LOG_LEVEL": "WARNING",
            "WAYBILL_SOCKETS_HOST": "127.0.0.1",
            **args.settings,
        },
        clean=True,
    )


async def benchmark(args: argparse.Namespace, command: str) -> Outcome:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    facts = _facts(args)
    await asyncio.to_thread(make_database, args.database_url)
    say(f"migrating {redact_url(args.database_url)}")
    await asyncio.to_thread(upgrade, to_sync_url(args.database_url))
    say(f"adding {args.connections:,} drivers and vehicles")
    fleet = await make_fleet(args.database_url, args.connections)
    await clear_redis(args.redis_url)
    key = secrets.token_urlsafe(48)
    tokens, dispatcher_token = _tokens(fleet, key)
    epoch = time.monotonic()
    servers: list[ServerResult] = []
    with tempfile.TemporaryDirectory(prefix="waybill-bench-ingest-") as tmp:
        setup = Setup(_server_env(args, key, tmp), Path(tmp), tokens, dispatcher_token, epoch)
        try:
            for kind in server_kinds(args):
                servers.append(await bench_server(kind, args, setup))
        finally:
            removed = await forget_positions(args.database_url, fleet.organization_id)
            say(f"removed the run's {removed:,} stored positions")
            await clear_redis(args.redis_url)
    facts["load average after the run (1, 5, 15 min)"] = load_average()
    for s in servers:
        if is_waybill(s.server):
            facts[f"{label(s.server)} stopped on SIGTERM"] = f"exit code {s.exit_code} in {s.exit_s:.1f}s"
    return Outcome(servers, facts, command, args)
