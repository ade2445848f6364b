"""The application factory. gunicorn calls `chatservice.main:create_app()` in each worker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from chatservice import __version__
from chatservice.accounting.build import build_accounting
from chatservice.api import api_router
from chatservice.auth.login import LoginGuard
from chatservice.chat.endpoints import create_chat_completion
from chatservice.chat.schemas import ChatCompletionRequest
from chatservice.chat.usage import load_token_counters
from chatservice.config import Settings
from chatservice.db.engine import create_engine, create_sessionmaker
from chatservice.db.migrate import script_directory
from chatservice.db.schema_history import SchemaHistory
from chatservice.inference.dns_discovery import DnsDiscovery
from chatservice.inference.routing import RoutingTable
from chatservice.keys.failure_limiter import FailureLimiter
from chatservice.keys.invalidation import InvalidationWatcher
from chatservice.keys.service import KeyAuthenticator, KeyCache
from chatservice.kit import exception_handlers
from chatservice.kit.api_docs import with_security_and_errors
from chatservice.kit.body_limit import BodySizeLimitMiddleware
from chatservice.kit.cors import BrowserCORSMiddleware
from chatservice.kit.direct_routes import DirectRoutesMiddleware
from chatservice.kit.draining import mark_draining_on_sigterm
from chatservice.kit.http_client import HTTPClient
from chatservice.kit.request_body import document_bodies
from chatservice.kit.v1_alias import V1AliasMiddleware
from chatservice.observability import exemplars, metrics, tracing
from chatservice.observability.middleware import RequestContextMiddleware
from chatservice.relay.endpoints import create_completion, create_embeddings
from chatservice.runtime import Runtime

log = logging.getLogger(__name__)

DOCS_URL = "/api/v1/docs"


def create_app(
    settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    # Logging is the process's business: gunicorn applies `logging_config` (JSON lines)
    # before forking, so the app leaves it alone.
    settings = settings or Settings()
    if tracer_provider is None and tracing.tracing_requested():
        tracer_provider = tracing.build_provider()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # First: a tokenizer file that does not load stops the worker before it opens anything.
        token_counters = load_token_counters(settings.models)
        engine = create_engine(settings)
        if tracer_provider is not None:
            SQLAlchemyInstrumentor().instrument(
                engine=engine.sync_engine, tracer_provider=tracer_provider
            )
        http = HTTPClient(
            limit=settings.upstream_pool_size,
            connect_timeout=settings.upstream_connect_timeout,
            tracer_provider=tracer_provider,
        )
        sessionmaker = create_sessionmaker(engine)
        tracer = (
            tracer_provider.get_tracer("chatservice", __version__)
            if tracer_provider is not None
            else None
        )
        accounting = build_accounting(settings, engine, sessionmaker, tracer)
        authenticator = KeyAuthenticator(
            settings.admin_api_key.get_secret_value(),
            KeyCache(
                settings.key_cache_ttl,
                settings.key_cache_size,
                settings.negative_key_cache_ttl,
                settings.negative_key_cache_size,
            ),
            FailureLimiter(settings.auth_failures_per_minute, settings.auth_failure_clients),
            lookup_timeout=settings.db_request_timeout,
            retry_after=settings.db_retry_after,
        )
        runtime = Runtime(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            http=http,
            routing=RoutingTable(settings, http),
            authenticator=authenticator,
            schema=SchemaHistory.load(script_directory()),
            accounting=accounting,
            login=LoginGuard(
                FailureLimiter(settings.login_failures_per_minute, settings.auth_failure_clients),
                FailureLimiter(settings.auth_failures_per_minute, settings.auth_failure_clients),
            ),
            tracer=tracer,
            token_counters=token_counters,
        )
        app.state.runtime = runtime
        metrics.publish_initial_series(route.name for route in settings.models)
        restore_signal = mark_draining_on_sigterm(runtime)
        watcher = InvalidationWatcher(
            engine,
            authenticator,
            settings.key_invalidation_poll_interval,
            timeout=settings.db_request_timeout,
        )
        discovery = DnsDiscovery(runtime.routing.pools, settings)
        log.info("worker started", extra={"version": __version__, "models": len(settings.models)})
        try:
            async with watcher.running(), discovery.running():
                yield
        finally:
            restore_signal()
            # Before the engine goes: the ledger writes what it still holds.
            await accounting.ledger.close(settings.ledger_shutdown_timeout)
            await accounting.close(settings.redis_timeout * 4)
            await http.close()
            await engine.dispose()
            if tracer_provider is not None:
                tracer_provider.shutdown()  # flushes, then stops the export thread

    # Swagger UI's script, stylesheet and favicon come from the fastapi-offline package and
    # are served here, so the docs page works without internet access.
    app = FastAPIOffline(
        title="ChatService",
        version=__version__,
        summary="OpenAI-compatible chat completions in front of your model servers.",
        lifespan=lifespan,
        docs_url=DOCS_URL,
        static_url=f"{DOCS_URL}/assets",
        swagger_ui_oauth2_redirect_url=f"{DOCS_URL}/oauth2-redirect",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
        # Starlette's slash redirects are absolute URLs built from the client's Host header;
        # every route has one spelling, and any other is a 404.
        redirect_slashes=False,
    )
    app.include_router(api_router)
    app.add_api_route("/metrics", _metrics, include_in_schema=False)
    # The documented way to extend FastAPI's schema: fastapi.tiangolo.com/how-to/extending-openapi
    app.openapi = with_security_and_errors(  # type: ignore[method-assign]
        document_bodies(app, [ChatCompletionRequest])
    )
    exception_handlers.install(app)
    # Innermost: what every other layer does still applies to the hot routes.
    app.add_middleware(
        DirectRoutesMiddleware,
        routes=app.router.routes,
        endpoints=(create_chat_completion, create_completion, create_embeddings),
        exception_handlers=app.exception_handlers,
    )
    # Inside CORS, so a refused body still carries the headers a browser needs to read it.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(BrowserCORSMiddleware, allow_origins=list(settings.cors_origins))
    app.add_middleware(RequestContextMiddleware)
    # Outermost: every layer below sees the one canonical path.
    app.add_middleware(V1AliasMiddleware)
    if tracer_provider is not None:
        FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider)
        exemplars.enable()
    return app


async def _metrics(request: Request) -> Response:
    body, content_type = metrics.exposition(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)
