"""Steps and reads the operator flow tests share: a ChatService installed to Ready, its status,
conditions and the image its Deployment runs."""

from __future__ import annotations

from typing import Any

from tests.operator.operator_harness import CHATSERVICES, DEPLOYMENTS, JOBS, Cluster, eventually
from tests.operator.operator_specs import OLD, body, job_for


def status(cluster: Cluster) -> dict[str, Any]:
    obj = cluster.get(CHATSERVICES, "chat")
    return dict(obj.get("status", {})) if obj else {}


def condition(cluster: Cluster, type_: str) -> tuple[str, str] | None:
    for c in status(cluster).get("conditions", []):
        if c["type"] == type_:
            return c["status"], c["reason"]
    return None


def image_of(cluster: Cluster) -> str | None:
    deployment = cluster.get(DEPLOYMENTS, "chat-stable")
    if deployment is None:
        return None
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


async def install(cluster: Cluster, **changes: Any) -> None:
    """Create a ChatService at OLD and drive it to Ready."""
    await cluster.create(CHATSERVICES, body(image=OLD, **changes))
    job = job_for(OLD)
    await eventually(lambda: cluster.get(JOBS, job), message="the first migration Job")
    assert cluster.get(DEPLOYMENTS, "chat-stable") is None, "no Deployment before the migration"
    await cluster.complete_job(job)
    await eventually(lambda: image_of(cluster) == OLD, message="the Deployment at OLD")
    await cluster.roll_out("chat-stable")
    await eventually(lambda: status(cluster).get("phase") == "Ready", message="phase Ready")
