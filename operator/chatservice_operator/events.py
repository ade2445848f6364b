"""Kubernetes Events about a ChatService, posted through the operator's own API client.

Not `kopf.event`: Kopf's poster exists only inside its handlers, and the operator also decides
from its timers (drift correction, the canary's readings), where `kopf.event` raises
LookupError and the event (a canary's Warning, say) would be lost."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from chatservice_operator.identity import API_VERSION, KIND
from chatservice_operator.kube import ApiError, KubeClient, Obj

COMPONENT = "chatservice-operator"
# The API server refuses longer messages; Kopf cuts them at the same length.
MAX_MESSAGE = 1024
logger = logging.getLogger(__name__)


def event_for(body: Obj, type_: str, reason: str, message: str, now: datetime) -> Obj:
    meta = body["metadata"]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": meta["namespace"], "generateName": f"{meta['name']}."},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def post_event(api: KubeClient, body: Obj, type_: str, reason: str, message: str) -> None:
    """Best effort, as Kopf's: an event that cannot be posted is logged, never a failed pass."""
    try:
        await api.create(event_for(body, type_, reason, message, datetime.now(UTC)))
    except (ApiError, OSError, TimeoutError) as exc:
        name = body["metadata"]["name"]
        logger.warning("Posting event %s about %s failed: %s", reason, name, exc)
