"""`waybill backup` / `waybill restore`: the system-of-record database to a file and back.

PostgreSQL uses pg_dump's custom format (compressed, restorable table by table with pg_restore);
SQLite uses its online backup API, which copies a consistent snapshot while writers continue.
Temporal's own persistence and MongoDB are backed up with their own tools (docs/operations.md).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from plumbing.settings import ConfigError, redact_url, to_sync_url

NAME = re.compile(r"^waybill-(\d{8}T\d{6}Z)\.(dump|sqlite)$")


class BackupError(RuntimeError):
    pass


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
        _sqlite_copy(_sqlite_path(url), target)
    else:
        target = directory / f"waybill-{stamp}.dump"
        partial = target.with_suffix(".dump.partial")
        _run(["pg_dump", "--format=custom", "--no-owner", f"--file={partial}", _libpq_url(url)], url)
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
        _sqlite_copy(source, _sqlite_path(url))
        return
    if source.suffix != ".dump":
        raise ConfigError(f"{source.name} is a SQLite backup; restore it into SQLite")
    _run(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={_libpq_url(url)}",
            str(source),
        ],
        url,
    )


def _sqlite_path(url: str) -> Path:
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path == ":memory:":
        raise ConfigError("an in-memory SQLite database cannot be backed up or restored")
    return Path(path)


def _sqlite_copy(src: Path, dst: Path) -> None:
    if not src.exists():
        raise ConfigError(f"no SQLite database at {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)


def _libpq_url(url: str) -> str:
    """postgresql+psycopg://user:pw@host/db → postgresql://user@host/db for pg_dump/pg_restore.

    The password goes through PGPASSWORD instead (see _run), out of `ps` and error messages."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = f"?{parts.query}" if parts.query else ""
    return f"postgresql://{netloc}{parts.path}{query}"


def _run(cmd: list[str], url: str) -> None:
    tool = cmd[0]
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} is not installed (Debian/Ubuntu: apt install postgresql-client)")
    env = dict(os.environ)
    password = urlsplit(url).password
    if password:
        env["PGPASSWORD"] = unquote(password)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise BackupError(f"{tool} failed ({done.returncode}) on {redact_url(url)}: {done.stderr.strip()}")
