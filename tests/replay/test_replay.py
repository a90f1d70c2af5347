"""Saved histories from real runs must replay against today's workflow code (determinism check)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from plumbing.converter import DATA_CONVERTER
from workflows.delivery import DeliveryWorkflow
from workflows.dispatch import DispatchWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.route import RouteWorkflow
from workflows.route_plan import RoutePlanWorkflow
from workflows.system_check import SystemCheckWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
WORKFLOWS = [
    SystemCheckWorkflow,
    DeliveryWorkflow,
    RouteWorkflow,
    RoutePlanWorkflow,
    DispatchWorkflow,
    ReconcileWorkflow,
]


def test_histories_are_present() -> None:
    assert HISTORIES, "no saved histories: run `python -m tests.replay.record`"


@pytest.mark.parametrize("converter", [DATA_CONVERTER, DataConverter.default], ids=["waybill", "default"])
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replays(path: Path, converter: DataConverter) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
