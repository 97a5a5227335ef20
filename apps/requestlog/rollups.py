"""The roll-ups that reports read instead of raw records, kept exact as records are written.

:func:`add_written` runs inside the transaction that inserted the rows, and is given only
the rows that transaction really inserted (a replayed batch inserts nothing, so adds
nothing). Each roll-up row is one ``INSERT ... ON CONFLICT DO UPDATE`` adding to its sums,
which is atomic under concurrent writers on PostgreSQL and SQLite alike; the rows go in
sorted by key so two writers touching the same rows lock them in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, models
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from apps.keys.selectors import key_user_ids
from apps.requestlog.models import RequestRecord, RequestRollup, UsageRecord, UsageRollup

# The dashboard counts inference requests: admin API calls (the console's own) are left out.
INFERENCE_PREFIX = "/v1/"
USAGE_SUMS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "units", "cost")


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def add_written(
    records: Sequence[Mapping[str, Any]],
    usages: Sequence[Mapping[str, Any]],
    *,
    batch: Iterable[Mapping[str, Any]] = (),
) -> None:
    """Add just-inserted records and usage rows to the roll-ups (call inside the inserting transaction).

    ``batch`` is every record row the writer was given: a usage row's user is its record's,
    and only a usage row without one in the batch costs a query (its key's user).
    """
    request_sums: dict[tuple[Any, ...], list[int]] = {}
    for row in records:
        if row.get("org_id") is None or not str(row.get("route", "")).startswith(INFERENCE_PREFIX):
            continue
        key = (row["org_id"], hour_of(row["created_at"]), row.get("user_id") or 0, int(row["status"]) // 100)
        request_sums.setdefault(key, [0])[0] += 1
    _upsert(RequestRollup, ("org_id", "hour", "user_id", "status_class"), ("requests",), request_sums)
    usages = [row for row in usages if row.get("org_id") is not None]
    if not usages:
        return
    users = {row["uid"]: row.get("user_id") for row in batch if row.get("user_id")}
    missing = {row["api_key_id"] for row in usages if row["request_uid"] not in users and row.get("api_key_id")}
    key_users = key_user_ids(missing)
    usage_sums: dict[tuple[Any, ...], list[Any]] = {}
    for row in usages:
        key_id = row.get("api_key_id") or 0
        user_id = users.get(row["request_uid"]) or key_users.get(key_id) or 0
        group = (row["org_id"], hour_of(row["created_at"]), row.get("model", ""), key_id, user_id)
        sums = usage_sums.setdefault(group, [0, 0, 0, 0, 0, Decimal(0)])
        sums[0] += 1
        for index, name in enumerate(USAGE_SUMS[1:-1], start=1):
            sums[index] += row.get(name) or 0
        # Through the Redis hand-off the cost may arrive as text: Decimal keeps it exact either way.
        sums[-1] += Decimal(str(row.get("cost") or 0))
    _upsert(UsageRollup, ("org_id", "hour", "model", "api_key_id", "user_id"), USAGE_SUMS, usage_sums)


def _upsert(
    model: type[models.Model], keys: tuple[str, ...], sums: tuple[str, ...], rows: Mapping[tuple[Any, ...], list[Any]]
) -> None:
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(column) for column in keys + sums)
    conflict = ", ".join(quote(column) for column in keys)
    adds = ", ".join(f"{quote(c)} = {table}.{quote(c)} + EXCLUDED.{quote(c)}" for c in sums)
    ordered = sorted(rows.items())
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array per column: the statement's text is the same for every batch (the driver
            # parses it once), where a VALUES list of a few hundred rows cost the writer more CPU
            # in the driver's query parsing than the rows' COPY (bench/README.md, writer_bench.py).
            arrays = ", ".join(f"%b::{model._meta.get_field(c).db_type(connection)}[]" for c in keys + sums)
            sql = (
                f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) "  # noqa: S608
                f"ON CONFLICT ({conflict}) DO UPDATE SET {adds}"
            )
            # unnest yields the rows in the arrays' order: still sorted by key, so writers lock alike.
            table_rows = [(*key, *total) for key, total in ordered]
            # Bound by the server, in binary: Django's client-side binding quoted every array
            # element as text in Python, about as much CPU again as the statement's parse was.
            with connection.wrap_database_errors, psycopg.Cursor(cursor.cursor.connection) as bound:
                bound.execute(sql, [list(column) for column in zip(*table_rows, strict=True)])
            return
        placeholders = "(" + ", ".join(["%s"] * (len(keys) + len(sums))) + ")"
        adapt = connection.ops.adapt_datetimefield_value
        step = max(1, _max_params() // (len(keys) + len(sums)))
        for start in range(0, len(ordered), step):
            chunk = ordered[start : start + step]
            params = [
                adapt(value) if isinstance(value, datetime) else value
                for key, total in chunk
                for value in (*key, *total)
            ]
            values = ", ".join([placeholders] * len(chunk))
            # Identifiers come from the model's metadata, quoted; every value is a parameter.
            sql = f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT ({conflict}) DO UPDATE SET {adds}"  # noqa: S608
            cursor.execute(sql, params)


def _max_params() -> int:
    # SQLite's compiled-in limit is 999 on old builds (Django assumes so); PostgreSQL's is 65535.
    return connection.features.max_query_params or 65535


def rebuild(
    *,
    record_model: type[models.Model] = RequestRecord,
    usage_model: type[models.Model] = UsageRecord,
    request_rollup: type[models.Model] = RequestRollup,
    usage_rollup: type[models.Model] = UsageRollup,
) -> tuple[int, int]:
    """Recompute both roll-ups from the rows (``manage.py rebuild_rollups``, and the migration
    that created them, with its historical models); returns how many roll-up rows were made.

    Request counts older than the retention period are kept as they are (their records may
    be gone); usage rows are never deleted, so usage is recomputed whole.

    Call inside a transaction. On PostgreSQL the roll-up tables are locked against writers
    first: a writer that inserted rows before then has committed them (they are counted
    here), one after waits and adds its own once this commits; nothing is counted twice.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for table in (request_rollup, usage_rollup):
                cursor.execute(f"LOCK TABLE {connection.ops.quote_name(table._meta.db_table)} IN EXCLUSIVE MODE")
    # Retention deletes old request records but not their counts: the hours it may have
    # reached keep what the writer counted (all is recomputed when the roll-up is empty).
    recounted = request_rollup._default_manager.all()
    records = record_model._default_manager.filter(org_id__isnull=False, route__startswith=INFERENCE_PREFIX)
    if recounted.exists():
        retained_from = hour_of(timezone.now() - timedelta(days=settings.PENDRA_REQUEST_RETENTION_DAYS))
        recounted = recounted.filter(hour__gt=retained_from)
        records = records.filter(created_at__gte=retained_from + timedelta(hours=1))
    # Deleting first also takes SQLite's write lock before anything is read.
    recounted.delete()
    usage_rollup._default_manager.all().delete()
    requests = (
        records.annotate(hour=TruncHour("created_at"), status_class=F("status") / 100)
        .values("org_id", "hour", "user_id", "status_class")
        .annotate(requests=Count("id"))
        .order_by()
    )
    made_requests = _bulk(
        request_rollup,
        ({**row, "user_id": row["user_id"] or 0} for row in requests.iterator(chunk_size=5000)),
    )
    sums: dict[str, Any] = {"requests": Count("id"), **{name: Sum(name) for name in USAGE_SUMS[1:]}}
    usage = (
        usage_model._default_manager.filter(org_id__isnull=False)
        .annotate(hour=TruncHour("created_at"), key_user_id=F("api_key__user_id"))
        .values("org_id", "hour", "model", "api_key_id", "key_user_id")
        .annotate(**sums)
        .order_by()
    )
    rows = (_usage_row(row) for row in usage.iterator(chunk_size=5000))
    return made_requests, _bulk(usage_rollup, rows)


def _usage_row(row: dict[str, Any]) -> dict[str, Any]:
    user_id = row.pop("key_user_id")
    return {**row, "api_key_id": row["api_key_id"] or 0, "user_id": user_id or 0}


def _bulk(model: type[models.Model], rows: Iterable[dict[str, Any]]) -> int:
    made, rows = 0, iter(rows)
    while chunk := [model(**row) for row in islice(rows, 2000)]:
        model._default_manager.bulk_create(chunk)
        made += len(chunk)
    return made
