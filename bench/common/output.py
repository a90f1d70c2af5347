"""Console lines and the marked blocks of docs/benchmarks.md that each benchmark rewrites."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS_PATH = REPO / "docs" / "benchmarks.md"


def say(message: str = "") -> None:
    """One line on stdout, flushed at once (the parent of a child benchmark reads it as it comes)."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def fmt(value: float, digits: int = 1) -> str:
    """A figure with thousands separators; "n/a" for NaN."""
    return "n/a" if value != value else f"{value:,.{digits}f}"  # NaN check


def replace_block(doc: str, begin: str, end: str, content: str, after: str | None = None) -> str:
    """`doc` with the block between the `begin` and `end` markers set to `content`.

    A missing block goes right after the marker `after` when `doc` has it, else at the end."""
    block = f"{begin}\n{content.rstrip()}\n{end}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(doc):
        return pattern.sub(lambda _: block, doc, count=1)
    if after is not None:
        index = doc.find(after)
        if index >= 0:
            index += len(after) + 1
            return doc[:index] + "\n" + block + doc[index:]
    return doc.rstrip() + "\n\n" + block


def write_block(path: Path, begin: str, end: str, content: str, empty: str = "# Benchmarks\n") -> None:
    """Rewrite one marked block of `path` (read right before writing: other benchmarks edit it too);
    everything else in the file stays. A missing file starts as `empty`."""
    doc = path.read_text() if path.exists() else empty
    path.write_text(replace_block(doc, begin, end, content))
