"""The socket parsers under hostile input: a frame (api/sockets/frames.py parse_frame) and a position
in it (api/sockets/driver.py parse_fix). Anything a client sends ends in a frame or a documented error,
never another exception, which would end the connection (and, inside the ingest path, worse)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from api.sockets.driver import parse_fix
from api.sockets.frames import FrameError, parse_frame
from api.sockets.limits import ALLOWED, FLOOD, REFUSED, REFUSED_QUIETLY, FrameBudget
from domain.positions import FilterConfig, static_check

# What driver.handle catches around parse_fix (a malformed position is acknowledged as `invalid`),
# and FrameError for a position without a usable `seq` (the frame is answered with an error).
PARSE_FIX_ERRORS = (KeyError, TypeError, ValueError, OverflowError, FrameError)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),  # naive
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?([+-]\d{2}:\d{2}|Z)?\Z"),
    json_values,
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    json_values,
)
positions = st.fixed_dictionaries(
    {},
    optional={
        "seq": st.one_of(st.integers(min_value=-5, max_value=2**70), json_values),
        "recorded_at": timestamps,
        "lat": numbers,
        "lon": numbers,
        "accuracy_m": numbers,
        "speed_mps": numbers,
        "heading_deg": numbers,
        "extra": json_values,
    },
)


@given(st.one_of(positions, json_values))
def test_parse_fix_returns_a_fix_or_raises_a_documented_error(raw: Any) -> None:
    try:
        fix = parse_fix(raw)
    except PARSE_FIX_ERRORS:
        return
    assert isinstance(fix.seq, int)
    assert not isinstance(fix.seq, bool)
    assert fix.seq >= 0
    assert fix.recorded_at.tzinfo is not None
    for value in (fix.lat, fix.lon, fix.accuracy_m, fix.speed_mps, fix.heading_deg):
        assert value is None or type(value) is float
    # What comes out can be judged by the filters without raising (non-finite values are rejected).
    reject = static_check(fix, datetime.now(UTC), FilterConfig())
    if not (math.isfinite(fix.lat) and math.isfinite(fix.lon)):
        assert reject is not None


@given(json_values)
def test_parse_frame_of_any_json_document(value: Any) -> None:
    """Well-formed JSON of any shape (the existing test in test_frames.py covers arbitrary text)."""
    raw = json.dumps(value)
    code = None
    try:
        frame = parse_frame(raw)
    except FrameError as exc:
        code = exc.code
    if code is not None:
        assert code in ("invalid_frame", "missing_type")
        return
    assert isinstance(frame, dict)
    assert isinstance(frame["type"], str)
    assert frame["type"]


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5), st.text(min_size=1, max_size=20))
def test_parse_frame_keeps_any_object_with_a_type(fields: dict[str, Any], kind: str) -> None:
    raw = json.dumps({**fields, "type": kind})
    assert json.dumps(parse_frame(raw)) == raw  # compared as text: NaN != NaN


@given(st.integers(min_value=1, max_value=200), st.text(alphabet="[{\"'\\:,0123456789e.-", max_size=300))
def test_parse_frame_of_deep_or_broken_json(depth: int, tail: str) -> None:
    for raw in ("[" * depth * 50, "{" + '"a":{' * depth + tail, tail):
        try:
            parse_frame(raw)
        except FrameError:
            pass


@given(
    st.floats(min_value=0.5, max_value=1000),
    st.integers(min_value=1, max_value=500),
    st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=400),
)
def test_frame_budget_never_admits_more_than_burst_plus_rate(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Over any sequence of arrivals: admitted <= burst + rate x elapsed, and every frame within the
    budget is admitted (no frame is refused while a whole token is available)."""
    now = 0.0
    budget = FrameBudget(rate, burst, 0, now)
    admitted = 0
    for gap in gaps:
        now += gap
        available = budget.tokens + (now - budget.stamp) * rate
        verdict = budget.take(now)
        assert verdict in (ALLOWED, REFUSED, REFUSED_QUIETLY)
        assert (verdict == ALLOWED) == (available >= 1.0)
        admitted += verdict == ALLOWED
        assert admitted <= burst + rate * now + 1e-6


def test_frame_budget_flood() -> None:
    budget = FrameBudget(1.0, 2, 3, 0.0)
    verdicts = [budget.take(0.0) for _ in range(6)]
    assert verdicts == [ALLOWED, ALLOWED, REFUSED, REFUSED_QUIETLY, REFUSED_QUIETLY, FLOOD]
    # Refusals are counted per 10 s window: after it, the count starts again.
    budget = FrameBudget(1.0, 1, 3, 0.0)
    assert [budget.take(0.0) for _ in range(4)] == [ALLOWED, REFUSED, REFUSED_QUIETLY, REFUSED_QUIETLY]
    assert budget.take(10.0) == ALLOWED
    assert [budget.take(10.0) for _ in range(3)] == [REFUSED, REFUSED_QUIETLY, REFUSED_QUIETLY]


@given(
    seq=st.integers(min_value=0, max_value=2**62),
    at=st.datetimes(timezones=st.just(UTC)),
    lat=st.floats(min_value=-85, max_value=85),
    lon=st.floats(min_value=-180, max_value=180),
    extra=st.lists(
        st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)), min_size=3, max_size=3
    ),
    driver=st.booleans(),
)
def test_fix_json_is_the_compact_json_of_fix_message(
    seq: int, at: datetime, lat: float, lon: float, extra: list[float | None], driver: bool
) -> None:
    """The hot path's hand-built JSON of a position says exactly what `fix_message` says."""
    import uuid

    from api.sockets.position_json import VehicleRef, fix_json, fix_message, positions_payload
    from db.bus.base import encode_json
    from domain.positions import Fix

    ref = VehicleRef(uuid.uuid4(), uuid.uuid4(), uuid.uuid4() if driver else None)
    fix = Fix(seq, at, lat, lon, *extra)
    text = fix_json(ref, fix)
    assert text.encode() == encode_json(fix_message(ref, fix))
    payload = positions_payload([text, text])
    assert payload == encode_json({"type": "positions", "positions": [fix_message(ref, fix)] * 2})


def test_parse_fix_gives_utc() -> None:
    fix = parse_fix({"seq": 1, "recorded_at": "2026-01-01T12:00:00+02:00", "lat": 1, "lon": 2.5})
    assert fix.recorded_at == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert fix.recorded_at.tzinfo is UTC
    assert (fix.lat, fix.lon, fix.accuracy_m) == (1.0, 2.5, None)
    assert isinstance(fix.lat, float)
