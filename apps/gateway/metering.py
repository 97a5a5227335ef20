"""Metering one ``/v1`` request: the plan's limits before it, its records and settling after.

:func:`admit` asks :mod:`apps.plans.limits_async` whether the org may send this request,
reserving its most tokens (the ``x-ratelimit-*`` headers go on the response either way; a
refusal is the 429, or a 400 for a request that can never fit the plan's minute) and, for
a stream, taking a lease on a stream slot that a task renews while the stream runs.
:func:`conclude` runs just before the response's last bytes: it hands the request's record
(and, for a success, its usage) from :func:`apps.requestlog.services.record_request` to
the Redis Stream, in the same pipeline as the settle of the limits (the reservation
replaced by the tokens used, the stream's lease given back), or, without the durable
hand-off, to the in-process writer with the settle after the response. :func:`finish`
runs when the response is over, whatever happened: it concludes a response that had no
last bytes (a client that left mid-answer is a 499 billed for the worker's usage or,
failing that, the text delivered), counts the request's Prometheus metrics
(:mod:`apps.gateway.metrics`) and writes the access log line.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from apps.gateway import metrics, record_handoff
from apps.gateway.exchange import Exchange
from apps.gateway.routes import Route
from apps.gateway.validation import InvalidRequest, ValidRequest
from apps.plans import limits_async
from apps.plans.limit_decision import Admission
from apps.plans.pricing import ZERO, cost_of, price_for, spend_units
from apps.plans.selectors import plan_for_org_async
from apps.requestlog import handoff
from apps.requestlog.services import LimitHit, RecordRows, TokenUsage, record_request
from pendra_console.hot_settings import hot
from pendra_console.request_id import log_access


async def admit(exchange: Exchange, *, org_id: int, route: Route, valid: ValidRequest) -> bool:
    """Count the request against the org's plan; False once the 429 (or 400) has been sent."""
    principal = exchange.principal
    key_id = principal.key_id if principal is not None else None
    key = principal.limits if principal is not None else None  # the key's own rpm/tpm, if it has them
    admission = await limits_async.admit(
        org_id=org_id, kind=route.kind, streaming=valid.stream, bound=valid.bound, key_id=key_id, key=key
    )
    if admission.status == 400:
        # It can never fit the plan's minute: waiting would not help. Counted like any bad body.
        if await count_refused(exchange, org_id=org_id, route=route):
            await exchange.invalid(InvalidRequest(admission.detail, admission.param))
        return False
    exchange.extra_headers.extend((name.encode(), value.encode()) for name, value in admission.headers.items())
    if not admission.allowed:
        await _refuse(exchange, admission)
        return False
    if admission.limits is None:  # the counters were unreachable (fail open): the prices still apply
        admission = replace(admission, limits=await plan_for_org_async(org_id))
    exchange.admission = admission
    if admission.lease:
        # A stream's slot is a lease: renewed while the request runs, given back when it is settled.
        exchange.lease_keeper = limits_async.LeaseKeeper(org_id=org_id, lease=admission.lease)
    return True


async def count_refused(exchange: Exchange, *, org_id: int, route: Route) -> bool:
    """Count a request refused after authentication (413, 400) against the org's bucket.

    Otherwise invalid or oversized bodies would cost a client nothing. True when the caller
    should now send its refusal; False once the bucket was used up and the 429 is sent.
    """
    key_id = exchange.principal.key_id if exchange.principal is not None else None
    admission = await limits_async.admit(org_id=org_id, kind=route.kind, streaming=False, key_id=key_id)
    exchange.extra_headers.extend((name.encode(), value.encode()) for name, value in admission.headers.items())
    if not admission.allowed:
        await _refuse(exchange, admission)
        return False
    return True


async def _refuse(exchange: Exchange, admission: Admission) -> None:
    exchange.limit_hit = LimitHit(
        bucket=admission.bucket, plan=admission.plan, limit=admission.limit, reset_s=admission.retry_after
    )
    await exchange.error_response(429, admission.detail, code="rate_limit_exceeded")


async def conclude(exchange: Exchange) -> None:
    """Just before the response's last bytes: record the request and settle its limits.

    With the durable hand-off (:mod:`apps.requestlog.handoff`) this waits for Redis, once:
    the record's ``XADD`` travels in the same pipeline as the settle, so a process killed
    after answering has lost nothing it answered, at no extra round trip. Otherwise the
    record goes to the in-process writer and the settle runs after the response.
    """
    if not exchange.client_gone:  # else recorded as 499 by finish(), once the answer is abandoned
        await _conclude(exchange)


async def _conclude(exchange: Exchange) -> None:
    exchange.concluded = True
    if exchange.lease_keeper is not None:
        exchange.lease_keeper.cancel()  # the settle gives the stream's lease back
    # The bill, worked out once: the record and the settle both carry it.
    usage = _billed_usage(exchange)
    cost = _cost(exchange, usage)
    settle = _settle_arguments(exchange, usage, cost)
    if handoff.enabled():
        await record_handoff.hand_off(_record(exchange, usage, cost, hand_off=True), settle)
    else:
        _record(exchange, usage, cost, hand_off=False)
        exchange.settle = settle  # the settle follows the response (finish)


async def finish(exchange: Exchange) -> None:
    """After the response, whatever happened: its metrics and access line; its record and
    settle too when no last bytes were sent (a client that left, a stream that broke)."""
    if not exchange.concluded:
        # No last bytes were sent (the client left, the stream broke): hand over now.
        exchange.on_end = None
        await _conclude(exchange)
    settle, exchange.settle = exchange.settle, None
    if settle is not None:
        # The reservation becomes the tokens used and the stream's lease goes, off the response's path.
        limits_async.spawn_settle(**settle)
    status = exchange.status or 499
    principal = exchange.principal
    worker = exchange.worker
    if hot.PENDRA_METRICS:
        metrics.meter.observe(exchange, status, time.perf_counter())
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


def _settle_arguments(exchange: Exchange, usage: TokenUsage | None, cost: Decimal) -> dict[str, Any] | None:
    principal = exchange.principal
    if exchange.admission is None or principal is None or exchange.route is None:
        return None
    return {
        "org_id": principal.org_id,
        "kind": exchange.route.kind,
        "tokens": usage.total_tokens if usage else 0,
        "admission": exchange.admission,
        "key_id": principal.key_id,
        "spend": spend_units(cost),
    }


def _billed(exchange: Exchange, usage: TokenUsage | None) -> bool:
    """A success, or an answer the client walked away from after the worker produced it."""
    return (exchange.succeeded or usage is not None) and exchange.principal is not None and exchange.route is not None


def _cost(exchange: Exchange, usage: TokenUsage | None) -> Decimal:
    """What the request costs, priced once from the plan snapshot it was admitted under; 0 unless billed."""
    admission = exchange.admission
    if admission is None or admission.limits is None or exchange.route is None or not _billed(exchange, usage):
        return ZERO
    price = price_for(admission.limits.prices, kind=exchange.route.kind, model=exchange.model)
    return cost_of(
        price,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        units=exchange.units,
    )


def _billed_usage(exchange: Exchange) -> TokenUsage | None:
    usage = exchange.usage if exchange.succeeded else None
    if exchange.client_gone and usage is None and exchange.delivered_tokens and not exchange.worker_failed:
        # The worker's report never came: bill the generated text that reached the client.
        delivered = exchange.delivered_tokens
        usage = TokenUsage(prompt_tokens=0, completion_tokens=delivered, total_tokens=delivered)
    return usage


def _record(exchange: Exchange, usage: TokenUsage | None, cost: Decimal, *, hand_off: bool) -> RecordRows:
    principal = exchange.principal
    worker = exchange.worker
    billed = _billed(exchange, usage)
    # A refused key (401) is still named in the record, with its org and user, so both find it.
    named = principal if principal is not None else exchange.refused_principal
    return record_request(
        uid=exchange.uid,
        request_id=exchange.request_id,
        created_at=datetime.now(UTC),  # timezone.now() with USE_TZ, without reading the setting
        org_id=named.org_id if named else None,
        api_key_id=named.key_id if named else None,
        user_id=named.user_id if named else None,
        route=exchange.route.path if exchange.route else exchange.path,
        method=exchange.method,
        model=exchange.model,
        status=exchange.status or 499,
        worker_id=worker.id if worker else None,
        worker_name=worker.name if worker else "",
        attempts=exchange.attempts,
        streamed=exchange.streamed,
        latency_ms=round((time.perf_counter() - exchange.started) * 1000, 3),
        upstream_latency_ms=_ms(exchange.upstream_started, exchange.upstream_finished),
        ttfb_ms=_ms(exchange.upstream_started, exchange.first_byte_at),
        usage=usage,
        billed_units=exchange.units if billed else None,
        cost=cost,
        error=exchange.error,
        key_public_id=exchange.key_public_id,
        limit_hit=exchange.limit_hit,
        timeout_hit=exchange.timeout_hit,
        worker_trail=_worker_trail(exchange),
        hand_off=hand_off,
    )


def _worker_trail(exchange: Exchange) -> list[dict[str, str]]:
    """Each worker tried and what it returned. The record is made just before the last bytes,
    while the last attempt is still under way, so that attempt's result is read from the exchange."""
    trail = exchange.trail
    if not trail or trail[-1]["result"]:
        return trail
    if exchange.client_gone:
        result = "the client left before the answer ended"
    elif exchange.worker_failed:
        result = exchange.error
    elif exchange.status:
        result = f"HTTP {exchange.status}"
    else:
        result = "no answer"
    return [*trail[:-1], {**trail[-1], "result": result}]


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 3)
