"""The org's request log over the admin API: filters, keyset cursor pages, who sees what."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.requestlog.services import write_records
from testing.actors import Actor

pytestmark = pytest.mark.django_db

LOG = "/api/v1/orgs/acme/requests/"
START = timezone.now().replace(microsecond=0) - timedelta(hours=1)
# The admin API records its own calls too; the fixtures' records all lie before this.
BEFORE_THE_CALLS = {"until": (START + timedelta(minutes=5)).isoformat()}


def _row(actor: Actor, n: int, *, at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "uid": secrets.token_hex(16),
        "request_id": f"log-{n:04d}-{secrets.token_hex(8)}",
        "created_at": at or START + timedelta(seconds=n),
        "org_id": actor.org.pk if actor.org else None,
        "api_key_id": actor.api_key.pk,
        "key_public_id": actor.api_key.public_id,
        "user_id": actor.user.pk,
        "route": "/v1/chat/completions",
        "method": "POST",
        "model": "sim-chat",
        "status": 200,
        "latency_ms": 10.0,
        **extra,
    }


def _write(*rows: dict[str, Any]) -> list[str]:
    write_records(list(rows), [])
    return [row["request_id"] for row in rows]


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["request_id"] for row in response.json()["results"]]


@pytest.fixture
def mixed(owner: Actor, admin: Actor, member: Actor, outsider: Actor) -> dict[str, str]:
    """One record of each kind the filters tell apart, in acme, and one in another org."""
    rows = {
        "ok": _row(owner, 1),
        "limited": _row(owner, 2, status=429, error="Rate limit exceeded"),
        "bad": _row(admin, 3, status=400, model="sim-embed", route="/v1/embeddings"),
        "failed": _row(admin, 4, status=502, worker_name="sim-b"),
        "member": _row(member, 5, worker_name="sim-a"),
        "old": _row(owner, 6, at=START - timedelta(days=3)),
        "elsewhere": _row(outsider, 7),
    }
    _write(*rows.values())
    return {name: row["request_id"] for name, row in rows.items()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status_class": "2xx"}, ["member", "ok", "old"]),
        ({"status_class": "4xx"}, ["bad", "limited"]),
        ({"status": 429}, ["limited"]),
        ({"status_class": "5xx"}, ["failed"]),
        ({"model": "sim-embed"}, ["bad"]),
        ({"worker": "sim-b"}, ["failed"]),
        ({"since": (START - timedelta(days=1)).isoformat()}, ["member", "failed", "bad", "limited", "ok"]),
        ({"until": (START - timedelta(days=1)).isoformat()}, ["old"]),
        ({"model": "sim-chat", "status_class": "2xx", "worker": "sim-a"}, ["member"]),
    ],
)
def test_the_log_filters_by_status_model_worker_and_time(
    mixed: dict[str, str], owner: Actor, query: dict[str, Any], expected: list[str]
) -> None:
    assert _ids(owner.client().get(LOG, {**BEFORE_THE_CALLS, **query})) == [mixed[name] for name in expected]


def test_the_log_filters_by_key_public_id(mixed: dict[str, str], owner: Actor, admin: Actor) -> None:
    listed = _ids(owner.client().get(LOG, {**BEFORE_THE_CALLS, "key": admin.api_key.public_id}))
    assert listed == [mixed["failed"], mixed["bad"]]


def test_a_member_sees_only_their_own_keys_requests_whatever_the_filter(
    mixed: dict[str, str], member: Actor, owner: Actor
) -> None:
    assert _ids(member.client().get(LOG, BEFORE_THE_CALLS)) == [mixed["member"]]
    assert _ids(member.client().get(LOG, {**BEFORE_THE_CALLS, "key": owner.api_key.public_id})) == []


@pytest.mark.parametrize("actor_name", ["outsider", "support", "operator"])
def test_no_one_outside_the_org_lists_its_log(
    mixed: dict[str, str], request: pytest.FixtureRequest, actor_name: str
) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    assert actor.client().get(LOG).status_code == 404


def _walk(client: Any, query: dict[str, Any]) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        body = client.get(LOG, {**query, **({"cursor": cursor} if cursor else {})}).json()
        pages.append([row["request_id"] for row in body["results"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_cursor_pages_walk_the_whole_log_newest_first_once_each(owner: Actor) -> None:
    ids = _write(*(_row(owner, n) for n in range(7)))

    pages = _walk(owner.client(), {"page_size": 3, "route": "/v1/chat/completions"})

    assert pages == [ids[6:3:-1], ids[3:0:-1], ids[0:1]]


def test_records_sharing_a_timestamp_are_split_across_pages_by_id(owner: Actor) -> None:
    same = START + timedelta(seconds=30)
    ids = _write(*(_row(owner, n, at=same) for n in range(5)))

    pages = _walk(owner.client(), {"page_size": 2, "route": "/v1/chat/completions"})

    seen = [request_id for page in pages for request_id in page]
    assert sorted(seen) == sorted(ids)
    assert len(pages) == 3


def test_a_page_links_the_next_with_the_same_filters_and_the_last_links_none(owner: Actor) -> None:
    _write(*(_row(owner, n) for n in range(3)))
    first = owner.client().get(LOG, {"page_size": 2, "model": "sim-chat"}).json()
    assert "model=sim-chat" in first["next"] and "cursor=" in first["next"]

    last = owner.client().get(first["next"]).json()

    assert (len(last["results"]), last["next"], last["next_cursor"]) == (1, None, None)


def test_a_record_written_between_pages_is_neither_repeated_nor_skipped(owner: Actor) -> None:
    ids = _write(*(_row(owner, n) for n in range(4)))
    client = owner.client()
    query = {"page_size": 2, "route": "/v1/chat/completions"}
    first = client.get(LOG, query).json()

    newer = _write(_row(owner, 99, at=timezone.now()))
    second = client.get(LOG, {**query, "cursor": first["next_cursor"]}).json()

    assert [row["request_id"] for row in first["results"]] == [ids[3], ids[2]]
    assert [row["request_id"] for row in second["results"]] == [ids[1], ids[0]]
    assert second["next_cursor"] is None
    assert _ids(client.get(LOG, query))[0] == newer[0]


@pytest.mark.parametrize("cursor", ["garbage", "x" * 500, "%%%", "W10:1t2:abc", "WyJ4IiwgMV0:1t2:abc"])
def test_a_cursor_that_is_not_one_is_a_400_naming_it(owner: Actor, cursor: str) -> None:
    _write(*(_row(owner, n) for n in range(3)))
    response = owner.client().get(LOG, {"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("cursor:")


def test_a_tampered_cursor_is_a_400(owner: Actor) -> None:
    _write(*(_row(owner, n) for n in range(3)))
    cursor = owner.client().get(LOG, {"page_size": 1}).json()["next_cursor"]
    value, _, signature = cursor.rpartition(":")
    tampered = f"{value[:-1]}{'A' if value[-1] != 'A' else 'B'}:{signature}"

    response = owner.client().get(LOG, {"cursor": tampered})

    assert response.status_code == 400
    assert "not a cursor from this list" in response.json()["detail"]


@pytest.mark.parametrize(
    "query", [{"page_size": 0}, {"page_size": 201}, {"status_class": "6xx"}, {"status": 99}, {"key": "k" * 41}]
)
def test_a_bad_parameter_is_a_400_and_no_page(owner: Actor, query: dict[str, Any]) -> None:
    response = owner.client().get(LOG, query)
    assert response.status_code == 400
    assert response.json()["detail"].split(":")[0] in query


def test_the_org_requests_selector_pages_as_the_api_does(owner: Actor) -> None:
    from apps.requestlog.selectors import RequestFilters, org_requests

    assert owner.org is not None
    ids = _write(*(_row(owner, n) for n in range(3)))
    first = org_requests(owner.org, filters=RequestFilters(), cursor=None, limit=2)
    rest = org_requests(owner.org, filters=RequestFilters(), cursor=first.next_cursor, limit=2)
    assert [r.request_id for r in first.records + rest.records] == ids[::-1]
    assert rest.next_cursor is None
