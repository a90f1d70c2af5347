"""Travel matrix providers: great-circle math, OSRM `table` over real HTTP on loopback, caching."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from activities.routing.matrix import CachedMatrices, HaversineProvider, OsrmProvider
from db.bus.memory import MemoryCacheBus
from domain.geo import LatLon
from domain.routing import UNREACHABLE

PARIS, LYON = LatLon(48.8566, 2.3522), LatLon(45.7640, 4.8357)


async def test_haversine_distance_times_detour_and_speed_per_profile() -> None:
    p = HaversineProvider(detour_factor=1.5, speeds_kmh={"bike": 18.0, "van": 36.0})
    m = await p.matrix([PARIS, LYON, PARIS], ["bike", "van", "truck"])
    straight = 391_500  # Paris-Lyon great circle, about 391.5 km
    assert m.distances[0][1] == pytest.approx(1.5 * straight, rel=0.002)
    assert m.distances[0][0] == 0
    assert m.distances[0][2] == 0
    assert m.distances[1][0] == m.distances[0][1]
    assert abs(m.duration("van")[0][1] - m.distances[0][1] / 10) <= 1  # 36 km/h = 10 m/s
    assert m.duration("bike")[0][1] == pytest.approx(2 * m.duration("van")[0][1], abs=2)
    assert m.duration("truck")[0][1] == pytest.approx(m.distances[0][1] / (35 / 3.6), abs=1)  # default speed


def test_haversine_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="detour"):
        HaversineProvider(detour_factor=0.5)
    with pytest.raises(ValueError, match="speeds"):
        HaversineProvider(speeds_kmh={"car": 0.0})


class _Counting:
    def __init__(self) -> None:
        self.calls = 0
        self.inner = HaversineProvider()

    @property
    def key(self) -> str:
        return self.inner.key

    async def matrix(self, locations, profiles):  # type: ignore[no-untyped-def]
        self.calls += 1
        return await self.inner.matrix(locations, profiles)


async def test_cache_keyed_by_places_and_profiles() -> None:
    provider = _Counting()
    cached = CachedMatrices(provider, MemoryCacheBus(), ttl_seconds=60)
    first = await cached.matrix([PARIS, LYON], ["car"])
    again = await cached.matrix([PARIS, LYON], ["car"])
    assert again == first
    assert provider.calls == 1
    await cached.matrix([LYON, PARIS], ["car"])  # another order is another matrix
    await cached.matrix([PARIS, LYON], ["car", "bike"])
    assert provider.calls == 3
    assert cached.cache_key([PARIS, LYON], ["car"]) != CachedMatrices(HaversineProvider(1.2), None).cache_key(
        [PARIS, LYON], ["car"]
    )


class _Osrm(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        _Osrm.seen.append(self.path)
        coords = self.path.split("/")[4].split("?")[0].split(";")
        n = len(coords)
        if self.path.split("/")[3] == "broken":
            body = {"code": "InvalidQuery", "message": "nope"}
        else:
            durations = [
                [None if (i == 2) != (j == 2) else float(abs(i - j) * 60 + 0.4) for j in range(n)]
                for i in range(n)
            ]
            distances = [[None if v is None else v * 10 for v in row] for row in durations]
            body = {"code": "Ok", "durations": durations, "distances": distances}
        data = json.dumps(body).encode()
        self.send_response(200 if body["code"] == "Ok" else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def osrm_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Osrm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


async def test_osrm_table_with_unreachable_pairs(osrm_url: str) -> None:
    provider = OsrmProvider(osrm_url, profile_map={"bike": "cycling"})
    m = await provider.matrix([PARIS, LYON, LatLon(0, 0)], ["bike", "car"])
    assert m.duration("car")[0][1] == 61
    assert m.distances[0][1] == 604
    assert m.duration("bike")[2][0] == UNREACHABLE
    assert m.distances[0][2] == UNREACHABLE
    paths = [p for p in _Osrm.seen if "2.352200,48.856600;4.835700,45.764000" in p]
    assert any(p.startswith("/table/v1/cycling/") for p in paths)
    assert any("/driving/" in p for p in paths)
    assert all("annotations=duration,distance" in p for p in paths)


async def test_osrm_error_is_raised(osrm_url: str) -> None:
    provider = OsrmProvider(osrm_url, profile_map={"car": "broken"})
    with pytest.raises(Exception, match="400|InvalidQuery"):
        await provider.matrix([PARIS, LYON], ["car"])
