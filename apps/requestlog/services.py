"""Request and usage records: the one place a record row is built, and retention.

:func:`record_request` turns what a surface learned about one request into its
``RequestRecord`` row (and, for a billable success, its ``UsageRecord`` row). The
gateway hands them to the batch writer (:data:`apps.requestlog.recorder.recorder`, off
the request path); the admin API's middleware writes them in the request's own thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import Ref, audit
from apps.requestlog import rollups, selectors
from apps.requestlog.explanations import Explanation, explain_records
from apps.requestlog.models import RequestRecord
from apps.requestlog.recorder import recorder
from apps.requestlog.writer import UNREACHABLE, clean_record, clean_usage, write_records

logger = logging.getLogger("pendra.requestlog")

__all__ = [
    "LimitHit",
    "RecordRows",
    "TimeoutHit",
    "TokenUsage",
    "delete_expired_records",
    "record_request",
    "rollups_rebuild",
    "support_lookup",
    "write_records",
]


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """The tokens a worker reported for one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RecordRows(NamedTuple):
    """One request's rows as stored: its record and, when billed, its usage row."""

    record: dict[str, Any]
    usage: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class LimitHit:
    """The limit that refused a request with 429: its bucket, the plan, the limit as text, seconds to reset."""

    bucket: str
    plan: str
    limit: str
    reset_s: int


@dataclass(frozen=True, slots=True)
class TimeoutHit:
    """The timeout that ended a request with 504: which one, and after how many seconds."""

    name: str
    seconds: float


def record_request(
    *,
    uid: str,
    request_id: str,
    route: str,
    method: str,
    status: int,
    latency_ms: float,
    org_id: int | None = None,
    api_key_id: int | None = None,
    user_id: int | None = None,
    model: str = "",
    worker_id: str | None = None,
    worker_name: str = "",
    attempts: int = 0,
    streamed: bool = False,
    upstream_latency_ms: float | None = None,
    ttfb_ms: float | None = None,
    usage: TokenUsage | None = None,
    billed_units: int | None = None,
    cost: Decimal = Decimal(0),
    error: str = "",
    key_public_id: str = "",
    limit_hit: LimitHit | None = None,
    timeout_hit: TimeoutHit | None = None,
    worker_trail: list[dict[str, str]] | None = None,
    created_at: datetime | None = None,
    deferred: bool = True,
    hand_off: bool = False,
) -> RecordRows:
    """Record one request; bill it when ``billed_units`` is given (a success, never a failure),
    at ``cost`` (USD, priced by the caller from its plan snapshot: apps/plans/pricing.py).

    ``key_public_id`` is the presented key's public id (never its secret), also on a 401;
    ``limit_hit``, ``timeout_hit`` and ``worker_trail`` (one ``{"worker_id", "worker",
    "result"}`` per attempt) are what explains a refusal or a failure.

    ``deferred`` hands the rows to the in-process batch writer (the gateway: no I/O on the
    request path); otherwise they are written now, in this thread (the admin API). With
    ``hand_off`` the rows are only returned, for the gateway's durable hand-off to the Redis
    Stream (:mod:`apps.requestlog.handoff`), which gives them to the batch writer itself
    should Redis refuse them. Either way the rows are returned, cleaned.
    """
    created_at = created_at or timezone.now()
    record: dict[str, Any] = {
        "uid": uid,
        "request_id": request_id,
        "created_at": created_at,
        "org_id": org_id,
        "api_key_id": api_key_id,
        "user_id": user_id,
        "route": route[:200],
        "method": method,
        "model": model,
        "status": status,
        "worker_id": worker_id,
        "worker_name": worker_name,
        "attempts": attempts,
        "streamed": streamed,
        "latency_ms": latency_ms,
        "upstream_latency_ms": upstream_latency_ms,
        "ttfb_ms": ttfb_ms,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "total_tokens": usage.total_tokens if usage else None,
        "error": error[:500],
        "key_public_id": key_public_id,
        "limit_bucket": limit_hit.bucket if limit_hit else "",
        "limit_plan": limit_hit.plan if limit_hit else "",
        "limit": limit_hit.limit if limit_hit else "",
        "limit_reset_s": limit_hit.reset_s if limit_hit else None,
        "timeout": timeout_hit.name if timeout_hit else "",
        "timeout_s": timeout_hit.seconds if timeout_hit else None,
        "worker_trail": worker_trail or [],
    }
    billed = None
    if billed_units is not None:
        billed = {
            "request_uid": uid,
            "request_id": request_id,
            "created_at": created_at,
            "org_id": org_id,
            "api_key_id": api_key_id,
            "route": route[:200],
            "model": model,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "total_tokens": usage.total_tokens if usage else 0,
            "units": billed_units,
            "cost": cost,
        }
    # Whatever a client or a worker put in a value, the row is storable (apps/requestlog/cleaning.py).
    record = clean_record(record)
    billed = clean_usage(billed) if billed is not None else None
    if deferred and not hand_off:
        recorder.submit(record, billed)
    elif not deferred:
        try:
            write_records([record], [billed] if billed is not None else [])
        except UNREACHABLE:
            # The database is down (the request was likely answered 503 for it): the batch
            # writer keeps the rows and writes them when it is back, rather than losing them here.
            recorder.submit(record, billed)
    return RecordRows(record, billed)


@transaction.atomic
def rollups_rebuild() -> tuple[int, int]:
    """Recompute the hourly roll-ups from the records (:func:`apps.requestlog.rollups.rebuild`)."""
    return rollups.rebuild()


@transaction.atomic
def support_lookup(*, actor: Any, request_id: str) -> list[Explanation]:
    """Every request carrying this id, across organisations, explained: for support staff and
    operators only (the caller checks the role). Found or not, the lookup is an audit event."""
    explained = explain_records(selectors.records_by_request_id(request_id))
    orgs = sorted({e.org.slug for e in explained if e.org is not None})
    audit(
        actor,
        AuditEvent.Type.REQUEST_LOOKED_UP,
        Ref("request", request_id[:64]),
        org=None,
        data={"request_id": request_id[:200], "found": len(explained), "orgs": orgs},
    )
    return explained


def delete_expired_records(*, batch_size: int = 5000, max_batches: int = 200) -> int:
    """Delete request records older than the retention period, in bounded batches.

    Small batches keep each statement's locks short; the cap bounds one run, and the
    next periodic run carries on where this one stopped.
    """
    cutoff = timezone.now() - timedelta(days=settings.PENDRA_REQUEST_RETENTION_DAYS)
    deleted = 0
    for _ in range(max_batches):
        ids = list(
            RequestRecord.objects.filter(created_at__lt=cutoff)
            .order_by("created_at")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            break
        count, _ = RequestRecord.objects.filter(id__in=ids).delete()
        deleted += count
    if deleted:
        logger.info("retention: deleted %d request records older than %s", deleted, cutoff.isoformat())
    return deleted
