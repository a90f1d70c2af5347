"""The workflow sandbox's re-imports reuse compiled code, yet each import runs the module afresh."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

from workers import code_cache


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cachedpkg_for_test"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "mod.py").write_text("STATE = []\nSTATE.append(1)\nVALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [n for n in sys.modules if n.split(".")[0] == "cachedpkg_for_test"]:
        del sys.modules[name]


def fresh_import(name: str) -> object:
    for loaded in [n for n in sys.modules if n.split(".")[0] == name.split(".")[0]]:
        del sys.modules[loaded]
    return importlib.import_module(name)


def test_reimports_share_code_but_not_module_state(package: Path) -> None:
    code_cache.install(["cachedpkg_for_test.mod"])
    first = fresh_import("cachedpkg_for_test.mod")
    kept = code_cache.cached_modules()
    second = fresh_import("cachedpkg_for_test.mod")
    assert code_cache.cached_modules() == kept  # nothing compiled again
    assert first is not second
    assert first.STATE == [1]  # type: ignore[attr-defined]
    assert second.STATE == [1]  # type: ignore[attr-defined]
    assert first.STATE is not second.STATE  # type: ignore[attr-defined]
    assert type(second.__spec__.loader).__name__ == "_CachingSourceLoader"  # type: ignore[attr-defined]


def test_an_edited_module_is_compiled_again(package: Path) -> None:
    code_cache.install(["cachedpkg_for_test"])
    assert fresh_import("cachedpkg_for_test.mod").VALUE == 1  # type: ignore[attr-defined]
    path = package / "mod.py"
    path.write_text("STATE = []\nVALUE = 22\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert fresh_import("cachedpkg_for_test.mod").VALUE == 22  # type: ignore[attr-defined]


def test_other_modules_are_left_to_python() -> None:
    finder = code_cache.WorkflowCodeFinder({"workflows"})
    assert finder.find_spec("json", None) is None
    assert finder.find_spec("workflowsx", None) is None
    spec = finder.find_spec("workflows", None)
    assert spec is not None
    assert type(spec.loader).__name__ == "_CachingSourceLoader"


def test_install_is_idempotent() -> None:
    before = sum(isinstance(f, code_cache.WorkflowCodeFinder) for f in sys.meta_path)
    code_cache.install(["workflows.delivery", "workflows.route"])
    code_cache.install(["workflows.notifications"])
    after = sum(isinstance(f, code_cache.WorkflowCodeFinder) for f in sys.meta_path)
    assert after - before <= 1
