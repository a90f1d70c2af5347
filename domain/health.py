"""Input and result of the system-check workflow (proves client → Temporal → worker → stores)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class SystemCheckInput:
    requested_by: str = "unknown"


@dataclass(frozen=True)
class StoreCheck:
    name: str
    ok: bool
    backend: str
    detail: str = ""


@dataclass(frozen=True)
class SystemCheckResult:
    checked_at: datetime
    worker_identity: str
    stores: list[StoreCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.stores)
