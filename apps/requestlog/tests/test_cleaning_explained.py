"""The explanation's fields of a record (key id, limit, timeout, worker trail) are cleaned like
every other: a hostile value (NUL, lone surrogates, huge, deeply nested, NaN) is stored
cleaned, and the row is never refused."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from apps.requestlog.cleaning import JSON_ITEMS, JSON_TEXT_LENGTH
from apps.requestlog.models import RequestRecord
from apps.requestlog.services import LimitHit, TimeoutHit, record_request

pytestmark = pytest.mark.django_db

HOSTILE = "a\x00b\ud800c\x7f" + "x" * 5000


def _record(**facts: Any) -> RequestRecord:
    uid = secrets.token_hex(16)
    record_request(
        uid=uid,
        request_id=f"req_{uid[:24]}",
        route="/v1/chat/completions",
        method="POST",
        status=502,
        latency_ms=1.0,
        deferred=False,
        **facts,
    )
    return RequestRecord.objects.get(uid=uid)


def test_hostile_text_in_the_limit_timeout_and_key_fields_is_stored_cleaned() -> None:
    record = _record(
        key_public_id=HOSTILE,
        limit_hit=LimitHit(bucket=HOSTILE, plan=HOSTILE, limit=HOSTILE, reset_s=2**40),
        timeout_hit=TimeoutHit(name=HOSTILE, seconds=float("nan")),
    )
    for value, length in (
        (record.key_public_id, 40),
        (record.limit_bucket, 40),
        (record.limit_plan, 100),
        (record.limit, 100),
        (record.timeout, 100),
    ):
        assert value == "a\ufffdb\ufffdc\ufffd" + "x" * (length - 6)
    assert (record.limit_reset_s, record.timeout_s) == (None, None)


def test_a_hostile_worker_trail_is_stored_cleaned_and_bounded() -> None:
    deep: Any = "bottom"
    for _ in range(50):
        deep = [deep]
    trail = [
        {
            "worker_id": HOSTILE,
            "worker": "sim\x00a",
            "result": "HTTP 500",
            "nested": deep,
            "n": 2**70,
            "f": float("inf"),
        }
    ] * (JSON_ITEMS + 5)

    record = _record(worker_trail=trail)

    assert len(record.worker_trail) == JSON_ITEMS
    first = record.worker_trail[0]
    assert first["worker"] == "sim\ufffda"
    assert first["worker_id"] == ("a\ufffdb\ufffdc\ufffd" + "x" * 5000)[:JSON_TEXT_LENGTH]
    assert (first["n"], first["f"]) == (None, None)
    assert first["nested"] == [None]  # cut at the depth any record needs


def test_a_trail_that_is_not_even_a_list_is_stored_as_text() -> None:
    record = _record(worker_trail=object())  # type: ignore[arg-type]
    assert isinstance(record.worker_trail, str) and record.worker_trail.startswith("<object object")


def test_trail_keys_and_values_that_cannot_even_be_printed_are_named_by_type() -> None:
    huge = 10**5000  # str() refuses an int this long

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    record = _record(worker_trail=[{huge: Unprintable(), "worker": "sim-a"}])  # type: ignore[list-item]

    assert record.worker_trail == [{"<int>": "<Unprintable>", "worker": "sim-a"}]


# Each character cleaning replaces, alone in a value short enough for its column: the case the
# fast path (``str.isprintable``, no regex) must never let through. U+2028 and a zero-width
# space are not printable but not replaced either: they take the slow path and are kept.
@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("\x00", "\ufffd"),
        ("a\tb", "a\ufffdb"),
        ("\x7f", "\ufffd"),
        ("\x85", "\ufffd"),  # C1 (NEL)
        ("x\x9f", "x\ufffd"),
        ("\ud800", "\ufffd"),  # a lone high surrogate
        ("\udfff", "\ufffd"),  # a lone low surrogate
        ("\ud83d\ude00", "\U0001f600"),  # a pair the UTF-16 round trip joins
        ("mod\u00e8le\u2028\u200b\u65e5", "mod\u00e8le\u2028\u200b\u65e5"),
        ("plain", "plain"),
    ],
)
def test_every_replaced_character_is_cleaned_even_alone_in_a_short_value(sent: str, stored: str) -> None:
    record = _record(
        model=sent, key_public_id=sent, worker_trail=[{"worker_id": sent, sent: "HTTP 200", "result": [sent]}]
    )
    assert (record.model, record.key_public_id) == (stored, stored)
    assert record.worker_trail == [{"worker_id": stored, stored: "HTTP 200", "result": [stored]}]
