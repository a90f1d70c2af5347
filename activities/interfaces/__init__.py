"""What workflows know of activities: each activity's name and signature (a stub class per capability,
importing only temporalio and domain/). The implementations in the sibling packages subclass the stubs
and register under the same names (`@implements(Stub.method)`); tests/unit/test_activity_interfaces.py
keeps the two in step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity

F = TypeVar("F", bound=Callable[..., Any])


def implements(stub: Callable[..., Any]) -> Callable[[F], F]:
    """Decorate an implementation as the activity `stub` declares: the name is written once, on the stub."""
    # temporalio keeps a callable's activity definition on a private attribute; this reads it back.
    name = activity._Definition.must_from_callable(stub).name
    return activity.defn(name=name)
