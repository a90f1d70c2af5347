"""OpenTelemetry traces across API → workflow → activity, exported over OTLP/HTTP when
WAYBILL_OTLP_ENDPOINT is set and off (no spans made at all) otherwise.

One tracer per process, configured by the entry point: the API wraps each request in a server
span, and Temporal's TracingInterceptor on the client carries the context into workflow starts,
updates, workflow runs and activities (workers built from that client inherit it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from plumbing import __version__
from plumbing.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer
    from temporalio.client import Interceptor as ClientInterceptor

log = logging.getLogger(__name__)
_provider: TracerProvider | None = None


def configure(settings: Settings, service: str) -> None:
    """Start exporting spans for this process if an endpoint is configured."""
    global _provider
    if not settings.otlp_endpoint or _provider is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.version": __version__})
    )
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    _provider = provider
    log.info("exporting traces", extra={"otlp_endpoint": endpoint, "service": service})


def tracer() -> Tracer | None:
    return _provider.get_tracer("waybill", __version__) if _provider is not None else None


def client_interceptors() -> list[ClientInterceptor]:
    """For Client.connect: traces workflow and activity work when tracing is on."""
    t = tracer()
    if t is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(t)]


def shutdown() -> None:
    """Flush what is buffered and stop (at process exit, and between tests)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None
