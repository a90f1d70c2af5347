from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.ids import uuid7, uuid7_time_ms


@given(st.integers(0, (1 << 48) - 1), st.binary(min_size=10, max_size=10))
def test_uuid7_layout(ms: int, rand: bytes) -> None:
    u = uuid7(ms, rand)
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert uuid7_time_ms(u) == ms


@given(
    st.integers(0, (1 << 48) - 2), st.binary(min_size=10, max_size=10), st.binary(min_size=10, max_size=10)
)
def test_later_millisecond_sorts_later(ms: int, r1: bytes, r2: bytes) -> None:
    assert uuid7(ms, r1) < uuid7(ms + 1, r2)


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="out of range"):
        uuid7(-1)
    with pytest.raises(ValueError, match="10 random bytes"):
        uuid7(0, b"short")
