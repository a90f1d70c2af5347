"""Position filters under shuffled, duplicated and corrupted streams (hypothesis), geofences, dwell
and track simplification."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.positions import (
    DwellDetector,
    Fence,
    FilterConfig,
    Fix,
    Reject,
    VehicleTrack,
    distance_m,
    fence_events,
    fences_containing,
    simplify,
    static_check,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CFG = FilterConfig(max_speed_mps=50.0, window=10_000)


@st.composite
def true_tracks(draw: st.DrawFn) -> list[Fix]:
    """A plausible drive: fixes 1..10 s apart, at most 30 m/s, with good accuracy, ending before NOW."""
    n = draw(st.integers(2, 40))
    lat, lon = draw(st.floats(-60, 60)), draw(st.floats(1, 170)) * draw(st.sampled_from((-1, 1)))
    t = NOW - timedelta(hours=2)
    out = []
    for seq in range(1, n + 1):
        out.append(Fix(seq, t, lat, lon, accuracy_m=draw(st.floats(0, 30))))
        dt = draw(st.integers(1, 10))
        step = draw(st.floats(0, 30)) * dt / 111_000  # degrees of latitude
        t += timedelta(seconds=dt)
        lat = min(80.0, lat + step)
    return out


CORRUPTIONS = ("null_island", "lat", "future", "inaccurate", "spike", "nan")


def corrupt(fix: Fix, kind: str, seq: int) -> Fix:
    at = fix.recorded_at + timedelta(milliseconds=500)  # an instant of its own
    if kind == "null_island":
        return Fix(seq, at, 0.0, 0.0)
    if kind == "lat":
        return Fix(seq, at, 91.0, fix.lon)
    if kind == "future":
        return Fix(seq, NOW + timedelta(hours=1), fix.lat, fix.lon)
    if kind == "inaccurate":
        return Fix(seq, at, fix.lat, fix.lon, accuracy_m=5_000.0)
    if kind == "nan":
        return Fix(seq, at, float("nan"), fix.lon)
    return Fix(seq, at, max(-80.0, fix.lat - 1.0), fix.lon)  # a 111 km jump in half a second


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Fix], list[Fix], list[Fix]]:
    """(what arrives, the true track, the corrupted fixes): shuffled, with repeats and corruptions."""
    good = draw(true_tracks())
    bad = [
        corrupt(f, draw(st.sampled_from(CORRUPTIONS)), 1000 + i)
        for i, f in enumerate(good)
        if draw(st.booleans()) and i < len(good) - 1
    ]
    repeats = draw(st.lists(st.sampled_from(good), max_size=10))
    arriving = good + bad + repeats
    random.Random(draw(st.integers(0, 2**32))).shuffle(arriving)
    return arriving, good, bad


def run(arriving: list[Fix]) -> tuple[VehicleTrack, list[Fix]]:
    track = VehicleTrack(CFG)
    stored = [f for f in arriving if track.judge(f, NOW) is None]
    return track, stored


@settings(max_examples=300, deadline=None)
@given(streams())
def test_nothing_breaking_a_rule_is_stored_repeats_once_latest_is_newest(
    s: tuple[list[Fix], list[Fix], list[Fix]],
) -> None:
    arriving, _, bad = s
    track, stored = run(arriving)
    # Every stored fix passes the rules on its own ...
    assert all(static_check(f, NOW, CFG) is None for f in stored)
    statically_bad = [f for f in bad if static_check(f, NOW, CFG) is not None]
    assert not set(map(id, statically_bad)) & set(map(id, stored))
    # ... and, in fix-time order, every step between stored fixes is a plausible speed.
    ordered = sorted(stored, key=lambda f: f.recorded_at)
    for a, b in zip(ordered, ordered[1:], strict=False):
        dt = (b.recorded_at - a.recorded_at).total_seconds()
        slack = (a.accuracy_m or 0) + (b.accuracy_m or 0)
        assert distance_m(a.lat, a.lon, b.lat, b.lon) - slack <= CFG.max_speed_mps * dt + 1e-6
    # A repeated position is stored once (one fix per instant).
    assert len({f.recorded_at for f in stored}) == len(stored)
    # The latest is the stored fix with the greatest fix time.
    assert stored
    assert track.latest is ordered[-1]


@settings(max_examples=200, deadline=None)
@given(streams())
def test_in_order_stream_keeps_the_true_track_and_drops_every_corruption(
    s: tuple[list[Fix], list[Fix], list[Fix]],
) -> None:
    _, good, bad = s
    arriving = sorted(good + bad, key=lambda f: f.recorded_at)
    _, stored = run(arriving)
    assert stored == good  # spikes between true fixes are judged against their true neighbours


def test_out_of_order_fix_is_judged_against_its_true_neighbours() -> None:
    track = VehicleTrack(CFG)
    t = NOW - timedelta(minutes=1)
    assert track.judge(Fix(1, t, 52.0, 13.0), NOW) is None
    assert track.judge(Fix(3, t + timedelta(seconds=20), 52.001, 13.0), NOW) is None
    # Arrives last but lies between them in time: 111 km away from both is not plausible ...
    assert track.judge(Fix(2, t + timedelta(seconds=10), 53.0, 13.0), NOW) is Reject.IMPLAUSIBLE_SPEED
    # ... while a point on the way is, and does not become the latest.
    assert track.judge(Fix(2, t + timedelta(seconds=10), 52.0005, 13.0), NOW) is None
    assert track.latest is not None
    assert track.latest.seq == 3


def test_static_rules() -> None:
    ok = Fix(1, NOW, 52.0, 13.0, accuracy_m=10)
    assert static_check(ok, NOW, CFG) is None
    assert static_check(Fix(1, NOW, 0.0, 0.0), NOW, CFG) is Reject.NULL_ISLAND
    assert static_check(Fix(1, NOW, 86.0, 0.0), NOW, CFG) is Reject.OUT_OF_RANGE  # beyond the GEO index
    assert static_check(Fix(1, NOW, 52.0, 181.0), NOW, CFG) is Reject.OUT_OF_RANGE
    assert static_check(Fix(1, NOW + timedelta(seconds=31), 52.0, 13.0), NOW, CFG) is Reject.FUTURE
    assert static_check(Fix(1, NOW + timedelta(seconds=29), 52.0, 13.0), NOW, CFG) is None
    assert static_check(Fix(1, NOW - timedelta(days=8), 52.0, 13.0), NOW, CFG) is Reject.TOO_OLD
    assert static_check(Fix(1, NOW, 52.0, 13.0, accuracy_m=101), NOW, CFG) is Reject.INACCURATE


def test_dwell_fires_once_after_staying_inside() -> None:
    d = DwellDetector(radius_m=50, dwell_s=30)
    t = NOW
    assert not d.update("s1", 52.0, 13.0, 52.0, 13.0, t)
    assert not d.update("s1", 52.01, 13.0, 52.0, 13.0, t + timedelta(seconds=20))  # left: starts over
    assert not d.update("s1", 52.0, 13.0, 52.0, 13.0, t + timedelta(seconds=25))
    assert not d.update("s1", 52.0, 13.0, 52.0, 13.0, t + timedelta(seconds=54))
    assert d.update("s1", 52.0001, 13.0, 52.0, 13.0, t + timedelta(seconds=55))
    assert not d.update("s1", 52.0, 13.0, 52.0, 13.0, t + timedelta(seconds=90))  # once only
    assert not d.update(None, 52.0, 13.0, 52.0, 13.0, t + timedelta(seconds=91))


def test_depot_fence_enter_and_exit() -> None:
    fences = [Fence("depot", 52.0, 13.0, 150)]
    first = fences_containing(fences, 52.0, 13.0)
    assert fence_events(None, first) == []  # the first fix says where the vehicle is, not a crossing
    outside = fences_containing(fences, 52.01, 13.0)
    assert fence_events(first, outside) == [("exit", "depot")]
    assert fence_events(outside, first) == [("enter", "depot")]


def test_simplify_keeps_corners_and_drops_collinear_points() -> None:
    line = [(52.0 + i * 0.0001, 13.0) for i in range(10)] + [
        (52.0009, 13.0 + i * 0.0001) for i in range(1, 10)
    ]
    kept = simplify(line, 5.0)
    assert kept == [0, 9, len(line) - 1]
    assert simplify(line, 0) == list(range(len(line)))
