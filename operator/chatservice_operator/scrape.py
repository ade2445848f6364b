"""The canary's inputs: every serving pod's chat counters, read from the pods' own /metrics (no
Prometheus needed) or, when the spec names one, from a Prometheus server's query API.

Which of the service's metrics make which figure (service/chatservice/observability/metrics.py):
requests and errors from `chatservice_chat_completions_total` by outcome, streams from its
`stream="true"` series, time to first token and added latency from the
`chatservice_time_to_first_token_seconds` and `chatservice_gateway_overhead_seconds` buckets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from chatservice_operator.identity import TRACK_LABEL, Track, selector_labels
from chatservice_operator.kube import KubeClient, Obj
from chatservice_operator.resource import ChatService, PodSample

REQUESTS = "chatservice_chat_completions_total"
TIME_TO_FIRST_TOKEN = "chatservice_time_to_first_token_seconds_bucket"  # noqa: S105
ADDED_LATENCY = "chatservice_gateway_overhead_seconds_bucket"
# Outcomes that are the service's or its upstream's failure (5xx, upstream errors), not the
# client's: README, "Outcomes".
ERROR_OUTCOMES = frozenset(
    {
        "error",
        "unavailable",
        "timeout",
        "upstream_error",
        "upstream_unreachable",
        "upstream_invalid_response",
        "upstream_auth_failed",
        "upstream_rate_limited",
    }
)
# Streams the client ended or was refused: they say nothing about whether streams complete.
CLIENT_OUTCOMES = frozenset(
    {
        "invalid_request",
        "unauthenticated",
        "permission_denied",
        "not_found",
        "rate_limited",
        "upstream_rejected",
        "cancelled",
    }
)
SCRAPE_TIMEOUT_SECONDS = 2.0
logger = logging.getLogger(__name__)


@dataclass
class _Tally:
    pod: str
    track: str
    requests: float = 0.0
    errors: float = 0.0
    streams: float = 0.0
    completed_streams: float = 0.0
    time_to_first_token: dict[str, float] = field(default_factory=dict)
    added_latency: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        if name == REQUESTS:
            outcome = labels.get("outcome", "")
            self.requests += value
            if outcome in ERROR_OUTCOMES:
                self.errors += value
            if labels.get("stream") == "true" and outcome not in CLIENT_OUTCOMES:
                self.streams += value
                if outcome == "success":
                    self.completed_streams += value
        elif name in (TIME_TO_FIRST_TOKEN, ADDED_LATENCY) and "le" in labels:
            ttft = name == TIME_TO_FIRST_TOKEN
            buckets = self.time_to_first_token if ttft else self.added_latency
            buckets[labels["le"]] = buckets.get(labels["le"], 0.0) + value

    def sample(self) -> PodSample:
        return PodSample(
            pod=self.pod,
            track=self.track,
            requests=self.requests,
            errors=self.errors,
            streams=self.streams,
            completed_streams=self.completed_streams,
            time_to_first_token=self.time_to_first_token,
            added_latency=self.added_latency,
        )


@dataclass(frozen=True)
class ServingPod:
    name: str
    track: Track
    ip: str
    port: int


def serving_pods(pods: Iterable[Obj]) -> list[ServingPod]:
    """Running pods of either track with an address; the port is the container's `http` one."""
    found = []
    for pod in pods:
        meta, status = pod.get("metadata", {}), pod.get("status", {})
        track = (meta.get("labels") or {}).get(TRACK_LABEL)
        ip = status.get("podIP")
        if track not in set(Track) or not ip or meta.get("deletionTimestamp"):
            continue
        if status.get("phase") != "Running":
            continue
        ports = [
            port["containerPort"]
            for container in pod.get("spec", {}).get("containers", [])
            if container.get("name") == "chatservice"
            for port in container.get("ports", [])
            if port.get("name") == "http"
        ]
        if ports:
            found.append(ServingPod(meta["name"], Track(track), ip, ports[0]))
    return found


def parse_exposition(pod: ServingPod, text: str) -> PodSample:
    tally = _Tally(pod.name, pod.track)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            tally.add(sample.name, sample.labels, sample.value)
    return tally.sample()


class Scraper:
    """Reads the counters. Its own HTTP session: the API server's token must never reach a pod."""

    def __init__(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_SECONDS),
            headers={"User-Agent": "chatservice-operator"},
        )

    async def close(self) -> None:
        await self._session.close()

    async def samples(self, api: KubeClient, cs: ChatService) -> tuple[PodSample, ...]:
        labels = selector_labels(cs, "server")
        selector = ",".join([*(f"{k}={v}" for k, v in labels.items()), TRACK_LABEL])
        pods = serving_pods(await api.list("v1", "Pod", cs.namespace, selector))
        url = cs.spec.rollout.canary.prometheus_url
        if url is not None:
            return await self._from_prometheus(url, cs.namespace, pods)
        scraped = await asyncio.gather(*(self._scrape(pod) for pod in pods))
        return tuple(sample for sample in scraped if sample is not None)

    async def _scrape(self, pod: ServingPod) -> PodSample | None:
        try:
            async with self._session.get(f"http://{pod.ip}:{pod.port}/metrics") as response:
                response.raise_for_status()
                text = await response.text()
            return parse_exposition(pod, text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # A pod that cannot be read is left out; too few requests then fails the canary.
            logger.warning("Reading /metrics of pod %s failed: %s", pod.name, exc)
            return None

    async def _from_prometheus(
        self, url: str, namespace: str, pods: list[ServingPod]
    ) -> tuple[PodSample, ...]:
        """The same per-pod counters, as Prometheus last scraped them (by its `pod` label)."""
        if not pods:
            return ()
        tallies = {pod.name: _Tally(pod.name, pod.track) for pod in pods}
        names = "|".join(name.replace(".", "\\\\.") for name in tallies)
        match = f'namespace="{namespace}",pod=~"{names}"'
        queries = {
            REQUESTS: f"sum by (pod, outcome, stream) ({REQUESTS}{{{match}}})",
            TIME_TO_FIRST_TOKEN: f"sum by (pod, le) ({TIME_TO_FIRST_TOKEN}{{{match}}})",
            ADDED_LATENCY: f"sum by (pod, le) ({ADDED_LATENCY}{{{match}}})",
        }
        endpoint = url.rstrip("/") + "/api/v1/query"
        for name, query in queries.items():
            try:
                async with self._session.get(endpoint, params={"query": query}) as response:
                    response.raise_for_status()
                    answer = await response.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                # As with a pod that cannot be read: no figures, and too few requests fail it.
                logger.warning("Querying Prometheus at %s failed: %s", url, exc)
                return ()
            for series in answer.get("data", {}).get("result", []):
                labels = series.get("metric", {})
                tally = tallies.get(labels.get("pod", ""))
                if tally is not None:
                    tally.add(name, labels, float(series["value"][1]))
        return tuple(tally.sample() for tally in tallies.values())
