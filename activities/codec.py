"""Workflow dataclasses ⇄ plain JSON, with Temporal's own converter so every copy reads the same."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from temporalio.converter import JSONPlainPayloadConverter, value_to_type

from workers.converter import TYPE_CONVERTERS

T = TypeVar("T")
_json = JSONPlainPayloadConverter()


def to_jsonable(value: object) -> Any:
    payload = _json.to_payload(value)
    assert payload is not None, "not JSON-serializable"
    return json.loads(payload.data)


def from_jsonable(kind: type[T], data: Any) -> T:
    value: T = value_to_type(kind, data, TYPE_CONVERTERS)
    return value
