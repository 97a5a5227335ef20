"""Reads of request and usage records, always scoped to what the caller may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDay

from apps.orgs.models import Organisation, Role, role_at_least
from apps.requestlog import cursors
from apps.requestlog.models import RequestRecord, UsageRecord


def records_for_org(*, org: Organisation, role: str, user: Any) -> QuerySet[RequestRecord]:
    """An org's request records: owners and admins see all, members only their own keys' requests."""
    return _filtered(org, request_filters_for(role=role, user=user)).order_by("-created_at", "-id")


# A client reusing an id is shown every match, up to this many (newest first).
MAX_MATCHES = 20


def records_by_request_id(request_id: str) -> list[RequestRecord]:
    """Every record carrying this id, across organisations: for support staff and operators only."""
    return list(
        RequestRecord.objects.filter(request_id=request_id)
        .select_related("org", "api_key__user", "user")
        .order_by("-created_at", "-id")[:MAX_MATCHES]
    )


def org_records_by_request_id(*, org: Organisation, role: str, user: Any, request_id: str) -> list[RequestRecord]:
    """The org's records carrying this id: owners and admins see all, members their own keys' only."""
    records = records_for_org(org=org, role=role, user=user).filter(request_id=request_id)
    return list(records.select_related("org", "api_key__user", "user")[:MAX_MATCHES])


def usage_summary(
    *, org: Organisation, since: datetime, until: datetime, group_by: str
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Billed usage of an org between two instants: totals, and rows by day or by model."""
    usage = UsageRecord.objects.filter(org=org, created_at__gte=since, created_at__lt=until)
    sums = {
        "requests": Count("id"),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
        "total_tokens": Sum("total_tokens"),
        "units": Sum("units"),
    }
    totals = {name: value or 0 for name, value in usage.aggregate(**sums).items()}
    if group_by == "model":
        rows = usage.values("model").annotate(**sums).order_by("model")
    else:
        rows = usage.annotate(day=TruncDay("created_at")).values("day").annotate(**sums).order_by("day")
    return totals, [{name: (value or 0) if name in sums else value for name, value in row.items()} for row in rows]


# The request log's status classes: each a half-open range of status codes.
STATUS_CLASSES = {"2xx": (200, 300), "3xx": (300, 400), "4xx": (400, 500), "5xx": (500, 600)}


@dataclass(frozen=True)
class RequestFilters:
    """What the request log is narrowed to. ``own_user_id`` set: only that user's keys' requests
    (a member's view); :func:`request_filters_for` sets it from the caller's role."""

    since: datetime | None = None
    until: datetime | None = None
    status: int | None = None
    status_class: str | None = None
    model: str | None = None
    route: str | None = None
    key: str | None = None
    worker: str | None = None
    own_user_id: int | None = None


def request_filters_for(*, role: str, user: Any, **filters: Any) -> RequestFilters:
    """The filters a caller asked for, narrowed to their own keys' requests below the admin role."""
    own_user_id = None if role_at_least(role, Role.ADMIN) else user.pk
    return RequestFilters(own_user_id=own_user_id, **{name: value for name, value in filters.items() if value})


@dataclass(frozen=True)
class RequestPage:
    records: list[RequestRecord]
    # None on the last page.
    next_cursor: str | None


def _filtered(org: Organisation, filters: RequestFilters) -> QuerySet[RequestRecord]:
    records = RequestRecord.objects.filter(org=org)
    if filters.own_user_id is not None:
        records = records.filter(user_id=filters.own_user_id)
    if filters.since is not None:
        records = records.filter(created_at__gte=filters.since)
    if filters.until is not None:
        records = records.filter(created_at__lt=filters.until)
    if filters.status is not None:
        records = records.filter(status=filters.status)
    if filters.status_class:
        low, high = STATUS_CLASSES[filters.status_class]
        records = records.filter(status__gte=low, status__lt=high)
    if filters.model:
        records = records.filter(model=filters.model)
    if filters.route:
        records = records.filter(route=filters.route)
    if filters.key:
        records = records.filter(key_public_id=filters.key)
    if filters.worker:
        records = records.filter(worker_name=filters.worker)
    return records


def org_requests(
    org: Organisation, *, filters: RequestFilters, cursor: str | None = None, limit: int = 50
) -> RequestPage:
    """One page of an org's request log, newest first, after ``cursor`` (a ValidationError if it is not one).

    Keyset pagination on (created_at, id): the page is "the ``limit`` rows before this position",
    which the (org, created_at) index answers as fast deep in the log as on its first page. The
    redundant ``created_at <= t`` is what the index scan starts from; the OR settles ties.
    """
    records = _filtered(org, filters)
    if cursor:
        position = cursors.decode(cursor)
        records = records.filter(created_at__lte=position.created_at).filter(
            Q(created_at__lt=position.created_at) | Q(created_at=position.created_at, id__lt=position.id)
        )
    rows = list(records.select_related("api_key").order_by("-created_at", "-id")[: limit + 1])
    if len(rows) <= limit:
        return RequestPage(records=rows, next_cursor=None)
    last = rows[limit - 1]
    return RequestPage(records=rows[:limit], next_cursor=cursors.encode(cursors.Position(last.created_at, last.pk)))


def requests_per_worker(*, since: datetime) -> dict[str, int]:
    """Requests each worker took since ``since`` (worker id -> count), platform-wide: the operators' fleet view.

    What a gateway process has in flight lives only in its own memory; the request log is
    what every process shares, so the fleet page shows recent traffic from it.
    """
    rows = (
        RequestRecord.objects.filter(created_at__gte=since, worker_id__isnull=False)
        .values("worker_id")
        .annotate(count=Count("id"))
        .order_by()
    )
    return {str(row["worker_id"]): row["count"] for row in rows}
