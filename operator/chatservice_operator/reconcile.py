"""One idempotent reconciliation of a ChatService: observe, decide (state.py), act, report.

Every trigger (create/update/resume, a child Job or Deployment event, the drift timer) ends
here, serialised per object, so a restarted operator simply observes and continues.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from chatservice_operator import builders, metrics
from chatservice_operator.events import post_event
from chatservice_operator.identity import (
    API_VERSION,
    KIND,
    Track,
    deployment_name,
    job_name,
    legacy_deployment_name,
)
from chatservice_operator.kube import KubeClient, Obj
from chatservice_operator.resource import (
    CanaryVerdict,
    ChatService,
    ChatServiceSpec,
    ChatServiceStatus,
    MigrationResult,
    Phase,
)
from chatservice_operator.scrape import Scraper
from chatservice_operator.state import (
    CanaryAction,
    DeploymentObservation,
    JobAction,
    JobObservation,
    Observed,
    decide,
    invalid,
)

logger = logging.getLogger(__name__)


@dataclass
class Context:
    """What the handlers share, kept in Kopf's memo for the life of one operator run."""

    api: KubeClient
    service_monitors: bool
    scraper: Scraper
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    # resourceVersion of each child (by uid) as last reconciled on a watch event.
    seen: dict[str, str | None] = field(default_factory=dict)
    # The ChatServices in phase Canary: their metrics are read again every canary interval.
    canaries: set[tuple[str, str]] = field(default_factory=set)
    canary_timer: asyncio.Task[None] | None = None

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self.locks.setdefault((namespace, name), asyncio.Lock())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(obj: Obj, type_: str) -> Obj | None:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return None


def observe_job(job: Obj | None) -> JobObservation | None:
    if job is None or job.get("metadata", {}).get("deletionTimestamp"):
        return None
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    if complete and complete.get("status") == "True":
        finished = job.get("status", {}).get("completionTime") or complete.get("lastTransitionTime")
        return JobObservation(MigrationResult.SUCCEEDED, finished_at=finished)
    if failed and failed.get("status") == "True":
        message = failed.get("message") or failed.get("reason") or "failed"
        return JobObservation(
            MigrationResult.FAILED, message=message, finished_at=failed.get("lastTransitionTime")
        )
    return JobObservation(MigrationResult.RUNNING)


def observe_deployment(deployment: Obj | None) -> DeploymentObservation | None:
    if deployment is None:
        return None
    containers = deployment["spec"]["template"]["spec"]["containers"]
    image = next(c["image"] for c in containers if c["name"] == "chatservice")
    status = deployment.get("status", {})
    progressing = _condition(deployment, "Progressing")
    return DeploymentObservation(
        image=image,
        generation=deployment["metadata"].get("generation", 0),
        observed_generation=status.get("observedGeneration", 0),
        replicas=deployment["spec"].get("replicas", 1),
        updated_replicas=status.get("updatedReplicas", 0),
        ready_replicas=status.get("readyReplicas", 0),
        available_replicas=status.get("availableReplicas", 0),
        deadline_exceeded=bool(
            progressing
            and progressing.get("status") == "False"
            and progressing.get("reason") == "ProgressDeadlineExceeded"
        ),
    )


def parse(body: Obj) -> ChatService:
    meta = body["metadata"]
    return ChatService(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=meta.get("generation", 1),
        spec=ChatServiceSpec.model_validate(body.get("spec") or {}),
    )


async def _ensure_settings_children(ctx: Context, cs: ChatService) -> None:
    """The children that are not gated by migrations: they follow the spec directly."""
    api, spec, ns = ctx.api, cs.spec, cs.namespace
    await api.ensure(builders.build_configmap(cs))
    await api.ensure(builders.build_service(cs))
    optional: list[tuple[bool, Obj]] = [
        (spec.autoscaling.enabled, builders.build_hpa(cs)),
        (spec.pod_disruption_budget.enabled, builders.build_pdb(cs)),
    ]
    if ctx.service_monitors:
        optional.append((spec.monitoring.service_monitor, builders.build_service_monitor(cs)))
    for enabled, obj in optional:
        if enabled:
            await api.ensure(obj)
        else:
            await api.ensure_absent(obj["apiVersion"], obj["kind"], ns, obj["metadata"]["name"])


def _status_patch(status: ChatServiceStatus) -> Obj:
    # None values are kept: in a merge patch they delete what an earlier status had there.
    return {"status": status.model_dump(mode="json", by_alias=True)}


async def reconcile(ctx: Context, namespace: str, name: str, *, settings_children: bool) -> None:
    """Bring one ChatService a step closer to its spec; `settings_children` also syncs the
    ConfigMap, Service, HPA, PDB and ServiceMonitor (skipped on child-event passes)."""
    async with ctx.lock(namespace, name):
        started = time.monotonic()
        outcome = "error"
        try:
            outcome = await _reconcile(ctx, namespace, name, settings_children)
        finally:
            metrics.RECONCILES.labels(outcome).inc()
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started)


async def _reconcile(ctx: Context, namespace: str, name: str, settings_children: bool) -> str:
    api = ctx.api
    body = await api.get(API_VERSION, KIND, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        _track_canary(ctx, namespace, name, in_canary=False)
        return "success"  # deleted: the children go with it by their ownerReferences
    status = ChatServiceStatus.model_validate(body.get("status") or {})
    generation = body["metadata"].get("generation", 1)
    try:
        cs = parse(body)
    except ValidationError as exc:
        message = "invalid spec: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        new_status = invalid(status, generation, message, _now())
        if new_status != status:
            await api.patch(API_VERSION, KIND, namespace, name, _status_patch(new_status), "status")
            await post_event(api, body, "Warning", "InvalidSpec", message)
        logger.warning("ChatService %s/%s: %s", namespace, name, message)
        return "invalid"

    job_raw = await api.get("batch/v1", "Job", namespace, job_name(cs))
    stable_name = deployment_name(cs, Track.STABLE)
    canary_name = deployment_name(cs, Track.CANARY)
    deployment_raw = await api.get("apps/v1", "Deployment", namespace, stable_name)
    legacy_name = legacy_deployment_name(cs)
    legacy_raw = _owned(cs, await api.get("apps/v1", "Deployment", namespace, legacy_name))
    canary_raw = await api.get("apps/v1", "Deployment", namespace, canary_name)
    observed = Observed(
        job=observe_job(job_raw),
        deployment=observe_deployment(deployment_raw),
        legacy=observe_deployment(legacy_raw),
        canary=observe_deployment(canary_raw),
    )
    canary = observed.canary
    judged = cs.spec.rollout.canary.enabled and not cs.spec.paused
    if judged and canary is not None and canary.rolled_out:
        # Only a ready canary is judged; its pods and the stable ones are read for it.
        observed = replace(observed, samples=await ctx.scraper.samples(api, cs))
    decision = decide(cs, status, observed, _now())
    _track_canary(ctx, namespace, name, in_canary=decision.status.phase == Phase.CANARY)

    if decision.job is JobAction.DELETE:
        await api.delete("batch/v1", "Job", namespace, job_name(cs))
    if decision.job is JobAction.CREATE and await api.create(builders.build_job(cs)):
        metrics.MIGRATIONS.labels("started").inc()
    # After the Job (the critical path of a new image), before the Deployment that reads them.
    if settings_children and not cs.spec.paused:
        await _ensure_settings_children(ctx, cs)
    checksum = builders.config_checksum(builders.build_configmap(cs))
    if decision.deployment_image is not None:
        desired = builders.build_deployment(cs, decision.deployment_image, checksum)
        scaled = deployment_raw or legacy_raw
        if cs.spec.autoscaling.enabled and scaled is not None:
            # Server-side apply removes a field its manager stops sending, and the server then
            # defaults replicas to 1 until the HPA acts: send the count the HPA has set.
            replicas = scaled.get("spec", {}).get("replicas")
            if replicas is not None:
                desired["spec"]["replicas"] = replicas
        await api.ensure(desired, deployment_raw, fetched=True)
    if decision.canary is CanaryAction.APPLY:
        desired = builders.build_deployment(
            cs, cs.spec.image, checksum, Track.CANARY, decision.canary_replicas
        )
        await api.ensure(desired, canary_raw, fetched=True)
    elif decision.canary is CanaryAction.DELETE and canary_raw is not None:
        await api.delete("apps/v1", "Deployment", namespace, canary_name)
    if decision.delete_legacy and legacy_raw is not None:
        await api.delete("apps/v1", "Deployment", namespace, legacy_name)
    if decision.rollback:
        metrics.ROLLBACKS.inc()
    _count_migration_outcome(status, decision.status)
    _count_canary_verdict(status, decision.status)

    if decision.status != status:
        await api.patch(
            API_VERSION, KIND, namespace, name, _status_patch(decision.status), "status"
        )
    for event in decision.events:
        await post_event(api, body, event.type, event.reason, event.message)
    return "success"


def _track_canary(ctx: Context, namespace: str, name: str, *, in_canary: bool) -> None:
    if in_canary:
        ctx.canaries.add((namespace, name))
    else:
        ctx.canaries.discard((namespace, name))
    metrics.CANARIES_IN_PROGRESS.set(len(ctx.canaries))


def _owned(cs: ChatService, obj: Obj | None) -> Obj | None:
    """The object if this ChatService controls it: a Deployment of the same name that someone
    else made is no legacy of ours, and must never be deleted."""
    if obj is None:
        return None
    owners = obj.get("metadata", {}).get("ownerReferences") or []
    return obj if any(owner.get("uid") == cs.uid for owner in owners) else None


def _count_canary_verdict(old: ChatServiceStatus, new: ChatServiceStatus) -> None:
    verdict, record = new.canary.verdict, new.canary
    if verdict not in (CanaryVerdict.PASSED, CanaryVerdict.FAILED):
        return
    if (old.canary.verdict, old.canary.decided_at) == (verdict, record.decided_at):
        return
    metrics.CANARY_VERDICTS.labels(verdict.lower()).inc()
    if record.started is not None and record.decided_at is not None:
        started = datetime.fromisoformat(record.started)
        metrics.CANARY_DURATION.observe(
            (datetime.fromisoformat(record.decided_at) - started).total_seconds()
        )


def _count_migration_outcome(old: ChatServiceStatus, new: ChatServiceStatus) -> None:
    result = new.migration.result
    changed = (old.migration.hash, old.migration.result) != (new.migration.hash, result)
    if changed and result in (MigrationResult.SUCCEEDED, MigrationResult.FAILED):
        metrics.MIGRATIONS.labels(result.lower()).inc()


def owner_of(child: Any) -> str | None:
    """The ChatService a labelled child belongs to."""
    labels = child.get("metadata", {}).get("labels") or {}
    owner = labels.get("app.kubernetes.io/instance")
    return owner if isinstance(owner, str) else None
