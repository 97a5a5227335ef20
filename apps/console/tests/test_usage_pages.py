"""The dashboard and usage pages count what was really sent through the gateway (OpenAI SDK)."""

from __future__ import annotations

import re

import openai
import pytest

from apps.console.tests.conftest import signed_in
from apps.gateway.tests.conftest import Gateway, record_for
from testing.actors import Actor

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}


def _sdk(gateway: Gateway, actor: Actor) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=actor.key, max_retries=0)


def _succeed(gateway: Gateway, actor: Actor) -> str:
    raw = _sdk(gateway, actor).chat.completions.with_raw_response.create(**CHAT)
    return raw.headers["x-request-id"]


def _fail(gateway: Gateway, actor: Actor, **headers: str) -> str:
    with pytest.raises(openai.APIStatusError) as failure:
        _sdk(gateway, actor).chat.completions.create(**CHAT, extra_headers=headers)
    return failure.value.response.headers["x-request-id"]


@pytest.fixture
def sent(gateway: Gateway, owner: Actor, member: Actor) -> dict[str, list[str]]:
    ids = {
        "owner ok": [_succeed(gateway, owner) for _ in range(3)],
        "owner failed": [_fail(gateway, owner, **{"x-sim-status": "503"})],
        "member ok": [_succeed(gateway, member)],
        "member failed": [_fail(gateway, member, **{"x-sim-error-envelope": "400"})],
    }
    for request_id in [one for group in ids.values() for one in group]:
        record_for(request_id)
    return ids


def _stat(page: str, name: str) -> int:
    match = re.search(rf'data-testid="{name}">(\d+)<', page)
    assert match, name
    return int(match.group(1))


def test_the_dashboard_counts_what_was_sent_and_links_each_failure_to_its_explanation(
    sent: dict[str, list[str]], owner: Actor
) -> None:
    page = signed_in(owner).get("/orgs/acme/dashboard/").content.decode()
    assert (_stat(page, "requests-24h"), _stat(page, "errors-24h"), _stat(page, "requests-30d")) == (6, 2, 6)
    for request_id in sent["owner failed"] + sent["member failed"]:
        assert f'href="/orgs/acme/requests/{request_id}/"' in page
    assert "sim-chat" in page  # tokens by model


def test_a_member_dashboard_counts_only_their_own_keys(sent: dict[str, list[str]], member: Actor) -> None:
    page = signed_in(member).get("/orgs/acme/dashboard/").content.decode()
    assert (_stat(page, "requests-24h"), _stat(page, "errors-24h")) == (2, 1)
    assert sent["owner failed"][0] not in page
    assert sent["member failed"][0] in page


def test_the_usage_page_shows_the_billed_rows_and_links_the_csv(sent: dict[str, list[str]], owner: Actor) -> None:
    response = signed_in(owner).get("/orgs/acme/usage/", {"group_by": "member"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "owner@acme.test" in page and "member@acme.test" in page
    assert re.search(r'href="/api/v1/orgs/acme/usage/\?group_by=member&amp;since=[^"]+&amp;format=csv" download', page)


def test_a_bad_range_on_the_usage_page_is_an_error_next_to_the_field(owner: Actor) -> None:
    response = signed_in(owner).get("/orgs/acme/usage/", {"since": "2026-02-01", "until": "2026-01-01"})
    assert response.status_code == 200
    assert "Must be on or before the end date." in response.content.decode()
    assert "Download CSV" not in response.content.decode()
