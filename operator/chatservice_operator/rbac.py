"""The API permissions the operator uses, as data: `make generate` writes the RBAC manifests
(the chart's rules template, k8s/base/rbac.yaml) from these.

Each rule is a dict in the shape of a Role rule: {"apiGroups", "resources", "verbs"}. They go
in a Role in every watched namespace (a ClusterRole with `--all-namespaces`). Nothing is
cluster-scoped: Kopf's scanning of namespaces and CRDs is off (handlers.configure).
"""

from typing import TypedDict


class Rule(TypedDict):
    apiGroups: list[str]
    resources: list[str]
    verbs: list[str]


RULES: list[Rule] = [
    # Kopf watches ChatServices and patches its progress annotations; we patch the status.
    {
        "apiGroups": ["chatservice.dev"],
        "resources": ["chatservices"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {"apiGroups": ["chatservice.dev"], "resources": ["chatservices/status"], "verbs": ["patch"]},
    # ownerReferences with blockOwnerDeletion need update on the owner's finalizers.
    {
        "apiGroups": ["chatservice.dev"],
        "resources": ["chatservices/finalizers"],
        "verbs": ["update"],
    },
    # Jobs and Deployments are watched (child events drive the state machine).
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["get", "list", "watch", "create", "delete"],
    },
    # The canary Deployment goes after its verdict; the one without a track label once the
    # stable Deployment replaced it.
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    # A canary's verdict reads the serving pods' own /metrics: their addresses come from here.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {
        "apiGroups": [""],
        "resources": ["configmaps", "services"],
        "verbs": ["get", "create", "patch"],
    },
    {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers"],
        "verbs": ["get", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["policy"],
        "resources": ["poddisruptionbudgets"],
        "verbs": ["get", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["monitoring.coreos.com"],
        "resources": ["servicemonitors"],
        "verbs": ["get", "create", "patch", "delete"],
    },
    # Kopf posts Warning/Normal events about ChatServices through the core API.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
