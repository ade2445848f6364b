"""A canary judged from a real Prometheus (`rollout.canary.prometheusURL`) instead of the pods'
own /metrics: Debian's `prometheus` scrapes the played pods (labelled `namespace` and `pod` as
Kubernetes discovery labels them), and the operator reads the same figures from its query API."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.operator.canary_pods import Behaviour, FakePod, Pods
from tests.operator.canary_steps import (
    CANARY,
    STABLE,
    canary_of_new,
    canary_status,
    phase,
    serving,
    stable_never_ran,
)
from tests.operator.flow_steps import condition, image_of, status
from tests.operator.operator_harness import DEPLOYMENTS, Cluster, eventually
from tests.operator.operator_specs import NEW, OLD
from tests.service.prometheus import Prometheus, prometheus_server

# Prometheus passes new targets to its scrapers at most every 5 s, then reads them every second:
# a window long enough for the canary pod to be scraped several times.
DURATION = "10s"


@pytest.fixture
def targets(tmp_path: Path) -> Path:
    return tmp_path / "pods.json"


@pytest.fixture
def prometheus(tmp_path: Path, targets: Path) -> Iterator[Prometheus]:
    targets.write_text("[]")
    with prometheus_server({}, tmp_path, file_targets=targets) as server:
        yield server


@pytest.fixture
async def pods(cluster: Cluster, targets: Path) -> AsyncIterator[Pods]:
    def follow(running: list[FakePod]) -> None:
        groups = [
            {"targets": [f"127.0.0.1:{pod.port}"], "labels": {"namespace": "ns", "pod": pod.name}}
            for pod in running
        ]
        # Prometheus must never read a half-written file.
        written = targets.with_suffix(".tmp")
        written.write_text(json.dumps(groups))
        written.replace(targets)

    played = Pods(cluster, on_change=follow)
    try:
        yield played
    finally:
        await played.close()


def scraped(prometheus: Prometheus, pods: Pods) -> bool:
    """Prometheus holds the counters of every played pod."""
    result = prometheus.query("chatservice_chat_completions_total")["result"]
    return {series["metric"]["pod"] for series in result} >= set(pods.pods)


def read_only_by_prometheus(pods: Pods) -> bool:
    return all(
        pod.readers["Prometheus"] and not pod.readers["chatservice-operator"]
        for pod in pods.pods.values()
    )


@pytest.mark.usefixtures("operator")
async def test_a_healthy_canary_judged_from_prometheus_is_promoted(
    cluster: Cluster, pods: Pods, prometheus: Prometheus
) -> None:
    await serving(cluster, pods, duration=DURATION, prometheusURL=prometheus.url)
    async with pods.traffic():
        await canary_of_new(cluster, pods)
        await eventually(lambda: scraped(prometheus, pods), "Prometheus scraping the pods", 10)
        await eventually(lambda: image_of(cluster) == NEW, message="the promotion", within=30)
        passed = await eventually(lambda: canary_status(cluster).get("verdict") == "Passed")
        assert passed
        assert read_only_by_prometheus(pods), "the operator read Prometheus, never the pods"

    record = canary_status(cluster)
    assert record["requestsSeen"] >= 50
    for track in ("canary", "stable"):
        assert record[track]["errorRatio"] == 0
        assert record[track]["streamCompletionRatio"] == 1
        assert 0.1 < record[track]["timeToFirstTokenP95"] <= 0.25  # 0.2 s, in (0.1, 0.25]
    assert condition(cluster, "Progressing") == ("True", "CanaryPassed")


@pytest.mark.usefixtures("operator")
async def test_a_bad_canary_judged_from_prometheus_is_removed(
    cluster: Cluster, pods: Pods, prometheus: Prometheus
) -> None:
    await serving(cluster, pods, duration=DURATION, prometheusURL=prometheus.url)
    pods.behaviour["canary"] = Behaviour(error_ratio=0.2)
    async with pods.traffic():
        await canary_of_new(cluster, pods)
        await eventually(lambda: scraped(prometheus, pods), "Prometheus scraping the pods", 10)
        await eventually(lambda: phase(cluster) == "Failed", message="phase Failed", within=30)
        await eventually(lambda: cluster.get(DEPLOYMENTS, CANARY) is None, "canary removed")
        assert read_only_by_prometheus(pods), "the operator read Prometheus, never the pods"

    message = next(c["message"] for c in status(cluster)["conditions"] if c["type"] == "Degraded")
    measured = re.search(r"error ratio ([0-9.]+) vs stable ([0-9.]+)", message)
    assert measured is not None, message
    # Every fifth canary request fails; Prometheus' last scrapes bound the window, not the test.
    assert 0.15 < float(measured[1]) < 0.25
    assert float(measured[2]) == 0
    assert condition(cluster, "Degraded") == ("True", "CanaryFailed")
    assert image_of(cluster) == OLD
    assert stable_never_ran(cluster, NEW)
    assert cluster.get(DEPLOYMENTS, STABLE) is not None
