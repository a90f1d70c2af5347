"""`waybill doctor`: is this installation configured and can it reach everything it needs?

Each part gets a verdict (ok, warn, fail) and one line of explanation; nothing is changed. Unlike
`waybill check`, which proves the whole chain through a running worker, this runs without one.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from plumbing.settings import Settings, redact_url

if TYPE_CHECKING:
    from temporalio.client import Client

TIMEOUT_S = 5.0


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    part: str
    verdict: Verdict
    detail: str


Check = Callable[[Settings], Awaitable[Finding]]


async def run_doctor(settings: Settings) -> list[Finding]:
    checks: list[tuple[str, Check]] = [
        ("configuration", _config),
        ("database", _database),
        ("migrations", _migrations),
        ("cache and bus", _cache),
        ("history store", _history),
    ]
    findings = [await _guarded(check, settings, part) for part, check in checks]
    try:
        from plumbing.temporal import connect

        client = await asyncio.wait_for(connect(settings), TIMEOUT_S)
    except Exception as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
        detail = f"not reachable at {settings.temporal_target} ({reason})"
        findings += [
            Finding("temporal", Verdict.FAIL, detail),
            Finding("workers", Verdict.FAIL, "Temporal is down"),
        ]
    else:
        findings += [
            await _guarded(lambda s: _temporal(s, client), settings, "temporal"),
            await _guarded(lambda s: _workers(s, client), settings, "workers"),
        ]
    findings.append(await _guarded(_tools, settings, "backup tools"))
    return findings


async def _guarded(check: Check, settings: Settings, name: str) -> Finding:
    try:
        return await asyncio.wait_for(check(settings), TIMEOUT_S * 2)
    except TimeoutError:
        return Finding(name, Verdict.FAIL, f"no answer within {TIMEOUT_S * 2:.0f} s")
    except Exception as exc:  # a doctor reports every failure instead of stopping at the first
        return Finding(name, Verdict.FAIL, f"{type(exc).__name__}: {exc}")


async def _config(s: Settings) -> Finding:
    notes = [
        f"environment {s.env.value}",
        f"JWT keys {', '.join(sorted(s.jwt_keys))} (active {s.active_kid})",
    ]
    if s.is_dev:
        return Finding("configuration", Verdict.WARN, "; ".join([*notes, "dev mode: not for production"]))
    return Finding("configuration", Verdict.OK, "; ".join(notes))


async def _database(s: Settings) -> Finding:
    from db.repositories.doctor_checks import database_version

    version = await database_version(s.async_database_url)
    verdict = Verdict.OK if "postgresql" in s.async_database_url else Verdict.WARN
    note = "" if verdict is Verdict.OK else " (embedded default; use PostgreSQL in production)"
    return Finding("database", verdict, f"{redact_url(s.sync_database_url)}: {version[:60]}{note}")


async def _migrations(s: Settings) -> Finding:
    from alembic.script import ScriptDirectory

    from db.migrate import alembic_config, current_revision

    head = ScriptDirectory.from_config(alembic_config(s.sync_database_url)).get_current_head()
    current = await asyncio.to_thread(current_revision, s.sync_database_url)
    if current == head:
        return Finding("migrations", Verdict.OK, f"at head {head}")
    return Finding(
        "migrations",
        Verdict.FAIL,
        f"database at {current or 'nothing'}, code at {head}: run `waybill migrate`",
    )


async def _cache(s: Settings) -> Finding:
    if s.uses_embedded_bus:
        return Finding(
            "cache and bus", Verdict.WARN, "in-process (no REDIS_URL): only `waybill dev` can use it"
        )
    from db.bus.factory import create_cache_bus

    bus = create_cache_bus(s)
    try:
        await asyncio.wait_for(bus.ping(), TIMEOUT_S)
    finally:
        await bus.close()
    return Finding("cache and bus", Verdict.OK, f"Redis at {redact_url(s.redis_url or '')} answers")


async def _history(s: Settings) -> Finding:
    if not s.mongodb_url:
        return Finding("history store", Verdict.OK, "in the SQL database (no MONGODB_URL)")
    from db.history.mongo import MongoHistoryStore

    store = MongoHistoryStore(
        s.mongodb_url, s.mongodb_database, server_selection_timeout_ms=int(TIMEOUT_S * 1000)
    )
    try:
        await asyncio.wait_for(store.ping(), TIMEOUT_S)
    finally:
        await store.close()
    return Finding("history store", Verdict.OK, f"MongoDB at {redact_url(s.mongodb_url)} answers")


async def _temporal(s: Settings, client: Client) -> Finding:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    from domain.search_attributes import KEYWORD_ATTRIBUTES

    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=s.temporal_namespace)
    )
    missing = [n for n in KEYWORD_ATTRIBUTES if n not in listed.custom_attributes]
    where = f"{s.temporal_target} namespace {s.temporal_namespace}"
    if missing:
        return Finding(
            "temporal",
            Verdict.WARN,
            f"{where}: search attributes missing ({', '.join(missing)}); a worker adds them",
        )
    return Finding("temporal", Verdict.OK, f"{where} answers; search attributes registered")


async def _workers(s: Settings, client: Client) -> Finding:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    idle = []
    for queue, kind in (
        (s.temporal_task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        (s.temporal_routing_task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=s.temporal_namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
            )
        )
        if not described.pollers:
            idle.append(queue)
    if idle:
        return Finding("workers", Verdict.WARN, f"no worker polls {', '.join(idle)}: start `waybill worker`")
    return Finding(
        "workers", Verdict.OK, f"workers poll {s.temporal_task_queue} and {s.temporal_routing_task_queue}"
    )


async def _tools(s: Settings) -> Finding:
    if "postgresql" not in s.async_database_url:
        return Finding("backup tools", Verdict.OK, "SQLite backups need no extra tools")
    if shutil.which("pg_dump") and shutil.which("pg_restore"):
        return Finding("backup tools", Verdict.OK, "pg_dump and pg_restore found")
    return Finding(
        "backup tools", Verdict.WARN, "pg_dump/pg_restore not found: `waybill backup` will not work"
    )


def format_findings(findings: list[Finding]) -> str:
    width = max(len(f.part) for f in findings)
    lines = [f"{f.verdict.value.upper():4}  {f.part:<{width}}  {f.detail}" for f in findings]
    failed = sum(f.verdict is Verdict.FAIL for f in findings)
    warned = sum(f.verdict is Verdict.WARN for f in findings)
    verdict = "not ready" if failed else ("ready, with warnings" if warned else "ready")
    lines.append(f"verdict: {verdict} ({failed} failed, {warned} warnings)")
    return "\n".join(lines)
