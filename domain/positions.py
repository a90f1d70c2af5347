"""Position filters, geofences, dwell detection and track simplification for live tracking.

Pure and stdlib-only. The socket server keeps one `VehicleTrack` per vehicle and asks it to judge
each fix; a fix that breaks a rule is still acknowledged to the phone (it must stop re-sending it)
but is never stored or made the vehicle's latest position.

Speed plausibility is judged by fix time, not arrival order: a fix is compared with its true
neighbours among the accepted fixes (the one just before and the one just after it in time), so a
backlog that arrives late or shuffled is judged as if it had arrived in order. Invariant: any two
accepted fixes adjacent in time are at most `max_speed_mps` apart.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from domain.geo import EARTH_RADIUS_M, LatLon, haversine_m

# Redis GEO (the latest-position index) holds Web-Mercator latitudes only.
GEO_MAX_LAT = 85.05112878

# The travel model for live ETAs: great-circle distance times a detour factor at a constant speed,
# the same model `domain.routes.route_travel_s` applies when a dispatcher re-orders stops.
TRAVEL_DETOUR = 1.3
TRAVEL_SPEED_KMH = 40.0


class Reject(StrEnum):
    OUT_OF_RANGE = "out_of_range"
    NULL_ISLAND = "null_island"
    FUTURE = "future"
    TOO_OLD = "too_old"
    INACCURATE = "inaccurate"
    DUPLICATE = "duplicate"
    IMPLAUSIBLE_SPEED = "implausible_speed"


@dataclass(frozen=True, slots=True)
class Fix:
    seq: int
    recorded_at: datetime  # timezone-aware UTC
    lat: float
    lon: float
    accuracy_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None

    @property
    def t(self) -> float:
        return self.recorded_at.timestamp()


@dataclass(frozen=True, slots=True)
class FilterConfig:
    max_accuracy_m: float = 100.0
    max_speed_mps: float = 70.0  # 252 km/h: beyond this a jump between fixes is a GPS glitch
    max_future_s: float = 30.0  # phone clocks run a little ahead
    max_age_s: float = 7 * 24 * 3600.0  # older backlog is not worth storing
    window: int = 64  # accepted fixes remembered per vehicle for neighbour and duplicate checks


_RADIAN_M = EARTH_RADIUS_M * math.pi / 180  # metres per degree of a great circle
_NUMBER = (int, float)  # a tuple: `int | float` would build a new union object at every call


def _finite(value: float | None) -> bool:
    return value is None or (isinstance(value, _NUMBER) and math.isfinite(value))


def static_check(fix: Fix, now: datetime, cfg: FilterConfig) -> Reject | None:
    """Rules that need no other fix."""
    lat, lon = fix.lat, fix.lon
    try:
        # Every comparison with NaN is false, so non-finite coordinates fail the range test as well.
        in_range = -GEO_MAX_LAT <= lat <= GEO_MAX_LAT and -180.0 <= lon <= 180.0
    except TypeError:
        in_range = False
    if not in_range:
        return Reject.OUT_OF_RANGE
    if lat == 0.0 and lon == 0.0:
        return Reject.NULL_ISLAND
    age = (now - fix.recorded_at).total_seconds()
    if age < -cfg.max_future_s:
        return Reject.FUTURE
    if age > cfg.max_age_s:
        return Reject.TOO_OLD
    accuracy, speed, heading = fix.accuracy_m, fix.speed_mps, fix.heading_deg
    if (
        (accuracy is not None and not _finite(accuracy))
        or (speed is not None and not _finite(speed))
        or (heading is not None and not _finite(heading))
    ):
        return Reject.OUT_OF_RANGE
    if accuracy is not None and (accuracy < 0 or accuracy > cfg.max_accuracy_m):
        return Reject.INACCURATE
    return None


def distance_m(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    return haversine_m(LatLon(a_lat, a_lon), LatLon(b_lat, b_lon))


def _haversine_m(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    """`domain.geo.haversine_m` on coordinates already checked (the filter's hot path)."""
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    dl = math.radians(b_lon - a_lon)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass
class VehicleTrack:
    """The accepted fixes of one vehicle (a bounded window, ordered by fix time) and its latest."""

    cfg: FilterConfig = field(default_factory=FilterConfig)
    times: list[float] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    latest: Fix | None = None

    def seed(self, fix: Fix) -> None:
        """Start from a fix accepted earlier (e.g. the cached latest after a reconnect elsewhere)."""
        if not self.fixes:
            self._insert(0, fix)
            self.latest = fix

    def judge(self, fix: Fix, now: datetime) -> Reject | None:
        """Accept the fix (None) or say which rule it breaks. Accepted fixes join the track."""
        reason = static_check(fix, now, self.cfg)
        if reason is not None:
            return reason
        t = fix.t
        times, fixes = self.times, self.fixes
        n = len(times)
        i = bisect.bisect_left(times, t)
        if i < n and times[i] == t:
            return Reject.DUPLICATE  # one vehicle has one position at one instant
        if i == 0 and n >= self.cfg.window:
            return Reject.TOO_OLD  # older than everything remembered: its true neighbour is unknown
        if (i > 0 and not self._plausible(fixes[i - 1], times[i - 1], fix, t)) or (
            i < n and not self._plausible(fixes[i], times[i], fix, t)
        ):
            return Reject.IMPLAUSIBLE_SPEED
        self._insert(i, fix, t)
        if self.latest is None or t > self.latest.t:
            self.latest = fix
        return None

    def _plausible(self, a: Fix, a_t: float, b: Fix, b_t: float) -> bool:
        dt = abs(a_t - b_t)
        # Positions are uncertain by their accuracy; never judge a jump smaller than that.
        slack = (a.accuracy_m or 0.0) + (b.accuracy_m or 0.0)
        limit = self.cfg.max_speed_mps * max(dt, 1e-3)
        # The great circle is never longer than going along the meridian, then the parallel:
        # R·|Δlat| + R·cos(lat)·|Δlon| <= R·(|Δlat| + |Δlon|) (radians). Most fixes pass on that bound
        # (with a margin for rounding) without the trigonometry.
        if _RADIAN_M * (abs(a.lat - b.lat) + abs(a.lon - b.lon)) * 1.000001 + 1e-6 <= limit + slack:
            return True
        d = _haversine_m(a.lat, a.lon, b.lat, b.lon)
        return max(0.0, d - slack) <= limit

    def _insert(self, i: int, fix: Fix, t: float | None = None) -> None:
        self.times.insert(i, fix.t if t is None else t)
        self.fixes.insert(i, fix)
        if len(self.fixes) > self.cfg.window:
            del self.times[0], self.fixes[0]


# Geofences and dwell -------------------------------------------------------------------------


@dataclass
class DwellDetector:
    """Fires once per target when the vehicle stays within `radius_m` of it for `dwell_s` of fix time."""

    radius_m: float
    dwell_s: float
    target: str | None = None
    inside_since: datetime | None = None
    fired: set[str] = field(default_factory=set)

    def update(
        self, target: str | None, lat: float, lon: float, t_lat: float, t_lon: float, at: datetime
    ) -> bool:
        if target != self.target:
            self.target, self.inside_since = target, None
        if target is None or target in self.fired:
            return False
        if distance_m(lat, lon, t_lat, t_lon) > self.radius_m:
            self.inside_since = None
            return False
        if self.inside_since is None or at < self.inside_since:
            self.inside_since = at
        if (at - self.inside_since).total_seconds() >= self.dwell_s:
            self.fired.add(target)
            return True
        return False


@dataclass(frozen=True, slots=True)
class Fence:
    id: str
    lat: float
    lon: float
    radius_m: float


def fences_containing(fences: list[Fence], lat: float, lon: float) -> set[str]:
    return {f.id for f in fences if distance_m(lat, lon, f.lat, f.lon) <= f.radius_m}


def fence_events(before: set[str] | None, after: set[str]) -> list[tuple[str, str]]:
    """(event, fence id) for each fence entered or left; nothing for the first fix seen."""
    if before is None:
        return []
    return [("exit", f) for f in sorted(before - after)] + [("enter", f) for f in sorted(after - before)]


def travel_s(
    a_lat: float,
    a_lon: float,
    b_lat: float,
    b_lon: float,
    detour: float = TRAVEL_DETOUR,
    speed_kmh: float = TRAVEL_SPEED_KMH,
) -> float:
    return distance_m(a_lat, a_lon, b_lat, b_lon) * detour / (speed_kmh / 3.6)


def eta_from(fix: Fix, lat: float, lon: float, now: datetime) -> datetime:
    """When the vehicle at `fix` reaches (lat, lon), never before now."""
    start = max(fix.recorded_at, now)
    return start + timedelta(seconds=travel_s(fix.lat, fix.lon, lat, lon))


# Track simplification ------------------------------------------------------------------------


def _offset_m(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance from p to segment a-b on a local equirectangular projection (fine at track scale)."""
    k = math.cos(math.radians((a[0] + b[0]) / 2))

    def xy(q: tuple[float, float]) -> tuple[float, float]:
        return (math.radians(q[1]) * k * EARTH_RADIUS_M, math.radians(q[0]) * EARTH_RADIUS_M)

    (px, py), (ax, ay), (bx, by) = xy(p), xy(a), xy(b)
    dx, dy = bx - ax, by - ay
    span = dx * dx + dy * dy
    u = 0.0 if span == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / span))
    return math.hypot(px - (ax + u * dx), py - (ay + u * dy))


def simplify(points: list[tuple[float, float]], tolerance_m: float) -> list[int]:
    """Indexes of the points Douglas-Peucker keeps at `tolerance_m` (always the first and last)."""
    n = len(points)
    if n <= 2 or tolerance_m <= 0:
        return list(range(n))
    keep = [False] * n
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        lo, hi = stack.pop()
        best, at = 0.0, -1
        for i in range(lo + 1, hi):
            d = _offset_m(points[i], points[lo], points[hi])
            if d > best:
                best, at = d, i
        if at >= 0 and best > tolerance_m:
            keep[at] = True
            stack += [(lo, at), (at, hi)]
    return [i for i in range(n) if keep[i]]
