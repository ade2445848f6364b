"""Kopf registrations and the operator's lifecycle (settings, login, the drift pass).

Every handler only works out which ChatService its trigger concerns and calls reconcile().
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import kopf

from chatservice_operator.config import OperatorConfig
from chatservice_operator.identity import ANNOTATION_PREFIX, GROUP, MANAGED_BY, PLURAL, VERSION
from chatservice_operator.kube import ApiError, KubeClient
from chatservice_operator.kubeconfig import login_with_exec_plugin
from chatservice_operator.reconcile import Context, owner_of, reconcile
from chatservice_operator.scrape import Scraper

MONITORING_GROUP = "monitoring.coreos.com"
logger = logging.getLogger(__name__)


def connection_info(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    info = (
        kopf.login_with_service_account(settings=settings)
        or login_with_exec_plugin(settings)
        or kopf.login_with_kubeconfig(settings=settings)
    )
    if info is None:
        raise kopf.LoginError("No service account token and no kubeconfig found.")
    return info


@kopf.index(GROUP, VERSION, PLURAL)
def chatservice_keys(namespace: str | None, name: str, **_: Any) -> dict[tuple[str, str], None]:
    return {(namespace or "", name): None}


async def _correct_drift(
    ctx: Context, keys: kopf.Index[tuple[str, str], None], interval: float
) -> None:
    """Reconcile every ChatService now and then. Not a per-object @kopf.timer: Kopf puts a
    finalizer on objects with timers, and a finalizer would keep a ChatService from being
    deleted while the operator is down, with nothing outside the cluster to clean up."""
    while True:
        await asyncio.sleep(interval)
        # A Prometheus Operator installed (or removed) after us is noticed here.
        try:
            ctx.service_monitors = await ctx.api.has_api_group(MONITORING_GROUP)
        except (ApiError, aiohttp.ClientError):
            logger.warning("Discovery of %s failed; asking again next pass", MONITORING_GROUP)
        for namespace, name in list(keys):
            try:
                await reconcile(ctx, namespace, name, settings_children=True)
            except Exception:
                # One object's failure must not end drift correction for all the others.
                logger.exception("Drift correction of %s/%s failed", namespace, name)


async def _judge_canaries(ctx: Context, interval: float) -> None:
    """Reconcile every ChatService in phase Canary now and then: nothing else happens while a
    canary serves (no child changes), yet its metrics must be read until the verdict."""
    while True:
        await asyncio.sleep(interval)
        for namespace, name in sorted(ctx.canaries):
            try:
                await reconcile(ctx, namespace, name, settings_children=False)
            except Exception:
                logger.exception("Judging the canary of %s/%s failed", namespace, name)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    # `chatservice-operator` passes its configuration in the memo; an embedding (the tests'
    # kopf.operator) reads the environment, once, here.
    config: OperatorConfig = memo.get("config") or OperatorConfig.load()
    memo.config = config
    persistence = settings.persistence
    persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=ANNOTATION_PREFIX)
    settings.peering.standalone = True  # one replica with strategy Recreate: no peering needed
    # Our own Normal/Warning events are posted explicitly; Kopf's per-handler chatter is not.
    settings.posting.level = logging.WARNING
    # Reconnect watches now and then so that a silently dead connection cannot stall us.
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 630
    settings.watching.connect_timeout = 10
    # No cluster-wide scanning of namespaces and CRDs: a namespaced operator has only a Role,
    # and Kopf would retry the forbidden namespace list with backoff before serving anything.
    # The namespaces are the ones given; the ChatService API must be served at start-up.
    settings.scanning.disabled = True
    api = KubeClient(lambda: connection_info(settings))
    if not await api.has_api_group(f"{GROUP}/{VERSION}"):
        # Without scanning Kopf would never notice the CRD arriving: exit, and the Deployment
        # starts us again (the chart and kustomize create the CRD first, so this is brief).
        await api.close()
        raise kopf.PermanentError(f"the API {GROUP}/{VERSION} is not served: is the CRD installed?")
    memo.context = Context(
        api=api,
        service_monitors=await api.has_api_group(MONITORING_GROUP),
        scraper=Scraper(),
    )
    # Kopf passes its indices to every handler by name; this one stays live after startup.
    memo.drift = asyncio.create_task(
        _correct_drift(memo.context, kwargs["chatservice_keys"], config.drift_interval)
    )


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    return connection_info(settings)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    memo.drift.cancel()
    if memo.context.canary_timer is not None:
        memo.context.canary_timer.cancel()
    await memo.context.scraper.close()
    await memo.context.api.close()


def _judging_canaries(memo: kopf.Memo) -> None:
    """Start the canary timer with the first reconcile, once the operator has a ChatService to
    judge. One timer for all: it lives in the shared Context, as each object's memo is a copy.
    (Its events go through the operator's own client, events.py: Kopf's poster exists only
    inside handlers.)"""
    ctx: Context = memo.context
    if ctx.canary_timer is None or ctx.canary_timer.done():
        ctx.canary_timer = asyncio.create_task(_judge_canaries(ctx, memo.config.canary_interval))


async def _reconcile_or_retry(memo: kopf.Memo, namespace: str | None, name: str) -> None:
    _judging_canaries(memo)
    if namespace is None:  # impossible for a namespaced kind, but Kopf's signature allows it
        return
    try:
        await reconcile(memo.context, namespace, name, settings_children=True)
    except (ApiError, aiohttp.ClientError) as exc:
        retry_after = exc.retry_after if isinstance(exc, ApiError) else None
        raise kopf.TemporaryError(str(exc), delay=retry_after or memo.config.retry_delay) from exc


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def spec_changed(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    await _reconcile_or_retry(memo, namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED_BY)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED_BY)
async def child_changed(
    event: kopf.RawEvent, body: kopf.Body, uid: str, memo: kopf.Memo, **_: Any
) -> None:
    _judging_canaries(memo)
    ctx: Context = memo.context
    version = body.metadata.get("resourceVersion")
    if event["type"] == "DELETED":
        ctx.seen.pop(uid, None)
    elif ctx.seen.get(uid) == version:
        return  # a watch reconnect re-lists every child: a state already acted on needs no pass
    else:
        ctx.seen[uid] = version
    owner, namespace = owner_of(body), body.metadata.namespace
    if owner is not None and namespace is not None:
        await reconcile(ctx, namespace, owner, settings_children=False)
