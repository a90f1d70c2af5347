"""`waybill analytics backfill --from --to [--org]` and `waybill analytics demo [--day]`.

backfill starts one AnalyticsBackfillWorkflow per organization (run by the workers, like the
schedules' runs) and waits for them; demo writes a synthetic past day of history for the seeded
demo organization, so that its report has something to show.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from plumbing.settings import ConfigError, Settings


def add_analytics_parser(sub: Any) -> None:
    an = sub.add_parser("analytics", help="fleet analytics: backfill reports, demo history")
    an_sub = an.add_subparsers(dest="analytics_command", required=True)
    bf = an_sub.add_parser("backfill", help="recompute the daily reports of a date range (inclusive)")
    bf.add_argument(
        "--from", dest="from_day", required=True, type=date.fromisoformat, help="first day, YYYY-MM-DD"
    )
    bf.add_argument(
        "--to", dest="to_day", required=True, type=date.fromisoformat, help="last day, YYYY-MM-DD"
    )
    bf.add_argument("--org", default=None, help="organization slug or id (default: every organization)")
    demo = an_sub.add_parser("demo", help="write a synthetic past day of history for the demo organization")
    demo.add_argument("--day", type=date.fromisoformat, default=None, help="the day (default: yesterday)")


async def run_analytics(settings: Settings, args: argparse.Namespace) -> int:
    from api.resources import Resources

    resources = await Resources.open(settings)
    try:
        if args.analytics_command == "demo":
            return await _demo(resources, args.day or (datetime.now(UTC).date() - timedelta(days=1)))
        return await _backfill(resources, args.from_day, args.to_day, args.org)
    finally:
        await resources.close()


async def _organizations(resources: Any, org: str | None) -> list[uuid.UUID]:
    from db.repositories.analytics import organizations
    from db.repositories.cli_lookups import organization_ids

    async with resources.sessionmaker() as session:
        if org is None:
            return await organizations(session)
        found = await organization_ids(session, org)
    if not found:
        raise ConfigError(f"no organization {org!r}")
    return found


async def _backfill(resources: Any, first: date, last: date, org: str | None) -> int:
    from domain.analytics import BackfillInput, days_between
    from starters.analytics import start_backfill, target_for

    try:
        days_between(first.isoformat(), last.isoformat())
    except ValueError as exc:
        raise ConfigError(f"analytics backfill: {exc}") from None
    client = await resources.temporal.get()
    handles = []
    for org_id in await _organizations(resources, org):
        target = await target_for(resources, org_id)
        inp = BackfillInput(target, first.isoformat(), last.isoformat(), requested_by="cli")
        handles.append((org_id, await start_backfill(client, resources.settings, inp)))
        sys.stdout.write(f"started {handles[-1][1].id}\n")
    results = await asyncio.gather(*(h.result() for _, h in handles))
    for (org_id, _), result in zip(handles, results, strict=True):
        sys.stdout.write(f"{org_id}: {result.days} day(s), {result.deliveries} deliveries\n")
    return 0


async def _demo(resources: Any, day: date) -> int:
    from db.repositories.accounts import OrganizationRepository
    from db.repositories.analytics import organization_timezone
    from db.repositories.demo_data import fleet_of
    from tools.analytics_demo import generate
    from tools.seed import DEMO_SLUG

    async with resources.sessionmaker() as session:
        demo = await OrganizationRepository(session).by_slug(DEMO_SLUG)
        if demo is None:
            raise ConfigError("no demo organization: run `waybill seed` (or `waybill dev`) first")
        org = demo.id
        tz = await organization_timezone(session, org, resources.settings.analytics_default_timezone)
        fleet = await fleet_of(session, org)
    written = await generate(
        resources.sessionmaker,
        resources.history,
        org,
        fleet,
        [day],
        tz,
        stops=10,
        ping_s=15.0,
        seed=day.toordinal(),
    )
    sys.stdout.write(
        f"demo history for {day.isoformat()} ({tz}): {written.deliveries} deliveries, "
        f"{written.events} events, {written.positions} positions\n"
    )
    return 0
