"""Record workflow histories from real runs on the dev server, for the replay tests.

Run after changing a workflow on purpose (and keep the old histories until no run of the old code
can still be open):  .venv/bin/python -m tests.replay.record
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from domain.health import SystemCheckInput
from tests.support import test_settings
from waybill.resources import Resources
from waybill.temporal_dev import temporal_binary
from workers.client import TemporalConnector
from workers.compose import build_workers
from workflows.system_check import SystemCheckWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def main() -> int:
    from db.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/replay.db"
        upgrade(url)
        async with await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(temporal_binary())
        ) as env:
            settings = test_settings(database_url=url)
            resources = await Resources.open(settings, TemporalConnector(settings, env.client))
            try:
                workers = build_workers(env.client, resources, ["default"])
                async with workers[0]:
                    handle = await env.client.start_workflow(
                        SystemCheckWorkflow.run,
                        SystemCheckInput(requested_by="recorder"),
                        id=f"system-check-{uuid.uuid4()}",
                        task_queue=settings.temporal_task_queue,
                    )
                    await handle.result()
                history = await handle.fetch_history()
            finally:
                await resources.close()
    HISTORIES.mkdir(exist_ok=True)
    out = HISTORIES / "system_check.json"
    out.write_text(history.to_json())
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
