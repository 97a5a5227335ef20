"""Usage by day, model, key and member, sent through the gateway with the OpenAI SDK and read back
over the admin API: the totals are the successful requests' tokens, failures and retries left out."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from apps.gateway.tests.conftest import Gateway, record_for
from testing.actors import Actor

pytestmark = pytest.mark.django_db(transaction=True)

ORG = "/api/v1/orgs/acme"
SUMS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class Sent:
    """One successful request as its client saw it."""

    request_id: str
    model: str
    key_id: int
    member_id: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def _client(gateway: Gateway, actor: Actor) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=actor.key, max_retries=0)


def _chat(gateway: Gateway, actor: Actor, max_tokens: int, **headers: str) -> Sent:
    raw = _client(gateway, actor).chat.completions.with_raw_response.create(
        model="sim-chat",
        messages=[{"role": "user", "content": "count my tokens please"}],
        max_tokens=max_tokens,
        extra_headers=headers,
    )
    usage = raw.parse().usage
    assert usage is not None
    request_id = raw.headers["x-request-id"]
    return Sent(request_id, "sim-chat", actor.api_key.pk, actor.user.pk, *_tokens(usage))


def _embed(gateway: Gateway, actor: Actor, text: str) -> Sent:
    raw = _client(gateway, actor).embeddings.with_raw_response.create(model="sim-embed", input=text)
    usage = raw.parse().usage
    return Sent(
        raw.headers["x-request-id"],
        "sim-embed",
        actor.api_key.pk,
        actor.user.pk,
        usage.prompt_tokens,
        0,
        usage.total_tokens,
    )


def _tokens(usage: Any) -> tuple[int, int, int]:
    return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens


def _failed(gateway: Gateway, actor: Actor, model: str = "sim-chat", **headers: str) -> str:
    with pytest.raises(openai.APIStatusError) as failure:
        _client(gateway, actor).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "this one fails"}], max_tokens=4, extra_headers=headers
        )
    return failure.value.response.headers["x-request-id"]


@pytest.fixture
def traffic(gateway: Gateway, owner: Actor, member: Actor) -> list[Sent]:
    """Successes from two keys (one after a failover), and failures that must not count."""
    sent = [
        _chat(gateway, owner, 3),
        _chat(gateway, owner, 7),
        _embed(gateway, owner, "three little words"),
        _chat(gateway, member, 5),
        _embed(gateway, member, "two words"),
        # sim-a fails with a 500: the gateway retries on sim-b; one success, billed once.
        _chat(gateway, owner, 11, **{"x-sim-status": "500", "x-sim-only": "sim-a"}),
    ]
    failed = [
        _failed(gateway, owner, **{"x-sim-status": "503"}),  # every worker fails: 502
        _failed(gateway, member, model="no-such-model"),
        _failed(gateway, member, **{"x-sim-error-envelope": "400"}),
    ]
    for request_id in [sent.request_id for sent in sent] + failed:
        record_for(request_id)  # written off the request path, with its usage and the roll-ups
    return sent


def _expected(sent: list[Sent], group: str) -> dict[Any, tuple[int, ...]]:
    totals: dict[Any, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for one in sent:
        sums = totals[getattr(one, group)]
        for index, value in enumerate((1, one.prompt_tokens, one.completion_tokens, one.total_tokens)):
            sums[index] += value
    return {name: tuple(sums) for name, sums in totals.items()}


def _report(actor: Actor, group_by: str, **params: str) -> dict[str, Any]:
    response = actor.client().get(f"{ORG}/usage/", {"group_by": group_by, **params})
    assert response.status_code == 200, response.content
    return response.json()


def _by(body: dict[str, Any], field: str) -> dict[Any, tuple[int, ...]]:
    return {row[field]: tuple(row[name] for name in SUMS) for row in body["rows"]}


@pytest.mark.parametrize(
    ("group_by", "field", "sent_field"),
    [("model", "model", "model"), ("key", "key_id", "key_id"), ("member", "member_id", "member_id")],
)
def test_usage_is_the_sum_of_successful_requests_tokens(
    traffic: list[Sent], owner: Actor, group_by: str, field: str, sent_field: str
) -> None:
    body = _report(owner, group_by)
    assert _by(body, field) == _expected(traffic, sent_field)
    assert tuple(body["totals"][name] for name in SUMS) == tuple(
        map(sum, zip(*_expected(traffic, "model").values(), strict=False))
    )


def test_usage_by_day_is_the_sum_of_the_days_successes(traffic: list[Sent], owner: Actor) -> None:
    days = {record_for(one.request_id).created_at.date().isoformat() for one in traffic}
    body = _report(owner, "day")
    assert set(_by(body, "day")) == days
    assert sum(row["requests"] for row in body["rows"]) == len(traffic)
    assert sum(row["total_tokens"] for row in body["rows"]) == sum(one.total_tokens for one in traffic)


@pytest.mark.parametrize("group_by", ["day", "model", "key", "member"])
def test_a_member_sees_only_their_own_keys_usage(traffic: list[Sent], member: Actor, group_by: str) -> None:
    own = [one for one in traffic if one.member_id == member.user.pk]
    body = _report(member, group_by)
    assert body["totals"]["requests"] == len(own)
    assert body["totals"]["total_tokens"] == sum(one.total_tokens for one in own)


@pytest.mark.parametrize("group_by", ["day", "model", "key", "member"])
def test_the_csv_holds_the_jsons_rows(traffic: list[Sent], owner: Actor, group_by: str) -> None:
    body = _report(owner, group_by)
    response = owner.client().get(f"{ORG}/usage/", {"group_by": group_by, "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="usage-acme-')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == len(body["rows"]) > 0
    for line, row in zip(rows, body["rows"], strict=True):
        assert line == {name: str(row[name]) for name in line}
        assert set(line) - {"day", "model", "key_id", "member_id"} == set(row) - {"day", "model", "key_id", "member_id"}


@pytest.mark.parametrize("actor_name", ["outsider", "support", "operator"])
def test_no_one_outside_the_org_sees_its_usage(
    traffic: list[Sent], request: pytest.FixtureRequest, actor_name: str
) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    assert actor.client().get(f"{ORG}/usage/").status_code == 404
    assert actor.client().get(f"{ORG}/usage/", {"format": "csv"}).status_code == 404
