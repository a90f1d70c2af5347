"""The layout's rules (docs/architecture.md), checked on the source tree.

import-linter (`lint-imports`, in CI) checks the layers and forbidden imports statically; these tests
add what it cannot see or does not count: what importing a workflow module really loads, cycles, the
size limits, and where SQL may be written.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    *("domain", "plumbing", "db", "activities", "workflows"),
    *("starters", "workers", "api", "tools", "waybill"),
]
SIZED = [*PACKAGES, "bench"]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# What a workflow module (run again in every workflow sandbox) and the domain must never load.
HEAVY = [
    "sqlalchemy",
    "psycopg",
    "aiosqlite",
    "pymongo",
    "redis",
    "httpx",
    "pandas",
    "numpy",
    "matplotlib",
    "ortools",
    "pyvrp",
    "pydantic",
    "pydantic_settings",
    "fastapi",
    "websockets",
]


def _modules(package: str) -> list[str]:
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / package).rglob("*.py")
    )


def _sources(packages: list[str]) -> Iterator[Path]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


PROBE = (
    "import importlib, json, sys\n"
    "before = {m.split('.')[0] for m in sys.modules}\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} - before)))\n"
)


@pytest.mark.parametrize("module", [*_modules("workflows"), *_modules("domain")])
def test_importing_loads_no_heavy_library(module: str) -> None:
    """Each workflow and domain module alone in a fresh interpreter: none of HEAVY gets loaded."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = sorted(set(json.loads(out.stdout)) & set(HEAVY))
    assert loaded == [], f"importing {module} loads {loaded}"


def test_no_import_cycles() -> None:
    graph = grimp.build_graph(*PACKAGES)
    cycles = sorted(
        {
            tuple(sorted((a, b)))
            for a in graph.modules
            for b in graph.find_modules_directly_imported_by(a)
            if graph.chain_exists(importer=b, imported=a)
        }
    )
    assert cycles == [], f"modules on an import cycle (a imports b, and b leads back to a): {cycles}"


def test_module_and_function_sizes() -> None:
    too_long: list[str] = []
    for path in _sources(SIZED):
        source = path.read_text()
        lines = source.count("\n")
        rel = path.relative_to(ROOT)
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{rel}: module of {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - start + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno}: {node.name} has {length} lines")
    assert too_long == [], "over the size limits:\n" + "\n".join(too_long)


# SQLAlchemy's statement builders and raw SQL: only db/ writes them.
STATEMENT_BUILDERS = {"select", "insert", "update", "delete", "text", "func", "and_", "or_", "case", "exists"}
SQL_TEXT = re.compile(r"^\s*(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b", re.I | re.S)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_sql_only_in_db() -> None:
    found: list[str] = []
    outside = [p for p in PACKAGES if p != "db"]
    for path in _sources(outside):
        tree = ast.parse(path.read_text())
        docstrings = _docstring_nodes(tree)
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                built = sorted({a.name for a in node.names} & STATEMENT_BUILDERS)
                if built or (node.module or "").startswith(("sqlalchemy.sql", "sqlalchemy.dialects")):
                    found.append(f"{rel}:{node.lineno}: from {node.module} import {', '.join(built)}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) not in docstrings and SQL_TEXT.match(node.value):
                    found.append(f"{rel}:{node.lineno}: SQL text {node.value[:40]!r}")
    assert found == [], "SQL outside db/:\n" + "\n".join(found)


def test_routers_import_no_sqlalchemy_or_models() -> None:
    found: list[str] = []
    for path in sorted((ROOT / "api" / "v1").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                if name.split(".")[0] == "sqlalchemy" or name == "db.models" or name.startswith("db.models."):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {name}")
    assert found == [], "routers must go through api/services and db/repositories:\n" + "\n".join(found)
