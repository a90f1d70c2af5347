"""`compute_daily_report` (task queue `analytics`): one organization's KPIs for one local day.

Reads the projection in keyset chunks and the history store page by page, keeps only the day's
small outcome and load frames and one vehicle's track at a time, and stores the report (replacing
an earlier one: recomputing after a fix is a backfill). The pandas work runs on a thread of its
own so that the event loop keeps heartbeating and serving other activities meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.analytics import compute, reader
from activities.interfaces import implements
from activities.interfaces.analytics import AnalyticsInterface
from db.repositories.analytics import fleet_labels, routes_of_shift, save_report
from domain.analytics import NO_KEY, ComputeReportInput, ComputeReportResult

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from activities.resources import ActivityResources as Resources

T = TypeVar("T")


def local_day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """[local midnight, next local midnight) in UTC: 23 or 25 hours on DST change days."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def resolve_day(inp: ComputeReportInput) -> date:
    if inp.day:
        return date.fromisoformat(inp.day)
    at = inp.at or datetime.now(UTC)
    return at.astimezone(ZoneInfo(inp.timezone)).date() + timedelta(days=inp.day_offset)


class AnalyticsActivities(AnalyticsInterface):
    def __init__(self, resources: Resources) -> None:
        self._r = resources
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._cpu, partial(fn, *args))

    @implements(AnalyticsInterface.compute_daily_report)
    async def compute_daily_report(self, inp: ComputeReportInput) -> ComputeReportResult:
        try:
            day = resolve_day(inp)
            start, end = local_day_bounds(day, inp.timezone)
        except (ValueError, ZoneInfoNotFoundError) as exc:
            raise ApplicationError(str(exc), type="InvalidReportRequest", non_retryable=True) from exc
        org = uuid.UUID(inp.organization_id)
        async with self._r.sessionmaker() as session:
            fleet = await reader.vehicles(session, org)
            routes = await routes_of_shift(session, org, day.isoformat())
            labels = await fleet_labels(session, org)
        homes = {v.vehicle_id: v.depot_id for v in fleet}
        outcomes, loads = await self._delivery_frames(org, start, end, inp.timezone, homes)
        peaks = await self._run(compute.peak_load_ratios, loads, fleet, start)
        dwell = outcomes.groupby("vehicle")["dwell_s"].sum().to_dict() if not outcomes.empty else {}
        vehicle_days, route_rows = await self._vehicle_days(org, fleet, routes, start, end, dwell, peaks)
        groups = await self._run(compute.group_parts, outcomes, pd.DataFrame(vehicle_days), day.isoformat())
        deliveries = sum(p.deliveries for p in groups["day"].values())
        report = {
            "groups": {dim: {k: p.to_json() for k, p in parts.items()} for dim, parts in groups.items()},
            "routes": route_rows,
            "labels": labels,
        }
        async with self._r.sessionmaker() as session, session.begin():
            await save_report(
                session, org, day, inp.timezone, inp.final, deliveries, report, datetime.now(UTC)
            )
        return ComputeReportResult(
            inp.organization_id, day.isoformat(), deliveries, len(vehicle_days), len(route_rows)
        )

    async def _delivery_frames(
        self, org: uuid.UUID, start: datetime, end: datetime, timezone: str, homes: dict[str, str | None]
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The day's delivery outcomes and vehicle loads, read and computed a chunk at a time."""
        outcome_frames: list[pd.DataFrame] = []
        load_frames: list[pd.DataFrame] = []
        async for chunk in reader.delivery_chunks(self._r.sessionmaker, org, start, end):
            events = await reader.event_rows(self._r.history, org, [f.delivery_id for f in chunk])
            outcome_frames.append(
                await self._run(compute.outcome_rows, chunk, events, start, end, timezone, homes)
            )
            load_frames.append(await self._run(compute.load_rows, chunk, events, end))
            activity.heartbeat(f"deliveries up to {chunk[-1].delivery_id}")
        outcomes = (
            pd.concat([f for f in outcome_frames if not f.empty])
            if any(not f.empty for f in outcome_frames)
            else pd.DataFrame()
        )
        loads = pd.concat(load_frames) if load_frames else pd.DataFrame()
        return outcomes, loads

    async def _vehicle_days(
        self,
        org: uuid.UUID,
        fleet: list[reader.VehicleInfo],
        routes: list[dict[str, Any]],
        start: datetime,
        end: datetime,
        dwell: Mapping[Any, float],
        peaks: Mapping[str, float],
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Each vehicle's day from its track (one track in memory at a time), and its routes' rows."""
        vehicle_days: list[dict[str, Any]] = []
        route_rows: list[dict[str, Any]] = []
        s = self._r.settings
        for v in fleet:
            track = await reader.vehicle_track(self._r.history, org, uuid.UUID(v.vehicle_id), start, end)
            t, lat, lon = await self._run(
                compute.clean_track, track, s.tracking_max_accuracy_m, s.tracking_max_speed_mps
            )
            mine = [r for r in routes if r.get("vehicle_id") == v.vehicle_id]
            route_rows += [compute.route_row(r, t, lat, lon) for r in mine]
            activity.heartbeat(f"vehicle {v.vehicle_id}")
            if len(t) < 2:
                continue
            stats = compute.track_stats(t, lat, lon)
            driver = compute.main_driver(track.drivers) or next(
                (r.get("driver_id") for r in mine if r.get("driver_id")), None
            )
            vehicle_days.append(
                {
                    "vehicle": v.vehicle_id,
                    "driver": driver or NO_KEY,
                    "depot": v.depot_id or NO_KEY,
                    **stats,
                    "idle_s": max(0.0, stats["stationary_s"] - float(dwell.get(v.vehicle_id, 0.0))),
                    "peak_load_ratio": peaks.get(v.vehicle_id),
                }
            )
        return vehicle_days, route_rows
