"""Hand a delivery event to its NotificationWorkflow (signal-with-start): one RPC, so the notify
activity stays fast whatever the receivers do. The workflow drops sequences it has seen."""

from __future__ import annotations

from temporalio.client import Client

from domain.notifications import (
    NOTIFICATION_SIGNAL,
    NOTIFICATION_WORKFLOW,
    NotificationConfig,
    NotificationEvent,
    NotificationInput,
    notification_workflow_id,
)
from plumbing.settings import Settings


def notification_config(settings: Settings) -> NotificationConfig:
    return NotificationConfig(
        message_retry_period_seconds=settings.notification_retry_period_seconds,
        webhook_retry_initial_seconds=settings.webhook_retry_initial_seconds,
        webhook_retry_max_interval_seconds=settings.webhook_retry_max_interval_seconds,
        webhook_retry_period_seconds=settings.webhook_retry_period_seconds,
    )


async def signal_notification_workflow(client: Client, settings: Settings, ev: NotificationEvent) -> None:
    await client.start_workflow(
        NOTIFICATION_WORKFLOW,
        NotificationInput(ev.delivery_id, ev.organization_id, notification_config(settings)),
        id=notification_workflow_id(ev.delivery_id),
        task_queue=settings.temporal_task_queue,
        start_signal=NOTIFICATION_SIGNAL,
        start_signal_args=[ev],
    )
