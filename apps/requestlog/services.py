"""Writing request and usage records, and keeping the table to its retention period."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.requestlog.models import RequestRecord, UsageRecord

logger = logging.getLogger("pendra.requestlog")

RECORD_FIELDS = frozenset(field.attname for field in RequestRecord._meta.concrete_fields if field.name != "id")
USAGE_FIELDS = frozenset(field.attname for field in UsageRecord._meta.concrete_fields if field.name != "id")


def write_records(
    records: Iterable[Mapping[str, Any]],
    usages: Iterable[Mapping[str, Any]] = (),
) -> tuple[int, int]:
    """Insert request records and their usage in one transaction.

    A usage row is unique per request uid, so writing the same batch twice (a retry
    after a lost commit acknowledgement) bills nothing twice.
    """
    record_rows = [RequestRecord(**{k: v for k, v in r.items() if k in RECORD_FIELDS}) for r in records]
    usage_rows = [UsageRecord(**{k: v for k, v in u.items() if k in USAGE_FIELDS}) for u in usages]
    with transaction.atomic():
        if record_rows:
            RequestRecord.objects.bulk_create(record_rows, ignore_conflicts=True)
        if usage_rows:
            UsageRecord.objects.bulk_create(usage_rows, ignore_conflicts=True)
    return len(record_rows), len(usage_rows)


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
