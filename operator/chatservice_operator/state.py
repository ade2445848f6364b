"""The decision function: observed state in, next status, actions and events out. Pure.

The brief's reconciliation steps 1-5 live here; `reconcile.py` only observes and executes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum, StrEnum
from typing import Literal

from chatservice_operator.identity import Track, deployment_name, job_name, migration_hash
from chatservice_operator.resource import (
    CanaryStatus,
    CanaryVerdict,
    ChatService,
    ChatServiceStatus,
    Condition,
    MigrationResult,
    MigrationStatus,
    Phase,
    PodSample,
    RolloutStatus,
)
from chatservice_operator.verdict import advance, judge, measure, summary


class ConditionType(StrEnum):
    MIGRATION_SUCCEEDED = "MigrationSucceeded"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"


MIGRATION_SUCCEEDED = ConditionType.MIGRATION_SUCCEEDED
PROGRESSING = ConditionType.PROGRESSING
READY = ConditionType.READY
DEGRADED = ConditionType.DEGRADED
CONDITION_ORDER = tuple(ConditionType)


class CanaryAction(Enum):
    """What the canary Deployment needs: to be left as it is, applied at spec.image, or gone."""

    KEEP = "keep"
    APPLY = "apply"
    DELETE = "delete"


class JobAction(Enum):
    """What the migration Job needs: nothing, to be created, or to go (a retry replaces it)."""

    KEEP = "keep"
    CREATE = "create"
    DELETE = "delete"


Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class JobObservation:
    result: MigrationResult
    message: str = ""
    finished_at: str | None = None


@dataclass(frozen=True)
class DeploymentObservation:
    image: str
    generation: int
    observed_generation: int
    replicas: int
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    deadline_exceeded: bool = False

    @property
    def rolled_out(self) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas == self.replicas
            and self.available_replicas == self.replicas
        )


@dataclass(frozen=True)
class Observed:
    job: JobObservation | None = None
    # The stable Deployment.
    deployment: DeploymentObservation | None = None
    # The Deployment of operators before canaries (no track label), until it is replaced.
    legacy: DeploymentObservation | None = None
    canary: DeploymentObservation | None = None
    # Every serving pod's counters, read only while a ready canary is being judged.
    samples: tuple[PodSample, ...] = ()


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: ChatServiceStatus
    # The image the stable Deployment must run; None leaves it alone (absent or paused).
    deployment_image: str | None = None
    canary: CanaryAction = CanaryAction.DELETE
    canary_replicas: int = 0
    delete_legacy: bool = False
    job: JobAction = JobAction.KEEP
    rollback: bool = False
    events: tuple[Event, ...] = ()


@dataclass
class _Conditions:
    """Sets conditions so that lastTransitionTime moves only when the status flips."""

    prior: dict[str, Condition]
    generation: int
    now: str
    result: dict[str, Condition] = field(default_factory=dict)

    def set(self, type_: ConditionType, status: Status, reason: str, message: str) -> None:
        previous = self.prior.get(type_)
        since = (
            previous.last_transition_time if previous and previous.status == status else self.now
        )
        self.result[type_] = Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=since,
            observed_generation=self.generation,
        )

    def flipped(self, type_: ConditionType, reason: str) -> bool:
        previous = self.prior.get(type_)
        new = self.result[type_]
        return previous is None or (previous.status, previous.reason) != (new.status, reason)

    def merged(self) -> tuple[Condition, ...]:
        merged = {**self.prior, **self.result}
        return tuple(merged[t] for t in CONDITION_ORDER if t in merged)


def _ready(conditions: _Conditions, deployment: DeploymentObservation | None) -> None:
    if deployment is None:
        conditions.set(READY, "False", "NoDeployment", "No serving Deployment yet")
    elif deployment.replicas == 0:
        conditions.set(READY, "False", "ScaledToZero", "The Deployment has 0 replicas")
    elif deployment.available_replicas >= deployment.replicas:
        conditions.set(
            READY, "True", "MinimumReplicasAvailable",
            f"{deployment.available_replicas}/{deployment.replicas} replicas available",
        )  # fmt: skip
    else:
        conditions.set(
            READY, "False", "ReplicasUnavailable",
            f"{deployment.available_replicas}/{deployment.replicas} replicas available",
        )  # fmt: skip


def invalid(
    status: ChatServiceStatus, generation: int, message: str, now: str
) -> ChatServiceStatus:
    """The status of a resource whose spec cannot be parsed: say why, touch nothing."""
    conditions = _Conditions({c.type: c for c in status.conditions}, generation, now)
    conditions.set(DEGRADED, "True", "InvalidSpec", message)
    return status.model_copy(
        update={
            "observed_generation": generation,
            "phase": Phase.FAILED,
            "conditions": conditions.merged(),
        }
    )


@dataclass
class _Pass:
    """One decision's inputs and the status it builds up, shared by the gate and the step."""

    cs: ChatService
    status: ChatServiceStatus
    observed: Observed
    conditions: _Conditions
    # What serves now: the last image that completed a rollout, else what the Deployment runs.
    serving: str | None
    now: str

    @property
    def target(self) -> str:
        return self.cs.spec.image

    def finish(
        self,
        phase: Phase,
        *,
        migration: MigrationStatus | None = None,
        rollout: RolloutStatus | None = None,
        canary_status: CanaryStatus | None = None,
        current_image: str | None = None,
        deployment_image: str | None = None,
        canary: CanaryAction = CanaryAction.DELETE,
        canary_replicas: int = 0,
        job: JobAction = JobAction.KEEP,
        rollback: bool = False,
        events: tuple[Event, ...] = (),
    ) -> Decision:
        deployment = self.observed.deployment
        status = self.status
        final = status.model_copy(
            update={
                "observed_generation": self.cs.generation,
                "target_image": self.target,
                "replicas": deployment.replicas if deployment else 0,
                "ready_replicas": deployment.ready_replicas if deployment else 0,
                "phase": phase,
                "conditions": self.conditions.merged(),
                "migration": migration or status.migration,
                "rollout": rollout or status.rollout,
                "canary": canary_status or status.canary,
                "current_image": current_image or status.current_image,
            }
        )
        return Decision(
            status=final,
            deployment_image=deployment_image,
            canary=canary,
            canary_replicas=canary_replicas,
            job=job,
            rollback=rollback,
            events=events,
        )


def decide(cs: ChatService, status: ChatServiceStatus, observed: Observed, now: str) -> Decision:
    deployment, legacy = observed.deployment, observed.legacy
    conditions = _Conditions({c.type: c for c in status.conditions}, cs.generation, now)
    running = deployment or legacy
    serving = status.current_image or (running.image if running else None)
    run = _Pass(cs, status, observed, conditions, serving, now)
    if cs.spec.paused:
        conditions.set(PROGRESSING, "False", "Paused", "spec.paused is set: nothing is changed")
        return run.finish(Phase.PAUSED, canary=CanaryAction.KEEP)
    handing_over = legacy is not None and (deployment is None or not deployment.rolled_out)
    _ready(conditions, legacy if handing_over else deployment)
    if legacy is not None:
        if handing_over or deployment is None or deployment.image != legacy.image:
            return _handover(run, legacy)
        # The stable Deployment serves what the old one did: the old one can go.
        return replace(_decide_gated(run), delete_legacy=True)
    return _decide_gated(run)


def _decide_gated(run: _Pass) -> Decision:
    gate = _migration_gate(run)
    if isinstance(gate, Decision):
        return gate
    return _rollout_step(run, gate)


def _handover(run: _Pass, legacy: DeploymentObservation) -> Decision:
    """Selectors are immutable, so the Deployment without a track label is replaced: the stable
    one starts at the same image beside it, and the old one goes once that is available."""
    stable = deployment_name(run.cs, Track.STABLE)
    message = f"Moving to the Deployment {stable}; {run.cs.name} serves until it is available"
    run.conditions.set(PROGRESSING, "True", "Relabelling", message)
    return run.finish(Phase.ROLLING_OUT, deployment_image=legacy.image)


def _migration_gate(run: _Pass) -> Decision | MigrationStatus:
    """Steps 1-2: nothing rolls out until the target's migration succeeded. Returns the
    decision while the gate is shut, else the migration status the rollout carries on."""
    cs, conditions, target, serving = run.cs, run.conditions, run.target, run.serving
    digest = migration_hash(cs)
    migration = run.status.migration
    if not cs.spec.migrations.enabled:
        conditions.set(MIGRATION_SUCCEEDED, "True", "MigrationsDisabled", "Migrations are off")
        return migration
    if migration.hash == digest and migration.result == MigrationResult.SUCCEEDED:
        conditions.set(
            MIGRATION_SUCCEEDED, "True", "MigrationSucceeded", f"Migrated for {migration.image}"
        )
        return migration
    name = job_name(cs)
    job = run.observed.job
    running = MigrationStatus(job=name, hash=digest, image=target, result=MigrationResult.RUNNING)
    if job is None:
        conditions.set(
            MIGRATION_SUCCEEDED, "Unknown", "MigrationRunning", f"Job {name} migrates {target}"
        )
        conditions.set(DEGRADED, "False", "AsExpected", "")
        event = Event("Normal", "MigrationStarted", f"Job {name} migrates the database")
        return run.finish(
            Phase.MIGRATING,
            migration=running,
            deployment_image=serving,
            job=JobAction.CREATE,
            events=(event,),
        )
    if job.result == MigrationResult.FAILED:
        failed_at = migration.failed_generation if migration.hash == digest else None
        if failed_at is not None and cs.generation > failed_at:
            # A new spec generation retries: the old Job goes, the next pass creates it anew.
            conditions.set(
                MIGRATION_SUCCEEDED, "Unknown", "MigrationRetrying", f"Job {name} is replaced"
            )
            return run.finish(
                Phase.MIGRATING, migration=running, deployment_image=serving, job=JobAction.DELETE
            )
        message = f"Job {name} failed: {job.message}; {serving or 'nothing'} keeps serving"
        conditions.set(MIGRATION_SUCCEEDED, "False", "MigrationFailed", message)
        conditions.set(DEGRADED, "True", "MigrationFailed", message)
        events: tuple[Event, ...] = ()
        if conditions.flipped(MIGRATION_SUCCEEDED, "MigrationFailed"):
            events = (Event("Warning", "MigrationFailed", message),)
        failed = running.model_copy(
            update={
                "result": MigrationResult.FAILED,
                "finished_at": job.finished_at,
                "failed_generation": failed_at or cs.generation,
            }
        )
        return run.finish(Phase.FAILED, migration=failed, deployment_image=serving, events=events)
    if job.result == MigrationResult.RUNNING:
        conditions.set(
            MIGRATION_SUCCEEDED, "Unknown", "MigrationRunning", f"Job {name} migrates {target}"
        )
        conditions.set(DEGRADED, "False", "AsExpected", "")
        return run.finish(Phase.MIGRATING, migration=running, deployment_image=serving)
    succeeded = running.model_copy(
        update={"result": MigrationResult.SUCCEEDED, "finished_at": job.finished_at}
    )
    conditions.set(MIGRATION_SUCCEEDED, "True", "MigrationSucceeded", f"Migrated for {target}")
    return succeeded


def _rollout_step(run: _Pass, migration: MigrationStatus) -> Decision:
    """Steps 3-5: roll out the migrated target, watch it, roll back if it cannot finish."""
    cs, conditions, target, serving = run.cs, run.conditions, run.target, run.serving
    deployment = run.observed.deployment
    rollout = run.status.rollout
    if rollout.rolled_back_image == target and rollout.rolled_back_generation == cs.generation:
        message = f"{target} was rolled back to {serving}; change the spec to try again"
        conditions.set(PROGRESSING, "False", "RolledBack", message)
        conditions.set(DEGRADED, "True", "RolledBack", message)
        return run.finish(Phase.FAILED, migration=migration, deployment_image=serving)
    if cs.spec.rollout.canary.enabled and deployment is not None and deployment.image != target:
        return _canary_step(run, migration, deployment)
    if deployment is None or deployment.image != target:
        conditions.set(PROGRESSING, "True", "RollingOut", f"Rolling out {target}")
        conditions.set(DEGRADED, "False", "AsExpected", "")
        return run.finish(Phase.ROLLING_OUT, migration=migration, deployment_image=target)
    if deployment.deadline_exceeded:
        return _deadline_exceeded(run, migration)
    if deployment.rolled_out:
        conditions.set(PROGRESSING, "False", "RolloutComplete", f"{target} is rolled out")
        conditions.set(DEGRADED, "False", "AsExpected", "")
        events: tuple[Event, ...] = ()
        if conditions.flipped(PROGRESSING, "RolloutComplete"):
            events = (Event("Normal", "RolloutComplete", f"{target} is rolled out"),)
        return run.finish(
            Phase.READY,
            migration=migration,
            current_image=target,
            deployment_image=target,
            events=events,
        )
    conditions.set(PROGRESSING, "True", "RollingOut", f"Rolling out {target}")
    conditions.set(DEGRADED, "False", "AsExpected", "")
    return run.finish(Phase.ROLLING_OUT, migration=migration, deployment_image=target)


def _deadline_exceeded(run: _Pass, migration: MigrationStatus) -> Decision:
    """Step 5: the target did not become available in time; roll back if allowed and possible."""
    cs, conditions, target = run.cs, run.conditions, run.target
    previous = run.status.current_image
    if cs.spec.rollout.auto_rollback and previous and previous != target:
        message = f"{target} did not become available in time; rolled back to {previous}"
        conditions.set(PROGRESSING, "False", "RolledBack", message)
        conditions.set(DEGRADED, "True", "RolledBack", message)
        return run.finish(
            Phase.FAILED,
            migration=migration,
            rollout=RolloutStatus(rolled_back_image=target, rolled_back_generation=cs.generation),
            deployment_image=previous,
            rollback=True,
            events=(Event("Warning", "RolledBack", message),),
        )
    message = f"{target} did not become available in time"
    conditions.set(PROGRESSING, "False", "ProgressDeadlineExceeded", message)
    conditions.set(DEGRADED, "True", "ProgressDeadlineExceeded", message)
    events: tuple[Event, ...] = ()
    if conditions.flipped(DEGRADED, "ProgressDeadlineExceeded"):
        events = (Event("Warning", "ProgressDeadlineExceeded", message),)
    return run.finish(Phase.FAILED, migration=migration, deployment_image=target, events=events)


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _canary_step(run: _Pass, migration: MigrationStatus, stable: DeploymentObservation) -> Decision:
    """The migrated target runs on canary pods beside the stable ones and is judged on its own
    metrics against theirs: promoted when it passes, removed when it fails."""
    cs, conditions, target, serving = run.cs, run.conditions, run.target, run.serving
    spec = cs.spec.rollout.canary
    record = run.status.canary
    if record.image == target and record.verdict == CanaryVerdict.PASSED:
        return _promote(run, migration, record)
    failed = record.verdict == CanaryVerdict.FAILED
    if failed and (record.image, record.generation) == (target, cs.generation):
        message = record.message or f"The canary of {target} failed"
        conditions.set(PROGRESSING, "False", "CanaryFailed", message)
        conditions.set(DEGRADED, "True", "CanaryFailed", message)
        return run.finish(Phase.FAILED, migration=migration, deployment_image=serving)
    if record.image != target or record.verdict != CanaryVerdict.PENDING:
        # A new canary (a pause, or any other edit while it runs, does not restart it).
        record = CanaryStatus(image=target, generation=cs.generation, verdict=CanaryVerdict.PENDING)
    replicas = spec.replica_count(stable.replicas)

    def judging(record: CanaryStatus, *events: Event) -> Decision:
        return run.finish(
            Phase.CANARY,
            migration=migration,
            canary_status=record,
            deployment_image=serving,
            canary=CanaryAction.APPLY,
            canary_replicas=replicas,
            events=events,
        )

    canary = run.observed.canary
    if canary is None or canary.image != target or not canary.rolled_out:
        if canary is not None and canary.image == target and canary.deadline_exceeded:
            return _canary_failed(run, migration, record, "its pods did not become available")
        message = f"Starting {replicas} canary pod(s) of {target}"
        conditions.set(PROGRESSING, "True", "CanaryStarting", message)
        conditions.set(DEGRADED, "False", "AsExpected", "")
        return judging(record)
    if record.started is None:
        record = record.model_copy(update={"started": run.now, "readings": run.observed.samples})
        message = f"{target} serves on {replicas} canary pod(s), judged for {spec.duration}"
        conditions.set(PROGRESSING, "True", "CanaryAnalysing", message)
        conditions.set(DEGRADED, "False", "AsExpected", "")
        return judging(record, Event("Normal", "CanaryStarted", message))
    window, readings = advance(record.window, record.readings, run.observed.samples)
    measured = measure(window)
    mine, theirs = measured[Track.CANARY], measured[Track.STABLE]
    window_over = _seconds_between(record.started, run.now) >= spec.duration_seconds
    judgement = judge(mine, theirs, spec, window_over=window_over)
    record = record.model_copy(
        update={
            "requests_seen": mine.requests,
            "canary": mine,
            "stable": theirs,
            "readings": readings,
            "window": window,
        }
    )
    figures = summary(mine, theirs)
    if judgement.verdict == CanaryVerdict.FAILED:
        return _canary_failed(run, migration, record, "; ".join(judgement.reasons), figures)
    if judgement.verdict == CanaryVerdict.PASSED:
        passed = record.model_copy(
            update={
                "verdict": CanaryVerdict.PASSED,
                "decided_at": run.now,
                "message": f"{target} passed its canary: {figures}",
                "readings": (),
                "window": (),
            }
        )
        event = Event("Normal", "CanaryPassed", passed.message or "")
        return _promote(run, migration, passed, event)
    message = f"Judging {target} on {replicas} canary pod(s) for {spec.duration}: {figures}"
    conditions.set(PROGRESSING, "True", "CanaryAnalysing", message)
    conditions.set(DEGRADED, "False", "AsExpected", "")
    return judging(record)


def _promote(
    run: _Pass, migration: MigrationStatus, record: CanaryStatus, *events: Event
) -> Decision:
    """The canary passed: the stable Deployment rolls out the target, the canary goes."""
    message = f"{run.target} passed its canary; rolling it out"
    run.conditions.set(PROGRESSING, "True", "CanaryPassed", message)
    run.conditions.set(DEGRADED, "False", "AsExpected", "")
    return run.finish(
        Phase.ROLLING_OUT,
        migration=migration,
        canary_status=record,
        deployment_image=run.target,
        events=events,
    )


def _canary_failed(
    run: _Pass,
    migration: MigrationStatus,
    record: CanaryStatus,
    reasons: str,
    figures: str = "",
) -> Decision:
    """The canary broke a threshold (or never became available): it goes, the stable pods
    never changed; the next spec generation tries again."""
    message = f"The canary of {run.target} failed: {reasons}"
    if figures:
        message += f" ({figures})"
    message += f"; {run.serving or 'nothing'} keeps serving"
    failed = record.model_copy(
        update={
            "generation": run.cs.generation,
            "verdict": CanaryVerdict.FAILED,
            "decided_at": run.now,
            "message": message,
            "readings": (),
            "window": (),
        }
    )
    run.conditions.set(PROGRESSING, "False", "CanaryFailed", message)
    run.conditions.set(DEGRADED, "True", "CanaryFailed", message)
    return run.finish(
        Phase.FAILED,
        migration=migration,
        canary_status=failed,
        deployment_image=run.serving,
        events=(Event("Warning", "CanaryFailed", message),),
    )
