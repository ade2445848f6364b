"""The accounting objects of one worker, from the settings."""

from __future__ import annotations

from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chatservice.accounting.budgets import BudgetTracker
from chatservice.accounting.file_store import FileLimitStore
from chatservice.accounting.ledger import UsageLedger
from chatservice.accounting.limit_settings import LimitSettings
from chatservice.accounting.limits import LimitStore
from chatservice.accounting.redis_store import RedisLimitStore
from chatservice.accounting.service import Accounting
from chatservice.config import Settings

# A concurrent-request lease outlives the longest request, so a dead worker's leases end.
LEASE_MARGIN_SECONDS = 60.0


def build_accounting(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    tracer: Tracer | None = None,
) -> Accounting:
    """Call inside the worker's event loop: the ledger's writer task starts here."""
    store: LimitStore
    if settings.redis_url is not None:
        store = RedisLimitStore(settings.redis_url.get_secret_value(), settings.redis_timeout)
    else:
        store = FileLimitStore(settings.rate_limit_file, settings.redis_timeout)
    ledger = UsageLedger(
        engine,
        batch_size=settings.ledger_batch_size,
        flush_interval=settings.ledger_flush_interval,
        max_held=settings.ledger_max_held,
        write_timeout=settings.ledger_write_timeout,
        tracer=tracer,
    )
    ledger.start()
    return Accounting(
        ledger,
        LimitSettings(sessionmaker, settings.limits_cache_ttl, settings.db_request_timeout),
        BudgetTracker(sessionmaker, ledger, settings.budget_cache_ttl, settings.db_request_timeout),
        store,
        failure_mode=settings.rate_limit_failure_mode,
        timeout=settings.redis_timeout,
        lease_seconds=settings.upstream_total_timeout + LEASE_MARGIN_SECONDS,
        retry_after=settings.db_retry_after,
    )
