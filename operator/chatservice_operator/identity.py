"""Who the operator and its objects are: API group and kind, label and annotation keys, child
names, owner references. The builders, the state machine and the handlers all import these."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from chatservice_operator.resource import ChatService

GROUP = "chatservice.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ChatService"
PLURAL = "chatservices"

# The manager label of every child, and the field manager of every server-side apply.
MANAGER = "chatservice-operator"
# Kopf's progress and diff-base annotations, and ours, are under the group's name.
ANNOTATION_PREFIX = GROUP
CONFIG_CHECKSUM_ANNOTATION = f"{ANNOTATION_PREFIX}/config-checksum"
MIGRATION_HASH_LABEL = f"{ANNOTATION_PREFIX}/migration-hash"
IMAGE_ANNOTATION = f"{ANNOTATION_PREFIX}/image"
MANAGED_BY = {"app.kubernetes.io/managed-by": MANAGER}
# Which of the two serving Deployments a pod belongs to: in each Deployment's selector (so the
# two never overlap), not in the Service's (so both take traffic).
TRACK_LABEL = f"{ANNOTATION_PREFIX}/track"


class Track(StrEnum):
    STABLE = "stable"
    CANARY = "canary"


def selector_labels(cs: ChatService, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "chatservice",
        "app.kubernetes.io/instance": cs.name,
        "app.kubernetes.io/component": component,
    }


def labels(cs: ChatService, component: str) -> dict[str, str]:
    return {**selector_labels(cs, component), **MANAGED_BY}


def track_selector_labels(cs: ChatService, track: Track) -> dict[str, str]:
    return {**selector_labels(cs, "server"), TRACK_LABEL: track}


def deployment_name(cs: ChatService, track: Track) -> str:
    return f"{cs.name}-{track}"


def legacy_deployment_name(cs: ChatService) -> str:
    """The one Deployment of operators before canaries: its selector has no track label, so it
    is replaced by the stable one (created first, so that serving never stops)."""
    return cs.name


def owner_reference(cs: ChatService) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": cs.name,
        "uid": cs.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def migration_hash(cs: ChatService) -> str:
    """What makes a migration necessary: the code (image) and the database it runs against."""
    ref = cs.spec.database.url_secret_ref
    material = "\0".join([cs.spec.image, ref.name, ref.key])
    return hashlib.sha256(material.encode()).hexdigest()[:10]


def job_name(cs: ChatService) -> str:
    return f"{cs.name}-migrate-{migration_hash(cs)}"


def configmap_name(cs: ChatService) -> str:
    return f"{cs.name}-config"
