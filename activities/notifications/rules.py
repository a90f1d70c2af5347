"""Which events tell whom on which channel. An organization's rules replace the default per event;
a delivery's preferences narrow the customer's channels (or opt out of everything)."""

from __future__ import annotations

from typing import Any

from domain.notifications import AUDIENCES, CHANNELS, PUBLIC_EVENTS

Rules = dict[str, dict[str, list[str]]]  # {event: {audience: [channel, ...]}}

DEFAULT_RULES: Rules = {
    "created": {"customer": ["email"]},
    "assigned": {"driver": ["in_app"]},
    "out_for_delivery": {"customer": ["email", "sms"]},
    "eta_changed": {"customer": ["email", "sms"]},
    "arrived": {"customer": ["sms"]},
    "delivered": {"customer": ["email"]},
    "failed_attempt": {"customer": ["email", "sms"], "dispatchers": ["in_app", "email"]},
    "returned": {"dispatchers": ["in_app"]},
    "cancelled": {"customer": ["email"], "driver": ["in_app"]},
    "late": {"customer": ["email"], "dispatchers": ["in_app", "email"]},
    "unassigned_too_long": {"dispatchers": ["in_app", "email"]},
}


class RulesError(ValueError):
    pass


def validate_rules(rules: dict[str, Any]) -> Rules:
    """Rules as given by an admin: known events, audiences and channels only."""
    out: Rules = {}
    for event, targets in rules.items():
        if event not in PUBLIC_EVENTS:
            raise RulesError(f"unknown event {event!r} (known: {', '.join(PUBLIC_EVENTS)})")
        if not isinstance(targets, dict):
            raise RulesError(f"{event}: give an object of audience -> channels")
        out[event] = {}
        for audience, channels in targets.items():
            if audience not in AUDIENCES:
                raise RulesError(f"{event}: unknown audience {audience!r} (known: {', '.join(AUDIENCES)})")
            bad = [c for c in channels if c not in CHANNELS]
            if bad:
                raise RulesError(
                    f"{event}.{audience}: unknown channel {bad[0]!r} (known: {', '.join(CHANNELS)})"
                )
            out[event][audience] = sorted(set(channels), key=CHANNELS.index)
    return out


def effective_rules(org_rules: dict[str, Any] | None) -> Rules:
    """The organization's rules over the defaults, event by event."""
    return {**DEFAULT_RULES, **(org_rules or {})}


def channels_for(rules: Rules, event: str, audience: str, allowed: list[str] | None = None) -> list[str]:
    chosen = rules.get(event, {}).get(audience, [])
    return [c for c in chosen if allowed is None or c in allowed]
