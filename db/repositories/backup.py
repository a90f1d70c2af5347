"""How each backend copies itself to a file and back, for `waybill backup` / `waybill restore`
(tools/backup.py names, keeps and checks the files).

PostgreSQL uses pg_dump's custom format (compressed, restorable table by table with pg_restore);
SQLite uses its online backup API, which copies a consistent snapshot while writers continue.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from plumbing.settings import ConfigError, redact_url


class BackupError(RuntimeError):
    pass


def sqlite_path(url: str) -> Path:
    """The file of a sync SQLite URL; in-memory databases cannot be backed up."""
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path == ":memory:":
        raise ConfigError("an in-memory SQLite database cannot be backed up or restored")
    return Path(path)


def sqlite_copy(src: Path, dst: Path) -> None:
    """Copy one SQLite database over another with the online backup API."""
    if not src.exists():
        raise ConfigError(f"no SQLite database at {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)


def pg_dump(url: str, target: Path) -> None:
    """Dump the PostgreSQL database of sync `url` into `target` (custom format, no owners)."""
    run_client(["pg_dump", "--format=custom", "--no-owner", f"--file={target}", libpq_url(url)], url)


def pg_restore(url: str, source: Path) -> None:
    """Load a custom-format dump into the database of sync `url`, replacing the tables it contains."""
    run_client(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={libpq_url(url)}",
            str(source),
        ],
        url,
    )


def libpq_url(url: str) -> str:
    """postgresql+psycopg://user:pw@host/db → postgresql://user@host/db for pg_dump/pg_restore.

    The password goes through PGPASSWORD instead (see run_client), out of `ps` and error messages."""
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


def run_client(cmd: list[str], url: str) -> None:
    """Run a PostgreSQL client program with the password of `url` in its environment."""
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
