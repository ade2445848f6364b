"""OpenTelemetry set-up, once per worker process after gunicorn forks.

Configured from the standard `OTEL_*` variables; with none of them set nothing is installed
and the instrumentation costs nothing.
"""

from __future__ import annotations

import os

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from chatservice import __version__

_ENABLING_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)


def tracing_requested() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "").lower() == "none":
        return False
    return any(os.environ.get(name) for name in _ENABLING_VARIABLES)


def build_provider() -> TracerProvider:
    """An OTLP/HTTP exporting provider; endpoint, headers and sampler come from `OTEL_*`."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", "chatservice"),
            "service.version": __version__,
        }
    )
    provider = TracerProvider(resource=resource)
    # The batch processor starts a thread: this must run in the worker, never before fork.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
