"""No input makes the admin API answer 500: odd bodies and query strings on every write route.

Each route is called by the actor allowed to use it (owner, operator), with bodies of
the wrong shape and type, so validation (not the permission check) is what answers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.workers.services import worker_register
from testing.actors import Actor

pytestmark = pytest.mark.django_db

ODD_BODIES: list[Any] = [
    [],
    [1, 2],
    "text",
    123,
    None,
    {"name": ["a"], "role": {"x": 1}, "email": 5, "plan": [], "grace_seconds": "soon"},
    {"name": "x" * 10_000, "expires_at": "yesterday", "rotate_every_days": -3, "member_id": "me"},
    {"grace_seconds": 10**30, "role": "god", "plan": "nope", "token": None, "chat_rpm": 1.5},
    {"base_url": "gopher://x", "models": "all", "dedicated_org": ["acme"], "state": 7},
    {"models": [{"name": ["n"], "kind": 3}], "name": None},
]
ODD_QUERIES = [
    {"page": "abc"},
    {"page": "-1"},
    {"page_size": "100000"},
    {"since": "not-a-date", "until": "2026-13-45"},
    {"status": "teapot", "event_type": "x" * 500},
    {"group_by": "planet"},
]

WRITES = [
    ("post", "/api/v1/orgs/", "owner"),
    ("patch", "/api/v1/orgs/acme/", "owner"),
    ("post", "/api/v1/orgs/acme/members/", "owner"),
    ("patch", "/api/v1/orgs/acme/members/{member_id}/", "owner"),
    ("post", "/api/v1/orgs/acme/transfer-ownership/", "owner"),
    ("post", "/api/v1/orgs/acme/invitations/", "owner"),
    ("post", "/api/v1/invitations/accept/", "owner"),
    ("post", "/api/v1/orgs/acme/keys/", "owner"),
    ("patch", "/api/v1/orgs/acme/keys/{key_id}/", "owner"),
    ("post", "/api/v1/orgs/acme/keys/{key_id}/rotate/", "owner"),
    ("put", "/api/v1/orgs/acme/plan/", "owner"),
    ("patch", "/api/v1/plans/free/", "operator"),
    ("post", "/api/v1/workers/", "operator"),
    ("patch", "/api/v1/workers/{worker_id}/", "operator"),
]
READS = [
    ("/api/v1/orgs/", "owner"),
    ("/api/v1/orgs/acme/members/", "owner"),
    ("/api/v1/orgs/acme/audit-events/", "owner"),
    ("/api/v1/orgs/acme/keys/", "owner"),
    ("/api/v1/orgs/acme/requests/", "owner"),
    ("/api/v1/orgs/acme/usage/", "owner"),
    ("/api/v1/workers/", "operator"),
    ("/api/v1/plans/", "operator"),
]


@pytest.fixture
def ids(owner: Actor, member: Actor) -> dict[str, Any]:
    worker = worker_register(name="gpu-1", base_url="http://127.0.0.1:8197", models={"m": "chat"}, actor=None)
    return {
        "member_id": member.user.memberships.get(org=owner.org).pk,
        "key_id": owner.api_key.pk,
        "worker_id": worker.pk,
    }


@pytest.mark.parametrize(("method", "route", "actor_name"), WRITES)
def test_odd_bodies_get_a_4xx_json_answer(
    request: pytest.FixtureRequest, ids: dict[str, Any], method: str, route: str, actor_name: str
) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    client = actor.client()
    path = route.format(**ids)
    for body in ODD_BODIES:
        response = getattr(client, method)(path, data=json.dumps(body), content_type="application/json")
        assert response.status_code < 500, (body, response.content)
        if response.status_code >= 400:
            assert "detail" in response.json()


@pytest.mark.parametrize(("route", "actor_name"), READS)
def test_odd_query_strings_get_a_4xx_json_answer_or_are_ignored(
    request: pytest.FixtureRequest, route: str, actor_name: str
) -> None:
    client = request.getfixturevalue(actor_name).client()
    for query in ODD_QUERIES:
        response = client.get(route, query)
        assert response.status_code < 500, (query, response.content)
