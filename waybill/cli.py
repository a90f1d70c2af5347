"""The `waybill` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from plumbing import __version__, eventloop, tracing
from plumbing.logging import configure_logging
from plumbing.ports import PortClaim, PortInUse, ensure_ports_free
from plumbing.settings import ConfigError, Settings, load_settings
from tools.analytics_cli import add_analytics_parser, run_analytics
from tools.simulate_cli import add_simulate_parser, run_simulate
from waybill.socket_replicas import current_replica, replica_ports, run_replicas

log = logging.getLogger("waybill")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waybill", description="Waybill: live fleet tracking and delivery on Temporal"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dev = sub.add_parser(
        "dev", help="run everything in one process (bundled Temporal, SQLite, in-process bus)"
    )
    dev.add_argument("--no-seed", action="store_true", help="do not create the demo organization")
    sub.add_parser("api", help="run the REST API (needs REDIS_URL)")
    sockets = sub.add_parser("sockets", help="run the WebSocket server (needs REDIS_URL)")
    sockets.add_argument(
        "--processes",
        type=int,
        default=None,
        help="replicas sharing the port, about one per core (default: WAYBILL_SOCKETS_PROCESSES, 1)",
    )
    worker = sub.add_parser("worker", help="run Temporal workers (needs REDIS_URL)")
    worker.add_argument(
        "--queue",
        choices=["all", "default", "routing", "analytics"],
        default="all",
        help="which task queue(s) to poll (default: all)",
    )
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--revision", default="head", help="target revision (default: head)")
    seed = sub.add_parser("seed", help="create the demo organization and print its credentials")
    seed.add_argument(
        "--drivers",
        type=int,
        default=2,
        help="make sure drivers driver1..N exist, each with a van (default: 2)",
    )
    sub.add_parser("check", help="run the system-check workflow through a worker and print its report")
    rec = sub.add_parser(
        "reconcile",
        help="find delivery rows without a running workflow and workflows without a row (through a worker)",
    )
    rec.add_argument(
        "--repair", action="store_true", help="repair what is found (default: a dry run that only reports)"
    )
    rec.add_argument("--org", default=None, help="only this organization (its id; default: all)")
    rec.add_argument("--json", action="store_true", help="print the report as JSON")
    doc = sub.add_parser("doctor", help="check configuration and every store and service; change nothing")
    doc.add_argument("--json", action="store_true", help="print the findings as JSON")
    bk = sub.add_parser("backup", help="back up the database (pg_dump custom format, or a SQLite copy)")
    bk.add_argument("--dir", type=Path, default=None, help="where backups go (default: DATA_DIR/backups)")
    bk.add_argument("--keep", type=int, default=7, help="how many backups to keep in --dir (default: 7)")
    rs = sub.add_parser("restore", help="restore the database from a backup file (replaces its tables)")
    rs.add_argument("file", type=Path, help="a file written by `waybill backup`")
    rs.add_argument("--yes", action="store_true", help="confirm: the tables in the backup are replaced")
    imp = sub.add_parser("import", help="import data from a file").add_subparsers(dest="what", required=True)
    imp_d = imp.add_parser("deliveries", help="create deliveries from a CSV file (docs/webhooks.md)")
    imp_d.add_argument("file", type=Path, help="CSV with a header row; external_ref is required")
    imp_d.add_argument("--org", required=True, help="slug of the organization the deliveries belong to")
    imp_d.add_argument("--as", dest="as_email", default=None, help="e-mail of the admin/dispatcher to act as")
    add_analytics_parser(sub)
    add_simulate_parser(sub)
    sub.add_parser("version", help="print the version")
    return p


def _require_shared_bus(settings: Settings, role: str) -> None:
    if settings.uses_embedded_bus:
        raise ConfigError(
            f"`waybill {role}` alone needs REDIS_URL: the in-process bus cannot reach the other processes. "
            "Set REDIS_URL, or run `waybill dev` to start everything in one process."
        )


async def _run_role(settings: Settings, role: str, queue: str) -> int:
    from api.resources import Resources
    from waybill.services import ApiService, Service, SocketService, WorkerService, run_services
    from workers.compose import QUEUE_NAMES

    temporal = None
    if role == "worker":  # only the worker serves the SDK's metrics (one port per host otherwise clashes)
        from plumbing.temporal import TemporalConnector
        from workers.metrics import sdk_metrics_runtime

        temporal = TemporalConnector(settings, runtime=sdk_metrics_runtime(settings))
    resources = await Resources.open(settings, temporal)
    try:
        service: Service
        if role == "api":
            service = ApiService(resources, settings.api_host, settings.api_port)
        elif role == "sockets":
            service = SocketService(
                resources, settings.sockets_host, settings.sockets_port, replica=current_replica()
            )
        else:
            service = WorkerService(resources, list(QUEUE_NAMES) if queue == "all" else [queue])

        def started() -> None:
            log.info("%s started", role)
            if role == "sockets":
                _tune_gc_for_sockets()

        return await run_services([service], on_started=started)
    finally:
        await resources.close()


def _tune_gc_for_sockets() -> None:
    """The socket server allocates a few container objects per position (parsed frames, fixes, rows) and
    frees them all within milliseconds; the cyclic collector's default thresholds then run a full
    collection over every connection's objects every few seconds. Startup objects are frozen out of
    the collector and the young generation is collected 10x less often; cycles are rare on that path."""
    import gc

    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 7000), gen1, gen2)


async def _seed(settings: Settings, drivers: int = 2) -> int:
    from db.migrate import upgrade
    from db.session import create_engine, create_sessionmaker
    from tools.seed import format_credentials, seed_demo

    await asyncio.to_thread(upgrade, settings.sync_database_url)
    engine = create_engine(settings.async_database_url)
    try:
        result = await seed_demo(create_sessionmaker(engine), dev=settings.is_dev, drivers=drivers)
    finally:
        await engine.dispose()
    sys.stdout.write(format_credentials(result) + "\n")
    return 0


async def _check(settings: Settings) -> int:
    from dataclasses import asdict

    from domain.health import SystemCheckInput
    from domain.ids import uuid7
    from plumbing.temporal import connect
    from workflows.system_check import SystemCheckWorkflow

    client = await connect(settings)
    result = await client.execute_workflow(
        SystemCheckWorkflow.run,
        SystemCheckInput(requested_by="cli"),
        id=f"system-check-{uuid7()}",
        task_queue=settings.temporal_task_queue,
    )
    sys.stdout.write(json.dumps(asdict(result), default=str, indent=2) + "\n")
    return 0 if result.ok else 1


async def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """Run ReconcileWorkflow now on a worker and print its report; exit 1 if anything is left out of
    step (found in a dry run, or unrepairable)."""
    import uuid
    from dataclasses import asdict

    from domain.ids import uuid7
    from domain.reconcile import ReconcileInput
    from plumbing.temporal import connect
    from workflows.reconcile import ReconcileWorkflow

    if args.org is not None:
        try:
            args.org = str(uuid.UUID(args.org))
        except ValueError:
            raise ConfigError(f"--org takes an organization id, not {args.org!r}") from None
    client = await connect(settings)
    result = await client.execute_workflow(
        ReconcileWorkflow.run,
        ReconcileInput(requested_by="cli", repair=args.repair, organization_id=args.org),
        id=f"reconcile-cli-{uuid7()}",
        task_queue=settings.temporal_task_queue,
    )
    if args.json:
        sys.stdout.write(json.dumps(asdict(result), default=str, indent=2) + "\n")
    else:
        lines = [
            f"{'dry run: ' if result.dry_run else ''}{result.checked} open delivery row(s) and "
            f"{result.workflows_checked} running workflow(s) checked",
            f"  row without workflow: {result.missing_workflow}, row with closed workflow: "
            f"{result.closed_workflow}, workflow without row: {result.missing_row}",
            f"  repaired: {result.repaired}, unrepairable: {result.unrepairable}",
            *(
                f"  {f.delivery_id} {f.kind.value}: {f.action.value}{f' ({f.detail})' if f.detail else ''}"
                for f in result.findings
            ),
        ]
        if result.found > len(result.findings):
            lines.append(f"  ... and {result.found - len(result.findings)} more (see the worker log)")
        sys.stdout.write("\n".join(lines) + "\n")
    return 0 if result.found == result.repaired else 1


async def _doctor(settings: Settings, *, as_json: bool) -> int:
    from dataclasses import asdict

    from tools.doctor import Verdict, format_findings, run_doctor

    findings = await run_doctor(settings)
    text = json.dumps([asdict(f) for f in findings], indent=2) if as_json else format_findings(findings)
    sys.stdout.write(text + "\n")
    return 1 if any(f.verdict is Verdict.FAIL for f in findings) else 0


def _backup_or_restore(settings: Settings, args: argparse.Namespace) -> int:
    from plumbing.settings import redact_url
    from tools.backup import BackupError, backup, restore

    try:
        if args.command == "backup":
            result = backup(settings.sync_database_url, args.dir or settings.data_dir / "backups", args.keep)
            sys.stdout.write(f"wrote {result.path} ({result.size_bytes:,} bytes)\n")
            for old in result.removed:
                sys.stdout.write(f"removed {old} (keeping the newest {args.keep})\n")
            return 0
        if not args.yes:
            target = redact_url(settings.sync_database_url)
            raise ConfigError(f"restoring replaces the tables of {target}; add --yes to go ahead")
        restore(settings.sync_database_url, args.file)
        sys.stdout.write(f"restored {args.file} into {redact_url(settings.sync_database_url)}\n")
        return 0
    except BackupError as exc:
        sys.stderr.write(f"waybill: {exc}\n")
        return 1


_PROCESS_ROLES = ("dev", "api", "sockets", "worker")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        sys.stdout.write(f"waybill {__version__}\n")
        return 0
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        if args.command in _PROCESS_ROLES:
            tracing.configure(settings, f"waybill-{args.command}")
            return _serve(settings, args)
        return _run_command(settings, args)
    except (ConfigError, PortInUse) as exc:
        sys.stderr.write(f"waybill: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        tracing.shutdown()  # flushes buffered spans (entry() may skip interpreter teardown)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run one of the long-lived processes (dev, api, sockets, worker) until it is stopped."""
    if args.command == "dev":
        from waybill.dev import run_dev

        return eventloop.run(run_dev(settings, seed=not args.no_seed))
    _require_shared_bus(settings, args.command)
    if args.command == "api":
        ensure_ports_free(settings.api_host, [PortClaim(settings.api_port, "API", "WAYBILL_API_PORT")])
    if args.command == "sockets" and current_replica() is None:
        processes = settings.sockets_processes if args.processes is None else args.processes
        if not 1 <= processes <= 64:
            raise ConfigError("--processes must be between 1 and 64")
        if processes > 1:
            ensure_ports_free(settings.sockets_host, replica_ports(settings, processes))
            return run_replicas(processes)
        ensure_ports_free(
            settings.sockets_host,
            [PortClaim(settings.sockets_port, "sockets", "WAYBILL_SOCKETS_PORT")],
        )
    return eventloop.run(_run_role(settings, args.command, getattr(args, "queue", "all")))


def _run_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one of the commands that do a job and exit."""
    if args.command == "migrate":
        from db.migrate import upgrade

        upgrade(settings.sync_database_url, args.revision)
        sys.stdout.write(f"database is at revision {args.revision}\n")
        return 0
    if args.command == "seed":
        if not 2 <= args.drivers <= 1000:
            raise ConfigError("--drivers must be between 2 and 1000")
        return asyncio.run(_seed(settings, args.drivers))
    if args.command == "check":
        return asyncio.run(_check(settings))
    if args.command == "reconcile":
        return asyncio.run(_reconcile(settings, args))
    if args.command == "import":
        from tools.import_cli import run_import

        return asyncio.run(run_import(settings, args.file, args.org, args.as_email))
    if args.command == "analytics":
        return asyncio.run(run_analytics(settings, args))
    if args.command == "simulate":
        return asyncio.run(run_simulate(settings, args))
    if args.command == "doctor":
        return asyncio.run(_doctor(settings, as_json=args.json))
    if args.command in ("backup", "restore"):
        return _backup_or_restore(settings, args)
    raise AssertionError(f"unhandled command {args.command}")


# Commands that hold a Temporal client. Its Rust runtime threads can outlive the event loop and
# abort CPython's finalization ("PyGILState_Release: thread state ... must be current";
# temporalio/sdk-python#300), so after a clean shutdown these exit without interpreter teardown.
_TEMPORAL_COMMANDS = {
    "dev",
    "api",
    "sockets",
    "worker",
    "check",
    "reconcile",
    "doctor",
    "import",
    "analytics",
}


def entry() -> None:
    """Console-script entry point."""
    argv = sys.argv[1:]
    code = main(argv)
    if argv and argv[0] in _TEMPORAL_COMMANDS:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
