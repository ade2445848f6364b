"""The operator's own Prometheus metrics, served on its /metrics port."""

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "chatservice_operator_reconciles_total",
    "Reconciliations of a ChatService, by outcome (success, invalid, error)",
    ["outcome"],
)
RECONCILE_DURATION = Histogram(
    "chatservice_operator_reconcile_duration_seconds",
    "Time one reconciliation of a ChatService took",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
MIGRATIONS = Counter(
    "chatservice_operator_migrations_total",
    "Migration Jobs, by outcome (started, succeeded, failed)",
    ["outcome"],
)
ROLLBACKS = Counter(
    "chatservice_operator_rollbacks_total",
    "Automatic rollbacks to status.currentImage after a rollout missed its progress deadline",
)

CANARY_VERDICTS = Counter(
    "chatservice_operator_canary_verdicts_total",
    "Canary verdicts, by outcome (passed: promoted; failed: removed, the stable pods kept)",
    ["outcome"],
)
CANARY_DURATION = Histogram(
    "chatservice_operator_canary_duration_seconds",
    "Time in canary: from the canary pods being ready to the verdict",
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400),
)

CANARIES_IN_PROGRESS = Gauge(
    "chatservice_operator_canaries_in_progress",
    "ChatServices in phase Canary: a canary serves beside the stable pods until its verdict",
)


def _export_every_outcome() -> None:
    """Every outcome at 0 from the start: a counter that first appears at 1 is invisible to
    increase() and rate(), so the first failed migration would never fire an alert."""
    for outcome in ("success", "invalid", "error"):
        RECONCILES.labels(outcome)
    for outcome in ("started", "succeeded", "failed"):
        MIGRATIONS.labels(outcome)
    for outcome in ("passed", "failed"):
        CANARY_VERDICTS.labels(outcome)


_export_every_outcome()
