"""Reads of request and usage records, always scoped to what the caller may see."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDay

from apps.orgs.models import Organisation, Role, role_at_least
from apps.requestlog.models import RequestRecord, UsageRecord


def records_for_org(
    *,
    org: Organisation,
    role: str,
    user: Any,
    since: datetime | None = None,
    until: datetime | None = None,
    status: int | None = None,
    model: str | None = None,
    route: str | None = None,
) -> QuerySet[RequestRecord]:
    """An org's request records: owners and admins see all, members only their own keys' requests."""
    records = RequestRecord.objects.filter(org=org).select_related("api_key", "worker")
    if not role_at_least(role, Role.ADMIN):
        records = records.filter(user_id=user.pk)
    if since is not None:
        records = records.filter(created_at__gte=since)
    if until is not None:
        records = records.filter(created_at__lt=until)
    if status is not None:
        records = records.filter(status=status)
    if model:
        records = records.filter(model=model)
    if route:
        records = records.filter(route=route)
    return records.order_by("-created_at", "-id")


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
