"""The record writer: batches written once, whatever is retried."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from django.utils import timezone

from apps.requestlog.models import RequestRecord, UsageRecord
from apps.requestlog.services import write_records

pytestmark = pytest.mark.django_db


def _batch(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = timezone.now()
    records, usages = [], []
    for _ in range(count):
        uid = secrets.token_hex(16)
        records.append(
            {
                "uid": uid,
                "request_id": f"req_{uid[:24]}",
                "created_at": now,
                "route": "/v1/embeddings",
                "method": "POST",
                "model": "m",
                "status": 200,
                "latency_ms": 2.5,
                "total_tokens": 7,
            }
        )
        usages.append(
            {
                "request_uid": uid,
                "request_id": f"req_{uid[:24]}",
                "created_at": now,
                "route": "/v1/embeddings",
                "model": "m",
                "prompt_tokens": 7,
                "total_tokens": 7,
            }
        )
    return records, usages


def test_a_batch_is_written_with_the_defaults_of_missing_fields() -> None:
    records, usages = _batch(3)
    assert write_records(records, usages) == (3, 3)
    record = RequestRecord.objects.get(uid=records[0]["uid"])
    assert (record.worker_name, record.error, record.attempts, record.streamed, record.org_id) == (
        "",
        "",
        0,
        False,
        None,
    )
    assert record.created_at == records[0]["created_at"]
    assert UsageRecord.objects.get(request_uid=records[0]["uid"]).completion_tokens == 0


def test_a_batch_written_again_with_more_rows_bills_each_request_once() -> None:
    records, usages = _batch(4)
    write_records(records[:2], usages[:2])
    # The writer retries after a failure it cannot tell from a lost acknowledgement.
    write_records(records, usages)
    assert RequestRecord.objects.count() == 4
    assert UsageRecord.objects.count() == 4
    assert sum(UsageRecord.objects.values_list("total_tokens", flat=True)) == 28
