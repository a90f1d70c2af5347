"""The route ETA model and re-sequencing rules (domain/routes.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.routes import (
    RouteState,
    RouteStatus,
    RouteStop,
    SequenceError,
    StopStatus,
    check_resequence,
    estimate_etas,
    route_travel_s,
)

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def stop(name: str, kind: str = "delivery", **kw: object) -> RouteStop:
    base = {"delivery_id": name, "kind": kind, "lat": 52.5, "lon": 13.4, "service_s": 60, "travel_s": 600}
    base.update(kw)
    return RouteStop(**base)  # type: ignore[arg-type]


def route(*stops: RouteStop, **kw: object) -> RouteState:
    return RouteState(
        route_id="r",
        organization_id="o",
        vehicle_id="v",
        shift="2026-11-28",
        driver_id=None,
        depot_id=None,
        plan_id="p",
        start_at=T0,
        stops=list(stops),
        **kw,  # type: ignore[arg-type]
    )


def test_etas_add_travel_wait_for_windows_and_service() -> None:
    st = route(stop("a"), stop("b", window_start=T0 + timedelta(hours=1)), stop("c"), end_travel_s=300)
    out = estimate_etas(st, now=T0 - timedelta(hours=1))
    assert [s.eta for s in out.stops] == [
        T0 + timedelta(seconds=600),
        T0 + timedelta(seconds=600 + 60 + 600),  # arrives early and waits for 09:00
        T0 + timedelta(hours=1, seconds=60 + 600),
    ]
    assert out.estimated_end == T0 + timedelta(hours=1, seconds=60 + 600 + 60 + 300)


def test_etas_drive_on_from_the_last_finished_stop_and_never_lie_in_the_past() -> None:
    done_at = T0 + timedelta(hours=2)
    st = route(
        stop("a", status=StopStatus.DONE, finished_at=done_at), stop("b"), status=RouteStatus.IN_PROGRESS
    )
    assert estimate_etas(st, now=done_at).stops[1].eta == done_at + timedelta(seconds=600)
    late = done_at + timedelta(hours=1)
    assert estimate_etas(st, now=late).stops[1].eta == late


def test_resequence_must_list_every_planned_stop_and_keep_pickups_first() -> None:
    st = route(stop("a", status=StopStatus.DONE), stop("b", "pickup"), stop("b"), stop("c"))
    check_resequence(st, ["c:delivery", "b:pickup", "b:delivery"])
    with pytest.raises(SequenceError, match="missing"):
        check_resequence(st, ["c:delivery", "b:pickup"])
    with pytest.raises(SequenceError, match="unknown"):
        check_resequence(st, ["a:delivery", "c:delivery", "b:pickup", "b:delivery"])
    with pytest.raises(SequenceError, match="pickup of b"):
        check_resequence(st, ["b:delivery", "b:pickup", "c:delivery"])


def test_travel_times_for_a_manual_order_start_at_the_depot() -> None:
    st = route(
        stop("a", lat=52.50, lon=13.40), stop("b", lat=52.51, lon=13.40), start_lat=52.50, start_lon=13.40
    )
    travel, back = route_travel_s(st, [], [st.stops[1], st.stops[0]], detour=1.0, speed_kmh=36.0)
    # 0.01 degree of latitude is about 1112 m; at 10 m/s that is about 111 s each way.
    assert travel[0] == pytest.approx(111, abs=1)
    assert travel[1] == pytest.approx(111, abs=1)
    assert back == 0
    moved = replace(st, stops=[st.stops[0]])
    assert route_travel_s(moved, [], [st.stops[1]], 1.0, 36.0)[1] == pytest.approx(111, abs=1)
