"""The endpoints of one route: which one gets the next request, and which are ejected.

Selection is weighted power of two random choices on outstanding requests: two endpoints
drawn by weight, the one with fewer requests in flight per unit of weight wins. An ejected
endpoint is never chosen; once its cooldown has passed, one request at a time may try it
(a success ends the ejection, a failure ejects it again for twice as long, with jitter).

State is per worker process, on purpose: it is read and written on every request, and a
shared store (Redis) on that path would turn a Redis outage into a routing outage and add a
round trip to each request. Each worker learns an endpoint's failure from its own requests,
within `endpoint_failures_to_eject` of them.

An entry with `discovery` starts with no endpoint; `replace_discovered` sets the servers its
name resolves to (dns_discovery.py), keeping the state of those that stay.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from chatservice.config import ModelRoute, Settings, UpstreamEndpoint, secret_from_env
from chatservice.errors import RateLimitError
from chatservice.observability import metrics

# A 429's Retry-After is honoured up to this long for one endpoint.
MAX_RATE_LIMIT_PAUSE = 60.0


class ModelOverloadedError(RateLimitError):
    """Every endpoint of the model is at its concurrency cap and the wait queue is full or
    the wait timed out."""

    default_code = "model_overloaded"
    outcome = "rate_limited"


@dataclass(slots=True, eq=False)
class Endpoint:
    """One endpoint's live state in this worker."""

    route: str
    ordinal: int  # of its entry in the route's endpoints
    config: UpstreamEndpoint
    url: str
    # A discovered endpoint's URL has an address; its requests still name the host they were
    # configured with (`Host`, and TLS's server name).
    host_header: str | None = None
    server_hostname: str | None = None
    outstanding: int = 0
    consecutive_failures: int = 0
    ejections_in_a_row: int = 0
    ejected_until: float = 0.0
    paused_until: float = 0.0  # after a 429: this endpoint only
    trial_in_flight: bool = False
    last_error: str | None = None
    label: str = field(default="")

    def key(self, route: ModelRoute) -> str | None:
        if self.config.api_key_env:
            return secret_from_env(self.config.api_key_env)
        return route.upstream_api_key()

    def state(self, now: float) -> Literal["healthy", "ejected", "rate_limited"]:
        if self.ejected_until > now:
            return "ejected"
        if self.paused_until > now:
            return "rate_limited"
        return "healthy"

    def at_cap(self) -> bool:
        cap = self.config.max_concurrency
        return cap is not None and self.outstanding >= cap


@dataclass(frozen=True, slots=True)
class EndpointReport:
    """One endpoint as health shows it: its label (`model/ordinal`), not its address."""

    endpoint: str
    state: Literal["healthy", "ejected", "rate_limited"]
    seconds_left: float | None
    outstanding: int
    last_error: str | None


class EndpointPool:
    def __init__(self, route: ModelRoute, settings: Settings) -> None:
        self.route = route
        self._failures_to_eject = settings.endpoint_failures_to_eject
        self._cooldown = settings.endpoint_cooldown
        self._max_cooldown = settings.endpoint_max_cooldown
        self._queue_size = settings.route_queue_size
        self._queue_timeout = settings.route_queue_timeout
        self.entries = route.upstream_endpoints()
        self.endpoints = [
            Endpoint(route.name, i, e, e.base_url.rstrip("/"), label=f"{route.name}/{i}")
            for i, e in enumerate(self.entries)
            if e.discovery is None
        ]
        self._discovered_serials = [0] * len(self.entries)
        metrics.publish_route_series(route.name, len(self.endpoints))
        self.waiting = 0
        self._released = asyncio.Event()

    @property
    def _can_eject(self) -> bool:
        # Ejecting the only place a request can go would turn a blip into an outage for the
        # whole cooldown: a single-endpoint route without fallbacks is never ejected.
        return len(self.endpoints) > 1 or bool(self.route.fallbacks)

    def replace_discovered(
        self, ordinal: int, urls: Collection[str], host_header: str, server_hostname: str
    ) -> tuple[int, int]:
        """Make `urls` the endpoints of discovered entry `ordinal`; returns (added, removed).

        Those that stay keep their state (ejection, requests in flight). One removed is no
        longer picked; requests already sent to it finish and release it as usual.
        """
        entry = self.entries[ordinal]
        wanted = set(urls)
        current = {e.url for e in self.endpoints if e.ordinal == ordinal}
        kept = [e for e in self.endpoints if e.ordinal != ordinal or e.url in wanted]
        added: list[Endpoint] = []
        for url in sorted(wanted - current):
            self._discovered_serials[ordinal] += 1
            # `model/ordinal.serial`: like a static endpoint's label, it shows no address.
            label = f"{self.route.name}/{ordinal}.{self._discovered_serials[ordinal]}"
            added.append(
                Endpoint(
                    self.route.name,
                    ordinal,
                    entry,
                    url,
                    host_header=host_header,
                    server_hostname=server_hostname,
                    label=label,
                )
            )
        self.endpoints = sorted([*kept, *added], key=lambda e: e.ordinal)
        if not self._can_eject:
            # Down to the only place requests can go: as for a single base_url, it is not
            # kept out for the rest of a cooldown it got while it had company.
            for endpoint in self.endpoints:
                endpoint.ejected_until = 0.0
                endpoint.ejections_in_a_row = 0
        metrics.child(metrics.ROUTE_ENDPOINTS, self.route.name).set(len(self.endpoints))
        self._publish_ejected()
        return len(added), len(current - wanted)

    def _usable(self, endpoint: Endpoint, now: float) -> bool:
        if endpoint.paused_until > now or endpoint.at_cap():
            return False
        if endpoint.ejected_until == 0.0:
            return True
        # Ejected: unusable in the cooldown, then for one trial request at a time.
        return endpoint.ejected_until <= now and not endpoint.trial_in_flight

    def pick(self, tried: set[Endpoint]) -> Endpoint | None:
        """The endpoint for the next attempt (not one in `tried`), or None if none can take it."""
        now = time.monotonic()
        candidates = [e for e in self.endpoints if e not in tried and self._usable(e, now)]
        if not candidates:
            return None
        if len(candidates) == 1:
            chosen = candidates[0]
        else:
            # Two distinct endpoints, each drawn with probability by weight.
            weights = [e.config.weight for e in candidates]
            first_index = _draw(weights, sum(weights))
            first = candidates[first_index]
            rest = weights[:]
            rest[first_index] = 0.0
            second = candidates[_draw(rest, sum(rest))]
            chosen = (
                second
                if second.outstanding / second.config.weight
                < first.outstanding / first.config.weight
                else first
            )
        chosen.outstanding += 1
        if chosen.ejected_until:
            chosen.trial_in_flight = True
        return chosen

    def all_capped(self, tried: set[Endpoint]) -> bool:
        """Whether the only reason nothing can be picked is that endpoints are at their cap."""
        now = time.monotonic()
        return any(
            e.at_cap()
            for e in self.endpoints
            if e not in tried and e.paused_until <= now and e.ejected_until <= now
        )

    async def wait_for_slot(self, deadline: float) -> None:
        """Wait in the route's bounded queue until a request to an endpoint ends."""
        if self.waiting >= self._queue_size:
            raise self._overloaded()
        self.waiting += 1
        depth = metrics.child(metrics.ROUTE_QUEUE_DEPTH, self.route.name)
        depth.inc()
        started = time.monotonic()
        try:
            timeout = min(self._queue_timeout, max(deadline - started, 0.001))
            async with asyncio.timeout(timeout):
                await self._released.wait()
        except TimeoutError:
            raise self._overloaded() from None
        finally:
            self.waiting -= 1
            depth.dec()
            metrics.child(metrics.ROUTE_QUEUE_WAIT, self.route.name).observe(
                time.monotonic() - started
            )

    def _overloaded(self) -> ModelOverloadedError:
        retry_after = max(1, round(self._queue_timeout))
        return ModelOverloadedError(
            f"The model `{self.route.name}` is at capacity; retry after a while.",
            headers={"Retry-After": str(retry_after)},
        )

    def release(self, endpoint: Endpoint) -> None:
        endpoint.outstanding -= 1
        endpoint.trial_in_flight = False
        if self.waiting:
            # Wake every waiter; those that find no free endpoint wait again.
            self._released.set()
            self._released = asyncio.Event()

    def succeeded(self, endpoint: Endpoint) -> None:
        endpoint.consecutive_failures = 0
        endpoint.ejections_in_a_row = 0
        if endpoint.ejected_until:  # its trial succeeded: trusted again
            endpoint.ejected_until = 0.0
            self._publish_ejected()

    def failed(self, endpoint: Endpoint, reason: str) -> None:
        endpoint.last_error = reason
        now = time.monotonic()
        if endpoint.ejected_until > now:
            return  # sent before the ejection: the cooldown already runs
        endpoint.consecutive_failures += 1
        if not self._can_eject:
            return
        trial = endpoint.ejected_until != 0.0  # ejected, cooldown over: this was the trial
        if trial or endpoint.consecutive_failures >= self._failures_to_eject:
            cooldown = min(
                self._cooldown * 2**endpoint.ejections_in_a_row, self._max_cooldown
            ) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrecy
            endpoint.ejections_in_a_row += 1
            endpoint.ejected_until = now + cooldown
            endpoint.consecutive_failures = 0
            metrics.child(metrics.ENDPOINT_EJECTIONS, self.route.name).inc()
            self._publish_ejected()

    def _publish_ejected(self) -> None:
        ejected = sum(1 for e in self.endpoints if e.ejected_until)
        metrics.child(metrics.ROUTE_EJECTED_ENDPOINTS, self.route.name).set(ejected)

    def rate_limited(self, endpoint: Endpoint, retry_after: str | None) -> None:
        """A 429 is about this endpoint's limits only: with `Retry-After` it rests that long
        (without, it may be retried after the usual backoff)."""
        endpoint.last_error = "429"
        if not retry_after:
            return
        try:
            pause = min(float(retry_after), MAX_RATE_LIMIT_PAUSE)
        except ValueError:
            return
        endpoint.paused_until = time.monotonic() + max(pause, 0.0)

    def next_recovery(self) -> float:
        """Seconds until the first ejected or paused endpoint may be tried again."""
        now = time.monotonic()
        ends = [max(e.ejected_until, e.paused_until) - now for e in self.endpoints]
        return max(min(ends, default=1.0), 1.0)

    def report(self) -> list[EndpointReport]:
        now = time.monotonic()
        return [
            EndpointReport(
                endpoint=e.label,
                state=e.state(now),
                seconds_left=round(max(e.ejected_until, e.paused_until) - now, 3)
                if e.state(now) != "healthy"
                else None,
                outstanding=e.outstanding,
                last_error=e.last_error,
            )
            for e in self.endpoints
        ]

    def healthy_count(self) -> int:
        now = time.monotonic()
        return sum(1 for e in self.endpoints if e.state(now) == "healthy")


def _draw(weights: list[float], total: float) -> int:
    """An index drawn with probability proportional to its weight (a few endpoints: a scan
    is cheaper than `random.choices`' bisection and list building)."""
    point = random.random() * total  # noqa: S311 - balancing, not secrecy
    for index, weight in enumerate(weights):
        point -= weight
        if point < 0 and weight > 0:
            return index
    return max(range(len(weights)), key=weights.__getitem__)  # rounding at the very end
