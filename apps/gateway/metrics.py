"""The gateway's Prometheus metrics, taken once per request when it is finished (off the response's path).

Definitions live in :mod:`pendra_console.metrics`. The plan comes from the process's plan
cache (the request's admission just loaded it), so metering reads no table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.plans.selectors import plan_cache
from pendra_console.metrics import FAILOVERS, RATE_LIMITED, REQUEST_SECONDS, REQUESTS, TTFB_SECONDS, UPSTREAM_ATTEMPTS

if TYPE_CHECKING:
    from apps.gateway.exchange import Exchange

_BUCKET_HEADER = b"x-ratelimit-bucket"


def _family(exchange: Exchange) -> str:
    if exchange.route is not None:
        return str(exchange.route.kind)
    return "models" if exchange.path.startswith("/v1/models") else "other"


def _plan(org_id: int | None) -> str:
    # peek, not get: the label must never cost a table read; a plan that expired since admission
    # (a long stream) is still the one the request was admitted under.
    plan = plan_cache.peek(org_id) if org_id else None
    return plan.slug if plan is not None else ""


def observe(exchange: Exchange, status: int, finished: float) -> None:
    family = _family(exchange)
    principal = exchange.principal
    plan = _plan(principal.org_id if principal is not None else None)
    REQUESTS.labels(family, str(status), plan, exchange.worker.name if exchange.worker else "").inc()
    REQUEST_SECONDS.labels(family).observe(finished - exchange.started)
    if exchange.first_byte_at is not None:
        TTFB_SECONDS.labels(family).observe(exchange.first_byte_at - exchange.started)
    if exchange.attempts:
        UPSTREAM_ATTEMPTS.labels(family).inc(exchange.attempts)
        if exchange.attempts > 1:
            FAILOVERS.labels(family).inc(exchange.attempts - 1)
    if status == 429:
        bucket = next((value.decode() for name, value in exchange.extra_headers if name == _BUCKET_HEADER), "")
        RATE_LIMITED.labels(bucket, plan).inc()
