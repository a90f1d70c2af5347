"""Waybill's data converter reads every payload exactly as temporalio's default converter does."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from domain.delivery import DeliveryInput, Transition
from workers.converter import DATA_CONVERTER

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
