"""The recording steps of a delivery transition (activities/deliveries.py implements them)."""

from __future__ import annotations

from temporalio import activity

from domain.delivery import Transition


class DeliveryInterface:
    @activity.defn(name="project_delivery")
    async def project_delivery(self, t: Transition) -> None:
        """Write the transition's state to the delivery's row (only ever forward)."""
        raise NotImplementedError

    @activity.defn(name="append_delivery_event")
    async def append_delivery_event(self, t: Transition) -> None:
        """Append the transition to the delivery's event log (unique on workflow id and sequence)."""
        raise NotImplementedError

    @activity.defn(name="publish_delivery_change")
    async def publish_delivery_change(self, t: Transition) -> None:
        """Publish the change on the organization's, the delivery's and the vehicle's channels."""
        raise NotImplementedError

    @activity.defn(name="notify")
    async def notify(self, t: Transition) -> None:
        """Record the event in the outbox and hand it to the delivery's NotificationWorkflow."""
        raise NotImplementedError
