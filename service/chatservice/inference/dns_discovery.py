"""Endpoints discovered from DNS: a headless Service's name resolves to its pods' addresses.

Each worker resolves the A and AAAA records of every `discovery: dns` entry's host once per
`dns_refresh_interval`, each resolution bounded by `dns_timeout`, and makes every address an
endpoint of the route (the entry's weight, key and cap each). A resolution that fails or
finds no address keeps the endpoints last found: a DNS outage, or a scale to zero seen
before the pods are gone, must not empty a route that may still have servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import dns.asyncresolver
import dns.exception
import dns.resolver

from chatservice.config import Settings
from chatservice.inference.endpoint_pool import EndpointPool
from chatservice.kit.periodic import repeating
from chatservice.observability import metrics

log = logging.getLogger(__name__)

RECORD_TYPES = ("A", "AAAA")
# Answers that mean "no address of this type", as opposed to "no answer at all".
_NO_ADDRESS = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)


@dataclass(frozen=True, slots=True)
class DiscoveredEntry:
    """One `discovery: dns` entry of a route: the name to resolve and how to address a pod."""

    pool: EndpointPool
    ordinal: int
    url: SplitResult

    @property
    def name(self) -> str:
        return self.url.hostname or ""

    @property
    def port(self) -> int:
        return self.url.port or (443 if self.url.scheme == "https" else 80)

    @property
    def host_header(self) -> str:
        # What a client that connected by name would send: virtual hosts and logs upstream
        # see the same request as without discovery.
        return self.url.netloc.rsplit("@", 1)[-1]

    def address_url(self, address: str) -> str:
        host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
        return self.url._replace(netloc=f"{host}:{self.port}").geturl().rstrip("/")


def discovered_entries(pools: Iterable[EndpointPool]) -> list[DiscoveredEntry]:
    return [
        DiscoveredEntry(pool, ordinal, urlsplit(entry.base_url))
        for pool in pools
        for ordinal, entry in enumerate(pool.entries)
        if entry.discovery == "dns"
    ]


def build_resolver(settings: Settings) -> dns.asyncresolver.Resolver:
    """resolv.conf's resolver (its search list and ndots: `vllm.models.svc` works in a
    cluster), or one that asks `dns_nameserver` only."""
    if settings.dns_nameserver is None:
        return dns.asyncresolver.Resolver()
    server = urlsplit(f"//{settings.dns_nameserver}")  # `host`, `host:port`, `[v6]:port`
    if server.hostname is None:
        raise ValueError(f"CHATSERVICE_DNS_NAMESERVER: no address in {settings.dns_nameserver!r}")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [server.hostname]
    resolver.port = server.port or 53
    return resolver


class DnsDiscovery:
    """Keeps the discovered entries' endpoints in step with their names' records."""

    def __init__(self, pools: Iterable[EndpointPool], settings: Settings) -> None:
        self._entries = discovered_entries(pools)
        self._interval = settings.dns_refresh_interval
        self._timeout = settings.dns_timeout
        # Without entries nothing is resolved: no need to read resolv.conf.
        self._resolver = (
            build_resolver(settings)
            if self._entries
            else dns.asyncresolver.Resolver(configure=False)
        )

    async def refresh(self) -> None:
        """Resolve every entry once, concurrently; each within the timeout."""
        await asyncio.gather(*(self._refresh(entry) for entry in self._entries))

    async def _refresh(self, entry: DiscoveredEntry) -> None:
        model = entry.pool.route.name
        try:
            addresses = await self._resolve(entry.name)
        except (dns.exception.DNSException, TimeoutError, OSError) as exc:
            metrics.child(metrics.DNS_RESOLUTIONS, model, "failed").inc()
            # Warnings of one kind are throttled per worker (CHATSERVICE_LOG_REPEATS_PER_MINUTE).
            log.warning(
                "DNS resolution failed: the last known endpoints are kept",
                extra={"model": model, "dns_name": entry.name, "cause": type(exc).__name__},
            )
            return
        if not addresses:
            metrics.child(metrics.DNS_RESOLUTIONS, model, "empty").inc()
            log.warning(
                "DNS name has no address: the last known endpoints are kept",
                extra={"model": model, "dns_name": entry.name},
            )
            return
        added, removed = entry.pool.replace_discovered(
            entry.ordinal,
            [entry.address_url(a) for a in addresses],
            entry.host_header,
            entry.name,
        )
        outcome = "changed" if added or removed else "unchanged"
        metrics.child(metrics.DNS_RESOLUTIONS, model, outcome).inc()
        if added or removed:
            log.info(
                "discovered endpoints changed",
                extra={
                    "model": model,
                    "dns_name": entry.name,
                    "added": added,
                    "removed": removed,
                    "endpoints": len(addresses),
                },
            )

    async def _resolve(self, name: str) -> set[str]:
        """The name's IPv4 and IPv6 addresses; raises if neither query got an answer."""
        async with asyncio.timeout(self._timeout):
            answers = await asyncio.gather(
                *(self._addresses(name, record_type) for record_type in RECORD_TYPES),
                return_exceptions=True,
            )
        failures = [a for a in answers if isinstance(a, BaseException)]
        if len(failures) == len(answers):
            raise failures[0]
        # One type may fail while the other answers (a server that times out AAAA): the
        # addresses found are the set.
        return {address for a in answers if not isinstance(a, BaseException) for address in a}

    async def _addresses(self, name: str, record_type: str) -> set[str]:
        try:
            answer = await self._resolver.resolve(
                name, record_type, search=True, lifetime=self._timeout
            )
        except _NO_ADDRESS:
            return set()
        return {record.to_text() for record in answer}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Resolve once before serving (bounded by the timeout), so a fresh worker does not
        answer 503 for a discovered route, then refresh in the background until the end."""
        if not self._entries:
            yield
            return
        await self.refresh()
        async with repeating(self.refresh, self._interval, "DNS discovery refresh"):
            yield
