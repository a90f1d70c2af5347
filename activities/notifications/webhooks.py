"""One webhook attempt: sign, POST, record the attempt; disable an endpoint that failed too long."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.notifications.egress import EgressRefused, egress_policy, webhook_client
from activities.notifications.signing import SIGNATURE_HEADER, sign
from db.repositories import notifications as repo
from plumbing.settings import Settings

USER_AGENT = "Waybill-Webhooks/1"


@dataclass(frozen=True)
class AttemptOutcome:
    # succeeded, skipped (endpoint disabled), failed (this attempt), disabled (it disabled it),
    # refused (the egress policy forbids the URL or its addresses: retrying cannot help)
    status: str
    detail: str = ""
    subscription_id: str = ""


def encode_body(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


async def attempt_webhook(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, ident: uuid.UUID, attempt: int
) -> AttemptOutcome:
    async with sessionmaker() as session:
        wd, sub = await repo.webhook_delivery(session, ident)
        if wd is None or sub is None:
            return AttemptOutcome("skipped", "the subscription was deleted")
        if wd.status == "succeeded":
            return AttemptOutcome("succeeded")
        if not sub.active:
            if wd.status == "pending":
                wd.status = "skipped"
                await session.commit()
            return AttemptOutcome("skipped", "the endpoint is disabled")
        url, secret, body = sub.url, sub.secret, encode_body(wd.payload)
        event_id, event_type = wd.event_id, wd.event_type
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        "Waybill-Event-Id": event_id,
        "Waybill-Event-Type": event_type,
        "Waybill-Webhook-Delivery": str(ident),
        "Waybill-Attempt": str(attempt),
    }
    code: int | None = None
    error: str | None = None
    refused = False
    started = time.perf_counter()
    try:
        # Checked here too, not only at registration: the URL may predate the policy or the
        # allowlist may have shrunk since. Names are checked once resolved, in the client.
        refusal = egress_policy(settings).url_refusal(url)
        if refusal:
            raise EgressRefused(refusal)
        async with webhook_client(settings) as client:
            code = (await client.post(url, content=body, headers=headers)).status_code
    except EgressRefused as exc:
        refused, error = True, f"refused: {exc.reason}"[:500]
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    latency_ms = (time.perf_counter() - started) * 1000
    ok = code is not None and 200 <= code < 300
    outcome = await _record(sessionmaker, settings, ident, code, error, latency_ms, ok, refused=refused)
    if refused and outcome.status == "failed":
        return AttemptOutcome("refused", outcome.detail)
    return outcome


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    ident: uuid.UUID,
    code: int | None,
    error: str | None,
    latency_ms: float,
    ok: bool,
    *,
    refused: bool = False,
) -> AttemptOutcome:
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        wd, sub = await repo.webhook_delivery(session, ident)
        if wd is None or sub is None:
            return AttemptOutcome("skipped", "the subscription was deleted")
        repo.add_attempt(
            session,
            webhook_delivery_id=ident,
            attempted_at=now,
            response_code=code,
            latency_ms=round(latency_ms, 1),
            error=error,
            succeeded=ok,
        )
        wd.attempts += 1
        wd.last_response_code = code
        if ok:
            wd.status, wd.delivered_at = "succeeded", now
            sub.failing_since = None
            return AttemptOutcome("succeeded")
        if code is not None:
            detail = f"receiver answered {code}"
        elif refused:
            detail = str(error)
        else:
            detail = f"receiver unreachable ({error})"
        if sub.failing_since is None:
            sub.failing_since = now
        elif now - sub.failing_since >= timedelta(seconds=settings.webhook_disable_after_seconds):
            # Conditional: of several lanes failing at once, exactly one disables (and alerts).
            flipped = await repo.disable_subscription(session, sub.id, now, detail)
            wd.status = "failed"
            if flipped:
                return AttemptOutcome("disabled", detail, str(sub.id))
            return AttemptOutcome("skipped", "the endpoint is disabled")
        return AttemptOutcome("failed", detail)
