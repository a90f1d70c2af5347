"""`waybill backup` / `waybill restore` round-trip every table, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, text

from db.migrate import upgrade
from db.session import create_engine as create_async_engine
from db.session import create_sessionmaker
from plumbing.settings import ConfigError, to_async_url, to_sync_url
from tests.conftest import SQL_BACKENDS
from tools.backup import BackupError, backup, prune, restore
from tools.seed import seed_demo
from waybill.cli import main


def fingerprint(url: str) -> dict[str, tuple[int, str]]:
    """Row count and a checksum of the sorted rows of every table."""
    engine = create_engine(to_sync_url(url))
    try:
        with engine.connect() as conn:
            out = {}
            for table in sorted(inspect(conn).get_table_names()):
                rows = sorted(repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{table}"')))
                out[table] = (len(rows), str(hash("\n".join(rows))))
            return out
    finally:
        engine.dispose()


def seeded(url: str) -> None:
    upgrade(to_sync_url(url))

    async def _seed() -> None:
        engine = create_async_engine(to_async_url(url))
        try:
            await seed_demo(create_sessionmaker(engine), dev=True)
        finally:
            await engine.dispose()

    asyncio.run(_seed())


@pytest.fixture(params=SQL_BACKENDS)
def empty_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A source and an empty target database of the same kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/source.db", f"sqlite:///{tmp_path}/target.db"
        return
    base = request.getfixturevalue("postgres_url")
    names = [f"waybill_bk_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    admin = to_sync_url(base).replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        for n in names:
            conn.execute(f'CREATE DATABASE "{n}"')
    try:
        root = admin.rsplit("/", 1)[0]
        yield f"{root}/{names[0]}", f"{root}/{names[1]}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for n in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')


def test_backup_then_restore_into_an_empty_database_round_trips_every_table(
    empty_pair: tuple[str, str], tmp_path: Path
) -> None:
    source, target = empty_pair
    seeded(source)
    before = fingerprint(source)
    assert before["users"][0] >= 5
    assert before["alembic_version"][0] == 1

    result = backup(source, tmp_path / "backups", keep=3)
    assert result.size_bytes > 0
    restore(target, result.path)
    assert fingerprint(target) == before


def test_retention_keeps_the_newest_backups(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    seeded(url)
    folder = tmp_path / "backups"
    made = [backup(url, folder, keep=2, now=datetime(2026, 11, d, tzinfo=UTC)).path for d in (1, 2, 3)]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in made[1:])
    (folder / "unrelated.txt").write_text("kept")
    assert prune(folder, 1) == [made[1]]
    assert (folder / "unrelated.txt").exists()


def test_cli_refuses_a_restore_without_yes_and_a_mismatched_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    seeded(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("WAYBILL_DATA_DIR", str(tmp_path / "data"))
    assert main(["backup"]) == 0
    written = capsys.readouterr().out
    assert "wrote" in written
    path = Path(written.split()[1])
    assert path.parent == tmp_path / "data" / "backups"
    assert main(["restore", str(path)]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["restore", "--yes", str(path)]) == 0
    with pytest.raises(ConfigError, match="PostgreSQL dump"):
        restore(url, _dump(tmp_path))
    with pytest.raises(BackupError, match="pg_restore failed"):
        restore("postgresql://postgres@127.0.0.1:5432/waybill_no_such_db", _dump(tmp_path))


def _dump(tmp_path: Path) -> Path:
    p = tmp_path / "waybill-20261101T000000Z.dump"
    p.write_bytes(b"not a dump")
    return p
