"""Per-process resources made in `lifespan`, after gunicorn forks, and shared by requests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chatservice.accounting.service import Accounting
from chatservice.auth.login import LoginGuard
from chatservice.chat.shutdown import OpenStreams
from chatservice.chat.usage import TokenCounter
from chatservice.config import Settings
from chatservice.db.schema_history import SchemaHistory
from chatservice.inference.routing import RoutingTable
from chatservice.keys.service import KeyAuthenticator
from chatservice.kit.http_client import HTTPClient


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: HTTPClient
    routing: RoutingTable
    authenticator: KeyAuthenticator
    schema: SchemaHistory
    # The usage ledger and rate limits (accounting/service.py).
    accounting: Accounting
    login: LoginGuard
    # By route name, for the routes that configure a tokenizer.
    token_counters: dict[str, TokenCounter] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    created: int = field(default_factory=lambda: int(time.time()))
    # Set on SIGTERM: readiness answers 503 while in-flight requests finish.
    draining: bool = False
    streams: OpenStreams = field(default_factory=OpenStreams)
    # The chat spans' tracer; None when tracing is off, so a request pays nothing for it.
    tracer: Tracer | None = None
