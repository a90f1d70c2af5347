"""Webhook connections only to addresses the egress policy (domain/egress.py) allows.

The HTTP client's network backend resolves the URL's host once, refuses the connection if any
address it got is forbidden, and connects to the addresses it checked: no second lookup that DNS
rebinding could answer differently. TLS (SNI and certificate) and the Host header still use the
URL's name, since only the TCP connect is pinned. Redirects are not followed, and environment
proxies are not used (a proxy would make the connection the policy cannot see).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

import httpcore
import httpx

from domain.egress import EgressPolicy, literal_address
from plumbing.settings import Environment, Settings


class EgressRefused(Exception):
    """The policy refused the URL or an address its host resolved to; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def egress_policy(settings: Settings) -> EgressPolicy:
    return EgressPolicy.parse(
        settings.webhook_allowed_hosts, require_https=settings.env is Environment.PRODUCTION
    )


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, in the resolver's order (tests replace this: DNS is not local)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in await self.checked_addresses(host, port, timeout):
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def checked_addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        """Every address `host` stands for, each allowed by the policy, or EgressRefused."""
        refusal = self._policy.host_refusal(host)
        if refusal:
            raise EgressRefused(refusal)
        literal = None if self._policy.trusts_name(host) else literal_address(host)
        if literal is not None:
            return [str(literal)]
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:  # socket.gaierror: no such name, resolver down
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        if not self._policy.trusts_name(host):
            # Every address, not only the first: the connection may go to any of them.
            for address in addresses:
                try:
                    ip = ipaddress.ip_address(address)
                except ValueError:
                    raise EgressRefused(f"{host} resolved to {address!r}, which is not an address") from None
                refusal = self._policy.address_refusal(ip, host)
                if refusal:
                    raise EgressRefused(refusal)
        return addresses

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(trust_env=False)
        # httpx has no option for the network backend: its pool is where every connection starts.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedBackend(policy),
        )


def webhook_client(settings: Settings) -> httpx.AsyncClient:
    """A client that refuses (EgressRefused) to connect where the policy forbids, never redirects."""
    return httpx.AsyncClient(
        transport=_GuardedTransport(egress_policy(settings)),
        timeout=settings.webhook_timeout_seconds,
        follow_redirects=False,
        trust_env=False,
    )
