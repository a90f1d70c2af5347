"""`waybill dev`: everything in one process on embedded defaults, plus the bundled Temporal dev server."""

from __future__ import annotations

import asyncio
import logging
import sys

from api.resources import Resources
from db.migrate import upgrade
from plumbing.ports import PortClaim, ensure_ports_free
from plumbing.settings import Settings, redact_url
from plumbing.temporal import TemporalConnector, connect
from tools.seed import format_credentials, seed_demo
from waybill.services import ApiService, Service, SocketService, WorkerService, run_services
from waybill.temporal_dev import TemporalDevServer
from workers.compose import QUEUE_NAMES

log = logging.getLogger(__name__)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def banner(settings: Settings, temporal_ui: str | None) -> str:
    api = f"http://localhost:{settings.api_port}"
    ws = f"ws://localhost:{settings.sockets_port}"
    rows = [
        ("API docs", f"{api}/api/docs"),
        ("Health", f"{api}/health   {api}/ready"),
        ("Temporal UI", temporal_ui or f"(external Temporal at {settings.temporal_target})"),
        ("Sockets", f"{ws}/ws/driver   {ws}/ws/dispatch"),
        (
            "Database",
            redact_url(settings.database_url) if settings.database_url else str(settings.sqlite_path),
        ),
        ("Cache/bus", redact_url(settings.redis_url) if settings.redis_url else "in-process"),
    ]
    body = "\n".join(f"  {k:<12} {v}" for k, v in rows)
    return f"\nWaybill is running.\n{body}\n\nPress Ctrl-C to stop.\n"


async def run_dev(settings: Settings, *, seed: bool = True) -> int:
    own_temporal = settings.temporal_address is None
    claims = [
        PortClaim(settings.api_port, "API", "WAYBILL_API_PORT"),
        PortClaim(settings.sockets_port, "sockets", "WAYBILL_SOCKETS_PORT"),
    ]
    if own_temporal:
        claims += [
            PortClaim(settings.temporal_dev_port, "Temporal dev server", "WAYBILL_TEMPORAL_DEV_PORT"),
            PortClaim(settings.temporal_ui_port, "Temporal Web UI", "WAYBILL_TEMPORAL_UI_PORT"),
        ]
    ensure_ports_free("127.0.0.1", claims)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    temporal = TemporalDevServer(settings) if own_temporal else None
    try:
        if temporal is not None:
            _say(f"Starting the Temporal dev server (state in {temporal.db_path}) ...")
            temporal.start()
            client = await temporal.wait_ready()
        else:
            client = await connect(settings, attempts=30)
        _say("Applying database migrations ...")
        await asyncio.to_thread(upgrade, settings.sync_database_url)
        resources = await Resources.open(settings, TemporalConnector(settings, client))
        try:
            if seed:
                result = await seed_demo(resources.sessionmaker, dev=settings.is_dev)
                _say(format_credentials(result))
            services: list[Service] = [
                WorkerService(resources, QUEUE_NAMES),
                ApiService(resources, settings.api_host, settings.api_port),
                SocketService(resources, settings.sockets_host, settings.sockets_port),
            ]
            ui = f"http://localhost:{settings.temporal_ui_port}" if own_temporal else None
            code = await run_services(services, on_started=lambda: _say(banner(settings, ui)))
        finally:
            await resources.close()
        _say("Stopping ...")
        return code
    finally:
        if temporal is not None:
            await asyncio.to_thread(temporal.stop)
            _say("Stopped.")
