"""Reads of request and usage records, always scoped to what the caller may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from apps.keys.selectors import org_keys_by_id
from apps.orgs.models import Organisation, Role, role_at_least
from apps.plans.limit_decision import REQUEST_BUCKETS, STREAMS_BUCKET, TOKEN_BUCKETS
from apps.plans.limits import current_use
from apps.plans.selectors import plan_for_org
from apps.requestlog import cursors
from apps.requestlog.models import RequestRecord, RequestRollup, UsageRollup
from apps.requestlog.rollups import INFERENCE_PREFIX, USAGE_SUMS, hour_of


def records_for_org(*, org: Organisation, role: str, user: Any) -> QuerySet[RequestRecord]:
    """An org's request records: owners and admins see all, members only their own keys' requests."""
    return _filtered(org, request_filters_for(role=role, user=user)).order_by("-created_at", "-id")


# A client reusing an id is shown every match, up to this many (newest first).
MAX_MATCHES = 20


def records_by_request_id(request_id: str) -> list[RequestRecord]:
    """Every record carrying this id, across organisations: for support staff and operators only.

    The key is not joined: the explanation finds it by the public id the record keeps (one query
    for every record, :func:`apps.requestlog.explanations.explain_records`). Joining it and its
    user as well doubled this query's time at a million records (3.8 ms against 1.9, bench/README.md).
    """
    return list(
        RequestRecord.objects.filter(request_id=request_id)
        .select_related("org", "user")
        .order_by("-created_at", "-id")[:MAX_MATCHES]
    )


def org_records_by_request_id(*, org: Organisation, role: str, user: Any, request_id: str) -> list[RequestRecord]:
    """The org's records carrying this id: owners and admins see all, members their own keys' only."""
    records = records_for_org(org=org, role=role, user=user).filter(request_id=request_id)
    return list(records.select_related("org", "user")[:MAX_MATCHES])


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

    A walk of the ``created_at`` index over the window only, however large the log: at
    1,000,000 records with 20,000 in the last minute, 8 ms (bench/README.md, "The fleet's
    traffic column"). What is in flight now comes from the gateways (``apps.workers.inflight``).
    """
    rows = (
        RequestRecord.objects.filter(created_at__gte=since, worker_id__isnull=False)
        .values("worker_id")
        .annotate(count=Count("id"))
        .order_by()
    )
    return {str(row["worker_id"]): row["count"] for row in rows}


GROUPINGS = ("day", "model", "key", "member")


@dataclass(frozen=True)
class UsageReport:
    """Billed usage between two whole hours: totals, and one row per day, model, key or member.

    Every row has ``label`` (what it is in words) beside its group's own fields and the sums
    (``requests``, the token counts, ``units``, ``cost``); the API and its CSV render the same rows.
    """

    since: datetime
    until: datetime
    group_by: str
    totals: dict[str, Any]
    rows: list[dict[str, Any]]


def hour_floor(moment: datetime) -> datetime:
    return hour_of(moment)


def hour_ceil(moment: datetime) -> datetime:
    floor = hour_of(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def _sums() -> dict[str, Sum]:
    return {name: Sum(name) for name in USAGE_SUMS}


def _zeros(row: dict[str, Any]) -> dict[str, Any]:
    # An empty group sums to NULL; a report says 0.
    return {**row, **{name: row.get(name) or (Decimal(0) if name == "cost" else 0) for name in USAGE_SUMS}}


def usage_report(
    org: Organisation, group_by: str, since: datetime, until: datetime, *, member: Any = None
) -> UsageReport:
    """The org's billed usage from its hourly roll-up (never the raw records), the range widened
    to whole hours (``since`` down, ``until`` up). ``member``: only that user's keys' usage."""
    since, until = hour_floor(since), hour_ceil(until)
    rollup = UsageRollup.objects.filter(org=org, hour__gte=since, hour__lt=until)
    if member is not None:
        rollup = rollup.filter(user_id=member.pk)
    if group_by == "day":
        grouped = rollup.annotate(day=TruncDay("hour", tzinfo=UTC)).values("day").annotate(**_sums()).order_by("day")
        rows = [{**_zeros(row), "day": row["day"].date(), "label": row["day"].date().isoformat()} for row in grouped]
    elif group_by == "model":
        grouped = rollup.values("model").annotate(**_sums()).order_by("-total_tokens", "model")
        rows = [{**_zeros(row), "label": row["model"]} for row in grouped]
    elif group_by == "key":
        grouped = list(rollup.values("api_key_id").annotate(**_sums()).order_by("-total_tokens", "api_key_id"))
        keys = org_keys_by_id(org=org, key_ids={row["api_key_id"] for row in grouped})
        rows = [
            {"key_id": row["api_key_id"] or None, "label": _key_label(keys.get(row["api_key_id"])), **_zeros(row)}
            for row in grouped
        ]
    else:
        grouped = list(rollup.values("user_id").annotate(**_sums()).order_by("-total_tokens", "user_id"))
        users = get_user_model().objects.in_bulk({row["user_id"] for row in grouped})
        rows = [
            {"member_id": row["user_id"] or None, "label": _user_label(users.get(row["user_id"])), **_zeros(row)}
            for row in grouped
        ]
    # The totals are the rows' sums (exact: integers and Decimals), not a second pass over the roll-up.
    totals = _zeros({name: sum(row[name] for row in rows) if rows else None for name in USAGE_SUMS})
    return UsageReport(since=since, until=until, group_by=group_by, totals=totals, rows=rows)


def _key_label(key: Any) -> str:
    return f"{key.name} ({key.prefix})" if key is not None else "(no key)"


def _user_label(user: Any) -> str:
    return user.email or user.get_username() if user is not None else "(no member)"


@dataclass(frozen=True)
class BucketLevel:
    """One rate-limit bucket right now: what the org used of it this minute (None: unknown)."""

    bucket: str
    limit: int
    used: int | None

    @property
    def percent(self) -> int | None:
        if self.used is None or self.limit <= 0:
            return None
        return min(100, round(self.used * 100 / self.limit))


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    hourly: list[dict[str, Any]]  # 24 hours, oldest first: hour, requests, errors
    daily: list[dict[str, Any]]  # 30 days, oldest first: day, requests, errors
    tokens_by_model: list[dict[str, Any]]  # the last 30 days, most tokens first
    buckets: list[BucketLevel]
    recent_failures: list[RequestRecord]


RECENT_FAILURES = 10


def bucket_levels(org: Organisation) -> list[BucketLevel]:
    """Each bucket's limit and current use, read from the live counters without counting anything."""
    plan = plan_for_org(org.pk)
    use = current_use(org_id=org.pk)
    levels = [BucketLevel(kind, getattr(plan, field), use.get(kind)) for kind, field in REQUEST_BUCKETS.items()]
    levels += [BucketLevel(bucket, getattr(plan, field), use.get(bucket)) for bucket, field in TOKEN_BUCKETS.values()]
    return [*levels, BucketLevel(STREAMS_BUCKET, plan.concurrent_streams, use.get(STREAMS_BUCKET))]


def org_dashboard(org: Organisation, now: datetime | None = None, *, member: Any = None) -> Dashboard:
    """Requests and errors over 24 hours and 30 days, tokens by model, the buckets' levels and the
    latest failed inference requests; from the roll-ups, so its cost does not grow with the records.
    ``member``: only that user's keys' requests (the buckets are the org's)."""
    now = now or timezone.now()
    this_hour = hour_floor(now)
    first_hour = this_hour - timedelta(hours=23)
    today = this_hour.replace(hour=0)
    first_day = today - timedelta(days=29)
    requests = RequestRollup.objects.filter(org=org, hour__gte=first_day, hour__lt=this_hour + timedelta(hours=1))
    usage = UsageRollup.objects.filter(org=org, hour__gte=first_day, hour__lt=this_hour + timedelta(hours=1))
    failures = RequestRecord.objects.filter(org=org, status__gte=400, route__startswith=INFERENCE_PREFIX)
    if member is not None:
        requests = requests.filter(user_id=member.pk)
        usage = usage.filter(user_id=member.pk)
        failures = failures.filter(user_id=member.pk)
    # Named apart from the column: an annotation named "requests" would shadow it for the second sum.
    counts = {"answered": Sum("requests"), "errors": Sum("requests", filter=Q(status_class__gte=4))}
    by_hour = {
        row["hour"]: row for row in requests.filter(hour__gte=first_hour).values("hour").annotate(**counts).order_by()
    }
    by_day = {
        row["day"]: row
        for row in requests.annotate(day=TruncDay("hour", tzinfo=UTC)).values("day").annotate(**counts).order_by()
    }
    hours = [first_hour + timedelta(hours=n) for n in range(24)]
    days = [first_day + timedelta(days=n) for n in range(30)]
    tokens = usage.values("model").annotate(**_sums()).order_by("-total_tokens", "model")
    return Dashboard(
        now=now,
        hourly=[{"hour": hour, **_counts(by_hour.get(hour))} for hour in hours],
        daily=[{"day": day.date(), **_counts(by_day.get(day))} for day in days],
        tokens_by_model=[_zeros(row) for row in tokens],
        buckets=bucket_levels(org),
        recent_failures=list(failures.select_related("api_key").order_by("-created_at", "-id")[:RECENT_FAILURES]),
    )


def _counts(row: dict[str, Any] | None) -> dict[str, int]:
    return {"requests": (row or {}).get("answered") or 0, "errors": (row or {}).get("errors") or 0}
