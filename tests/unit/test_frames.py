from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.sockets.frames import FrameError, parse_frame


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_parse_frame_only_raises_frame_error(raw: str | bytes) -> None:
    error: FrameError | None = None
    try:
        frame = parse_frame(raw)
    except FrameError as exc:
        error = exc
    if error is not None:
        assert error.code
        assert error.detail
    else:
        assert isinstance(frame["type"], str)
        assert frame["type"]


def test_parse_frame_cases() -> None:
    assert parse_frame('{"type": "ping"}') == {"type": "ping"}
    for raw, code in [
        (b"{}", "binary_not_supported"),
        ("nope", "invalid_json"),
        ("[1]", "invalid_frame"),
        ('{"type": 3}', "missing_type"),
        ("[" * 100_000, "invalid_json"),
        ('{"type": "x", "n": ' + "9" * 5000 + "}", "invalid_json"),  # over the 4,300-digit int limit
    ]:
        with pytest.raises(FrameError) as info:
            parse_frame(raw)
        assert info.value.code == code, raw[:20]
    json.dumps(parse_frame('{"type":"x","n":1}'))
