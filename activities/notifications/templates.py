"""Message templates per event and locale. `{placeholders}` are filled from the delivery's data;
an unknown placeholder renders empty rather than failing a send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_LOCALE = "en"


@dataclass(frozen=True)
class Template:
    subject: str
    text: str  # e-mail body, SMS text and in-app body alike


_EN: dict[str, Template] = {
    "created": Template(
        "Delivery {ref} received", "We have your delivery {ref} to {address}. Track it: {tracking_url}"
    ),
    "assigned": Template(
        "Delivery {ref} assigned", "Delivery {ref} to {address} has been assigned to a driver."
    ),
    "out_for_delivery": Template(
        "Delivery {ref} is on its way",
        "Your delivery {ref} is on its way, expected {eta}. Track it live: {tracking_url}",
    ),
    "eta_changed": Template(
        "Delivery {ref}: new arrival time",
        "Your delivery {ref} is now expected {eta}. Track it: {tracking_url}",
    ),
    "arrived": Template(
        "Delivery {ref} has arrived", "Your driver has arrived at {address} with delivery {ref}."
    ),
    "delivered": Template(
        "Delivery {ref} delivered", "Delivery {ref} was delivered to {address}. Received by {recipient_name}."
    ),
    "failed_attempt": Template(
        "Delivery {ref}: we could not deliver",
        "We could not deliver {ref} to {address} ({reason}). We will try again.",
    ),
    "returned": Template(
        "Delivery {ref} returned", "Delivery {ref} goes back to the depot after {attempts} attempts."
    ),
    "cancelled": Template("Delivery {ref} cancelled", "Delivery {ref} to {address} was cancelled: {reason}."),
    "late": Template("Delivery {ref} is late", "Delivery {ref} missed its promised window ({promised_by})."),
    "unassigned_too_long": Template(
        "Delivery {ref} still unassigned", "Delivery {ref} has waited for a driver since {pending_since}."
    ),
    "webhook_disabled": Template(
        "Webhook endpoint disabled",
        "The webhook endpoint {url} failed for too long and was disabled: {reason}",
    ),
}

_DE: dict[str, Template] = {
    "created": Template(
        "Lieferung {ref} erhalten", "Wir haben Ihre Lieferung {ref} an {address}. Verfolgen: {tracking_url}"
    ),
    "assigned": Template(
        "Lieferung {ref} zugeteilt", "Lieferung {ref} an {address} wurde einem Fahrer zugeteilt."
    ),
    "out_for_delivery": Template(
        "Lieferung {ref} ist unterwegs",
        "Ihre Lieferung {ref} ist unterwegs, erwartet {eta}. Live verfolgen: {tracking_url}",
    ),
    "eta_changed": Template(
        "Lieferung {ref}: neue Ankunftszeit", "Ihre Lieferung {ref} wird jetzt {eta} erwartet. {tracking_url}"
    ),
    "arrived": Template(
        "Lieferung {ref} ist da", "Ihr Fahrer ist mit Lieferung {ref} an {address} angekommen."
    ),
    "delivered": Template(
        "Lieferung {ref} zugestellt",
        "Lieferung {ref} wurde an {address} zugestellt. Empfangen von {recipient_name}.",
    ),
    "failed_attempt": Template(
        "Lieferung {ref}: Zustellung nicht möglich",
        "Lieferung {ref} an {address} konnte nicht zugestellt werden ({reason}). Wir versuchen es erneut.",
    ),
    "returned": Template(
        "Lieferung {ref} zurück", "Lieferung {ref} geht nach {attempts} Versuchen zurück ins Depot."
    ),
    "cancelled": Template(
        "Lieferung {ref} storniert", "Lieferung {ref} an {address} wurde storniert: {reason}."
    ),
    "late": Template(
        "Lieferung {ref} verspätet", "Lieferung {ref} hat ihr Zeitfenster verpasst ({promised_by})."
    ),
    "unassigned_too_long": Template(
        "Lieferung {ref} nicht zugeteilt", "Lieferung {ref} wartet seit {pending_since} auf einen Fahrer."
    ),
    "webhook_disabled": Template(
        "Webhook-Endpunkt deaktiviert",
        "Der Webhook-Endpunkt {url} schlug zu lange fehl und wurde deaktiviert: {reason}",
    ),
}

TEMPLATES: dict[str, dict[str, Template]] = {"en": _EN, "de": _DE}
LOCALES: tuple[str, ...] = tuple(TEMPLATES)


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def render(event: str, locale: str, values: dict[str, Any]) -> Template:
    """The event's template in `locale` (English when the locale or event has none), filled in."""
    table = TEMPLATES.get(locale) or TEMPLATES[DEFAULT_LOCALE]
    template = table.get(event) or _EN[event]
    filled = _Blank({k: "" if v is None else v for k, v in values.items()})
    return Template(template.subject.format_map(filled), template.text.format_map(filled))
