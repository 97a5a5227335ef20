"""The record stream's entries: JSON that writers of this and the previous version both read.

The previous version wrote and read entries with the standard library's ``json``; this one
with orjson. During a rolling deploy old web processes feed new writers and new web
processes feed old writers, so each side must read the other's entries as it reads its own.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from typing import Any

import httpx
import pytest
import redis
from django.core.management import call_command

from apps.requestlog import handoff
from apps.requestlog.models import RequestRecord, UsageRecord
from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}


def _previous_encode(record: dict[str, Any], usage: dict[str, Any] | None) -> bytes:
    """What the previous version's web processes put in the stream."""

    def iso(value: Any) -> str:
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return json.dumps([record, usage], default=iso, separators=(",", ":")).encode()


def _write_stream() -> str:
    out = StringIO()
    call_command("record_writer", "--once", stdout=out)
    return out.getvalue()


def test_entries_from_a_v1_request_with_invalid_unicode_are_plain_json_and_recorded(
    stream: redis.Redis, owner: Actor, simulator: Any, register_sim: Any
) -> None:
    register_sim(simulator("sim-a"))
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "PENDRA_LOG_LEVEL": "WARNING",
        "PENDRA_RECORD_HANDOFF": "redis",
        "PENDRA_RECORD_FLUSH_SECONDS": "60",  # a record Redis refused would wait in the process: none may
    }
    # Valid JSON ("\ud800" is an escape the parser accepts) that no UTF-8 column can hold.
    raw = b'{"model": "sim\\ud800chat", "messages": [{"role": "user", "content": "x"}]}'
    with (
        ServerProcesses(env) as [url],
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {owner.key}"}, timeout=60) as http,
    ):
        bad = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        ok = http.post("/v1/chat/completions", json=CHAT)
    assert (bad.status_code, ok.status_code) == (400, 200)

    # Both entries reached the stream, and the standard library (the previous writer's decoder) reads them.
    entries = [json.loads(fields[handoff.FIELD]) for _, fields in stream.xrange(handoff.STREAM)]
    by_id = {record["request_id"]: (record, usage) for record, usage in entries}
    assert set(by_id) == {bad.headers["x-request-id"], ok.headers["x-request-id"]}
    bad_record, bad_usage = by_id[bad.headers["x-request-id"]]
    assert (bad_record["model"], bad_usage) == ("sim\ufffdchat", None)
    ok_record, ok_usage = by_id[ok.headers["x-request-id"]]
    assert datetime.fromisoformat(ok_record["created_at"]).tzinfo is not None
    assert isinstance(ok_usage["cost"], str)  # a Decimal's exact text, as json's default wrote it
    Decimal(ok_usage["cost"])

    assert "2 entries written" in _write_stream()
    assert RequestRecord.objects.get(request_id=bad.headers["x-request-id"]).model == "sim\ufffdchat"
    usage = UsageRecord.objects.get(request_id=ok.headers["x-request-id"])
    assert usage.cost == Decimal(ok_usage["cost"])
    assert usage.created_at == datetime.fromisoformat(ok_record["created_at"])
    assert stream.xlen(handoff.STREAM) == 0


def _rows(created_at: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    uid = uuid.uuid4().hex
    record = {
        "uid": uid,
        "request_id": f"req_{uid[:24]}",
        "created_at": created_at,
        "org_id": None,
        "route": "/v1/chat/completions",
        "method": "POST",
        "model": "sim-chat",
        "status": 200,
        "latency_ms": 12.5,
        "worker_trail": [{"worker_id": "w1", "worker": "sim-a", "result": "ok"}],
    }
    usage = {
        "request_uid": uid,
        "request_id": record["request_id"],
        "created_at": created_at,
        "org_id": None,
        "route": "/v1/chat/completions",
        "model": "sim-chat",
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
        "units": 1,
        "cost": Decimal("0.0000012345"),
    }
    return record, usage


def test_entries_of_the_previous_version_are_written_as_this_versions_are(stream: redis.Redis) -> None:
    now = datetime.now(UTC)
    moments = [now, now.replace(microsecond=0)]  # isoformat leaves out a zero fraction
    old = [_rows(moment) for moment in moments]
    new = [_rows(moment) for moment in moments]
    for record, usage in old:
        stream.xadd(handoff.STREAM, {handoff.FIELD: _previous_encode(record, usage)})
    for record, usage in new:
        stream.xadd(handoff.STREAM, {handoff.FIELD: handoff.encode(record, usage)})
        # The same JSON as the previous version's, so a writer of that version reads it too.
        assert json.loads(handoff.encode(record, usage)) == json.loads(_previous_encode(record, usage))

    assert "4 entries written" in _write_stream()
    for record, usage in old + new:
        stored = RequestRecord.objects.get(uid=record["uid"])
        assert (stored.created_at, stored.worker_trail, stored.latency_ms) == (
            record["created_at"],
            record["worker_trail"],
            12.5,
        )
        billed = UsageRecord.objects.get(request_uid=record["uid"])
        assert (billed.created_at, billed.cost, billed.total_tokens) == (usage["created_at"], usage["cost"], 7)


def test_a_row_orjson_refuses_is_still_encoded(stream: redis.Redis) -> None:
    """Cleaning leaves no lone surrogate nor huge integer in a row; should one get through,
    the entry is still made (by json), never an exception that would lose the turn's records."""
    record, usage = _rows(datetime.now(UTC))
    record["error"] = "lone \ud800 surrogate"
    record["extra"] = 2**70
    entry = handoff.encode(record, usage)
    decoded, _ = handoff.decode(entry)
    assert (decoded["error"], decoded["extra"], decoded["created_at"]) == (
        "lone \ud800 surrogate",
        2**70,
        record["created_at"],
    )
