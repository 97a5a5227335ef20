"""The hourly roll-ups stay exact: a replayed or concurrently rewritten batch counts once, and the
rebuild from the records agrees with what the writer kept."""

from __future__ import annotations

import io
import secrets
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from apps.requestlog.models import RequestRollup, UsageRollup
from apps.requestlog.services import delete_expired_records, write_records
from testing.actors import Actor

ORG = "/api/v1/orgs/acme"


def _rows(
    actor: Actor, tokens: int, *, status: int = 200, hours_ago: int = 0
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    uid = secrets.token_hex(16)
    created_at = timezone.now() - timedelta(hours=hours_ago)
    record = {
        "uid": uid,
        "request_id": f"req-{uid}",
        "created_at": created_at,
        "org_id": actor.org.pk if actor.org else None,
        "api_key_id": actor.api_key.pk,
        "user_id": actor.user.pk,
        "route": "/v1/chat/completions",
        "method": "POST",
        "model": "sim-chat",
        "status": status,
        "latency_ms": 10.0,
    }
    if status != 200:
        return record, None
    usage = {
        "request_uid": uid,
        "request_id": record["request_id"],
        "created_at": created_at,
        "org_id": record["org_id"],
        "api_key_id": record["api_key_id"],
        "route": record["route"],
        "model": "sim-chat",
        "prompt_tokens": 2,
        "completion_tokens": tokens - 2,
        "total_tokens": tokens,
        "units": 0,
    }
    return record, usage


def _batch(*pairs: tuple[dict[str, Any], dict[str, Any] | None]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return [record for record, _ in pairs], [usage for _, usage in pairs if usage is not None]


def _totals(actor: Actor) -> tuple[int, int]:
    body = actor.client().get(f"{ORG}/usage/", {"group_by": "key"}).json()
    return body["totals"]["requests"], body["totals"]["total_tokens"]


def _snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    usage = UsageRollup.objects.order_by("org_id", "hour", "model", "api_key_id", "user_id")
    requests = RequestRollup.objects.order_by("org_id", "hour", "user_id", "status_class")
    return (
        list(usage.values_list("org_id", "hour", "model", "api_key_id", "user_id", "requests", "total_tokens", "cost")),
        list(requests.values_list("org_id", "hour", "user_id", "status_class", "requests")),
    )


@pytest.mark.django_db
def test_a_replayed_batch_does_not_count_twice(owner: Actor) -> None:
    records, usages = _batch(_rows(owner, 10), _rows(owner, 20), _rows(owner, 0, status=502))
    write_records(records, usages)
    write_records(records, usages)
    assert _totals(owner) == (2, 30)
    assert sum(RequestRollup.objects.values_list("requests", flat=True)) == 3


@pytest.mark.django_db
def test_a_batch_partly_written_before_counts_only_its_new_rows(owner: Actor) -> None:
    first = _rows(owner, 10)
    write_records(*_batch(first))
    write_records(*_batch(first, _rows(owner, 5)))
    assert _totals(owner) == (2, 15)


@pytest.mark.django_db(transaction=True)
def test_writers_racing_on_the_same_batch_count_it_once(owner: Actor) -> None:
    batch = _batch(*(_rows(owner, 7, hours_ago=n % 3) for n in range(30)))
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            start.wait()
            write_records(*batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _totals(owner) == (30, 210)


@pytest.mark.django_db
def test_rebuilding_the_rollups_from_the_records_gives_what_the_writer_kept(owner: Actor, member: Actor) -> None:
    pairs = [
        _rows(owner, 10, hours_ago=1),
        _rows(member, 4),
        _rows(member, 0, status=429),
        _rows(owner, 6, hours_ago=30),
    ]
    write_records(*_batch(*pairs))
    kept = _snapshot()
    assert kept[0] and kept[1]
    call_command("rebuild_rollups", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert _snapshot() == kept


@pytest.mark.django_db
def test_a_rebuild_after_retention_keeps_the_request_counts_of_deleted_records(owner: Actor) -> None:
    days = settings.PENDRA_REQUEST_RETENTION_DAYS
    write_records(*_batch(_rows(owner, 5, hours_ago=days * 24 + 5), _rows(owner, 0, status=502, hours_ago=2)))
    kept = _snapshot()
    assert delete_expired_records() == 1
    call_command("rebuild_rollups", stdout=io.StringIO())
    assert _snapshot() == kept


@pytest.mark.django_db
def test_the_usage_rollup_sums_the_cost_exactly(owner: Actor) -> None:
    pairs = [_rows(owner, 10), _rows(owner, 10), _rows(owner, 10)]
    for _, usage in pairs:
        assert usage is not None
        usage["cost"] = Decimal("0.0000001234")
    write_records(*_batch(*pairs))
    body = owner.client().get(f"{ORG}/usage/", {"group_by": "model"}).json()
    assert body["totals"]["cost"] == "0.0000003702"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45T00:00:00Z"}, "until"),
        ({"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_usage_queries_are_a_400_naming_the_field(owner: Actor, params: dict[str, str], field: str) -> None:
    response = owner.client().get(f"{ORG}/usage/", params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith(f"{field}:")


@pytest.mark.django_db
def test_a_bad_csv_query_is_answered_in_json(owner: Actor) -> None:
    response = owner.client().get(f"{ORG}/usage/", {"format": "csv", "group_by": "week"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("group_by:")


@pytest.mark.django_db
def test_the_openapi_schema_documents_the_usage_groupings_and_the_csv(owner: Actor) -> None:
    schema = owner.client().get("/api/v1/schema/?format=json").json()
    usage = schema["paths"]["/api/v1/orgs/{slug}/usage/"]["get"]
    parameters = {parameter["name"]: parameter["schema"] for parameter in usage["parameters"]}
    assert parameters["group_by"]["enum"] == ["day", "model", "key", "member"]
    assert set(parameters["format"]["enum"]) == {"json", "csv"}
    assert {"application/json", "text/csv"} <= set(usage["responses"]["200"]["content"])
