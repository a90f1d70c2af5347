"""`waybill worker` as its own process: polls its queue, runs work, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from domain.health import SystemCheckInput
from tests.conftest import REDIS_URL
from tests.e2e.test_dev_command import STORE_VARS, WAYBILL
from workflows.system_check import SystemCheckWorkflow

pytestmark = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set (separate processes need Redis)")


async def test_worker_runs_work_and_stops_on_sigterm(
    dev_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    queue = f"worker-e2e-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARS and not k.startswith("WAYBILL_")}
    env.update(
        {
            "REDIS_URL": str(REDIS_URL),
            "DATABASE_URL": sqlite_url,
            "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "WAYBILL_TEMPORAL_TASK_QUEUE": queue,
            # No reconciler schedule: its runs would repair other tests' rows in the shared database.
            "WAYBILL_RECONCILE_INTERVAL_SECONDS": "0",
            "WAYBILL_DATA_DIR": str(tmp_path),
            "WAYBILL_LOG_FORMAT": "json",
        }
    )
    proc = subprocess.Popen(
        [WAYBILL, "worker", "--queue", "default"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        result = await dev_env.client.execute_workflow(
            SystemCheckWorkflow.run,
            SystemCheckInput(requested_by="e2e"),
            id=f"system-check-{uuid.uuid4()}",
            task_queue=queue,
        )
        assert result.ok
        assert {s.name: s.backend for s in result.stores}["cache_bus"] == "redis"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "worker polling" in out
