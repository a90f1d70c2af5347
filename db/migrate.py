"""Apply Alembic migrations programmatically (used by `waybill migrate`, `waybill dev` and tests)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, pool

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def alembic_config(sync_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", sync_url.replace("%", "%%"))
    return cfg


def _ensure_sqlite_dir(sync_url: str) -> None:
    if sync_url.startswith("sqlite:///") and sync_url != "sqlite:///:memory:":
        Path(sync_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def upgrade(sync_url: str, revision: str = "head") -> None:
    _ensure_sqlite_dir(sync_url)
    command.upgrade(alembic_config(sync_url), revision)


def downgrade(sync_url: str, revision: str) -> None:
    command.downgrade(alembic_config(sync_url), revision)


def current_revision(sync_url: str) -> str | None:
    _ensure_sqlite_dir(sync_url)
    engine = create_engine(sync_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
            return str(row[0]) if row else None
    finally:
        engine.dispose()
