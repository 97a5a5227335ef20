"""Rate limits on the live /v1 gateway with simulated workers: the 429 contract, the OpenAI
SDK's RateLimitError, tokens counted from the worker's reported usage, plan changes."""

from __future__ import annotations

import openai
import pytest
from django.utils import timezone

from apps.gateway.tests.conftest import Gateway, wait_for
from apps.plans.models import Plan, Subscription
from apps.plans.selectors import plan_cache
from apps.plans.tests.factories import plan_factory

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
HELLO = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}


@pytest.fixture(autouse=True)
def _fresh_plan_cache() -> None:
    plan_cache.clear()


def _put_on_plan(gw: Gateway, **limits: object) -> Plan:
    plan = plan_factory(name="Tiny", **limits)
    Subscription.objects.update_or_create(org=gw.actor.org, defaults={"plan": plan, "since": timezone.now()})
    return plan


def test_every_v1_response_carries_the_openai_rate_limit_headers(gateway: Gateway) -> None:
    _put_on_plan(gateway, chat_rpm=5, chat_tpm=1000)

    response = gateway.http().post(CHAT, json=HELLO)

    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-requests"] == "5"
    assert response.headers["x-ratelimit-remaining-requests"] == "4"
    assert response.headers["x-ratelimit-reset-requests"].endswith("s")
    assert response.headers["x-ratelimit-limit-tokens"] == "1000"
    # What is left once this request's reservation is counted: prompt (about 3 + 4) and max_tokens 3.
    assert response.headers["x-ratelimit-remaining-tokens"] == "990"
    assert response.headers["x-ratelimit-reset-tokens"].endswith("s")


def test_over_the_limit_the_429_names_bucket_limit_plan_and_reset_in_the_openai_envelope(gateway: Gateway) -> None:
    _put_on_plan(gateway, chat_rpm=2)
    http = gateway.http()
    assert [http.post(CHAT, json=HELLO).status_code for _ in range(2)] == [200, 200]

    refused = http.post(CHAT, json=HELLO)

    assert refused.status_code == 429
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60
    detail = f'Rate limit exceeded for bucket "chat" (2 requests/minute on plan Tiny); retry in {retry_after} s'
    body = refused.json()
    assert body["detail"] == detail
    assert body["request_id"] == refused.headers["x-request-id"]
    assert body["error"]["message"] == detail
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-bucket"] == "chat"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_the_openai_sdk_raises_rate_limit_error_with_the_detail(gateway: Gateway) -> None:
    _put_on_plan(gateway, embeddings_rpm=1)
    client = gateway.openai()
    client.embeddings.create(model="sim-embed", input="one")

    with pytest.raises(openai.RateLimitError) as refused:
        client.embeddings.create(model="sim-embed", input="two")

    assert 'Rate limit exceeded for bucket "embeddings" (1 requests/minute on plan Tiny); retry in ' in str(
        refused.value
    )
    assert refused.value.status_code == 429
    assert refused.value.response.headers["x-ratelimit-bucket"] == "embeddings"


def test_a_spoofed_forwarded_for_does_not_reset_the_orgs_count(gateway: Gateway) -> None:
    _put_on_plan(gateway, chat_rpm=2)
    http = gateway.http()
    for n in range(2):
        http.post(CHAT, json=HELLO, headers={"X-Forwarded-For": f"198.51.100.{n}"})

    spoofed = http.post(CHAT, json=HELLO, headers={"X-Forwarded-For": "203.0.113.77", "X-Real-IP": "203.0.113.77"})

    assert spoofed.status_code == 429


def test_tokens_reported_by_the_worker_use_up_the_minute_and_the_429_names_the_tokens_bucket(
    gateway: Gateway,
) -> None:
    _put_on_plan(gateway, chat_tpm=40)
    http = gateway.http()
    served = http.post(CHAT, json={**HELLO, "max_tokens": 25})
    assert served.status_code == 200
    assert served.json()["usage"]["total_tokens"] >= 25

    # Tokens are counted just after the response is sent, off its path.
    refused = wait_for(lambda: (r := http.post(CHAT, json=HELLO)).status_code == 429 and r)

    assert refused, "the worker's reported tokens never used up the minute"
    assert refused.headers["x-ratelimit-bucket"] == "chat_tokens"
    # Refused once what is left cannot hold this request's reservation (about 10 tokens).
    assert int(refused.headers["x-ratelimit-remaining-tokens"]) < 10
    assert refused.json()["detail"].startswith(
        'Rate limit exceeded for bucket "chat_tokens" (40 tokens/minute on plan Tiny); retry in '
    )
    assert refused.json()["error"]["type"] == "rate_limit_error"


def test_after_the_owner_upgrades_the_next_v1_request_counts_against_the_new_limit(gateway: Gateway) -> None:
    _put_on_plan(gateway, chat_rpm=1)
    bigger = plan_factory(name="Bigger", chat_rpm=7)
    http = gateway.http()
    http.post(CHAT, json=HELLO)
    assert http.post(CHAT, json=HELLO).status_code == 429

    changed = gateway.actor.session_client().put("/api/v1/orgs/acme/plan/", {"plan": bigger.slug}, format="json")
    after = http.post(CHAT, json=HELLO)

    assert changed.status_code == 200
    assert after.status_code == 200
    assert after.headers["x-ratelimit-limit-requests"] == "7"
    assert after.headers["x-ratelimit-remaining-requests"] == "6"
