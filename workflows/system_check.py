"""SystemCheckWorkflow: runs the store check activity on a worker and returns its report.

It is the smallest end-to-end path through every part (API/CLI → Temporal → worker → stores), used
by the tests that prove the wiring and by operators (`waybill check`).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.interfaces.system_check import SystemCheckInterface
    from domain.health import StoreCheck, SystemCheckInput, SystemCheckResult


@workflow.defn
class SystemCheckWorkflow:
    @workflow.run
    async def run(self, params: SystemCheckInput) -> SystemCheckResult:
        workflow.logger.info("system check requested by %s", params.requested_by)
        report: SystemCheckResult = await workflow.execute_activity_method(
            SystemCheckInterface.check_stores,
            params,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        stores: list[StoreCheck] = list(report.stores)
        return SystemCheckResult(
            checked_at=workflow.now(), worker_identity=report.worker_identity, stores=stores
        )
