"""Metering one ``/v1`` request: the plan's limits before it, its records and settling after.

:func:`admit` asks :mod:`apps.plans.limits_async` whether the org may send this request
(the ``x-ratelimit-*`` headers go on the response either way; a refusal is the 429).
:func:`finish` runs when the response is over, whatever happened: it hands the request's
record (and, for a success, its usage) to :func:`apps.requestlog.services.record_request`
(a client that left mid-answer is a 499 billed for the worker's usage or, failing that,
the text delivered), settles the limits (tokens used, stream slot freed) without making
the client wait, counts the request's Prometheus metrics (:mod:`apps.gateway.metrics`)
and writes the access log line.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.utils import timezone

from apps.gateway import metrics
from apps.gateway.exchange import Exchange
from apps.gateway.routes import Route
from apps.plans import limits_async
from apps.requestlog.services import TokenUsage, record_request
from pendra_console.request_id import log_access


async def admit(exchange: Exchange, *, org_id: int, route: Route, streaming: bool) -> bool:
    """Count the request against the org's plan; False once the 429 has been sent."""
    admission = await limits_async.admit(org_id=org_id, kind=route.kind, streaming=streaming)
    exchange.extra_headers.extend((name.encode(), value.encode()) for name, value in admission.headers.items())
    if not admission.allowed:
        await exchange.error_response(429, admission.detail, code="rate_limit_exceeded")
        return False
    exchange.admitted = True
    exchange.admitted_stream = streaming
    return True


async def count_refused(exchange: Exchange, *, org_id: int, route: Route) -> bool:
    """Count a request refused after authentication (413, 400) against the org's bucket.

    Otherwise invalid or oversized bodies would cost a client nothing. True when the caller
    should now send its refusal; False once the bucket was used up and the 429 is sent.
    """
    admission = await limits_async.admit(org_id=org_id, kind=route.kind, streaming=False)
    exchange.extra_headers.extend((name.encode(), value.encode()) for name, value in admission.headers.items())
    if not admission.allowed:
        await exchange.error_response(429, admission.detail, code="rate_limit_exceeded")
        return False
    return True


def finish(exchange: Exchange) -> None:
    """Record the request, settle its limits and log it; never raises into the response."""
    now = time.perf_counter()
    principal = exchange.principal
    worker = exchange.worker
    usage = exchange.usage if exchange.succeeded else None
    if exchange.client_gone and usage is None and exchange.delivered_tokens and not exchange.worker_failed:
        # The worker's report never came: bill the generated text that reached the client.
        delivered = exchange.delivered_tokens
        usage = TokenUsage(prompt_tokens=0, completion_tokens=delivered, total_tokens=delivered)
    status = exchange.status or 499
    # A success, or an answer the client walked away from after the worker produced it.
    billed = (exchange.succeeded or usage is not None) and principal is not None and exchange.route is not None
    record_request(
        uid=exchange.uid,
        request_id=exchange.request_id,
        created_at=timezone.now(),
        org_id=principal.org_id if principal else None,
        api_key_id=principal.key_id if principal else None,
        user_id=principal.user_id if principal else None,
        route=exchange.route.path if exchange.route else exchange.path,
        method=exchange.method,
        model=exchange.model,
        status=status,
        worker_id=worker.id if worker else None,
        worker_name=worker.name if worker else "",
        attempts=exchange.attempts,
        streamed=exchange.streamed,
        latency_ms=round((now - exchange.started) * 1000, 3),
        upstream_latency_ms=_ms(exchange.upstream_started, exchange.upstream_finished),
        ttfb_ms=_ms(exchange.upstream_started, exchange.first_byte_at),
        usage=usage,
        billed_units=exchange.units if billed else None,
        error=exchange.error,
    )
    if exchange.admitted and principal is not None and exchange.route is not None:
        # Counting tokens and freeing the stream slot happen after the response, off its path.
        limits_async.spawn_settle(
            org_id=principal.org_id,
            kind=exchange.route.kind,
            tokens=usage.total_tokens if usage else 0,
            streaming=exchange.admitted_stream,
        )
    if settings.PENDRA_METRICS:
        metrics.meter.observe(exchange, status, now)
    log_access(
        method=exchange.method,
        path=exchange.path,
        status=status,
        started=exchange.started,
        org_id=principal.org_id if principal else None,
        key_id=principal.key_id if principal else None,
        worker_id=worker.id if worker else None,
        worker=worker.name if worker else None,
        attempts=exchange.attempts,
    )


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 3)
