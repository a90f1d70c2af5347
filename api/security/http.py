"""HTTP hardening on every response: security headers, and request bodies capped by size (413).

Plain ASGI so it costs next to nothing per request. The body cap is enforced on the declared
Content-Length up front (the server then stops reading: a longer body than declared is a protocol
error) and, for chunked bodies without one, by reading up to the cap before the app runs.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM_JSON

# Swagger UI (/api/docs) loads its script and styles from a CDN; everything else is JSON only.
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
_DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"img-src 'self' data: https://fastapi.tiangolo.com; "
    b"connect-src 'self'; frame-ancestors 'none'"
)
_BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"geolocation=(), camera=(), microphone=()"),
]


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int, hsts: bool) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.max_upload = max_upload_bytes
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = self.max_upload if multipart else self.max_body
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit, scope["path"])
            return
        path: str = scope["path"]
        extra = self._headers(path)
        if declared is None and scope["method"] in ("POST", "PUT", "PATCH"):
            buffered = await _read_capped(receive, limit)
            if buffered is None:
                return  # the client went away
            if isinstance(buffered, int):
                await _too_large(send, limit, path)
                return
            receive = _replay(buffered, receive)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _headers(self, path: str) -> list[tuple[bytes, bytes]]:
        extra = list(_BASE_HEADERS)
        extra.append((b"content-security-policy", _DOCS_CSP if path.startswith("/api/docs") else _API_CSP))
        if path.startswith("/api/v1/"):
            extra.append((b"cache-control", b"no-store"))  # per-user data: never kept by a shared cache
        if self.hsts:
            extra.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        return extra


async def _read_capped(receive: Receive, limit: int) -> bytes | int | None:
    """A body without a declared length (chunked), read up to `limit` before the app runs, so the app
    never sees a body it would have to abandon half-read: the body, its size once over the limit, or
    None if the client went away."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return size
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that first hands the app the body read already, then goes on to the client's."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(send: Send, limit: int, path: str) -> None:
    body = json.dumps(
        {
            "type": "https://waybill.dev/problems/payload_too_large",
            "title": "Content Too Large",
            "status": 413,
            "code": "payload_too_large",
            "detail": f"the request body is larger than {limit} bytes",
            "instance": path,
            "limit_bytes": limit,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *_BASE_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
