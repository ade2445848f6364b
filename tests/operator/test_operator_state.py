"""The decision function across every branch of the state machine."""

from __future__ import annotations

from chatservice_operator.identity import job_name, migration_hash
from chatservice_operator.resource import (
    ChatServiceStatus,
    Condition,
    MigrationResult,
    MigrationStatus,
    RolloutStatus,
)
from chatservice_operator.state import (
    CanaryAction,
    Decision,
    DeploymentObservation,
    Event,
    JobAction,
    JobObservation,
    Observed,
    decide,
    invalid,
)
from tests.operator.operator_specs import chatservice

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"
OLD = "reg.example/chat:0.9"
NEW = "reg.example/chat:1.0"
CS = chatservice()  # spec.image == NEW
RUNNING = JobObservation(MigrationResult.RUNNING)
SUCCEEDED = JobObservation(MigrationResult.SUCCEEDED, finished_at=T0)
FAILED = JobObservation(MigrationResult.FAILED, message="BackoffLimitExceeded")


def dep(image: str, *, available: int = 2, updated: int = 2, **kw: object) -> DeploymentObservation:
    fields: dict[str, object] = {
        "generation": 3,
        "observed_generation": 3,
        "replicas": 2,
        "ready_replicas": available,
    }
    fields.update(kw)
    return DeploymentObservation(
        image=image,
        updated_replicas=updated,
        available_replicas=available,
        **fields,  # type: ignore[arg-type]
    )


def migrated(image: str = NEW) -> MigrationStatus:
    cs = chatservice(image=image)
    return MigrationStatus(
        job=job_name(cs), hash=migration_hash(cs), image=image, result="Succeeded"
    )


def serving_old(**kw: object) -> ChatServiceStatus:
    """A service that completed a rollout of OLD, before spec.image moved to NEW."""
    fields: dict[str, object] = {"current_image": OLD, "migration": migrated(OLD), **kw}
    return ChatServiceStatus.model_validate(fields)


def conditions(decision: Decision) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in decision.status.conditions}


def test_new_image_starts_a_migration_and_keeps_the_old_version_serving() -> None:
    decision = decide(CS, serving_old(), Observed(job=None, deployment=dep(OLD)), T0)
    assert decision.job is JobAction.CREATE
    assert decision.deployment_image == OLD
    assert decision.status.phase == "Migrating"
    assert decision.status.migration == MigrationStatus(
        job=job_name(CS), hash=migration_hash(CS), image=NEW, result="Running"
    )
    assert conditions(decision) == {
        "MigrationSucceeded": ("Unknown", "MigrationRunning"),
        "Ready": ("True", "MinimumReplicasAvailable"),
        "Degraded": ("False", "AsExpected"),
    }
    assert decision.events == (
        Event("Normal", "MigrationStarted", f"Job {job_name(CS)} migrates the database"),
    )


def test_first_install_creates_no_deployment_before_the_migration() -> None:
    decision = decide(CS, ChatServiceStatus(), Observed(), T0)
    assert decision.job is JobAction.CREATE
    assert decision.deployment_image is None
    assert conditions(decision)["Ready"] == ("False", "NoDeployment")


def test_running_job_waits_without_creating_another() -> None:
    decision = decide(CS, serving_old(), Observed(job=RUNNING, deployment=dep(OLD)), T0)
    assert decision.job is not JobAction.CREATE
    assert decision.deployment_image == OLD
    assert decision.status.phase == "Migrating"
    assert decision.events == ()


def test_failed_job_leaves_the_deployment_alone_and_warns_once() -> None:
    observed = Observed(job=FAILED, deployment=dep(OLD))
    decision = decide(CS, serving_old(), observed, T0)
    assert decision.deployment_image == OLD
    assert decision.job is not JobAction.CREATE
    assert decision.status.phase == "Failed"
    assert decision.status.migration.result == "Failed"
    assert decision.status.migration.failed_generation == 1
    assert conditions(decision)["MigrationSucceeded"] == ("False", "MigrationFailed")
    assert conditions(decision)["Degraded"] == ("True", "MigrationFailed")
    assert [e.type for e in decision.events] == ["Warning"]
    assert "BackoffLimitExceeded" in decision.events[0].message

    again = decide(CS, decision.status, observed, T1)
    assert again.events == ()
    assert again.status == decision.status  # lastTransitionTime kept: nothing flipped


def test_a_new_generation_retries_a_failed_migration() -> None:
    failed = decide(CS, serving_old(), Observed(job=FAILED, deployment=dep(OLD)), T0).status
    retry = decide(chatservice(generation=2), failed, Observed(job=FAILED, deployment=dep(OLD)), T1)
    assert retry.job is JobAction.DELETE
    assert retry.deployment_image == OLD
    assert conditions(retry)["MigrationSucceeded"] == ("Unknown", "MigrationRetrying")


def test_succeeded_job_rolls_out_the_target() -> None:
    decision = decide(CS, serving_old(), Observed(job=SUCCEEDED, deployment=dep(OLD)), T0)
    assert decision.deployment_image == NEW
    assert decision.status.phase == "RollingOut"
    assert decision.status.migration.result == "Succeeded"
    assert decision.status.migration.finished_at == T0
    assert conditions(decision)["MigrationSucceeded"] == ("True", "MigrationSucceeded")
    assert conditions(decision)["Progressing"] == ("True", "RollingOut")


def test_recorded_success_needs_no_job_even_after_its_ttl_removed_it() -> None:
    status = serving_old().model_copy(update={"migration": migrated(NEW)})
    decision = decide(CS, status, Observed(job=None, deployment=dep(OLD)), T0)
    assert decision.job is not JobAction.CREATE
    assert decision.deployment_image == NEW


def test_rollout_in_progress_until_the_deployment_reports_the_new_generation() -> None:
    status = serving_old(migration=migrated(NEW))
    stale = dep(NEW, generation=4, observed_generation=3)
    decision = decide(CS, status, Observed(deployment=stale), T0)
    assert decision.status.phase == "RollingOut"
    assert decision.status.current_image == OLD
    half = dep(NEW, available=2, updated=1)
    assert decide(CS, status, Observed(deployment=half), T0).status.phase == "RollingOut"


def test_complete_rollout_makes_the_target_current_and_ready() -> None:
    status = serving_old(migration=migrated(NEW))
    decision = decide(CS, status, Observed(deployment=dep(NEW)), T0)
    assert decision.status.phase == "Ready"
    assert decision.status.current_image == NEW
    assert decision.status.ready_replicas == 2
    assert conditions(decision) == {
        "MigrationSucceeded": ("True", "MigrationSucceeded"),
        "Progressing": ("False", "RolloutComplete"),
        "Ready": ("True", "MinimumReplicasAvailable"),
        "Degraded": ("False", "AsExpected"),
    }
    assert [e.reason for e in decision.events] == ["RolloutComplete"]
    assert decide(CS, decision.status, Observed(deployment=dep(NEW)), T1).events == ()


def test_deadline_exceeded_rolls_back_to_the_current_image() -> None:
    status = serving_old(migration=migrated(NEW))
    stuck = dep(NEW, available=2, updated=1, deadline_exceeded=True)
    decision = decide(CS, status, Observed(deployment=stuck), T0)
    assert decision.rollback
    assert decision.deployment_image == OLD
    assert decision.status.phase == "Failed"
    assert decision.status.rollout == RolloutStatus(rolled_back_image=NEW, rolled_back_generation=1)
    assert conditions(decision)["Degraded"] == ("True", "RolledBack")
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "RolledBack")]

    # Afterwards the Deployment runs OLD again: hold there until the spec changes.
    held = decide(CS, decision.status, Observed(deployment=dep(OLD)), T1)
    assert not held.rollback
    assert held.deployment_image == OLD
    assert held.status.phase == "Failed"
    assert conditions(held)["Degraded"] == ("True", "RolledBack")
    retried = decide(chatservice(generation=2), decision.status, Observed(deployment=dep(OLD)), T1)
    assert retried.deployment_image == NEW


def test_deadline_exceeded_without_rollback_reports_and_stays() -> None:
    stuck = dep(NEW, available=0, updated=1, deadline_exceeded=True)
    no_rollback = chatservice(rollout={"autoRollback": False})
    status = serving_old(migration=migrated(NEW))
    decision = decide(no_rollback, status, Observed(deployment=stuck), T0)
    assert not decision.rollback
    assert decision.deployment_image == NEW
    assert conditions(decision)["Degraded"] == ("True", "ProgressDeadlineExceeded")
    assert conditions(decision)["Ready"] == ("False", "ReplicasUnavailable")
    assert [e.reason for e in decision.events] == ["ProgressDeadlineExceeded"]
    # A first install has nothing to roll back to either.
    first = decide(CS, ChatServiceStatus(migration=migrated(NEW)), Observed(deployment=stuck), T0)
    assert not first.rollback
    assert first.status.phase == "Failed"


def test_paused_changes_nothing() -> None:
    paused = chatservice(paused=True)
    decision = decide(paused, serving_old(), Observed(job=None, deployment=dep(OLD)), T0)
    # No action of any kind: a canary, if one runs, is frozen as it is.
    assert decision == Decision(status=decision.status, canary=CanaryAction.KEEP)
    assert decision.status.phase == "Paused"
    assert conditions(decision)["Progressing"] == ("False", "Paused")


def test_migrations_disabled_rolls_out_directly() -> None:
    cs = chatservice(migrations={"enabled": False})
    decision = decide(cs, ChatServiceStatus(current_image=OLD), Observed(deployment=dep(OLD)), T0)
    assert decision.job is not JobAction.CREATE
    assert decision.deployment_image == NEW
    assert conditions(decision)["MigrationSucceeded"] == ("True", "MigrationsDisabled")


def test_scaled_to_zero_is_not_ready() -> None:
    zero = dep(NEW, available=0, updated=0, replicas=0)
    decision = decide(CS, ChatServiceStatus(migration=migrated(NEW)), Observed(deployment=zero), T0)
    assert conditions(decision)["Ready"] == ("False", "ScaledToZero")


def test_last_transition_time_moves_only_on_a_flip() -> None:
    ready = Condition(
        type="Ready", status="True", reason="MinimumReplicasAvailable", last_transition_time=T0
    )
    status = serving_old(conditions=(ready,))
    same = decide(CS, status, Observed(job=RUNNING, deployment=dep(OLD)), T1)
    assert {c.type: c.last_transition_time for c in same.status.conditions}["Ready"] == T0
    down = decide(CS, status, Observed(job=RUNNING, deployment=dep(OLD, available=0)), T1)
    assert {c.type: c.last_transition_time for c in down.status.conditions}["Ready"] == T1
    assert all(c.observed_generation == 1 for c in down.status.conditions)


def test_invalid_spec_is_reported_as_a_condition() -> None:
    status = invalid(serving_old(), 4, "invalid spec: replicas: must be >= 0", T0)
    assert status.phase == "Failed"
    assert status.observed_generation == 4
    assert status.current_image == OLD
    assert [(c.type, c.status, c.reason, c.message) for c in status.conditions] == [
        ("Degraded", "True", "InvalidSpec", "invalid spec: replicas: must be >= 0")
    ]
