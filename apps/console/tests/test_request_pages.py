"""The request log page and a request's explanation page: filters, cursor pages, who sees what."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.console.tests.conftest import signed_in
from apps.requestlog.services import write_records
from testing.actors import Actor

pytestmark = pytest.mark.django_db

PAGE = "/orgs/acme/requests/"
START = timezone.now().replace(microsecond=0) - timedelta(hours=2)


def _rows(actor: Actor, count: int, **extra: Any) -> list[str]:
    rows = [
        {
            "uid": secrets.token_hex(16),
            "request_id": f"page-{actor.user.pk}-{n:04d}-{secrets.token_hex(6)}",
            "created_at": START + timedelta(seconds=n),
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
        for n in range(count)
    ]
    write_records(rows, [])
    return [row["request_id"] for row in rows]


def _older_link(html: str) -> str:
    marker = 'rel="next" href="'
    assert marker in html
    href = html.split(marker, 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert href.startswith("?")  # the same page, another query
    return PAGE + href


def test_the_owner_sees_every_request_each_linking_to_its_explanation(owner: Actor, member: Actor) -> None:
    [mine] = _rows(owner, 1)
    [theirs] = _rows(member, 1, status=429)

    html = signed_in(owner).get(PAGE).content.decode()

    assert f'href="/orgs/acme/requests/{mine}/"' in html
    assert f'href="/orgs/acme/requests/{theirs}/"' in html


def test_a_member_sees_only_their_own_keys_requests(owner: Actor, member: Actor) -> None:
    [owners] = _rows(owner, 1)
    [mine] = _rows(member, 1)

    html = signed_in(member).get(PAGE).content.decode()

    assert mine in html
    assert owners not in html


@pytest.mark.parametrize("actor_name", ["outsider", "support", "operator"])
def test_no_one_outside_the_org_opens_its_log(owner: Actor, request: pytest.FixtureRequest, actor_name: str) -> None:
    assert signed_in(request.getfixturevalue(actor_name)).get(PAGE).status_code == 404


def test_the_status_filter_keeps_the_429s(owner: Actor) -> None:
    [limited] = _rows(owner, 1, status=429)
    [failed] = _rows(owner, 1, status=502)

    html = signed_in(owner).get(PAGE, {"status": "429"}).content.decode()

    assert limited in html
    assert failed not in html


def test_older_pages_follow_the_cursor_with_the_filters_kept(owner: Actor) -> None:
    ids = _rows(owner, 60, model="sim-embed")
    client = signed_in(owner)

    first = client.get(PAGE, {"model": "sim-embed"}).content.decode()
    older_url = _older_link(first)
    second = client.get(older_url).content.decode()

    assert "model=sim-embed" in older_url
    assert ids[-1] in first and ids[10] in first and ids[9] not in first
    assert all(request_id in second for request_id in ids[:10])
    assert ids[10] not in second
    assert 'rel="next"' not in second


def test_a_tampered_cursor_shows_the_newest_page_with_a_note(owner: Actor) -> None:
    ids = _rows(owner, 3)

    response = signed_in(owner).get(PAGE, {"cursor": "not-a-cursor:at:all"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "That page link is no longer valid" in html
    assert ids[-1] in html


def test_a_bad_filter_is_ignored_never_a_500(owner: Actor) -> None:
    response = signed_in(owner).get(PAGE, {"since": "yesterday", "status": "7xx", "key": "nope"})
    assert response.status_code == 200


def test_the_log_page_costs_a_fixed_number_of_queries(owner: Actor, django_assert_max_num_queries: Any) -> None:
    _rows(owner, 120)
    client = signed_in(owner)
    client.get(PAGE)
    with django_assert_max_num_queries(10):
        assert client.get(PAGE).status_code == 200


def test_the_explanation_page_explains_the_orgs_request(owner: Actor) -> None:
    [limited] = _rows(owner, 1, status=429, limit_bucket="requests", limit_plan="Free", limit="60/min")

    response = signed_in(owner).get(f"{PAGE}{limited}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert limited in html and "requests" in html and "Free" in html


def test_a_member_cannot_open_someone_elses_explanation(owner: Actor, member: Actor) -> None:
    [owners] = _rows(owner, 1)
    assert signed_in(member).get(f"{PAGE}{owners}/").status_code == 404


@pytest.mark.parametrize("request_id", ["short", "no-such-request-000000000000"])
def test_an_unknown_or_malformed_id_is_a_404_page(owner: Actor, request_id: str) -> None:
    assert signed_in(owner).get(f"{PAGE}{request_id}/").status_code == 404
