"""Workflows call activities through the stubs in activities/interfaces/; the workers register the
implementations. Each side must name and type every activity the same way, or a workflow schedules an
activity no worker runs (or decodes its result into the wrong type)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio import activity

import activities.interfaces
from activities.routing.optimize import RoutingActivities
from plumbing.temporal import TemporalConnector
from tests.support import test_settings
from workers.compose import QUEUE_NAMES, plan_queues


def _definition(fn: Callable[..., Any]) -> Any:
    return activity._Definition.must_from_callable(fn)


def _stubs() -> dict[str, tuple[type, Callable[..., Any]]]:
    """Activity name -> (stub class, stub method), from every module of activities/interfaces/."""
    found: dict[str, tuple[type, Callable[..., Any]]] = {}
    for info in pkgutil.iter_modules(activities.interfaces.__path__):
        module = importlib.import_module(f"activities.interfaces.{info.name}")
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            for method in vars(cls).values():
                if activity._Definition.from_callable(method) is not None:
                    name = _definition(method).name
                    assert name not in found, f"two stubs declare {name}"
                    found[name] = (cls, method)
    return found


@pytest.fixture(scope="module")
def registered() -> Iterator[dict[str, Callable[..., Any]]]:
    """Activity name -> the bound method workers/compose.py registers, on every task queue."""
    settings = test_settings()
    resources = SimpleNamespace(
        settings=settings,
        sessionmaker=None,
        cache_bus=None,
        history=None,
        temporal=TemporalConnector(settings),
    )
    plans = plan_queues(resources, QUEUE_NAMES)  # type: ignore[arg-type]
    out: dict[str, Callable[..., Any]] = {}
    for plan in plans.values():
        for fn in plan.activities:
            name = _definition(fn).name
            assert name not in out, f"{name} is registered twice"
            out[name] = fn
    yield out
    for fn in out.values():
        if isinstance(getattr(fn, "__self__", None), RoutingActivities):
            fn.__self__.close()


def test_every_stub_is_registered_and_every_registered_activity_has_a_stub(
    registered: dict[str, Callable[..., Any]],
) -> None:
    stubs = _stubs()
    assert sorted(stubs) == sorted(registered)


def test_implementations_match_their_stubs(registered: dict[str, Callable[..., Any]]) -> None:
    for name, (cls, stub) in _stubs().items():
        impl = registered[name]
        owner = getattr(impl, "__self__", None)
        assert isinstance(owner, cls), f"{name}: {type(owner).__name__} does not subclass {cls.__name__}"
        want, got = _definition(stub), _definition(impl)
        assert (got.arg_types, got.ret_type) == (want.arg_types, want.ret_type), name
        assert got.is_async == want.is_async, name
