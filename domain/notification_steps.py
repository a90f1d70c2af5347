"""Inputs of the NotificationWorkflow's bookkeeping steps (activities/interfaces/notifications.py)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.notifications import Send


@dataclass(frozen=True)
class SendFailure:
    send: Send
    reason: str = ""


@dataclass(frozen=True)
class DisabledAlert:
    subscription_id: str
