"""A server span per HTTP request (only installed when tracing is on): named by route template,
with method, route, status and request id, and current while the request runs, so workflow starts
and updates made by the handler become its children."""

from __future__ import annotations

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.route_template import route_template
from plumbing.log_context import current


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.tracer.start_as_current_span(f"HTTP {method}", kind=SpanKind.SERVER) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = route_template(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if request_id := current().get("request_id"):
                    span.set_attribute("waybill.request_id", str(request_id))
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
