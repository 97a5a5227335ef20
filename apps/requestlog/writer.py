"""Batch writes of request and usage rows, straight to the driver.

:func:`write_records` takes rows already built by
:func:`apps.requestlog.services.record_request` (tests seed history with it too).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

import orjson
from django.db import IntegrityError, InterfaceError, OperationalError, connection, models, transaction

from apps.requestlog import budget_alerts, rollups
from apps.requestlog.cleaning import TOKEN_FIELDS, RowCleaner
from apps.requestlog.models import RequestRecord, UsageRecord

logger = logging.getLogger("pendra.requestlog")


class _Table:
    """Batch writes of one model's rows, straight to the driver.

    The gateway hands over plain dicts; turning each into a model instance for
    ``bulk_create`` cost more CPU than the rest of a request (bench/README.md). On
    PostgreSQL rows go in with COPY; elsewhere, and for a batch partly written before,
    with ``INSERT ... ON CONFLICT DO NOTHING``, whose
    datetimes pass through the backend's own adapter so SQLite stores what the ORM would.
    """

    def __init__(self, model: type[models.Model], unique: str) -> None:
        self.model = model
        self.unique = unique  # the column that makes a replayed row a conflict
        fields = [field for field in model._meta.concrete_fields if not field.primary_key]
        self.columns = [field.attname for field in fields]
        self.datetime_columns = {field.attname for field in fields if isinstance(field, models.DateTimeField)}
        # JSON goes through the field's own adapter (psycopg would send a list as an array).
        self.json_fields = [(index, field) for index, field in enumerate(fields) if isinstance(field, models.JSONField)]
        self.json_columns = [index for index, _ in self.json_fields]
        # What the ORM would store for a missing value: the field's default, "" or None.
        self.defaults = {field.attname: field.get_default() for field in fields}
        # A row holding every column (the gateway's always do) is read in one C call.
        self._every_column = itemgetter(*self.columns)

    def _values(self, row: Mapping[str, Any]) -> list[Any]:
        values = [row.get(column, self.defaults[column]) for column in self.columns]
        for index, field in self.json_fields:
            values[index] = field.get_db_prep_value(values[index], connection)
        return values

    def _copy_values(self, row: Mapping[str, Any]) -> list[Any]:
        """A row's values for COPY's text format: JSON as its text, which PostgreSQL parses
        into the same ``jsonb`` the field's adapter would have sent (orjson: a fifth of the CPU)."""
        try:
            values = list(self._every_column(row))
        except KeyError:
            values = [row.get(column, self.defaults[column]) for column in self.columns]
        for index in self.json_columns:
            try:  # None too: JSON's null, as the field's adapter sends it
                values[index] = orjson.dumps(values[index]).decode()
            except orjson.JSONEncodeError:  # what json takes and orjson does not (a lone surrogate)
                values[index] = json.dumps(values[index])
        return values

    def copy(self, rows: list[Mapping[str, Any]]) -> None:
        """PostgreSQL's COPY: about a fifth of the CPU of the INSERT below (bench/README.md).

        COPY has no ON CONFLICT: a batch holding an already written row fails whole, and
        :func:`write_records` then writes it again with :meth:`insert`.
        """
        quote = connection.ops.quote_name
        statement = f"COPY {quote(self.model._meta.db_table)} ({', '.join(quote(c) for c in self.columns)}) FROM STDIN"
        # The driver's own cursor (Django's has no COPY); its errors become Django's.
        with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
            write_row, values = copy.write_row, self._copy_values
            for row in rows:
                write_row(values(row))

    def insert(self, rows: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """``INSERT ... ON CONFLICT DO NOTHING RETURNING`` the unique key: the rows really inserted.

        What the roll-ups add (apps/requestlog/rollups.py): a row written before is not
        returned, so a replay counts nothing twice.
        """
        quote = connection.ops.quote_name
        # Identifiers come from the model's own metadata, quoted; every value is a parameter.
        table = quote(self.model._meta.db_table)
        columns = ", ".join(quote(column) for column in self.columns)
        placeholders = "(" + ", ".join(["%s"] * len(self.columns)) + ")"
        adapt = connection.ops.adapt_datetimefield_value
        step = max(1, (connection.features.max_query_params or 65535) // len(self.columns))
        inserted: set[str] = set()
        with connection.cursor() as cursor:
            for start in range(0, len(rows), step):
                chunk = rows[start : start + step]
                params = [
                    adapt(value) if column in self.datetime_columns else value
                    for values in map(self._values, chunk)
                    for column, value in zip(self.columns, values, strict=True)
                ]
                values = ", ".join([placeholders] * len(chunk))
                sql = (
                    f"INSERT INTO {table} ({columns}) VALUES {values} "  # noqa: S608
                    f"ON CONFLICT DO NOTHING RETURNING {quote(self.unique)}"
                )
                cursor.execute(sql, params)
                inserted.update(uid for (uid,) in cursor.fetchall())
        return [row for row in rows if row.get(self.unique) in inserted]


_records = _Table(RequestRecord, "uid")
_usages = _Table(UsageRecord, "request_uid")


# record_request cleans every row with these, so the values a client or a worker chose
# can never make the database refuse it.
clean_record = RowCleaner(RequestRecord, together=TOKEN_FIELDS)
clean_usage = RowCleaner(UsageRecord, together=TOKEN_FIELDS)

# The database is unreachable or went away mid-batch: the batch is kept and retried.
UNREACHABLE = (OperationalError, InterfaceError)


def write_records(
    records: Iterable[Mapping[str, Any]],
    usages: Iterable[Mapping[str, Any]] = (),
) -> tuple[int, int]:
    """Insert request records and their usage in one transaction; return how many were written.

    A request record is unique per server-minted ``uid`` and a usage row per request uid,
    so writing the same batch twice (a retry after a lost commit acknowledgement) neither
    duplicates a record nor bills twice.

    A row the database refuses (which cleaning should make impossible) must not hold the
    others back: the batch is then written row by row and each refused row is logged once,
    with its request id, and set aside. Only an unreachable database raises (``UNREACHABLE``),
    so the caller keeps the batch for a later attempt.
    """
    record_rows, usage_rows = list(records), list(usages)
    if not (record_rows or usage_rows):
        return 0, 0
    try:
        written = _write_batch(record_rows, usage_rows)
    except UNREACHABLE:
        raise
    except Exception:
        logger.warning("a record batch of %d was refused; writing it row by row", len(record_rows) + len(usage_rows))
        written = _write_each(_records, record_rows, record_rows), _write_each(_usages, usage_rows, record_rows)
    # Committed: the roll-ups hold this batch's spend, so the budgets' thresholds can be checked.
    budget_alerts.check_after_write(usage_rows)
    return written


def _write_each(table: _Table, rows: list[Mapping[str, Any]], batch: list[Mapping[str, Any]]) -> int:
    written = 0
    for row in rows:
        try:
            with transaction.atomic():
                inserted = table.insert([row])
                if table is _records:
                    rollups.add_written(inserted, [])
                else:
                    rollups.add_written([], inserted, batch=batch)
        except UNREACHABLE:
            raise
        except Exception as exc:
            # The driver's message names the constraint; its first line is enough to find the cause.
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            logger.error(
                "%s of request %s set aside, the database refused it: %s",
                table.model._meta.verbose_name,
                row.get("request_id", "?"),
                reason[:300],
            )
        else:
            written += 1
    return written


def _write_batch(record_rows: list[Mapping[str, Any]], usage_rows: list[Mapping[str, Any]]) -> tuple[int, int]:
    # The roll-ups are added in the same transaction as the rows, from the rows inserted only.
    if connection.vendor == "postgresql":
        try:
            with transaction.atomic():
                _records.copy(record_rows)
                _usages.copy(usage_rows)
                # COPY wrote every row or raised: all of them are new.
                rollups.add_written(record_rows, usage_rows, batch=record_rows)
        except IntegrityError:
            logger.warning("a record batch was partly written before; writing the rest row by row")
        else:
            return len(record_rows), len(usage_rows)
    with transaction.atomic():
        new_records = _records.insert(record_rows)
        new_usages = _usages.insert(usage_rows)
        rollups.add_written(new_records, new_usages, batch=record_rows)
    return len(record_rows), len(usage_rows)
