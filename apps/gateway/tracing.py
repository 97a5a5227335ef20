"""The gateway's spans (when :mod:`pendra_console.tracing` is on): one per ``/v1`` request, one per attempt.

The request's span (kind SERVER) continues the client's ``traceparent`` if it sent one and
ends with the response: route, model, org id, key id (the key's row id, never the secret),
worker, status, number of attempts and the ``X-Request-Id``. Each attempt at a worker is a
child span (kind CLIENT) whose W3C ``traceparent`` goes to the worker with the request, so a
worker that traces (vLLM, TGI) joins the same trace. Off, each hook is one ``is None`` test:
no span, no header, nothing allocated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from pendra_console import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from apps.gateway.exchange import Exchange
    from apps.workers.selectors import WorkerTarget

_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()


def start(exchange: Exchange) -> object:
    """Open the request's span and make it current (log lines of the request carry its trace id)."""
    tracer = tracing.tracer
    if tracer is None:
        return None
    from opentelemetry.context import attach
    from opentelemetry.trace import SpanKind, set_span_in_context

    exchange.span = span = tracer.start_span(
        f"{exchange.method} /v1",
        context=tracing.incoming_context(lambda name: exchange.header(name.encode())),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": exchange.method, "url.path": exchange.path},
    )
    if not span.is_recording():  # not sampled: nothing of it is kept, so nothing more is spent on it
        return None
    return attach(set_span_in_context(span))


def finish(exchange: Exchange, token: object) -> None:
    """End the request's span with what the request came to (after metering, so the access line is inside it)."""
    span = exchange.span
    if span is None:
        return
    if token is None:  # not sampled
        span.end()
        return
    from opentelemetry.context import detach

    detach(token)  # type: ignore[arg-type]  # the token attach() returned in start()
    route = exchange.route.path if exchange.route is not None else None
    if route is None and exchange.path.startswith("/v1/models"):
        route = "/v1/models"
    if route is not None:
        span.update_name(f"{exchange.method} {route}")
    status = exchange.status or 499
    attributes: dict[str, Any] = {
        "http.response.status_code": status,
        "pendra.request_id": exchange.request_id,
        "pendra.attempts": exchange.attempts,
        "pendra.streamed": exchange.streamed,
    }
    if route is not None:
        attributes["http.route"] = route
    if exchange.model:
        attributes["gen_ai.request.model"] = exchange.model
    principal = exchange.principal
    if principal is not None:
        attributes["pendra.key_id"] = principal.key_id
        if principal.org_id is not None:
            attributes["pendra.org_id"] = principal.org_id
    if exchange.worker is not None:
        attributes["pendra.worker_id"] = exchange.worker.id
        attributes["pendra.worker_name"] = exchange.worker.name
    span.set_attributes(attributes)
    if status >= 500:
        tracing.mark_error(span, exchange.error or f"HTTP {status}")
    span.end()


def attempt(exchange: Exchange, worker: WorkerTarget, headers: dict[str, str]) -> AbstractContextManager[None]:
    """Around one attempt at ``worker``: its span, and ``headers`` (sent to it) carrying the span's traceparent."""
    span = exchange.span
    if span is None:
        return _NO_SPAN
    if not span.is_recording():
        # Not sampled: the worker still learns the trace and that it is not sampled, and no span is made.
        headers["traceparent"] = tracing.traceparent(span)
        return _NO_SPAN
    return _attempt(span, exchange, worker, headers)


@contextlib.contextmanager
def _attempt(parent: Span, exchange: Exchange, worker: WorkerTarget, headers: dict[str, str]) -> Iterator[None]:
    from opentelemetry.trace import SpanKind, set_span_in_context

    tracer = tracing.tracer
    if tracer is None:  # shut down meanwhile (the process is stopping)
        yield
        return
    span = tracer.start_span(
        f"attempt {exchange.attempts}: {worker.name}",
        context=set_span_in_context(parent),
        kind=SpanKind.CLIENT,
        attributes={
            "pendra.attempt": exchange.attempts,
            "pendra.worker_id": worker.id,
            "pendra.worker_name": worker.name,
            "pendra.request_id": exchange.request_id,
        },
    )
    headers["traceparent"] = tracing.traceparent(span)
    try:
        yield
        span.set_attribute("http.response.status_code", exchange.status)
    except BaseException as exc:
        # A Retry names why this worker failed; a timeout or cancellation its class.
        tracing.mark_error(span, str(getattr(exc, "reason", "")) or type(exc).__name__)
        span.set_attribute("error.type", type(exc).__name__)
        raise
    finally:
        span.end()
