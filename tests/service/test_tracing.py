"""OpenTelemetry: one chat request is one trace across server, database and upstream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from chatservice.db.migrate import upgrade
from chatservice.main import create_app
from tests.service.harness import make_settings, serve
from tests.service.stub_upstream import StubUpstream
from tests.service.test_chat_api import CHAT


async def test_one_request_one_trace_through_server_database_and_upstream(
    create_database: Callable[[], str], upstream: StubUpstream
) -> None:
    url = create_database()
    await asyncio.to_thread(upgrade, url)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(make_settings(url, upstream), tracer_provider=provider)

    async with serve(app) as http:
        # A stored key, not the bootstrap one, so that authentication reads the database.
        key = await _store_key(app)
        exporter.clear()
        response = await http.post(
            CHAT,
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "upstream", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 200

    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(server) == 1
    trace_id = server[0].context.trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}
    assert any(s.attributes and s.attributes.get("db.system") == "postgresql" for s in spans)
    client_spans = [
        s for s in spans if s.kind is SpanKind.CLIENT and "db.system" not in (s.attributes or {})
    ]
    assert len(client_spans) == 1  # the upstream call

    traceparent = upstream.headers[-1]["traceparent"]
    assert traceparent.split("-")[1] == format(trace_id, "032x")
    assert traceparent.split("-")[2] == format(client_spans[0].context.span_id, "016x")


async def _store_key(app: object) -> str:
    from chatservice.keys.service import create_key

    runtime = app.state.runtime  # type: ignore[attr-defined]
    async with runtime.sessionmaker() as session, session.begin():
        plaintext, _ = await create_key(session, name="traced")
    return plaintext
