"""Plan terms: the default is production-grade, operators set dedicated plans with per-org
overrides that the gateway applies at once, and only the right people change a plan."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from apps.audit.models import AuditEvent
from apps.gateway.tests.conftest import Gateway
from apps.plans.models import Plan
from apps.plans.selectors import subscription_for_org
from testing.actors import Actor

pytestmark = pytest.mark.django_db(transaction=True)

STREAMS = 48  # more than Pro's 20 and Free's 2: one team's interactive app at its busy hour
REQUESTS = 150  # in a few seconds from three keys, chat and embeddings: a busy minute for one team


def _stream(url: str, key: str, barrier: threading.Barrier) -> tuple[int, float, float]:
    """One streamed chat: its status, when its first chunk came and when it ended (monotonic)."""
    body = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12, "stream": True}
    headers = {"Authorization": f"Bearer {key}", "x-sim-chunk-delay-ms": "300"}
    barrier.wait(timeout=30)
    with (
        httpx.Client(base_url=url, timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        chunks = response.iter_bytes()
        next(chunks, b"")
        first = time.monotonic()
        for _ in chunks:
            pass
        return response.status_code, first, time.monotonic()


def _call(url: str, key: str, index: int) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as http:
        if index % 5 == 0:
            return http.post("/v1/embeddings", json={"model": "sim-embed", "input": ["a few words", "more"]})
        body = {"model": "sim-chat", "messages": [{"role": "user", "content": f"question {index}"}], "max_tokens": 64}
        return http.post("/v1/chat/completions", json=body)


def test_a_new_orgs_default_plan_admits_a_production_shaped_load(gateway: Gateway, admin: Actor, member: Actor) -> None:
    """48 streams open at once, then 150 requests (chat and embeddings) from three keys: no 429."""
    keys = [gateway.actor.key, admin.key, member.key]
    assert subscription_for_org(gateway.actor.org.pk).plan.slug == "team"

    barrier = threading.Barrier(STREAMS)
    with ThreadPoolExecutor(STREAMS) as pool:
        streams = list(pool.map(lambda i: _stream(gateway.url, keys[i % 3], barrier), range(STREAMS)))
    assert [status for status, _, _ in streams] == [200] * STREAMS
    # They were all open at once: every stream had its first chunk before any ended.
    assert max(first for _, first, _ in streams) < min(end for _, _, end in streams)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: _call(gateway.url, keys[i % 3], i), range(REQUESTS)))
    assert [a.status_code for a in answers if a.status_code != 200] == []
    chat = next(a for a in answers if a.request.url.path.endswith("/chat/completions"))
    assert chat.headers["x-ratelimit-limit-requests"] == "1500"
    assert chat.headers["x-ratelimit-limit-tokens"] == "1000000"


def _chat(gateway: Gateway) -> httpx.Response:
    with gateway.http() as http:
        body = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        return http.post("/v1/chat/completions", json=body)


def test_an_operator_sets_a_dedicated_plan_with_an_override_and_the_gateway_applies_it_at_once(
    gateway: Gateway, operator: Actor
) -> None:
    assert _chat(gateway).headers["x-ratelimit-limit-requests"] == "1500"  # the gateway holds Team now

    response = operator.client().put(
        "/api/v1/subscriptions/acme/", {"plan": "dedicated", "overrides": {"chat_rpm": 3}}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["plan"]["slug"] == "dedicated"
    assert response.json()["limits"]["chat_rpm"] == 3
    assert response.json()["limits"]["embeddings_rpm"] == Plan.objects.get(slug="dedicated").embeddings_rpm
    statuses = [_chat(gateway) for _ in range(4)]  # no wait: the next request meets the override
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    refused = statuses[-1].json()["detail"]
    assert refused.startswith('Rate limit exceeded for bucket "chat" (3 requests/minute on plan Dedicated)')
    changes = list(AuditEvent.objects.filter(event_type="plan.changed").order_by("id").values_list("data", flat=True))
    assert changes == [{"from": "team", "to": "dedicated"}, {"overrides": [{}, {"chat_rpm": 3}]}]

    # Raising the override lets the next request through at once, again with no wait.
    raised = operator.client().put("/api/v1/subscriptions/acme/", {"overrides": {"chat_rpm": 5}}, format="json")
    assert raised.status_code == 200
    assert _chat(gateway).status_code == 200


@pytest.mark.parametrize("who", ["member", "admin"])
def test_a_member_or_admin_cannot_change_the_plan(who: str, request: pytest.FixtureRequest) -> None:
    actor: Actor = request.getfixturevalue(who)

    response = actor.client().put("/api/v1/orgs/acme/plan/", {"plan": "pro"}, format="json")
    terms = actor.client().put("/api/v1/subscriptions/acme/", {"overrides": {"chat_rpm": 10**6}}, format="json")

    assert response.status_code == 403
    assert response.json()["detail"] == "This action requires the owner role."
    assert terms.status_code == 403
    assert terms.json()["detail"] == "This action requires the operator role."
    assert subscription_for_org(actor.org.pk).plan.slug == "team"  # type: ignore[union-attr]
    assert subscription_for_org(actor.org.pk).overrides == {}  # type: ignore[union-attr]
    assert not AuditEvent.objects.filter(event_type="plan.changed").exists()


def test_an_owner_moves_only_between_self_serve_plans(owner: Actor, operator: Actor) -> None:
    sales = owner.client().put("/api/v1/orgs/acme/plan/", {"plan": "enterprise"}, format="json")
    assert sales.status_code == 403
    assert sales.json()["detail"] == "Plan Enterprise is set by a Pendra operator; talk to sales to move to it."

    operator.client().put("/api/v1/subscriptions/acme/", {"plan": "dedicated"}, format="json")
    leave = owner.client().put("/api/v1/orgs/acme/plan/", {"plan": "pro"}, format="json")

    assert leave.status_code == 403
    assert leave.json()["detail"] == "Plan Dedicated was set by a Pendra operator; talk to sales to change it."
    assert subscription_for_org(owner.org.pk).plan.slug == "dedicated"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"overrides": {"chat_rpm": -1}}, "chat_rpm"),
        ({"overrides": {"chat_rpm": None}}, "chat_rpm"),
        ({"overrides": {"chat_rpm": "lots"}}, "chat_rpm"),
        ({"overrides": {"gpu_hours": 3}}, "gpu_hours"),
        ({"overrides": {"api_rpm": 0}}, "api_rpm"),
        ({"plan": "gold"}, "plan"),
        ({"overrides": []}, "overrides"),
    ],
)
def test_a_bad_override_is_a_400_naming_the_field_and_changes_nothing(
    operator: Actor, owner: Actor, body: dict[str, Any], field: str
) -> None:
    response = operator.client().put("/api/v1/subscriptions/acme/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert subscription_for_org(owner.org.pk).overrides == {}  # type: ignore[union-attr]
    assert not AuditEvent.objects.filter(event_type="plan.changed").exists()


def test_an_override_of_a_cap_applies_to_new_keys(owner: Actor, operator: Actor) -> None:
    operator.client().put("/api/v1/subscriptions/acme/", {"overrides": {"max_keys": 2}}, format="json")
    client = owner.client()

    assert client.post("/api/v1/orgs/acme/keys/", {"name": "second"}, format="json").status_code == 201
    third = client.post("/api/v1/orgs/acme/keys/", {"name": "third"}, format="json")

    assert third.status_code == 403
    assert third.json()["detail"] == "Plan Team allows 2 API keys; revoke one or upgrade"
