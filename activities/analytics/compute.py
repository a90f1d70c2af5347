"""The KPI arithmetic with pandas and numpy (definitions in docs/analytics.md).

`outcome_rows` turns one chunk of deliveries and their events into one row per delivered, failed
or returned event of the day, and `load_rows` into load changes per vehicle; the caller keeps
only those small frames across chunks. `track_stats` reduces one vehicle-day of positions to a
few numbers. `group_parts` aggregates everything per group into additive `KpiParts`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from activities.analytics.reader import DeliveryFacts, Track, VehicleInfo
from domain.analytics import LATE_BUCKET_EDGES, LATE_BUCKETS, MAX_GAP_S, MOVING_MPS, NO_KEY, GroupBy, KpiParts

EARTH_RADIUS_M = 6_371_008.8
OUTCOMES = ("delivered", "failed", "returned")
_EVENT_COLUMNS = ["delivery_id", "type", "at", "reason", "ev_vehicle", "ev_driver"]


def haversine_m(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


def _events_frame(events: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(events), columns=_EVENT_COLUMNS)
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame.sort_values(["at", "delivery_id"], kind="stable").reset_index(drop=True)


def _last_before(left: pd.DataFrame, right: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """For each row of `left`, `columns` of the same delivery's latest `right` row at or before it."""
    if right.empty:
        return left.assign(**dict.fromkeys(columns))
    return pd.merge_asof(
        left.sort_values("at"),
        right[["at", "delivery_id", *columns]].sort_values("at"),
        on="at",
        by="delivery_id",
        direction="backward",
        allow_exact_matches=True,
    )


def outcome_rows(
    facts: Sequence[DeliveryFacts],
    events: Sequence[tuple[Any, ...]],
    start: datetime,
    end: datetime,
    timezone: str,
    home_depots: dict[str, str | None],
) -> pd.DataFrame:
    """One row per delivered/failed/returned event in [start, end), with everything grouped on."""
    ev = _events_frame(events)
    if ev.empty:
        return pd.DataFrame()
    ev = ev[ev["at"] < pd.Timestamp(end)]
    assigns = ev[ev["type"].isin(["assigned", "reassigned"])]
    progress = ev[ev["type"].isin(["picked_up", "out_for_delivery", "arrived"])].rename(
        columns={"type": "stage", "at": "stage_at"}
    )
    progress = progress.assign(at=progress["stage_at"])
    pickups = ev[ev["type"] == "picked_up"].rename(columns={"at": "picked_up_at"})
    pickups = pickups.assign(at=pickups["picked_up_at"])
    failed_ids = set(ev.loc[ev["type"] == "failed", "delivery_id"])

    out = ev[ev["type"].isin(OUTCOMES) & (ev["at"] >= pd.Timestamp(start))].drop(
        columns=["ev_vehicle", "ev_driver"]
    )
    if out.empty:
        return pd.DataFrame()
    out = _last_before(out, assigns, ["ev_vehicle", "ev_driver"])
    out = _last_before(out, progress, ["stage", "stage_at"])
    out = _last_before(out, pickups, ["picked_up_at"])
    f = pd.DataFrame([asdict(x) for x in facts]).set_index("delivery_id")
    out = out.join(f, on="delivery_id")
    delivered = out["type"] == "delivered"
    # The vehicle and driver of the attempt (last assignment before it), else the projection's.
    out["vehicle"] = out["ev_vehicle"].where(out["ev_vehicle"].notna(), out["vehicle_id"]).fillna(NO_KEY)
    out["driver"] = out["ev_driver"].where(out["ev_driver"].notna(), out["driver_id"]).fillna(NO_KEY)
    home = out["vehicle"].map(home_depots)
    out["depot"] = out["depot_id"].where(out["depot_id"].notna(), home).fillna(NO_KEY)
    ws = pd.to_datetime(out["window_start"], utc=True)
    we = pd.to_datetime(out["window_end"], utc=True)
    out["with_window"] = delivered & we.notna()
    out["early"] = out["with_window"] & ws.notna() & (out["at"] < ws)
    out["late"] = out["with_window"] & (out["at"] > we)
    out["on_time"] = out["with_window"] & ~out["early"] & ~out["late"]
    late_min = (out["at"] - we).dt.total_seconds() / 60.0
    out["late_min"] = late_min.where(out["late"], 0.0)
    buckets = pd.cut(late_min, bins=[0, *LATE_BUCKET_EDGES, np.inf], labels=list(LATE_BUCKETS), right=True)
    out["late_bucket"] = buckets.astype(object).where(out["late"], None)
    picked = pd.to_datetime(out["picked_up_at"], utc=True)
    out["duration_s"] = (out["at"] - picked).dt.total_seconds().where(delivered)
    # Dwell only when the attempt's last stage was an arrival (a failure on the way has none).
    arrived_at = pd.to_datetime(out["stage_at"], utc=True).where(out["stage"] == "arrived")
    out["dwell_s"] = (out["at"] - arrived_at).dt.total_seconds().where(out["type"] != "returned")
    out["first_attempt"] = delivered & ~out["delivery_id"].isin(failed_ids)
    out["hour"] = out["at"].dt.tz_convert(timezone).dt.hour
    keep = [
        "delivery_id", "type", "at", "reason", "vehicle", "driver", "depot", "with_window", "on_time",
        "early", "late", "late_min", "late_bucket", "duration_s", "dwell_s", "first_attempt", "hour",
    ]  # fmt: skip
    return out[keep].reset_index(drop=True)


def load_rows(
    facts: Sequence[DeliveryFacts], events: Sequence[tuple[Any, ...]], end: datetime
) -> pd.DataFrame:
    """Load changes per vehicle before `end`: + size at pick-up, - size when it leaves the vehicle
    (delivered, failed, or cancelled while loaded)."""
    ev = _events_frame(events)
    ev = ev[ev["at"] < pd.Timestamp(end)]
    if ev.empty:
        return pd.DataFrame(columns=["vehicle", "at", "units", "weight_kg", "volume_m3"])
    ev = _last_before(
        ev.drop(columns=["ev_vehicle", "ev_driver"]),
        ev[ev["type"].isin(["assigned", "reassigned"])],
        ["ev_vehicle"],
    )
    ev = ev.sort_values(["delivery_id", "at"], kind="stable")
    sign = ev["type"].map({"picked_up": 1, "delivered": -1, "failed": -1}).fillna(0)
    loaded_before = sign.groupby(ev["delivery_id"]).cumsum() - sign
    sign = sign.where(~((ev["type"] == "cancelled") & (loaded_before > 0)), -1)
    ev = ev.assign(sign=sign)[sign != 0]
    f = pd.DataFrame([asdict(x) for x in facts]).set_index("delivery_id")
    ev = ev.join(f, on="delivery_id")
    ev["vehicle"] = ev["ev_vehicle"].where(ev["ev_vehicle"].notna(), ev["vehicle_id"])
    ev = ev[ev["vehicle"].notna()]
    return pd.DataFrame(
        {
            "vehicle": ev["vehicle"],
            "at": ev["at"],
            "units": ev["sign"] * ev["units"],
            "weight_kg": ev["sign"] * ev["weight_kg"],
            "volume_m3": ev["sign"] * ev["volume_m3"],
        }
    )


def peak_load_ratios(
    loads: pd.DataFrame, vehicles: Sequence[VehicleInfo], start: datetime
) -> dict[str, float]:
    """Per vehicle: the highest share of capacity on board during the day (the largest over the
    dimensions the vehicle has a capacity for), from the load carried in at `start` on."""
    out: dict[str, float] = {}
    if loads.empty:
        return out
    loads = loads.sort_values("at", kind="stable")
    caps = {v.vehicle_id: v for v in vehicles}
    for vehicle, g in loads.groupby("vehicle"):
        info = caps.get(str(vehicle))
        if info is None:
            continue
        ratios = []
        for dim, cap in (
            ("units", info.capacity_units),
            ("weight_kg", info.capacity_weight_kg),
            ("volume_m3", info.capacity_volume_m3),
        ):
            if not cap:
                continue
            level = g[dim].cumsum()
            during = level[g["at"] >= pd.Timestamp(start)]
            carried = level[g["at"] < pd.Timestamp(start)]
            peak = max(
                float(during.max()) if len(during) else 0.0, float(carried.iloc[-1]) if len(carried) else 0.0
            )
            ratios.append(peak / cap)
        if ratios:
            out[str(vehicle)] = max(ratios)
    return out


def clean_track(
    track: Track, max_accuracy_m: float, max_speed_mps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, lat, lon) ordered by (time, seq), without imprecise fixes, repeats of an instant and
    lone spikes (a fix that implies more than `max_speed_mps` from the previous fix and to the next)."""
    order = np.lexsort((track.seq, track.t))
    t, lat, lon, acc = track.t[order], track.lat[order], track.lon[order], track.accuracy[order]
    ok = ~(acc > max_accuracy_m)  # NaN (no accuracy given) is kept
    t, lat, lon = t[ok], lat[ok], lon[ok]
    first = np.concatenate(([True], np.diff(t) > 0)) if len(t) else np.zeros(0, bool)
    t, lat, lon = t[first], lat[first], lon[first]
    if len(t) >= 3:
        d = haversine_m(lat[:-1], lon[:-1], lat[1:], lon[1:])
        v = d / np.diff(t)
        spike = np.zeros(len(t), bool)
        spike[1:-1] = (v[:-1] > max_speed_mps) & (v[1:] > max_speed_mps)
        t, lat, lon = t[~spike], lat[~spike], lon[~spike]
    return t, lat, lon


def track_stats(t: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> dict[str, float]:
    """Distance over every consecutive pair; active/moving/stationary time over pairs at most
    MAX_GAP_S apart, moving when faster than MOVING_MPS."""
    if len(t) < 2:
        return {"distance_m": 0.0, "active_s": 0.0, "moving_s": 0.0, "stationary_s": 0.0}
    d = haversine_m(lat[:-1], lon[:-1], lat[1:], lon[1:])
    dt = np.diff(t)
    counted = dt <= MAX_GAP_S
    moving = counted & (d / dt >= MOVING_MPS)
    return {
        "distance_m": float(d.sum()),
        "active_s": float(dt[counted].sum()),
        "moving_s": float(dt[moving].sum()),
        "stationary_s": float(dt[counted & ~moving].sum()),
    }


def route_row(route: dict[str, Any], t: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> dict[str, Any]:
    stops = route.get("stops") or []
    live = [s for s in stops if s.get("status") != "dropped"]
    finished = [
        pd.Timestamp(s["finished_at"])
        for s in live
        if s.get("finished_at") and s.get("status") in ("done", "failed")
    ]
    start = pd.Timestamp(route["start_at"])
    planned_s = sum(float(s.get("travel_s") or 0) + float(s.get("service_s") or 0) for s in live)
    planned_s += float(route.get("end_travel_s") or 0)
    actual_distance, actual_s = 0.0, None
    if finished:
        last = max(finished)
        actual_s = (last - start).total_seconds()
        inside = (t >= start.timestamp()) & (t <= last.timestamp())
        actual_distance = track_stats(t[inside], lat[inside], lon[inside])["distance_m"]
    return {
        "route_id": route["route_id"],
        "vehicle_id": route["vehicle_id"],
        "driver_id": route.get("driver_id"),
        "stops": len(live),
        "stops_finished": len(finished),
        "planned_distance_m": route.get("planned_distance_m"),
        "actual_distance_m": actual_distance,
        "planned_s": planned_s,
        "actual_s": actual_s,
    }


def main_driver(drivers: Sequence[str | None]) -> str | None:
    counts = Counter(d for d in drivers if d)
    return counts.most_common(1)[0][0] if counts else None


def _int_map(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.items()}


def group_parts(
    outcomes: pd.DataFrame, vehicle_days: pd.DataFrame, day: str
) -> dict[str, dict[str, KpiParts]]:
    """KpiParts per key for each GroupBy dimension ("day" has the one key `day`)."""
    o = outcomes.assign(day=day) if not outcomes.empty else outcomes
    v = vehicle_days.assign(day=day) if not vehicle_days.empty else vehicle_days
    result = {dim.value: _dimension_parts(o, v, dim.value) for dim in GroupBy}
    result[GroupBy.DAY.value].setdefault(day, KpiParts())  # a day without deliveries keeps its row
    return result


def _dimension_parts(o: pd.DataFrame, v: pd.DataFrame, col: str) -> dict[str, KpiParts]:
    parts: dict[str, KpiParts] = {}

    def part(key: object) -> KpiParts:
        return parts.setdefault(str(key), KpiParts())

    if not o.empty:
        d = o[o["type"] == "delivered"]
        for key, g in d.groupby(col):
            p = part(key)
            p.deliveries = len(g)
            p.with_window, p.on_time = int(g["with_window"].sum()), int(g["on_time"].sum())
            p.early, p.late = int(g["early"].sum()), int(g["late"].sum())
            p.late_minutes_sum = float(g["late_min"].sum())
            p.late_histogram = _int_map(g["late_bucket"].dropna().value_counts())
            p.first_attempt_successes = int(g["first_attempt"].sum())
            p.durations_s = [round(float(x), 3) for x in g["duration_s"].dropna()]
            p.hourly = np.bincount(g["hour"].to_numpy(dtype=int), minlength=24).tolist()
        for key, g in o[o["type"] == "failed"].groupby(col):
            part(key).failures = len(g)
            part(key).failure_reasons = _int_map(g["reason"].fillna("other").value_counts())
        for key, g in o.groupby(col):
            p = part(key)
            p.outcomes = int(g["type"].isin(["delivered", "returned"]).sum())
            p.attempts = int(g["type"].isin(["delivered", "failed"]).sum())
            dwell = g["dwell_s"].dropna()
            p.dwell_s_sum, p.dwell_stops = float(dwell.sum()), len(dwell)
    if not v.empty:
        for key, g in v.groupby(col):
            p = part(key)
            p.vehicle_days = len(g)
            for name in ("active_s", "moving_s", "stationary_s", "idle_s", "distance_m"):
                setattr(p, name, float(g[name].sum()))
            ratios = g["peak_load_ratio"].dropna()
            p.capacity_vehicle_days, p.peak_load_ratio_sum = len(ratios), float(ratios.sum())
    return parts
