"""The fault suite's processes (one set per session) and its summary table.

Run alone with `pytest -m faults` (needs TEST_DATABASE_URL and REDIS_URL, like CI)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.faults.report import RESULTS
from tests.faults.stack import Stack


@pytest.fixture(scope="session")
async def stack(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    s = Stack(postgres_url, tmp_path_factory.mktemp("faults"))
    try:
        await s.start()
        yield s
    finally:
        await s.close()


@pytest.fixture
async def up(stack: Stack) -> Stack:
    """The stack with every process running, whatever the scenario before left behind."""
    await stack.ensure_up()
    return stack


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault scenarios")
    for figures in RESULTS:
        terminalreporter.write_line(figures.line())
