"""Whole flows through the real Kopf runtime against kmock; the test plays the controllers."""

from __future__ import annotations

import asyncio

import kmock
import pytest

from tests.operator.flow_steps import condition, image_of, install, status
from tests.operator.operator_harness import (
    CHATSERVICES,
    DEPLOYMENTS,
    JOBS,
    NS,
    SERVICE_MONITORS,
    Cluster,
    Operator,
    eventually,
)
from tests.operator.operator_specs import NEW, OLD, body, job_for


@pytest.mark.usefixtures("operator")
async def test_create_migrates_then_deploys_then_becomes_ready(cluster: Cluster) -> None:
    await install(cluster)
    final = status(cluster)
    assert final["currentImage"] == OLD
    assert final["observedGeneration"] == 1
    assert condition(cluster, "Ready") == ("True", "MinimumReplicasAvailable")
    assert condition(cluster, "MigrationSucceeded") == ("True", "MigrationSucceeded")
    assert condition(cluster, "Progressing") == ("False", "RolloutComplete")
    assert cluster.names(JOBS) == [job_for(OLD)]
    for resource in ("v1/configmaps",):
        assert cluster.names(resource) == ["chat-config"]
    for resource in ("v1/services", "policy/v1/poddisruptionbudgets", SERVICE_MONITORS):
        assert cluster.names(resource) == ["chat"]
    assert cluster.names("autoscaling/v2/horizontalpodautoscalers") == []
    owner = cluster.get(DEPLOYMENTS, "chat-stable")["metadata"]["ownerReferences"][0]  # type: ignore[index]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("ChatService", "chat", True)
    # Nothing outside the cluster to clean up, so nothing may block deleting the ChatService.
    assert "finalizers" not in cluster.get(CHATSERVICES, "chat")["metadata"]  # type: ignore[index]


@pytest.mark.parametrize("service_monitors", [False])
@pytest.mark.usefixtures("operator")
async def test_no_service_monitor_without_the_prometheus_operator_api(cluster: Cluster) -> None:
    await install(cluster)
    assert cluster.names("v1/services") == ["chat"]
    assert not any("servicemonitors" in r.url.path for r in cluster.emulator)


@pytest.mark.usefixtures("operator")
async def test_image_change_migrates_first_then_rolls_out(cluster: Cluster) -> None:
    await install(cluster)
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"image": NEW}})
    new_job = job_for(NEW)
    assert new_job != job_for(OLD)
    await eventually(lambda: cluster.get(JOBS, new_job), message="the new migration Job")
    await eventually(lambda: status(cluster).get("phase") == "Migrating", message="Migrating")
    # Give the operator a pass over the running Job (its ADDED event), then a moment to act.
    await eventually(lambda: len(cluster.requests("GET", f"/jobs/{new_job}")) >= 2)
    await asyncio.sleep(0.3)
    assert image_of(cluster) == OLD, "the rollout waits for the migration"

    await cluster.complete_job(new_job)
    await eventually(lambda: image_of(cluster) == NEW, message="the Deployment at NEW")
    await eventually(lambda: status(cluster).get("phase") == "RollingOut", message="RollingOut")
    assert status(cluster)["currentImage"] == OLD
    # The order in the request log proves the gate: the Job completed, then the Deployment moved.
    completed = cluster.first("PATCH", f"/jobs/{new_job}/status", "Complete")
    moved = cluster.first("PATCH", "/deployments/chat-stable", NEW)
    assert completed is not None
    assert moved is not None
    assert completed < moved
    await cluster.roll_out("chat-stable")
    await eventually(lambda: status(cluster).get("currentImage") == NEW, message="NEW current")
    assert status(cluster)["phase"] == "Ready"
    assert sorted(cluster.names(JOBS)) == sorted([job_for(OLD), new_job])


@pytest.mark.usefixtures("operator")
async def test_failed_migration_keeps_the_old_version_and_warns(cluster: Cluster) -> None:
    await install(cluster)
    deployment_patches = len(cluster.requests("PATCH", "/deployments/chat-stable"))
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"image": NEW}})
    await eventually(lambda: cluster.get(JOBS, job_for(NEW)), message="the new migration Job")
    await cluster.fail_job(job_for(NEW))

    await eventually(lambda: status(cluster).get("phase") == "Failed", message="phase Failed")
    assert condition(cluster, "MigrationSucceeded") == ("False", "MigrationFailed")
    assert condition(cluster, "Degraded") == ("True", "MigrationFailed")
    assert condition(cluster, "Ready") == ("True", "MinimumReplicasAvailable")
    warnings = await eventually(lambda: cluster.events("MigrationFailed"), message="a Warning")
    assert warnings[0]["type"] == "Warning"
    assert "backoff limit" in warnings[0]["message"]
    assert image_of(cluster) == OLD
    # Only status patches of the Deployment's controller (the test) touched it since.
    assert len(cluster.requests("PATCH", "/deployments/chat-stable")) == deployment_patches
    assert status(cluster)["currentImage"] == OLD


@pytest.mark.usefixtures("operator")
async def test_rollout_past_its_deadline_is_rolled_back(cluster: Cluster) -> None:
    await install(cluster)
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"image": NEW}})
    await eventually(lambda: cluster.get(JOBS, job_for(NEW)), message="the new migration Job")
    await cluster.complete_job(job_for(NEW))
    await eventually(lambda: image_of(cluster) == NEW, message="the Deployment at NEW")

    await cluster.miss_deadline("chat-stable")
    await eventually(lambda: image_of(cluster) == OLD, message="the rollback to OLD")
    await eventually(lambda: condition(cluster, "Degraded") == ("True", "RolledBack"))
    assert status(cluster)["phase"] == "Failed"
    assert status(cluster)["currentImage"] == OLD
    # Kopf posts events in the background, after the status patch.
    rolled_back = await eventually(lambda: cluster.events("RolledBack"), message="the event")
    assert rolled_back[0]["type"] == "Warning"

    # The old version rolls out again and stays: no flapping back to NEW.
    await cluster.roll_out("chat-stable")
    await eventually(lambda: condition(cluster, "Ready") == ("True", "MinimumReplicasAvailable"))
    assert image_of(cluster) == OLD
    assert status(cluster)["phase"] == "Failed"


async def test_restart_mid_migration_creates_no_second_job(
    cluster: Cluster, operator: Operator
) -> None:
    await cluster.create(CHATSERVICES, body(image=OLD))
    job = job_for(OLD)
    await eventually(lambda: cluster.get(JOBS, job), message="the migration Job")
    await operator.stop()

    await operator.start()
    await eventually(
        lambda: len(cluster.requests("GET", f"/jobs/{job}")) >= 2, message="a resumed pass"
    )
    await cluster.complete_job(job)
    await eventually(lambda: image_of(cluster) == OLD, message="the Deployment at OLD")
    assert cluster.names(JOBS) == [job]
    assert len(cluster.requests("POST", "/jobs")) == 1


async def test_job_created_while_the_operator_was_down_is_adopted(
    cluster: Cluster, operator: Operator
) -> None:
    await install(cluster)
    await operator.stop()
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"image": NEW}})
    await operator.start()
    await eventually(lambda: cluster.get(JOBS, job_for(NEW)), message="the new migration Job")
    await cluster.complete_job(job_for(NEW))
    await eventually(lambda: image_of(cluster) == NEW, message="the Deployment at NEW")


@pytest.mark.usefixtures("operator")
async def test_paused_changes_nothing(cluster: Cluster) -> None:
    await install(cluster)
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"paused": True, "image": NEW}})
    await eventually(lambda: status(cluster).get("phase") == "Paused", message="phase Paused")
    writes_before = len(cluster.requests("POST")) + len(cluster.requests("PATCH", "/deployments"))
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"replicas": 5}})
    # Let the drift timer (2 s here) and the update handler both pass over it.
    before = len(cluster.requests("GET", "/chatservices/chat"))
    await eventually(lambda: len(cluster.requests("GET", "/chatservices/chat")) >= before + 2)
    assert len(cluster.requests("POST")) + len(cluster.requests("PATCH", "/deployments")) == (
        writes_before
    )
    assert cluster.get(JOBS, job_for(NEW)) is None
    assert image_of(cluster) == OLD
    assert cluster.get(DEPLOYMENTS, "chat-stable")["spec"]["replicas"] == 2  # type: ignore[index]

    await cluster.patch(CHATSERVICES, "chat", {"spec": {"paused": False}})
    await eventually(lambda: cluster.get(JOBS, job_for(NEW)), message="the Job after unpausing")


async def test_invalid_spec_gets_a_condition_and_no_retry_loop(cluster: Cluster) -> None:
    invalid = body(autoscaling={"minReplicas": 5, "maxReplicas": 2})
    with pytest.raises(AssertionError, match="minReplicas must be <= maxReplicas"):
        await cluster.create(CHATSERVICES, invalid)  # refused at admission, as by a real server
    # One stored before its CRD had the rule (an older CRD, or a validation-free copy).
    cluster.emulator.objects[kmock.resource(CHATSERVICES), NS, "chat"] = {
        **invalid,
        "metadata": {**invalid["metadata"], "uid": "uid-1", "generation": 1},
    }
    runner = Operator()
    await runner.start()
    try:
        await _invalid_spec_flow(cluster)
    finally:
        await runner.stop()


async def _invalid_spec_flow(cluster: Cluster) -> None:
    await eventually(lambda: condition(cluster, "Degraded") == ("True", "InvalidSpec"))
    message = next(
        c["message"] for c in status(cluster)["conditions"] if c["reason"] == "InvalidSpec"
    )
    assert "minReplicas must be <= maxReplicas" in message
    assert status(cluster)["phase"] == "Failed"
    assert cluster.names(JOBS) == []
    status_patches = len(cluster.requests("PATCH", "/chat/status"))
    before = len(cluster.requests("GET", "/chatservices/chat"))
    await eventually(lambda: len(cluster.requests("GET", "/chatservices/chat")) >= before + 2)
    assert len(cluster.requests("PATCH", "/chat/status")) == status_patches

    await cluster.patch(CHATSERVICES, "chat", {"spec": {"autoscaling": {"minReplicas": 2}}})
    await eventually(lambda: cluster.get(JOBS, job_for(OLD)), message="a Job once it is fixed")


@pytest.mark.usefixtures("operator")
async def test_drift_in_a_child_is_corrected(cluster: Cluster) -> None:
    await install(cluster)
    # Someone edits the Deployment by hand: the watch on Deployments puts it back.
    await cluster.patch(
        DEPLOYMENTS,
        "chat-stable",
        {"spec": {"template": {"spec": {"containers": [{"name": "chatservice", "image": "x"}]}}}},
    )
    await eventually(lambda: image_of(cluster) == OLD, message="the image restored")
    # Someone deletes the Service: the slow timer recreates it.
    await cluster.delete("v1/services", "chat")
    await eventually(lambda: cluster.get("v1/services", "chat"), message="the Service recreated")


@pytest.mark.usefixtures("operator")
async def test_a_spec_edit_retries_a_failed_migration(cluster: Cluster) -> None:
    await install(cluster)
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"image": NEW}})
    await eventually(lambda: cluster.get(JOBS, job_for(NEW)), message="the new migration Job")
    await cluster.fail_job(job_for(NEW))
    await eventually(lambda: status(cluster).get("phase") == "Failed", message="phase Failed")

    # The operator fixed something outside (say, the database); any spec edit retries.
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"workers": 3}})
    await eventually(lambda: len(cluster.requests("DELETE", f"/jobs/{job_for(NEW)}")) == 1)
    retried = await eventually(lambda: cluster.get(JOBS, job_for(NEW)), message="a fresh Job")
    assert "status" not in retried
    await cluster.complete_job(job_for(NEW))
    await eventually(lambda: image_of(cluster) == NEW, message="the Deployment at NEW")
    await eventually(
        lambda: condition(cluster, "MigrationSucceeded") == ("True", "MigrationSucceeded")
    )


@pytest.mark.usefixtures("operator")
async def test_autoscaling_owns_replicas_and_goes_when_switched_off(cluster: Cluster) -> None:
    hpas = "autoscaling/v2/horizontalpodautoscalers"
    await install(cluster, autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 4})
    assert cluster.names(hpas) == ["chat"]
    assert "replicas" not in cluster.get(DEPLOYMENTS, "chat-stable")["spec"]  # type: ignore[index]

    await cluster.patch(CHATSERVICES, "chat", {"spec": {"autoscaling": {"enabled": False}}})
    await eventually(lambda: cluster.names(hpas) == [], message="the HPA deleted")
    await eventually(
        lambda: cluster.get(DEPLOYMENTS, "chat-stable")["spec"].get("replicas") == 2,  # type: ignore[index]
        message="replicas back in the Deployment",
    )


@pytest.mark.usefixtures("operator")
async def test_a_rollout_keeps_the_replicas_the_autoscaler_set(cluster: Cluster) -> None:
    await install(cluster)
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"autoscaling": {"enabled": True}}})
    hpas = "autoscaling/v2/horizontalpodautoscalers"
    await eventually(lambda: cluster.names(hpas) == ["chat"], message="the HPA")
    # The HPA scales the Deployment (through /scale on a real cluster).
    await cluster.patch(DEPLOYMENTS, "chat-stable", {"spec": {"replicas": 3}})
    await cluster.patch(CHATSERVICES, "chat", {"spec": {"image": NEW}})
    await eventually(lambda: cluster.get(JOBS, job_for(NEW)), message="the new migration Job")
    await cluster.complete_job(job_for(NEW))
    await eventually(lambda: image_of(cluster) == NEW, message="the Deployment at NEW")
    # An apply without replicas would drop the field, and the server would default it to 1.
    assert cluster.get(DEPLOYMENTS, "chat-stable")["spec"].get("replicas") == 3  # type: ignore[index]
