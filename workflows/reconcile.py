"""ReconcileWorkflow: one run of the delivery reconciler (activities/reconcile.py), and its report.

Started by the `delivery-reconcile` Temporal Schedule every WAYBILL_RECONCILE_INTERVAL_SECONDS and by
`waybill reconcile`. The activity pages through every delivery, so it heartbeats; a retry starts over
(its repairs are idempotent).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.interfaces.reconcile import ReconcileInterface
    from domain.reconcile import ReconcileInput, ReconcileResult

RUN_TIMEOUT = timedelta(hours=1)
HEARTBEAT = timedelta(minutes=1)


@workflow.defn
class ReconcileWorkflow:
    @workflow.run
    async def run(self, params: ReconcileInput) -> ReconcileResult:
        workflow.logger.info("delivery reconciliation requested by %s", params.requested_by)
        result: ReconcileResult = await workflow.execute_activity_method(
            ReconcileInterface.reconcile_deliveries,
            params,
            start_to_close_timeout=RUN_TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=5)),
        )
        return replace(result, checked_at=workflow.now())
