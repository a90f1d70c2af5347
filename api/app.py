"""FastAPI app factory. Engines, cache/bus and the Temporal client live on app.state, made in lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry

from api.errors import install_error_handlers
from api.http.metrics import install_metrics
from api.http.nul import NulGuard
from api.http.request_context import RequestIdMiddleware
from api.http.tracing import TracingMiddleware
from api.resources import Resources
from api.security.http import SecurityMiddleware
from api.security.rate_limit import IpRateLimitMiddleware
from api.v1 import (
    analytics,
    audit,
    auth,
    deliveries,
    depots,
    dispatch,
    drivers,
    health,
    integrations,
    notifications,
    route_plans,
    routes,
    tracking,
    users,
    vehicles,
    webhooks,
)
from plumbing import __version__, tracing
from plumbing.settings import Settings

DESCRIPTION = """Waybill's REST API. Errors are RFC 9457 problem details with a machine `code`;
lists are cursor-paginated (`next_cursor`); authenticate with `POST /api/v1/auth/login`."""


def create_app(settings: Settings, resources: Resources | None = None) -> FastAPI:
    """Build the app. Pass `resources` to share them (as `waybill dev` does); else lifespan opens its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = resources is None
        app.state.resources = resources or await Resources.open(settings)
        try:
            yield
        finally:
            if owned:
                await app.state.resources.close()

    app = FastAPI(
        title="Waybill API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    if resources is not None:
        app.state.resources = resources
    install_error_handlers(app)
    _add_middleware(app, settings)
    _add_routes(app)
    return app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Each one added wraps those added before it: the last added runs first."""
    app.add_middleware(NulGuard)  # innermost: its 422 gets the security headers, rate limits apply
    app.add_middleware(
        IpRateLimitMiddleware, limit=settings.rate_limit_ip, window_s=settings.rate_limit_window_seconds
    )
    app.add_middleware(
        SecurityMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        hsts=settings.public_base_url.startswith("https://"),
    )
    install_metrics(app, CollectorRegistry())
    if (tracer := tracing.tracer()) is not None:
        app.add_middleware(TracingMiddleware, tracer=tracer)
    app.add_middleware(RequestIdMiddleware)  # added last, so it runs first: every later log line has the id
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )


def _add_routes(app: FastAPI) -> None:
    # The routers' routes go into the app's router as they are (each router's prefix is the full
    # path) rather than through include_router: since FastAPI 0.137 every request walks the tree of
    # included routers (a version check per router, a matching layer per level), which cost about
    # 0.4 ms of CPU per request here (docs/benchmarks.md, "Where the API's time goes"). What that
    # gives up: app.dependency_overrides (unused here) do not reach these routes. They are added
    # before the OpenAPI schema is first built, which caches it. Matched first to last.
    for module in (
        health,
        deliveries,  # first of the API: creating deliveries is its busiest call
        auth,
        depots,
        tracking,  # before vehicles: /vehicles/nearby must not be read as a vehicle id
        vehicles,
        drivers,
        route_plans,
        routes,
        dispatch,
        notifications,
        webhooks,
        integrations,
        users,
        audit,
        analytics,
    ):
        app.router.routes.extend(module.router.routes)
