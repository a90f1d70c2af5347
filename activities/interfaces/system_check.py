"""The store check (activities/system_check.py implements it)."""

from __future__ import annotations

from temporalio import activity

from domain.health import SystemCheckInput, SystemCheckResult


class SystemCheckInterface:
    @activity.defn(name="check_stores")
    async def check_stores(self, params: SystemCheckInput) -> SystemCheckResult:
        """Ping each store from the worker's side."""
        raise NotImplementedError
