"""Signatures, templates, rules and CSV rows: the pure parts of notifications and integrations."""

from __future__ import annotations

import pytest

from activities.notifications.rules import (
    DEFAULT_RULES,
    RulesError,
    channels_for,
    effective_rules,
    validate_rules,
)
from activities.notifications.signing import sign, verify
from activities.notifications.templates import LOCALES, TEMPLATES, render
from api.services.delivery_import import ImportFileError, parse_csv, row_body
from domain.notifications import PUBLIC_EVENTS


def test_signature_verifies_and_rejects_tampering_and_stale_timestamps() -> None:
    body = b'{"id":"delivery-1:1"}'
    header = sign("s3cret", body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify("s3cret", body, header, now=1_700_000_100)
    assert not verify("s3cret", body + b" ", header, now=1_700_000_100)
    assert not verify("other", body, header, now=1_700_000_100)
    assert not verify("s3cret", body, header, now=1_700_000_000 + 301)
    assert not verify("s3cret", body, "garbage", now=1_700_000_000)


def test_every_event_has_a_template_in_every_locale() -> None:
    for locale in LOCALES:
        assert set(PUBLIC_EVENTS) <= set(TEMPLATES[locale])
    text = render("out_for_delivery", "de", {"ref": "R1", "eta": "12:00", "tracking_url": "https://t/1"})
    assert text.subject == "Lieferung R1 ist unterwegs"
    assert "https://t/1" in text.text
    fallback = render("delivered", "fr", {"ref": "R2"})  # unknown locale: English; missing value: blank
    assert fallback.text == "Delivery R2 was delivered to . Received by ."


def test_rules_are_validated_and_override_the_defaults_per_event() -> None:
    assert set(DEFAULT_RULES) == set(PUBLIC_EVENTS)
    rules = effective_rules(validate_rules({"arrived": {"customer": ["sms", "email", "sms"]}}))
    assert rules["arrived"] == {"customer": ["email", "sms"]}
    assert rules["delivered"] == DEFAULT_RULES["delivered"]
    assert channels_for(rules, "arrived", "customer", ["sms"]) == ["sms"]
    for bad in ({"nope": {}}, {"late": {"boss": ["email"]}}, {"late": {"customer": ["fax"]}}):
        with pytest.raises(RulesError):
            validate_rules(bad)


def test_csv_rows_become_delivery_bodies() -> None:
    rows = parse_csv("external_ref,address,lat,lon,units\nR1,Main St 1,52.5,13.4,3\n,,,,\n", 10)
    assert [line for line, _ in rows] == [2]  # blank lines are skipped
    body = row_body(rows[0][1])
    assert body["external_ref"] == "R1"
    assert body["dropoff"]["location"] == {"lat": "52.5", "lon": "13.4"}
    assert body["size"] == {"units": "3"}
    with pytest.raises(ImportFileError, match="lacks the column"):
        parse_csv("external_ref,address\n", 10)
    with pytest.raises(ImportFileError, match="more than 1 rows"):
        parse_csv("external_ref,address,lat,lon\nA,x,1,1\nB,y,1,1\n", 1)
