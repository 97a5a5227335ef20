"""Retention, carried out by real Celery beat and worker processes on the throwaway Redis."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.requestlog.models import RequestRecord
from apps.requestlog.services import write_records


def _record(age: timedelta) -> dict[str, Any]:
    return {
        "uid": uuid.uuid4().hex,
        "request_id": f"req_{uuid.uuid4().hex[:16]}",
        "created_at": timezone.now() - age,
        "route": "/v1/chat/completions",
        "method": "POST",
        "status": 200,
        "latency_ms": 12.5,
    }


def test_beat_deletes_records_past_retention_and_keeps_the_rest(celery_stack: Any) -> None:
    retention = timedelta(days=settings.PENDRA_REQUEST_RETENTION_DAYS)
    old = [_record(retention + timedelta(hours=1)) for _ in range(3)]
    recent = [_record(retention - timedelta(hours=1)), _record(timedelta(0))]
    write_records(old + recent)
    stack = celery_stack(
        PENDRA_RETENTION_INTERVAL="1", PENDRA_HEALTH_INTERVAL="3600", PENDRA_KEY_LIFECYCLE_INTERVAL="3600"
    )
    worker = stack.worker()
    stack.beat()

    worker.wait_for_log(r"Task requestlog\.delete_expired\[[^\]]+\] succeeded in [^:]+: 3\b", timeout=20)
    # The next run finds nothing left: deleting is idempotent.
    assert worker.wait_for_log(r"Task requestlog\.delete_expired\[[^\]]+\] succeeded in [^:]+: 0\b", timeout=20)
    assert sorted(RequestRecord.objects.values_list("uid", flat=True)) == sorted(r["uid"] for r in recent)
