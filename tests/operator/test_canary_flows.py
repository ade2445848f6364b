"""Canary rollouts through the real Kopf runtime on kmock: the test plays the Job and Deployment
controllers and the serving pods, whose /metrics the operator reads over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatservice_operator import builders, metrics
from chatservice_operator.identity import migration_hash
from tests.operator.canary_pods import PODS, Behaviour, Pods
from tests.operator.canary_steps import (
    CANARY,
    STABLE,
    canary_of_new,
    canary_status,
    count,
    phase,
    serving,
    stable_never_ran,
)
from tests.operator.flow_steps import condition, image_of, install, status
from tests.operator.operator_harness import (
    CHATSERVICES,
    DEPLOYMENTS,
    JOBS,
    Cluster,
    Operator,
    eventually,
)
from tests.operator.operator_specs import NEW, OLD, body, chatservice, job_for


@pytest.fixture
async def pods(cluster: Cluster) -> AsyncIterator[Pods]:
    played = Pods(cluster)
    try:
        yield played
    finally:
        await played.close()


@pytest.mark.usefixtures("operator")
async def test_a_healthy_canary_is_promoted(cluster: Cluster, pods: Pods) -> None:
    passed_before = count(metrics.CANARY_VERDICTS, "passed")
    await serving(cluster, pods)
    async with pods.traffic():
        await canary_of_new(cluster, pods)
        started = await eventually(lambda: canary_status(cluster).get("started"), "the window")
        assert image_of(cluster) == OLD, "the stable pods keep OLD while the canary is judged"
        assert metrics.CANARIES_IN_PROGRESS._value.get() == 1
        await eventually(lambda: image_of(cluster) == NEW, message="the promotion")
        await eventually(lambda: canary_status(cluster).get("verdict") == "Passed", "Passed")

    record = canary_status(cluster)
    assert record["verdict"] == "Passed"
    assert record["image"] == NEW
    assert record["started"] == started
    assert record["requestsSeen"] >= 50
    for track in ("canary", "stable"):
        assert record[track]["errorRatio"] == 0
        assert record[track]["streamCompletionRatio"] == 1
        assert 0.1 < record[track]["timeToFirstTokenP95"] <= 0.25  # 0.2 s, in (0.1, 0.25]
    assert record["readings"] == []
    assert record["window"] == []
    assert condition(cluster, "Progressing") == ("True", "CanaryPassed")
    await eventually(lambda: cluster.get(DEPLOYMENTS, CANARY) is None, message="canary removed")
    await cluster.roll_out(STABLE)
    await eventually(lambda: status(cluster).get("currentImage") == NEW, message="NEW current")
    assert phase(cluster) == "Ready"
    assert condition(cluster, "Progressing") == ("False", "RolloutComplete")
    assert metrics.CANARIES_IN_PROGRESS._value.get() == 0
    passed = await eventually(lambda: cluster.events("CanaryPassed"), message="the event")
    assert "passed its canary" in passed[0]["message"]
    assert count(metrics.CANARY_VERDICTS, "passed") == passed_before + 1
    # The verdict came only after the duration: the canary window was really waited for.
    first_stable_write = cluster.first("PATCH", f"/deployments/{STABLE}", NEW)
    window_opened = cluster.first("PATCH", "/chat/status", f'"started": "{started}"')
    assert first_stable_write is not None
    assert window_opened is not None
    assert window_opened < first_stable_write


@pytest.mark.parametrize(
    ("behaviour", "broken"),
    [
        (Behaviour(error_ratio=0.2), "error ratio 0.200 vs stable 0.000"),
        (Behaviour(time_to_first_token=2.0), "p95 time to first token"),
    ],
    ids=["error-ratio", "slow-ttft"],
)
@pytest.mark.usefixtures("operator")
async def test_a_bad_canary_is_rolled_back_and_the_stable_image_never_changes(
    cluster: Cluster, pods: Pods, behaviour: Behaviour, broken: str
) -> None:
    failed_before = count(metrics.CANARY_VERDICTS, "failed")
    await serving(cluster, pods)
    pods.behaviour["canary"] = behaviour
    async with pods.traffic():
        await canary_of_new(cluster, pods)
        await eventually(lambda: phase(cluster) == "Failed", message="phase Failed")
        assert condition(cluster, "Degraded") == ("True", "CanaryFailed")
        await eventually(lambda: cluster.get(DEPLOYMENTS, CANARY) is None, "canary removed")
        warnings = await eventually(lambda: cluster.events("CanaryFailed"), message="a Warning")

    assert warnings[0]["type"] == "Warning"
    message = next(c["message"] for c in status(cluster)["conditions"] if c["type"] == "Degraded")
    assert broken in message
    assert "requests " in message, "the measured figures are in the condition"
    assert f"{OLD} keeps serving" in message
    assert canary_status(cluster)["verdict"] == "Failed"
    assert image_of(cluster) == OLD
    assert stable_never_ran(cluster, NEW)
    assert status(cluster)["currentImage"] == OLD
    assert count(metrics.CANARY_VERDICTS, "failed") == failed_before + 1

    # It stays failed: the drift pass and the canary timer change nothing.
    status_patches = len(cluster.requests("PATCH", "/chat/status"))
    before = len(cluster.requests("GET", "/chatservices/chat"))
    await eventually(lambda: len(cluster.requests("GET", "/chatservices/chat")) >= before + 2)
    assert cluster.get(DEPLOYMENTS, CANARY) is None
    assert len(cluster.requests("PATCH", "/chat/status")) == status_patches

    # A new generation of the spec tries again, with a fresh canary.
    pods.behaviour["canary"] = Behaviour()
    await pods.stop_for(CANARY)
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"workers": 3}})
    await eventually(lambda: cluster.get(DEPLOYMENTS, CANARY), message="the retried canary")
    await eventually(lambda: phase(cluster) == "Canary", message="phase Canary again")
    assert canary_status(cluster)["verdict"] == "Pending"


async def test_an_operator_restarted_mid_canary_continues_the_same_window(
    cluster: Cluster, operator: Operator, pods: Pods
) -> None:
    await serving(cluster, pods, duration="3s")
    async with pods.traffic():
        await canary_of_new(cluster, pods)
        started = await eventually(lambda: canary_status(cluster).get("started"), "the window")
        readings = canary_status(cluster)["readings"]
        assert {sample["track"] for sample in readings} == {"stable", "canary"}
        await operator.stop()
        await asyncio.sleep(0.5)
        await operator.start()
        await eventually(lambda: image_of(cluster) == NEW, message="the promotion")
        await eventually(lambda: canary_status(cluster).get("verdict") == "Passed", "Passed")

    record = canary_status(cluster)
    assert record["verdict"] == "Passed"
    assert record["started"] == started, "the window went on from where it was"
    # The canary Deployment lived through the restart: removed once, after the promotion.
    assert len(cluster.requests("DELETE", f"/deployments/{CANARY}")) == 1
    removed = cluster.first("DELETE", f"/deployments/{CANARY}", "")
    promoted = cluster.first("PATCH", f"/deployments/{STABLE}", NEW)
    assert removed is not None
    assert promoted is not None
    assert promoted < removed


@pytest.mark.usefixtures("operator")
async def test_paused_freezes_the_canary(cluster: Cluster, pods: Pods) -> None:
    await serving(cluster, pods)
    async with pods.traffic():
        await canary_of_new(cluster, pods)
        await eventually(lambda: canary_status(cluster).get("started"), message="the window")
        await cluster.patch(CHATSERVICES, "chat", {"spec": {"paused": True}})
        await eventually(lambda: phase(cluster) == "Paused", message="phase Paused")
        frozen = canary_status(cluster)
        await asyncio.sleep(3)  # longer than the whole window
        assert canary_status(cluster) == frozen
        assert cluster.get(DEPLOYMENTS, CANARY) is not None, "the canary stays where it is"
        assert image_of(cluster) == OLD

        await cluster.patch(CHATSERVICES, "chat", {"spec": {"paused": False}})
        await eventually(lambda: image_of(cluster) == NEW, message="the promotion")
        await eventually(lambda: canary_status(cluster).get("verdict") == "Passed", "Passed")
    assert canary_status(cluster)["started"] == frozen["started"]
    assert canary_status(cluster)["verdict"] == "Passed"


@pytest.mark.usefixtures("operator")
async def test_a_canary_that_never_becomes_available_fails(cluster: Cluster, pods: Pods) -> None:
    await serving(cluster, pods)
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"image": NEW}})
    await eventually(lambda: cluster.get(JOBS, job_for(NEW)), message="the new migration Job")
    await cluster.complete_job(job_for(NEW))
    await eventually(lambda: cluster.get(DEPLOYMENTS, CANARY), message="the canary")
    await cluster.miss_deadline(CANARY)
    await eventually(lambda: condition(cluster, "Degraded") == ("True", "CanaryFailed"))
    assert "did not become available" in canary_status(cluster)["message"]
    await eventually(lambda: cluster.get(DEPLOYMENTS, CANARY) is None, message="canary removed")
    assert stable_never_ran(cluster, NEW)


@pytest.mark.usefixtures("operator")
async def test_without_canary_the_new_image_rolls_out_directly(cluster: Cluster) -> None:
    await install(cluster)
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"image": NEW}})
    await eventually(lambda: cluster.get(JOBS, job_for(NEW)), message="the new migration Job")
    await cluster.complete_job(job_for(NEW))
    await eventually(lambda: image_of(cluster) == NEW, message="the Deployment at NEW")
    assert cluster.names(DEPLOYMENTS) == [STABLE]
    assert cluster.names(PODS) == []
    assert cluster.requests("GET", "/pods") == []


async def test_a_deployment_without_a_track_label_is_replaced_without_downtime(
    cluster: Cluster,
) -> None:
    """What an operator before canaries left: one Deployment named like the ChatService, whose
    immutable selector has no track label. The stable one must serve before it goes."""
    await cluster.create(CHATSERVICES, body(image=OLD))
    created = cluster.get(CHATSERVICES, "chat")
    assert created is not None
    cs = chatservice(image=OLD).model_copy(update={"uid": created["metadata"]["uid"]})
    migrated = {"job": job_for(OLD), "hash": migration_hash(cs), "image": OLD}
    await cluster.patch(
        CHATSERVICES,
        "chat",
        {
            "status": {
                "phase": "Ready",
                "currentImage": OLD,
                "migration": {**migrated, "result": "Succeeded"},
            }
        },
        "status",
    )
    legacy = builders.build_deployment(cs, OLD, "sum")
    legacy["metadata"]["name"] = "chat"
    for labels in (
        legacy["metadata"]["labels"],
        legacy["spec"]["selector"]["matchLabels"],
        legacy["spec"]["template"]["metadata"]["labels"],
    ):
        del labels["chatservice.dev/track"]
    await cluster.create(DEPLOYMENTS, legacy)
    await cluster.roll_out("chat")

    runner = Operator()
    await runner.start()
    try:
        stable = await eventually(lambda: cluster.get(DEPLOYMENTS, STABLE), "the stable one")
        assert image_of(cluster) == OLD
        await eventually(lambda: condition(cluster, "Progressing") == ("True", "Relabelling"))
        # Until the stable pods are available, the old ones serve: nothing deletes them.
        before = len(cluster.requests("GET", "/chatservices/chat"))
        await eventually(lambda: len(cluster.requests("GET", "/chatservices/chat")) >= before + 2)
        assert cluster.get(DEPLOYMENTS, "chat") is not None
        assert condition(cluster, "Ready") == ("True", "MinimumReplicasAvailable")
        service = await eventually(lambda: cluster.get("v1/services", "chat"), "the Service")
        selector = service["spec"]["selector"].items()
        assert selector <= legacy["spec"]["template"]["metadata"]["labels"].items()
        assert selector <= stable["spec"]["template"]["metadata"]["labels"].items()

        await cluster.roll_out(STABLE)
        await eventually(lambda: cluster.get(DEPLOYMENTS, "chat") is None, "the old one gone")
        await eventually(lambda: condition(cluster, "Progressing") == ("False", "RolloutComplete"))
        assert phase(cluster) == "Ready"
        assert cluster.names(DEPLOYMENTS) == [STABLE]
        assert cluster.names(JOBS) == [], "the same image needs no migration"
        # The old Deployment went only after the stable one reported its pods available.
        available = cluster.first("PATCH", f"/deployments/{STABLE}/status", "availableReplicas")
        deleted = cluster.first("DELETE", "/deployments/chat", "")
        assert available is not None
        assert deleted is not None
        assert available < deleted
    finally:
        await runner.stop()
