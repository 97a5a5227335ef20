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


def test_a_row_the_database_refuses_is_set_aside_once_and_the_rest_of_its_batch_is_written(caplog) -> None:
    records, usages = _batch(3)
    refused = records[1]
    refused["created_at"] = None  # NOT NULL: no retry can ever write this row
    write_records(records, usages)
    assert set(RequestRecord.objects.values_list("uid", flat=True)) == {records[0]["uid"], records[2]["uid"]}
    assert UsageRecord.objects.count() == 3  # the refused record's usage is a valid row of its own
    set_aside = [entry for entry in caplog.records if refused["request_id"] in entry.getMessage()]
    assert len(set_aside) == 1


@pytest.mark.django_db(transaction=True)  # the recorder manages its own connection
def test_the_recorder_drops_a_refused_row_instead_of_retrying_it_forever() -> None:
    from apps.requestlog.recorder import recorder

    records, usages = _batch(2)
    records[0]["created_at"] = None
    recorder.submit(records[0], usages[0])
    recorder.submit(records[1], usages[1])
    recorder.flush()
    assert recorder.backlog() == 0
    assert list(RequestRecord.objects.values_list("uid", flat=True)) == [records[1]["uid"]]
    recorder.flush()  # nothing left to retry
    assert RequestRecord.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_readyz_reports_the_record_backlog(client) -> None:
    from apps.requestlog.recorder import recorder

    recorder.flush()
    body = client.get("/readyz").json()
    assert body["records_backlog"] == 0
