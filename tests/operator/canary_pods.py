"""The serving pods of a canary flow, played by the test: Pod objects in the emulated API (as a
ReplicaSet would make them for a rolled-out Deployment) whose address is a loopback HTTP server
serving the service's metrics from a registry of their own, and traffic that moves those
counters as real requests would. A stand-in for real service pods, which need a cluster."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp.web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from chatservice.observability import metrics as service_metrics
from tests.operator.operator_harness import DEPLOYMENTS, Cluster

PODS = "v1/pods"


@dataclass
class Behaviour:
    """How the pod answers each request: the share that fails, and its timings."""

    error_ratio: float = 0.0
    time_to_first_token: float = 0.2
    added_latency: float = 0.0003


@dataclass
class FakePod:
    name: str
    track: str
    behaviour: Behaviour
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    served: int = 0
    port: int = 0
    # Who read /metrics, by the product in their User-Agent (`chatservice-operator`, `Prometheus`).
    readers: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        # The service's names, labels and buckets: what the operator reads from a real pod.
        self.requests = Counter(
            "chatservice_chat_completions",
            "chat completions",
            ["model", "stream", "outcome"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "chatservice_time_to_first_token_seconds",
            "time to first token",
            ["model"],
            buckets=service_metrics.TIME_TO_FIRST_TOKEN._upper_bounds[:-1],
            registry=self.registry,
        )
        self.added = Histogram(
            "chatservice_gateway_overhead_seconds",
            "gateway overhead",
            ["model"],
            buckets=service_metrics.GATEWAY_OVERHEAD._upper_bounds[:-1],
            registry=self.registry,
        )

    def serve(self, count: int) -> None:
        """`count` streamed requests; every n-th fails as the behaviour's error ratio says."""
        every = round(1 / self.behaviour.error_ratio) if self.behaviour.error_ratio else 0
        for _ in range(count):
            self.served += 1
            if every and self.served % every == 0:
                self.requests.labels("llama", "true", "upstream_error").inc()
                continue
            self.requests.labels("llama", "true", "success").inc()
            self.ttft.labels("llama").observe(self.behaviour.time_to_first_token)
            self.added.labels("llama").observe(self.behaviour.added_latency)

    async def metrics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.readers[request.headers.get("User-Agent", "").split("/")[0]] += 1
        return aiohttp.web.Response(body=generate_latest(self.registry), content_type="text/plain")


class Pods:
    """Pods the test creates for each rolled-out Deployment, and the traffic they serve."""

    def __init__(
        self, cluster: Cluster, on_change: Callable[[list[FakePod]], None] | None = None
    ) -> None:
        self.cluster = cluster
        # Told the pods after each change (e.g. to write a Prometheus' file of targets).
        self.on_change = on_change
        self.pods: dict[str, FakePod] = {}
        self._runners: list[aiohttp.web.AppRunner] = []
        self.behaviour = {"stable": Behaviour(), "canary": Behaviour()}

    async def start_for(self, deployment: str) -> list[FakePod]:
        """The pods of a Deployment the test just rolled out (replacing any it had)."""
        obj = self.cluster.get(DEPLOYMENTS, deployment)
        assert obj is not None
        await self.stop_for(deployment)
        template = obj["spec"]["template"]
        labels = template["metadata"]["labels"]
        track = labels["chatservice.dev/track"]
        started = []
        for index in range(obj["spec"].get("replicas", 1)):
            pod = FakePod(f"{deployment}-5d8f9-{index}", track, self.behaviour[track])
            app = aiohttp.web.Application()
            app.router.add_get("/metrics", pod.metrics)
            runner = aiohttp.web.AppRunner(app)
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._runners.append(runner)
            pod.port = runner.addresses[0][1]
            containers = [
                {**c, "ports": [{"name": "http", "containerPort": pod.port}]}
                for c in template["spec"]["containers"]
            ]
            await self.cluster.create(
                PODS,
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod.name, "namespace": "ns", "labels": labels},
                    "spec": {"containers": containers},
                    "status": {"phase": "Running", "podIP": "127.0.0.1"},
                },
            )
            self.pods[pod.name] = pod
            started.append(pod)
        self._changed()
        return started

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(list(self.pods.values()))

    async def stop_for(self, deployment: str) -> None:
        for name in [n for n in self.pods if n.startswith(f"{deployment}-5d8f9-")]:
            del self.pods[name]
            await self.cluster.delete(PODS, name)
        self._changed()

    def serve(self, per_pod: int) -> None:
        for pod in self.pods.values():
            pod.serve(per_pod)

    @contextlib.asynccontextmanager
    async def traffic(self, per_pod: int = 5, every: float = 0.05) -> AsyncIterator[None]:
        """Requests keep arriving at every pod, as the Service spreads them."""

        async def flow() -> None:
            while True:
                self.serve(per_pod)
                await asyncio.sleep(every)

        task = asyncio.create_task(flow())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
