"""The operator's configuration, read once at start: what to watch and how often to look again."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorConfig:
    # Empty with cluster_wide: every namespace.
    namespaces: tuple[str, ...] = ()
    cluster_wide: bool = False
    # Child events and create/update drive the state machine; the drift pass only catches what
    # no watched event reports (a hand-edited Service or ConfigMap), so it can be slow.
    drift_interval: float = 300.0
    # Seconds before Kopf retries a reconcile that the API server failed (unless it said when).
    retry_delay: float = 10.0
    # How often a running canary's pods are read and judged (a verdict comes at most this late).
    canary_interval: float = 10.0

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] = os.environ,
        namespaces: Sequence[str] = (),
        cluster_wide: bool = False,
    ) -> OperatorConfig:
        """From the command line's namespaces, else $WATCH_NAMESPACE, else $POD_NAMESPACE."""
        if not namespaces and not cluster_wide:
            watch = environ.get("WATCH_NAMESPACE", "")
            pod = environ.get("POD_NAMESPACE", "")
            namespaces = [ns.strip() for ns in watch.split(",") if ns.strip()] or (
                [pod] if pod else []
            )
        return cls(
            namespaces=() if cluster_wide else tuple(namespaces),
            cluster_wide=cluster_wide,
            drift_interval=float(environ.get("CHATSERVICE_OPERATOR_DRIFT_SECONDS", "300")),
            canary_interval=float(environ.get("CHATSERVICE_OPERATOR_CANARY_SECONDS", "10")),
        )
