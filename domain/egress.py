"""Which outbound URLs and addresses a tenant may make Waybill call (webhooks): the address policy.

Pure and stdlib-only: the API checks a URL with it at registration, the webhook activity checks it
again and checks every address a name resolves to just before connecting (activities/notifications/
egress.py). Refused: loopback, link-local (cloud metadata), private, shared (CGNAT), multicast,
unspecified and reserved addresses, IPv4 inside IPv6 (mapped, NAT64, 6to4) when the IPv4 address is
one of those, numeric hosts in any form (`2130706433`, `0x7f.1`, `0177.0.0.1`) and local names
(`localhost`, single-label service names, `.local`, `.internal`), unless the operator's allowlist
names the host or a network containing the address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWLIST_SETTING = "WAYBILL_WEBHOOK_ALLOWED_HOSTS"
_HINT = f"an operator can allow it in {ALLOWLIST_SETTING}"


def _blocks(*rows: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), kind) for net, kind in rows)


# IANA special-purpose registries; listed rather than left to ipaddress.is_global, whose answers
# differ between Python patch releases (e.g. 192.0.0.0/24). is_global still backs them up.
_V4_BLOCKS = _blocks(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared, carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local, where cloud metadata lives"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved for IETF protocol assignments"),
    ("192.0.2.0/24", "reserved for documentation"),
    ("192.88.99.0/24", "reserved, 6to4 relay"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved for benchmarking"),
    ("198.51.100.0/24", "reserved for documentation"),
    ("203.0.113.0/24", "reserved for documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # with the broadcast address 255.255.255.255
)
_V6_BLOCKS = _blocks(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/8", "reserved, IPv4-compatible and other special addresses"),
    ("64:ff9b:1::/48", "private, local-use NAT64"),
    ("100::/64", "reserved, discard-only"),
    ("2001:db8::/32", "reserved for documentation"),
    ("2001::/23", "reserved for IETF protocol assignments and Teredo"),
    ("3fff::/20", "reserved for documentation"),
    ("fc00::/7", "private, unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private, site-local"),
    ("ff00::/8", "multicast"),
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# Names that never mean a public receiver: loopback names, mDNS, private-use and home TLDs.
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class EgressError(ValueError):
    """A host or allowlist entry that cannot be read (the message says which)."""


def normalize_host(host: str) -> str:
    """Lower case, without brackets or one trailing dot: the form the policy compares."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host[:-1] if host.endswith(".") else host


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address:
    """inet_aton's forms, which resolvers accept: 1 to 4 parts, each decimal, octal (leading 0)
    or hex (0x); the last part fills the remaining bytes (`127.1`, `2130706433`, `0x7f.1`)."""
    parts = host.split(".")
    if len(parts) > 4:
        raise EgressError(f"{host} is not a valid IPv4 address")
    values = []
    for part in parts:
        if part.startswith("0x"):
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                raise EgressError(f"{host} is not a valid IPv4 address")
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise EgressError(f"{host} is not a valid IPv4 address")
    number = last
    for i, v in enumerate(head):
        number += v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any form a resolver accepts; None for a name.
    A host whose last label is numeric is an address (as in the WHATWG URL standard): one that does
    not parse raises EgressError rather than being looked up as a name."""
    host = normalize_host(host)
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise EgressError(f"{host} is not a valid IPv6 address") from None
    labels = host.split(".")
    if not _NUMERIC_LABEL.match(labels[-1]):
        return None
    if not all(_NUMERIC_LABEL.match(label) for label in labels):
        raise EgressError(f"{host} is neither a host name nor a valid IPv4 address")
    return _legacy_ipv4(host)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def address_kind(address: IPAddress) -> str | None:
    """Why an address is not a public receiver's (e.g. "loopback"), or None if it may be called."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            kind = address_kind(inner)
            return f"{kind}, IPv4 {inner} inside IPv6" if kind else None
        blocks, outside = _V6_BLOCKS, address not in _GLOBAL_UNICAST_V6
    else:
        blocks, outside = _V4_BLOCKS, False
    for network, kind in blocks:
        if address in network:
            return kind
    if outside:
        return "reserved, outside global unicast"
    return None if address.is_global else "not globally routable"


def _name_kind(host: str) -> str | None:
    if host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES):
        return "a local name"
    if "." not in host:
        return "a single-label name, as internal services have"
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """The allowlist (host names compared exactly, networks containing addresses) and whether
    plain http is refused (production)."""

    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    require_https: bool = False

    @classmethod
    def parse(cls, entries: Iterable[str], *, require_https: bool = False) -> EgressPolicy:
        """Entries are host names, addresses or CIDR networks (`10.1.2.0/24`, `::1`)."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = normalize_host(raw)
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or not re.fullmatch(r"[a-z0-9_.-]+", entry):
                raise EgressError(f"{raw!r} is neither a host name nor an address or CIDR network")
            names.add(entry)
        return cls(frozenset(names), tuple(networks), require_https)

    def trusts_name(self, host: str) -> bool:
        return normalize_host(host) in self.allowed_names

    def address_refusal(self, address: IPAddress, via: str = "") -> str | None:
        """None if the address may be called; else the reason (`via`: the name that resolved to it)."""
        kind = self._forbidden_kind(address)
        if kind is None:
            return None
        subject = f"{via} resolves to {address}, which" if via else str(address)
        return f"{subject} is a forbidden address ({kind}); {_HINT}"

    def _forbidden_kind(self, address: IPAddress) -> str | None:
        inner = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
        if any(address in net or (inner is not None and inner in net) for net in self.allowed_networks):
            return None
        return address_kind(address)

    def host_refusal(self, host: str) -> str | None:
        """The check that needs no resolver: an allowed name, a literal address, a local name."""
        host = normalize_host(host)
        if not host:
            return "the URL has no host"
        if host in self.allowed_names:
            return None
        try:
            address = literal_address(host)
        except EgressError as exc:
            return f"{exc}; numeric hosts must be plain IPv4 or IPv6 addresses"
        if address is not None:
            shown = host if host == str(address) else f"{host} ({address})"  # e.g. 2130706433
            kind = self._forbidden_kind(address)
            return f"{shown} is a forbidden address ({kind}); {_HINT}" if kind else None
        kind = _name_kind(host)
        return f"{host} is a forbidden host name ({kind}); {_HINT}" if kind else None

    def url_refusal(self, url: str) -> str | None:
        """None if `url` may be registered and called (its name still checked once resolved)."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises for a port out of range
        except ValueError as exc:
            return f"the URL cannot be read: {exc}"
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            return "only http and https URLs can receive webhooks"
        if self.require_https and scheme != "https":
            return "https is required in production (WAYBILL_ENV=production)"
        return self.host_refusal(parts.hostname or "")
