"""Straight-line paths between two places: length, heading and the point a given distance along.

Used by the simulator (`waybill simulate`) to move vehicles between stops; pure and stdlib-only.
Points follow the great circle, so a leg's headings and positions agree with `haversine_m`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from domain.geo import EARTH_RADIUS_M, LatLon, haversine_m


def bearing_deg(a: LatLon, b: LatLon) -> float:
    """Initial heading from a to b, clockwise from north, in [0, 360)."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dl = math.radians(b.lon - a.lon)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def interpolate(a: LatLon, b: LatLon, fraction: float) -> LatLon:
    """The point `fraction` (clamped to 0..1) of the way from a to b along the great circle."""
    f = min(1.0, max(0.0, fraction))
    if f == 0.0:
        return a
    if f == 1.0:
        return b
    delta = haversine_m(a, b) / EARTH_RADIUS_M
    if delta < 1e-12:
        return a
    p1, l1 = math.radians(a.lat), math.radians(a.lon)
    p2, l2 = math.radians(b.lat), math.radians(b.lon)
    sa, sb = math.sin((1 - f) * delta) / math.sin(delta), math.sin(f * delta) / math.sin(delta)
    x = sa * math.cos(p1) * math.cos(l1) + sb * math.cos(p2) * math.cos(l2)
    y = sa * math.cos(p1) * math.sin(l1) + sb * math.cos(p2) * math.sin(l2)
    z = sa * math.sin(p1) + sb * math.sin(p2)
    lat = math.degrees(math.atan2(z, math.hypot(x, y)))
    lon = (math.degrees(math.atan2(y, x)) + 540.0) % 360.0 - 180.0
    return LatLon(lat, lon)


@dataclass(frozen=True)
class Leg:
    """A straight drive from `start` to `end`."""

    start: LatLon
    end: LatLon
    length_m: float = field(init=False)
    heading_deg: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "length_m", haversine_m(self.start, self.end))
        object.__setattr__(self, "heading_deg", bearing_deg(self.start, self.end))

    def at(self, distance_m: float) -> LatLon:
        """Where the vehicle is after driving `distance_m` (clamped to the leg)."""
        if self.length_m == 0.0:
            return self.end
        return interpolate(self.start, self.end, distance_m / self.length_m)

    def duration_s(self, speed_mps: float) -> float:
        if speed_mps <= 0:
            raise ValueError("speed must be positive")
        return self.length_m / speed_mps
