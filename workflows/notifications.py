"""NotificationWorkflow (id `notifications-{delivery_id}`): a delivery's notifications and webhooks.

The delivery's notify activity signal-with-starts it with each event, so the DeliveryWorkflow never
waits on a receiver. Events are planned in sequence order; each send is an activity retried by
Temporal, on its own lane (one per channel, one per webhook subscription): a lane sends in order, so
webhooks reach a receiver in the delivery's order, and a down receiver holds back only its lane.
WebhookReplayWorkflow sends one recorded webhook delivery again (API replay).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.interfaces.notifications import NotificationInterface
    from domain.notification_steps import DisabledAlert, SendFailure
    from domain.notifications import (
        NOTIFICATION_SIGNAL,
        NOTIFICATION_WORKFLOW,
        TERMINAL_TYPES,
        WEBHOOK_DISABLED,
        EventPlan,
        NotificationConfig,
        NotificationEvent,
        NotificationInput,
        ReplayInput,
        Send,
    )

STEP_TIMEOUT = timedelta(seconds=30)
SEND_TIMEOUT = timedelta(seconds=60)  # one attempt; an HTTP or SMTP timeout is well below it
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
MESSAGE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5))


def _webhook_retry(config: NotificationConfig) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=config.webhook_retry_initial_seconds),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=config.webhook_retry_max_interval_seconds),
    )


async def _mark_failed(send: Send, reason: str) -> None:
    method = (
        NotificationInterface.mark_webhook_failed
        if send.kind == "webhook"
        else NotificationInterface.mark_message_failed
    )
    await workflow.execute_activity_method(
        method, SendFailure(send, reason), start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY
    )


async def _alert_admins(subscription_id: str) -> EventPlan:
    return await workflow.execute_activity_method(
        NotificationInterface.alert_webhook_disabled,
        DisabledAlert(subscription_id),
        start_to_close_timeout=STEP_TIMEOUT,
        retry_policy=STEP_RETRY,
    )


async def send_webhook(send: Send, config: NotificationConfig) -> tuple[str, str | None]:
    """Deliver one webhook with Temporal's retries for the configured period. Returns the outcome
    and, if this send disabled the endpoint, the subscription id to alert admins about."""
    try:
        outcome = await workflow.execute_activity_method(
            NotificationInterface.deliver_webhook,
            send,
            start_to_close_timeout=SEND_TIMEOUT,
            schedule_to_close_timeout=timedelta(seconds=config.webhook_retry_period_seconds),
            retry_policy=_webhook_retry(config),
        )
        return outcome, None
    except ActivityError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == WEBHOOK_DISABLED:
            return "disabled", str(cause.details[0])
        await _mark_failed(send, str(cause or err))
        return "failed", None


@workflow.defn(name=NOTIFICATION_WORKFLOW)
class NotificationWorkflow:
    @workflow.init
    def __init__(self, params: NotificationInput) -> None:
        self._config = params.config
        self._events: list[NotificationEvent] = []
        self._seen: set[int] = set()
        self._lanes: dict[str, list[Send]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    @workflow.signal(name=NOTIFICATION_SIGNAL)
    def event(self, ev: NotificationEvent) -> None:
        if ev.sequence in self._seen:
            return  # a notify activity retried after its signal got through
        self._seen.add(ev.sequence)
        self._events.append(ev)
        self._events.sort(key=lambda e: e.sequence)

    @workflow.run
    async def run(self, params: NotificationInput) -> int:  # noqa: ARG002 - read in __init__
        while True:
            await workflow.wait_condition(lambda: bool(self._events) or (self._closing and not self._tasks))
            if not self._events:
                break
            ev = self._events.pop(0)
            plan = await workflow.execute_activity_method(
                NotificationInterface.plan_event,
                ev,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
            for send in plan.sends:
                self._enqueue(send)
            self._closing = self._closing or ev.type in TERMINAL_TYPES
        await workflow.wait_condition(workflow.all_handlers_finished)
        return len(self._seen)

    @workflow.query
    def pending(self) -> dict[str, int]:
        return {lane: len(queue) for lane, queue in self._lanes.items() if queue}

    def _enqueue(self, send: Send) -> None:
        self._lanes.setdefault(send.lane, []).append(send)
        if send.lane not in self._tasks:
            self._tasks[send.lane] = asyncio.create_task(self._drain(send.lane))

    async def _drain(self, lane: str) -> None:
        queue = self._lanes[lane]
        while queue:
            await self._send(queue[0])
            queue.pop(0)
        del self._tasks[lane]

    async def _send(self, send: Send) -> None:
        if send.kind == "webhook":
            _, disabled = await send_webhook(send, self._config)
            if disabled is not None:
                for alert in (await _alert_admins(disabled)).sends:
                    self._enqueue(alert)
            return
        try:
            await workflow.execute_activity_method(
                NotificationInterface.send_message,
                send,
                start_to_close_timeout=SEND_TIMEOUT,
                schedule_to_close_timeout=timedelta(seconds=self._config.message_retry_period_seconds),
                retry_policy=MESSAGE_RETRY,
            )
        except ActivityError as err:
            await _mark_failed(send, str(err.cause or err))


@workflow.defn
class WebhookReplayWorkflow:
    @workflow.run
    async def run(self, params: ReplayInput) -> str:
        send = Send("webhook", params.webhook_delivery_id, "replay")
        outcome, disabled = await send_webhook(send, params.config)
        if disabled is not None:
            await _alert_admins(disabled)
        return outcome
