"""Outbound webhook subscriptions, their recorded deliveries (attempts included) and replay."""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select
from temporalio.service import RPCError

from activities.notifications.egress import egress_policy
from api.deps import CurrentUser, ResourcesDep, SessionDep, TemporalDep, require_roles
from api.errors import ProblemError, not_found, temporal_unavailable
from api.http.pagination import Page, PageDep, page_of
from api.schemas.webhooks import (
    AttemptOut,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookOut,
    WebhookUpdate,
)
from api.v1 import PREFIX
from db.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from domain.ids import uuid7
from domain.notifications import ReplayInput
from domain.roles import Role
from starters.notifications import notification_config
from workflows.notifications import WebhookReplayWorkflow

router = APIRouter(prefix=f"{PREFIX}/webhooks", tags=["webhooks"])
Admin = Annotated[CurrentUser, Depends(require_roles(Role.ADMIN))]


def check_url(resources: ResourcesDep, url: str) -> None:
    """Refuse a URL the worker would refuse to call (loopback, private, metadata, ...): 422."""
    refusal = egress_policy(resources.settings).url_refusal(url)
    if refusal:
        raise ProblemError(422, "webhook_url_forbidden", f"webhook URL refused: {refusal}")


def to_out(s: WebhookSubscription) -> WebhookOut:
    return WebhookOut(
        id=s.id,
        url=s.url,
        events=list(s.events),
        active=s.active,
        failing_since=s.failing_since,
        disabled_at=s.disabled_at,
        disabled_reason=s.disabled_reason,
        created_at=s.created_at,
        updated_at=s.updated_at,
    )


def delivery_to_out(d: WebhookDelivery, attempts: list[WebhookAttempt] | None = None) -> WebhookDeliveryOut:
    return WebhookDeliveryOut(
        id=d.id,
        event_id=d.event_id,
        event_type=d.event_type,
        delivery_id=d.delivery_id,
        status=d.status,
        attempts=d.attempts,
        last_response_code=d.last_response_code,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        payload=d.payload,
        attempt_log=[
            AttemptOut(
                attempted_at=a.attempted_at,
                response_code=a.response_code,
                latency_ms=a.latency_ms,
                error=a.error,
                succeeded=a.succeeded,
            )
            for a in attempts
        ]
        if attempts is not None
        else None,
    )


async def _own(session: SessionDep, user: CurrentUser, webhook_id: uuid.UUID) -> WebhookSubscription:
    sub = await session.get(WebhookSubscription, webhook_id)
    if sub is None or sub.organization_id != user.organization_id:
        raise not_found("webhook", webhook_id)
    return sub


async def _own_delivery(
    session: SessionDep, sub: WebhookSubscription, delivery_id: uuid.UUID
) -> WebhookDelivery:
    wd = await session.get(WebhookDelivery, delivery_id)
    if wd is None or wd.subscription_id != sub.id:
        raise not_found("webhook_delivery", delivery_id)
    return wd


@router.post("", status_code=201, response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate, user: Admin, session: SessionDep, resources: ResourcesDep
) -> WebhookCreated:
    check_url(resources, str(body.url))
    secret = body.secret or f"whsec_{secrets.token_urlsafe(32)}"
    sub = WebhookSubscription(
        organization_id=user.organization_id,
        url=str(body.url),
        events=list(body.events),
        secret=secret,
        active=body.active,
    )
    session.add(sub)
    await session.commit()
    return WebhookCreated(**to_out(sub).model_dump(), secret=secret)


@router.get("", response_model=Page[WebhookOut])
async def list_webhooks(user: Admin, session: SessionDep, page: PageDep) -> Page[WebhookOut]:
    stmt = select(WebhookSubscription).where(WebhookSubscription.organization_id == user.organization_id)
    return await page_of(session, stmt, WebhookSubscription, page, to_out)


@router.get("/{webhook_id}", response_model=WebhookOut)
async def read_webhook(webhook_id: uuid.UUID, user: Admin, session: SessionDep) -> WebhookOut:
    return to_out(await _own(session, user, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut)
async def update_webhook(
    webhook_id: uuid.UUID, body: WebhookUpdate, user: Admin, session: SessionDep, resources: ResourcesDep
) -> WebhookOut:
    sub = await _own(session, user, webhook_id)
    values = body.model_dump(exclude_unset=True)
    if any(values.get(k, "") is None for k in ("url", "events", "secret", "active")):
        raise ProblemError(422, "validation_error", "url, events, secret and active cannot be null")
    if "url" in values or body.active:  # re-enabling checks a URL registered under an older policy
        check_url(resources, str(body.url) if "url" in values else sub.url)
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
    return to_out(sub)


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: uuid.UUID, user: Admin, session: SessionDep) -> Response:
    await session.delete(await _own(session, user, webhook_id))
    await session.commit()
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=Page[WebhookDeliveryOut])
async def list_webhook_deliveries(
    webhook_id: uuid.UUID,
    user: Admin,
    session: SessionDep,
    page: PageDep,
    status: Annotated[str | None, Query(description="pending, succeeded, failed or skipped")] = None,
) -> Page[WebhookDeliveryOut]:
    sub = await _own(session, user, webhook_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    return await page_of(session, stmt, WebhookDelivery, page, delivery_to_out)


@router.get("/{webhook_id}/deliveries/{delivery_id}", response_model=WebhookDeliveryOut)
async def read_webhook_delivery(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, user: Admin, session: SessionDep
) -> WebhookDeliveryOut:
    wd = await _own_delivery(session, await _own(session, user, webhook_id), delivery_id)
    attempts = await session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.webhook_delivery_id == wd.id).order_by(WebhookAttempt.id)
    )
    return delivery_to_out(wd, list(attempts))


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/replay", status_code=202, response_model=WebhookDeliveryOut
)
async def replay_webhook_delivery(
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    user: Admin,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
) -> WebhookDeliveryOut:
    """Send the recorded event again (same event id and body, fresh signature), with retries."""
    sub = await _own(session, user, webhook_id)
    wd = await _own_delivery(session, sub, delivery_id)
    if not sub.active:
        raise ProblemError(
            409, "webhook_inactive", "re-enable the webhook (PATCH active=true) before replaying"
        )
    wd.status = "pending"
    await session.commit()
    try:
        await client.start_workflow(
            WebhookReplayWorkflow.run,
            ReplayInput(str(wd.id), notification_config(resources.settings)),
            id=f"webhook-replay-{wd.id}-{uuid7()}",
            task_queue=resources.settings.temporal_task_queue,
        )
    except RPCError:
        raise temporal_unavailable() from None
    return delivery_to_out(wd)
