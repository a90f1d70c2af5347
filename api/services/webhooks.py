"""Outbound webhook subscriptions (admins only): the URL the worker may call, the recorded
deliveries with their attempts, and the replay of one (WebhookReplayWorkflow)."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from activities.notifications.egress import egress_policy
from api.errors import ProblemError, not_found, temporal_unavailable
from api.http.pagination import Page, PageParams, make_page
from api.schemas.webhooks import (
    AttemptOut,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookOut,
    WebhookUpdate,
)
from db.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from db.repositories.webhooks import WebhookRepository
from domain.ids import uuid7
from domain.notifications import ReplayInput
from plumbing.settings import Settings
from starters.notifications import notification_config
from workflows.notifications import WebhookReplayWorkflow


def check_url(settings: Settings, url: str) -> None:
    """Refuse a URL the worker would refuse to call (loopback, private, metadata, ...): 422."""
    refusal = egress_policy(settings).url_refusal(url)
    if refusal:
        raise ProblemError(422, "webhook_url_forbidden", f"webhook URL refused: {refusal}")


def delivery_out(d: WebhookDelivery, attempts: list[WebhookAttempt] | None = None) -> WebhookDeliveryOut:
    out = WebhookDeliveryOut.model_validate(d)
    if attempts is not None:
        out.attempt_log = [AttemptOut.model_validate(a) for a in attempts]
    return out


async def own(session: AsyncSession, org: uuid.UUID, webhook_id: uuid.UUID) -> WebhookSubscription:
    sub = await WebhookRepository(session, org).owned(webhook_id)
    if sub is None:
        raise not_found("webhook", webhook_id)
    return sub


async def own_delivery(
    session: AsyncSession, org: uuid.UUID, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> tuple[WebhookSubscription, WebhookDelivery]:
    sub = await own(session, org, webhook_id)
    wd = await WebhookRepository(session, org).delivery(sub.id, delivery_id)
    if wd is None:
        raise not_found("webhook_delivery", delivery_id)
    return sub, wd


async def create(
    session: AsyncSession, settings: Settings, org: uuid.UUID, body: WebhookCreate
) -> WebhookCreated:
    check_url(settings, str(body.url))
    secret = body.secret or f"whsec_{secrets.token_urlsafe(32)}"
    repo = WebhookRepository(session, org)
    sub = repo.new(url=str(body.url), events=list(body.events), secret=secret, active=body.active)
    await repo.add(sub)
    await session.commit()
    return WebhookCreated(**WebhookOut.model_validate(sub).model_dump(), secret=secret)


async def page(session: AsyncSession, org: uuid.UUID, params: PageParams) -> Page[WebhookOut]:
    rows = await WebhookRepository(session, org).list(after=params.after, limit=params.limit + 1)
    return make_page(rows, params, WebhookOut.model_validate)


async def update(
    session: AsyncSession, settings: Settings, org: uuid.UUID, webhook_id: uuid.UUID, body: WebhookUpdate
) -> WebhookOut:
    sub = await own(session, org, webhook_id)
    values = body.model_dump(exclude_unset=True)
    if any(values.get(k, "") is None for k in ("url", "events", "secret", "active")):
        raise ProblemError(422, "validation_error", "url, events, secret and active cannot be null")
    if "url" in values or body.active:  # re-enabling checks a URL registered under an older policy
        check_url(settings, str(body.url) if "url" in values else sub.url)
    if "url" in values:
        sub.url = str(body.url)
    if body.events is not None:
        sub.events = list(body.events)
    if body.secret is not None:
        sub.secret = body.secret
    if body.active is not None:
        sub.active = body.active
        if body.active:  # re-enabled: the failure clock starts afresh
            sub.failing_since = sub.disabled_at = sub.disabled_reason = None
    await session.commit()
    return WebhookOut.model_validate(sub)


async def delete(session: AsyncSession, org: uuid.UUID, webhook_id: uuid.UUID) -> None:
    await WebhookRepository(session, org).delete(await own(session, org, webhook_id))
    await session.commit()


async def deliveries(
    session: AsyncSession, org: uuid.UUID, webhook_id: uuid.UUID, params: PageParams, status: str | None
) -> Page[WebhookDeliveryOut]:
    sub = await own(session, org, webhook_id)
    rows = await WebhookRepository(session, org).deliveries(
        sub.id, status, after=params.after, limit=params.limit + 1
    )
    return make_page(rows, params, delivery_out)


async def read_delivery(
    session: AsyncSession, org: uuid.UUID, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDeliveryOut:
    _, wd = await own_delivery(session, org, webhook_id, delivery_id)
    return delivery_out(wd, await WebhookRepository(session, org).attempts(wd.id))


async def replay(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    org: uuid.UUID,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> WebhookDeliveryOut:
    """Send the recorded event again (same event id and body, fresh signature), with retries."""
    sub, wd = await own_delivery(session, org, webhook_id, delivery_id)
    if not sub.active:
        raise ProblemError(
            409, "webhook_inactive", "re-enable the webhook (PATCH active=true) before replaying"
        )
    wd.status = "pending"
    await session.commit()
    try:
        await client.start_workflow(
            WebhookReplayWorkflow.run,
            ReplayInput(str(wd.id), notification_config(settings)),
            id=f"webhook-replay-{wd.id}-{uuid7()}",
            task_queue=settings.temporal_task_queue,
        )
    except RPCError:
        raise temporal_unavailable() from None
    return delivery_out(wd)
