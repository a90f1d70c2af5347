"""Travel matrices: great-circle (default) or an OSRM-compatible `table` service, cached by place set.

Matrices live in the cache (Redis or in-process) under a hash of the provider, the places and
the profiles; they never enter workflow history (activities pass a RoutingProblem in and a
RoutePlan out, and fetch the matrix here).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Protocol

from db.bus.base import KeyValueCache
from domain.geo import LatLon, haversine_m
from domain.routing import UNREACHABLE, TravelMatrix
from plumbing.settings import ROUTING_SPEEDS_KMH

DEFAULT_SPEEDS_KMH: Mapping[str, float] = ROUTING_SPEEDS_KMH
DEFAULT_SPEED_KMH = 35.0  # a profile the speed table does not name


class MatrixProvider(Protocol):
    @property
    def key(self) -> str:
        """Identifies the provider and its settings (part of the cache key)."""
        ...

    async def matrix(self, locations: Sequence[LatLon], profiles: Sequence[str]) -> TravelMatrix: ...


class HaversineProvider:
    """Great-circle distance times a detour factor; duration at a fixed speed per profile."""

    def __init__(
        self, detour_factor: float = 1.3, speeds_kmh: Mapping[str, float] = DEFAULT_SPEEDS_KMH
    ) -> None:
        if not detour_factor >= 1.0:
            raise ValueError("detour_factor must be at least 1")
        if any(not s > 0 for s in speeds_kmh.values()):
            raise ValueError("speeds must be positive")
        self.detour_factor = detour_factor
        self.speeds_kmh = dict(speeds_kmh)

    @property
    def key(self) -> str:
        return f"haversine:{self.detour_factor}:{sorted(self.speeds_kmh.items())}"

    def speed_ms(self, profile: str) -> float:
        return self.speeds_kmh.get(profile, DEFAULT_SPEED_KMH) / 3.6

    async def matrix(self, locations: Sequence[LatLon], profiles: Sequence[str]) -> TravelMatrix:
        metres = [[haversine_m(a, b) * self.detour_factor for b in locations] for a in locations]
        distances = tuple(tuple(round(m) for m in row) for row in metres)
        durations = {
            p: tuple(tuple(math.ceil(m / self.speed_ms(p)) for m in row) for row in metres)
            for p in set(profiles)
        }
        return TravelMatrix(distances, durations)


class OsrmProvider:
    """An OSRM-compatible `GET {url}/table/v1/{profile}/{lon,lat;...}?annotations=duration,distance`.

    `profile_map` turns Waybill profiles into the server's (OSRM's own names are driving, cycling,
    walking; a single-profile osrm-routed ignores the name). Unreachable pairs (null) become
    UNREACHABLE.
    """

    def __init__(
        self, url: str, profile_map: Mapping[str, str] | None = None, timeout_s: float = 30.0
    ) -> None:
        self.url = url.rstrip("/")
        self.profile_map = dict(profile_map or {})
        self.timeout_s = timeout_s

    @property
    def key(self) -> str:
        return f"osrm:{self.url}:{sorted(self.profile_map.items())}"

    async def matrix(self, locations: Sequence[LatLon], profiles: Sequence[str]) -> TravelMatrix:
        wanted = sorted(set(profiles)) or ["car"]
        tables = {p: await asyncio.to_thread(self._table, locations, p) for p in wanted}
        # Distances come from the first profile's table (the plan's distances are one matrix).
        distances = tables[wanted[0]][1]
        return TravelMatrix(distances, {p: t[0] for p, t in tables.items()})

    def _table(self, locations: Sequence[LatLon], profile: str) -> tuple[tuple[tuple[int, ...], ...], ...]:
        coords = ";".join(f"{p.lon:.6f},{p.lat:.6f}" for p in locations)
        server_profile = self.profile_map.get(profile, "driving")
        url = f"{self.url}/table/v1/{server_profile}/{coords}?annotations=duration,distance"
        with urllib.request.urlopen(url, timeout=self.timeout_s) as response:  # noqa: S310 (configured URL)
            body = json.load(response)
        if body.get("code") != "Ok":
            raise RuntimeError(f"OSRM table failed: {body.get('code')}: {body.get('message', '')}")
        return _ints(body["durations"], math.ceil), _ints(body["distances"], round)


def _ints(rows: list[list[float | None]], rounding: object) -> tuple[tuple[int, ...], ...]:
    fn = rounding if callable(rounding) else round
    return tuple(tuple(UNREACHABLE if x is None else int(fn(x)) for x in row) for row in rows)


class CachedMatrices:
    """A provider behind the key-value cache, keyed by a hash of provider, places and profiles."""

    PREFIX = "routing:matrix:"

    def __init__(
        self, provider: MatrixProvider, cache: KeyValueCache | None, ttl_seconds: float | None = 86400
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.ttl_seconds = ttl_seconds

    def cache_key(self, locations: Sequence[LatLon], profiles: Sequence[str]) -> str:
        places = [[round(p.lat, 6), round(p.lon, 6)] for p in locations]
        blob = json.dumps([self.provider.key, places, sorted(set(profiles))], separators=(",", ":"))
        return self.PREFIX + hashlib.sha256(blob.encode()).hexdigest()

    async def matrix(self, locations: Sequence[LatLon], profiles: Sequence[str]) -> TravelMatrix:
        key = self.cache_key(locations, profiles)
        if self.cache is not None:
            raw = await self.cache.get(key)
            if raw is not None:
                data = json.loads(raw)
                return TravelMatrix(
                    _tuples(data["distances"]), {p: _tuples(m) for p, m in data["durations"].items()}
                )
        matrix = await self.provider.matrix(locations, profiles)
        if self.cache is not None:
            blob = {"distances": matrix.distances, "durations": matrix.durations}
            await self.cache.set(key, json.dumps(blob, separators=(",", ":")).encode(), self.ttl_seconds)
        return matrix


def _tuples(rows: list[list[int]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(row) for row in rows)
