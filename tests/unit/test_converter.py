"""Waybill's data converter reads every payload exactly as temporalio's default converter does."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from domain.delivery import DeliveryInput, DeliveryStatus, Transition
from plumbing.converter import DATA_CONVERTER

HISTORIES = Path(__file__).parents[1] / "replay" / "histories"
STARTED = ("EVENT_TYPE_WORKFLOW_EXECUTION_STARTED", "workflowExecutionStartedEventAttributes")
SCHEDULED = ("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED", "activityTaskScheduledEventAttributes")


def _payloads(event_type: str, attributes: str) -> list[Payload]:
    """Payloads of the first argument of every `event_type` event in the saved delivery histories."""
    found = []
    for path in sorted(HISTORIES.glob("delivery_*.json")):
        for event in json.loads(path.read_text())["events"]:
            if event["eventType"] == event_type:
                raw = event[attributes]["input"]["payloads"][0]
                meta = {k: base64.b64decode(v) for k, v in raw["metadata"].items()}
                found.append(Payload(metadata=meta, data=base64.b64decode(raw["data"])))
    return found


@pytest.mark.parametrize(
    ("kind", "payloads"),
    [
        (DeliveryInput, _payloads(*STARTED)),
        (Transition, _payloads(*SCHEDULED)),
    ],
    ids=["workflow-input", "activity-input"],
)
def test_saved_payloads_decode_like_the_default(kind: type, payloads: list[Payload]) -> None:
    assert payloads
    default = DataConverter.default.payload_converter
    ours = DATA_CONVERTER.payload_converter
    for payload in payloads:
        expected = default.from_payloads([payload], [kind])[0]
        assert ours.from_payloads([payload], [kind])[0] == expected
        # Writing it back gives the very bytes the default converter writes.
        assert ours.to_payloads([expected])[0].data == default.to_payloads([expected])[0].data


@dataclass
class Counted:
    name: str
    total: int = field(default=0, init=False)
    parts: list[Inner] = field(default_factory=list)


@dataclass(frozen=True)
class Inner:
    at: int


def _decode(value: Any, kind: Any) -> Any:
    payload = DataConverter.default.payload_converter.to_payloads([value])[0]
    return DATA_CONVERTER.payload_converter.from_payloads([payload], [kind])[0]


def test_init_false_fields_and_nested_dataclasses_come_back() -> None:
    value = Counted("a", parts=[Inner(1), Inner(2)])
    value.total = 7
    assert _decode(value, Counted) == value
    assert _decode(value, Counted).total == 7


def test_a_mismatched_field_is_a_type_error_so_unions_try_the_next_member() -> None:
    with pytest.raises(TypeError, match="field at"):
        DATA_CONVERTER.payload_converter.from_payloads(
            DataConverter.default.payload_converter.to_payloads([{"at": "x"}]), [Inner]
        )
    assert _decode({"at": "x"}, Inner | dict[str, str]) == {"at": "x"}


@dataclass(frozen=True)
class Mixed:
    at: datetime
    ids: tuple[uuid.UUID, ...]
    tags: frozenset[str]
    status: DeliveryStatus
    nested: dict[str, list[Inner]]
    optional: Inner | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def test_the_encoder_writes_the_default_converters_bytes() -> None:
    value = Mixed(
        at=datetime(2026, 11, 29, 8, 0, tzinfo=UTC),
        ids=(uuid.UUID(int=1), uuid.UUID(int=2)),
        tags=frozenset({"b"}),
        status=DeliveryStatus.ASSIGNED,
        nested={"z": [Inner(2)], "a": [Inner(1), Inner(3)]},
        extra={"deep": {"list": [Inner(4), (1, 2)], "none": None}},
    )
    for v in (value, [value, Inner(5)], {"k": value}):
        ours = DATA_CONVERTER.payload_converter.to_payloads([v])[0].data
        assert ours == DataConverter.default.payload_converter.to_payloads([v])[0].data
