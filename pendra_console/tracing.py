"""OpenTelemetry tracing, off unless ``PENDRA_OTEL_ENABLED``: spans exported over OTLP/HTTP.

Off (the default), nothing of OpenTelemetry is imported, :data:`tracer` stays None, the Django
middleware removes itself at start-up (``MiddlewareNotUsed``) and each gateway hook returns
after one ``is None`` test (bench/README.md measures it). On, :func:`configure` builds this
process's own tracer provider, so no other library's global one is touched: the OTLP/HTTP
exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables itself (endpoint, headers,
timeout, compression), the sampler ``OTEL_TRACES_SAMPLER`` (parent-based, always on, by
default) and the batching ``OTEL_BSP_*``. Spans leave in batches from a background thread.

Every span carries the request's ``X-Request-Id`` (``pendra.request_id``), and log lines
written inside a traced request carry its trace id, so a ticket's request id leads to its
trace and back. Incoming W3C ``traceparent`` headers are continued; the gateway sends each
worker a ``traceparent`` naming its attempt's span (:mod:`apps.gateway.tracing`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger("pendra.tracing")

# None while tracing is off: every hook tests this one name first.
tracer: Tracer | None = None
_provider: TracerProvider | None = None
_TRACE_HEADERS = ("traceparent", "tracestate")


def configure() -> Tracer | None:
    """Start tracing in this process if the settings ask for it (once; later calls return the same tracer)."""
    global tracer, _provider
    if tracer is not None or not settings.PENDRA_OTEL_ENABLED:
        return tracer
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.PENDRA_OTEL_SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider = provider
    tracer = provider.get_tracer("pendra_console")
    return tracer


def shutdown(timeout: float = 2.0) -> None:
    """Export what is batched and stop (a process's lifespan end), so the last requests' spans are not lost.

    Bounded: with the collector down, the exporter retries for up to its own timeout (10 s), and a
    stopping process should not wait for that, so the work runs in a daemon thread given ``timeout``.
    """
    global tracer, _provider
    provider, tracer, _provider = _provider, None, None
    if provider is not None:
        stopping = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
        stopping.start()
        stopping.join(timeout)


def incoming_context(header: Callable[[str], str | None]) -> Context | None:
    """The caller's trace from its W3C ``traceparent``/``tracestate`` headers, or None to start a new one."""
    carrier = {name: value for name in _TRACE_HEADERS if (value := header(name))}
    if not carrier:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(carrier)


def traceparent(span: Span) -> str:
    """The W3C ``traceparent`` value that makes ``span`` the parent of the receiver's spans."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_trace_id() -> str | None:
    """The trace id of the span current in this context (a traced Django request), for log lines."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def mark_error(span: Span, description: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description))


class TracingMiddleware:
    """A server span for every request Django serves (admin API, console, probes); ``/v1`` has the gateway's.

    Outermost, so the access line and every log line of the request are written inside the span.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if configure() is None:
            raise MiddlewareNotUsed  # off: Django leaves this middleware out of the chain
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from opentelemetry.trace import SpanKind

        active = tracer
        if active is None:  # shut down (the process is stopping)
            return self.get_response(request)
        method = request.method or "-"
        with active.start_as_current_span(
            method,
            context=incoming_context(request.headers.get),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": request.path},
        ) as span:
            response = self.get_response(request)
            match = request.resolver_match
            route = "/" + match.route if match is not None and match.route else None
            span.update_name(f"{method} {route}" if route else method)
            span.set_attributes(_response_attributes(request, response, route))
            if response.status_code >= 500:
                mark_error(span, f"HTTP {response.status_code}")
            return response


def _response_attributes(request: HttpRequest, response: HttpResponse, route: str | None) -> Mapping[str, Any]:
    # The request id is known once RequestIdMiddleware (inside this one) has run.
    attributes: dict[str, Any] = {
        "http.response.status_code": response.status_code,
        "pendra.request_id": getattr(request, "request_id", ""),
    }
    if route:
        attributes["http.route"] = route
    return attributes
