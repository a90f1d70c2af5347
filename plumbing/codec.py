"""Workflow dataclasses ⇄ plain JSON, with Temporal's own converter so every copy reads the same."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from temporalio.converter import JSONPlainPayloadConverter, value_to_type

from plumbing.converter import TYPE_CONVERTERS, DataclassJSONEncoder

T = TypeVar("T")
_json = JSONPlainPayloadConverter(encoder=DataclassJSONEncoder)


def to_json_text(value: object) -> str:
    """`value` as the JSON text the workflow converter writes (sorted keys, no spaces)."""
    payload = _json.to_payload(value)
    assert payload is not None, "not JSON-serializable"
    return payload.data.decode()


def to_jsonable(value: object) -> Any:
    return json.loads(to_json_text(value))


def from_jsonable(kind: type[T], data: Any) -> T:
    value: T = value_to_type(kind, data, TYPE_CONVERTERS)
    return value
