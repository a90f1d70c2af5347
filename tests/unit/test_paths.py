"""Straight legs for the simulator (domain/paths.py) and its proof photos."""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from domain.geo import LatLon, haversine_m
from domain.paths import Leg, bearing_deg, interpolate
from tools.simulate import proof_png

BERLIN = LatLon(52.5219, 13.4132)
coords = st.builds(
    LatLon, st.floats(min_value=-80, max_value=80), st.floats(min_value=-179.9, max_value=179.9)
)


@pytest.mark.parametrize(
    ("to", "heading"),
    [
        (LatLon(52.6, 13.4132), 0.0),
        (LatLon(52.5219, 13.6), 90.0),
        (LatLon(52.4, 13.4132), 180.0),
        (LatLon(52.5219, 13.2), 270.0),
    ],
)
def test_bearing_points_the_right_way(to: LatLon, heading: float) -> None:
    assert bearing_deg(BERLIN, to) == pytest.approx(heading, abs=0.1)


def test_a_leg_is_walked_evenly_from_start_to_end() -> None:
    leg = Leg(BERLIN, LatLon(52.5259, 13.4192))
    assert leg.length_m == pytest.approx(haversine_m(leg.start, leg.end))
    assert leg.at(0) == leg.start
    assert leg.at(leg.length_m) == leg.end
    assert leg.at(leg.length_m * 2) == leg.end  # clamped
    quarter = leg.at(leg.length_m / 4)
    assert haversine_m(leg.start, quarter) == pytest.approx(leg.length_m / 4, rel=1e-6)
    assert haversine_m(quarter, leg.end) == pytest.approx(leg.length_m * 3 / 4, rel=1e-6)
    assert leg.duration_s(10.0) == pytest.approx(leg.length_m / 10)
    with pytest.raises(ValueError, match="positive"):
        leg.duration_s(0)


def test_a_leg_of_no_length_stays_put() -> None:
    leg = Leg(BERLIN, BERLIN)
    assert leg.length_m == 0
    assert leg.at(5) == BERLIN


@given(coords, coords, st.floats(min_value=0, max_value=1))
def test_interpolated_points_lie_on_the_great_circle(a: LatLon, b: LatLon, f: float) -> None:
    p = interpolate(a, b, f)
    total = haversine_m(a, b)
    assert haversine_m(a, p) + haversine_m(p, b) == pytest.approx(total, abs=1e-3 + total * 1e-9)
    assert haversine_m(a, p) == pytest.approx(f * total, abs=1e-3 + total * 1e-9)


def test_proof_photos_are_pngs_with_their_own_digest() -> None:
    one, two = proof_png("delivery 1"), proof_png("delivery 2")
    assert one.startswith(b"\x89PNG\r\n\x1a\n")
    assert one.endswith(b"IEND\xaeB`\x82")
    assert hashlib.sha256(one).digest() != hashlib.sha256(two).digest()
    image = Image.open(io.BytesIO(one))
    image.load()  # a real image, not just the magic bytes the API checks
    assert (image.size, image.info["Comment"]) == ((1, 1), "delivery 1")
