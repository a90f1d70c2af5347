"""Client-side calls into NotificationWorkflow (`notifications-{delivery_id}`): a delivery event handed
over by signal-with-start, one RPC, so the notify activity stays fast whatever the receivers do (the
workflow drops sequences it has seen); and the configuration notification workflows run with."""

from __future__ import annotations

from temporalio.client import Client

from domain.notifications import (
    NOTIFICATION_SIGNAL,
    NotificationConfig,
    NotificationEvent,
    NotificationInput,
    notification_workflow_id,
)
from plumbing.settings import Settings
from starters.base import Starter
from workflows.notifications import NotificationWorkflow


def notification_config(settings: Settings) -> NotificationConfig:
    return NotificationConfig(
        message_retry_period_seconds=settings.notification_retry_period_seconds,
        webhook_retry_initial_seconds=settings.webhook_retry_initial_seconds,
        webhook_retry_max_interval_seconds=settings.webhook_retry_max_interval_seconds,
        webhook_retry_period_seconds=settings.webhook_retry_period_seconds,
    )


async def signal_notification_workflow(client: Client, settings: Settings, ev: NotificationEvent) -> None:
    await client.start_workflow(
        NotificationWorkflow.run,
        NotificationInput(ev.delivery_id, ev.organization_id, notification_config(settings)),
        id=notification_workflow_id(ev.delivery_id),
        task_queue=settings.temporal_task_queue,
        start_signal=NOTIFICATION_SIGNAL,
        start_signal_args=[ev],
    )


class NotificationStarter(Starter):
    """activities.resources.NotificationCalls on Temporal's client."""

    async def notify_event(self, ev: NotificationEvent) -> None:
        await signal_notification_workflow(await self._client(), self._settings, ev)
