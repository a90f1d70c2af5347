"""The webhook address policy (domain/egress.py): what a tenant's URL may point at, in every form a
resolver or URL parser would accept, and what the operator's allowlist lets through."""

from __future__ import annotations

import ipaddress

import pytest

from activities.notifications.egress import egress_policy
from domain.egress import EgressPolicy, address_kind, literal_address
from plumbing.settings import Environment, Settings
from tests.support import test_settings

STRICT = EgressPolicy()

FORBIDDEN = [
    ("http://127.0.0.1:7233/", "loopback"),
    ("http://127.9.9.9/", "loopback"),
    ("http://[::1]:6379/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.0.0.1/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://192.0.0.8/", "reserved"),
    ("http://198.18.0.1/", "reserved"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[fd12:3456::1]/", "private"),
    ("http://[2001:db8::1]/", "reserved"),
    # IPv4 inside IPv6: mapped, NAT64, 6to4, IPv4-compatible
    ("http://[::ffff:127.0.0.1]/", "loopback, IPv4 127.0.0.1 inside IPv6"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
    ("http://[2002:a00:1::]/", "private, IPv4 10.0.0.1"),
    ("http://[::127.0.0.1]/", "reserved"),
    # numeric forms resolvers accept (inet_aton)
    ("http://2130706433/", "2130706433 (127.0.0.1)"),
    ("http://0x7f.1/", "0x7f.1 (127.0.0.1)"),
    ("http://0x7f000001/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://0/", "unspecified"),
    ("http://08.0.0.1/", "not a valid IPv4 address"),
    ("http://1.2.3.4.5/", "not a valid IPv4 address"),
    ("http://256.1.1.1/", "not a valid IPv4 address"),
    ("http://example.0x10/", "neither a host name nor a valid IPv4 address"),
    # names
    ("http://localhost:8000/", "a local name"),
    ("http://LocalHost./", "a local name"),
    ("http://api.localhost/", "a local name"),
    ("http://metadata.google.internal/computeMetadata/v1/", "a local name"),
    ("http://printer.local/", "a local name"),
    ("http://redis:6379/", "single-label"),
    ("http://temporal:7233/", "single-label"),
    # not a URL a webhook may have
    ("ftp://example.com/", "only http and https"),
    ("http:///path", "no host"),
    ("http://example.com:99999/", "cannot be read"),
]


@pytest.mark.parametrize(("url", "why"), FORBIDDEN)
def test_forbidden_urls_are_refused_with_a_reason(url: str, why: str) -> None:
    refusal = STRICT.url_refusal(url)
    assert refusal is not None, url
    assert why in refusal


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example/hooks/waybill",
        "http://hooks.example.com:8080/x",
        "http://93.184.215.14/",
        "http://[2606:4700:4700::1111]/",
        "http://[::ffff:8.8.8.8]/",  # a mapped public address is the public address
        "http://[2002:808:808::]/",  # 6to4 of a public address
        "https://xn--bcher-kva.example/",
    ],
)
def test_public_urls_pass(url: str) -> None:
    assert STRICT.url_refusal(url) is None


def test_literal_forms_parse_like_inet_aton() -> None:
    loopback = ipaddress.IPv4Address("127.0.0.1")
    for host in ("2130706433", "0x7f.1", "0x7F.0.0.1", "0177.0.0.1", "127.1", "127.0.1", "[::1]"):
        assert literal_address(host) in (loopback, ipaddress.IPv6Address("::1")), host
    assert literal_address("1.2.3") == ipaddress.IPv4Address("1.2.0.3")
    assert literal_address("shop.example") is None


def test_every_address_kind_has_a_name() -> None:
    assert address_kind(ipaddress.ip_address("8.8.8.8")) is None
    assert address_kind(ipaddress.ip_address("169.254.169.254")) == "link-local, where cloud metadata lives"
    assert address_kind(ipaddress.ip_address("4000::1")) == "reserved, outside global unicast"


def test_allowlist_names_hosts_addresses_and_networks() -> None:
    policy = EgressPolicy.parse(["127.0.0.1", "10.20.0.0/16", "Hooks.Corp.Example.", "fd00::/8", " "])
    assert policy.url_refusal("http://127.0.0.1:9/") is None
    assert policy.url_refusal("http://[::ffff:127.0.0.1]/") is None  # the same IPv4 address
    assert policy.url_refusal("http://10.20.3.4/") is None
    assert policy.url_refusal("http://hooks.corp.example/h") is None
    assert policy.url_refusal("http://[fd00::5]/") is None
    # Only what is named: the rest of loopback, other private ranges, other local names.
    for url in ("http://127.0.0.2/", "http://10.21.0.1/", "http://localhost/", "http://[::1]/"):
        assert policy.url_refusal(url) is not None, url
    assert policy.trusts_name("HOOKS.corp.example")
    assert not policy.trusts_name("corp.example")


@pytest.mark.parametrize("entry", ["http://hooks.example/", "10.0.0.0/33", "a b", "::1/200"])
def test_unreadable_allowlist_entries_are_refused_at_start(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor an address"):
        test_settings(webhook_allowed_hosts=entry)


def test_allowlist_setting_is_comma_separated() -> None:
    settings = Settings(webhook_allowed_hosts="127.0.0.1, hooks.corp.example,10.0.0.0/8")
    policy = egress_policy(settings)
    assert policy.allowed_names == {"hooks.corp.example"}
    assert [str(n) for n in policy.allowed_networks] == ["127.0.0.1/32", "10.0.0.0/8"]
    assert egress_policy(test_settings()).allowed_networks == ()  # empty by default


def test_production_requires_https() -> None:
    prod = EgressPolicy(require_https=True)
    assert "https is required" in (prod.url_refusal("http://shop.example/h") or "")
    assert prod.url_refusal("https://shop.example/h") is None
    assert not egress_policy(test_settings()).require_https
    assert egress_policy(test_settings().model_copy(update={"env": Environment.PRODUCTION})).require_https
