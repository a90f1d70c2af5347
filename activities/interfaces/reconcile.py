"""The delivery reconciler's one step (activities/reconcile.py implements it)."""

from __future__ import annotations

from temporalio import activity

from domain.reconcile import ReconcileInput, ReconcileResult


class ReconcileInterface:
    @activity.defn(name="reconcile_deliveries")
    async def reconcile_deliveries(self, params: ReconcileInput) -> ReconcileResult:
        """Find delivery rows and DeliveryWorkflows out of step and repair what can be (heartbeats)."""
        raise NotImplementedError
