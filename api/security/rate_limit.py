"""Rate limits: per client IP on every request, per user once authenticated, and stricter ones on
login and refresh. Sliding windows kept atomically in Redis (a Lua script, shared by every API
replica) or in process without Redis (db/bus). 429 problems carry Retry-After.

If the limiter's store fails, the request goes through and a warning is logged: an outage of Redis
should not take the API down with it.
"""

from __future__ import annotations

import json
import logging
import math

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import PROBLEM_JSON, ProblemError
from db.bus.base import RateLimiter

log = logging.getLogger(__name__)
EXEMPT = ("/health", "/ready", "/metrics")  # probes and scrapes must never be throttled


def rate_limited(retry_after_s: float, what: str) -> ProblemError:
    seconds = max(1, math.ceil(retry_after_s))
    return ProblemError(
        429,
        "rate_limited",
        f"too many requests {what}; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
        retry_after_seconds=seconds,
    )


async def allow(limiter: RateLimiter, key: str, limit: int, window_s: float) -> float | None:
    """None if allowed (or the limit is 0: off); otherwise the seconds until a retry can succeed."""
    if limit <= 0:
        return None
    try:
        decision = await limiter.hit(key, limit, window_s)
    except Exception as exc:  # fail open, see the module docstring
        log.warning("rate limiter unavailable; request allowed", extra={"error": str(exc)})
        return None
    return None if decision.allowed else decision.retry_after_seconds


async def enforce(limiter: RateLimiter, key: str, limit: int, window_s: float, what: str) -> None:
    retry = await allow(limiter, key, limit, window_s)
    if retry is not None:
        raise rate_limited(retry, what)


def client_ip(scope: Scope) -> str:
    # uvicorn resolves X-Forwarded-For into scope["client"] only for the proxies named in
    # WAYBILL_TRUSTED_PROXIES (none by default: waybill/services.py), so a client cannot pick its own bucket.
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class IpRateLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int, window_s: float) -> None:
        self.app = app
        self.limit = limit
        self.window_s = window_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"].startswith(EXEMPT):
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter = scope["app"].state.resources.cache_bus
        retry = await allow(limiter, f"ip:{client_ip(scope)}", self.limit, self.window_s)
        if retry is None:
            await self.app(scope, receive, send)
            return
        problem = rate_limited(retry, "from this address")
        body = json.dumps(
            {
                "type": "https://waybill.dev/problems/rate_limited",
                "title": "Too Many Requests",
                "status": 429,
                "detail": problem.detail,
                "code": problem.code,
                "instance": scope["path"],
                **problem.extra,
            }
        ).encode()
        headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in (problem.headers or {}).items()]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
