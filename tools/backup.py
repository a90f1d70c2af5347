"""`waybill backup` / `waybill restore`: the system-of-record database to a file and back.

Backups are named by the time they were taken and the newest `--keep` are kept; how each backend
copies itself is in db/repositories/backup.py (pg_dump's custom format, SQLite's online backup).
Temporal's own persistence and MongoDB are backed up with their own tools (docs/operations.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from db.repositories.backup import BackupError, pg_dump, pg_restore, sqlite_copy, sqlite_path
from plumbing.settings import ConfigError, to_sync_url

NAME = re.compile(r"^waybill-(\d{8}T\d{6}Z)\.(dump|sqlite)$")

__all__ = ["NAME", "BackupError", "BackupResult", "backup", "prune", "restore"]


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size_bytes: int
    removed: list[Path]


def backup(database_url: str, directory: Path, keep: int, now: datetime | None = None) -> BackupResult:
    """Write a new backup into `directory`, then keep only the newest `keep` backups there."""
    if keep < 1:
        raise ConfigError("--keep must be at least 1")
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    url = to_sync_url(database_url)
    if url.startswith("sqlite"):
        target = directory / f"waybill-{stamp}.sqlite"
        sqlite_copy(sqlite_path(url), target)
    else:
        target = directory / f"waybill-{stamp}.dump"
        partial = target.with_suffix(".dump.partial")
        pg_dump(url, partial)
        partial.rename(target)  # a crash mid-dump never leaves a file that looks complete
    return BackupResult(target, target.stat().st_size, prune(directory, keep))


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups (by the timestamp in their names)."""
    found = sorted((m.group(1), p) for p in directory.iterdir() if (m := NAME.match(p.name)))
    doomed = [p for _, p in found[:-keep]] if len(found) > keep else []
    for p in doomed:
        p.unlink()
    return doomed


def restore(database_url: str, source: Path) -> None:
    """Load a backup into the database, replacing the tables it contains."""
    if not source.is_file():
        raise ConfigError(f"no backup file at {source}")
    url = to_sync_url(database_url)
    if url.startswith("sqlite"):
        if source.suffix != ".sqlite":
            raise ConfigError(f"{source.name} is a PostgreSQL dump; restore it into PostgreSQL")
        sqlite_copy(source, sqlite_path(url))
        return
    if source.suffix != ".dump":
        raise ConfigError(f"{source.name} is a SQLite backup; restore it into SQLite")
    pg_restore(url, source)
