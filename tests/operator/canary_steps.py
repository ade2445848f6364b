"""Steps and reads the canary flow tests share: a ChatService serving OLD with canaries on, NEW
migrated with its canary pods serving, and the canary's record in the status."""

from __future__ import annotations

from typing import Any

from tests.operator.canary_pods import Pods
from tests.operator.flow_steps import install, status
from tests.operator.operator_harness import CHATSERVICES, DEPLOYMENTS, JOBS, Cluster, eventually
from tests.operator.operator_specs import NEW, job_for

CANARY = "chat-canary"
STABLE = "chat-stable"
# Short enough for a test; long enough for several reads of the pods inside the window.
CANARY_SPEC = {"enabled": True, "duration": "2s", "minRequests": 50}


def canary_status(cluster: Cluster) -> dict[str, Any]:
    return dict(status(cluster).get("canary") or {})


def phase(cluster: Cluster) -> str | None:
    return status(cluster).get("phase")


async def serving(cluster: Cluster, pods: Pods, **canary: Any) -> None:
    """A ChatService with canaries on, Ready at OLD on two stable pods."""
    await install(cluster, rollout={"canary": {**CANARY_SPEC, **canary}})
    await pods.start_for(STABLE)


async def canary_of_new(cluster: Cluster, pods: Pods) -> None:
    """NEW migrated; its canary Deployment rolled out and its pod serving."""
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"image": NEW}})
    await eventually(lambda: cluster.get(JOBS, job_for(NEW)), message="the new migration Job")
    await cluster.complete_job(job_for(NEW))
    canary = await eventually(lambda: cluster.get(DEPLOYMENTS, CANARY), message="the canary")
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == NEW
    await eventually(lambda: phase(cluster) == "Canary", message="phase Canary")
    # As on a cluster: the Deployment counts as rolled out only once its pods run.
    await pods.start_for(CANARY)
    await cluster.roll_out(CANARY)


def stable_never_ran(cluster: Cluster, image: str) -> bool:
    """No write to the stable Deployment ever carried the image."""
    return cluster.first("PATCH", f"/deployments/{STABLE}", image) is None


def count(metric: Any, *labels: str) -> float:
    value: float = metric.labels(*labels)._value.get()
    return value
