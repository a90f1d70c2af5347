"""Compiled code of workflow modules, kept in memory for the workflow sandbox.

The sandbox imports a workflow's module afresh for every workflow run it starts (and for every
replay after an eviction): that is how it isolates module state between runs. Python executes the
module body each time, as it must, but first it gets the module's code: from `__pycache__` when a
`.pyc` is there, otherwise by compiling the source. With `PYTHONDONTWRITEBYTECODE=1` (our Docker
image, many CI and dev shells) and an editable install, no `.pyc` is ever written, so every new
DeliveryWorkflow compiled `workflows/delivery.py` again: about 8 ms of CPU, and 1.5 ms more for
its NotificationWorkflow, a third of what a worker spent starting a delivery's two workflows.

`install()` puts a finder in front of the normal ones for the given packages only. It finds
modules exactly as Python does and hands out a loader that keeps each module's code object,
keyed like a `.pyc` by source path, modification time and size: an edited file is compiled again.
Code objects are immutable, so sharing one between sandboxes shares nothing mutable; each import
still executes the module body in a new module, so the sandbox's isolation is unchanged.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Iterable, Sequence
from types import CodeType
from typing import Any

_lock = threading.Lock()
_codes: dict[tuple[str, float, int], CodeType] = {}


class _CachingSourceLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType | None:
        stats = self.path_stats(self.path)
        key = (self.path, float(stats["mtime"]), int(stats.get("size", -1)))
        code = _codes.get(key)
        if code is None:
            code = super().get_code(fullname)
            if code is not None:
                with _lock:
                    _codes[key] = code
        return code


class WorkflowCodeFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of `packages` (and their submodules) with a code-caching loader."""

    def __init__(self, packages: Iterable[str]) -> None:
        self.packages = frozenset(packages)

    def _covers(self, fullname: str) -> bool:
        return any(fullname == p or fullname.startswith(p + ".") for p in self.packages)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not self._covers(fullname):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            loader = _CachingSourceLoader(spec.loader.name, spec.loader.path)
            spec.loader = loader
        return spec


def install(packages: Iterable[str]) -> None:
    """Cache the compiled code of `packages` from now on in this process (idempotent)."""
    wanted = {p.split(".", 1)[0] for p in packages if p and p != "__main__"}
    with _lock:
        for finder in sys.meta_path:
            if isinstance(finder, WorkflowCodeFinder):
                wanted -= finder.packages
        if wanted:
            sys.meta_path.insert(0, WorkflowCodeFinder(wanted))


def cached_modules() -> int:
    """How many compiled modules are kept (for tests)."""
    return len(_codes)
