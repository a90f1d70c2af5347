"""Binds the activity's correlation ids (workflow id and run, activity type, the delivery or
route it works for) to every log line the activity writes."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from plumbing.log_context import bound


class LogContextInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:  # noqa: A002
        return _ActivityLogContext(next)


class _ActivityLogContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:  # noqa: A002
        info = activity.info()
        workflow_id = info.workflow_id or ""
        with bound(
            workflow_id=workflow_id,
            run_id=info.workflow_run_id,
            activity=info.activity_type,
            attempt=info.attempt,
            delivery_id=workflow_id.removeprefix("delivery-")
            if workflow_id.startswith("delivery-")
            else None,
        ):
            return await super().execute_activity(input)
