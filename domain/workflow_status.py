"""How a workflow run stands, as the client sees it (Temporal's execution statuses), for code that
must not import Temporal's client (the reconciler, activities/reconcile.py)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    TERMINATED = "terminated"
    CONTINUED_AS_NEW = "continued_as_new"
    TIMED_OUT = "timed_out"
