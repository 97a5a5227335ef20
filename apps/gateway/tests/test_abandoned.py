"""A request the client abandons after the worker did the work is recorded as 499 and billed.

The worker generated (and the gateway delivered) tokens; a client must not get them
free by closing the connection before the end. The gateway waits a bounded moment for
the worker's own usage, else bills what it delivered, and counts those tokens against
the minute's token limit.
"""

from __future__ import annotations

import time

import httpx
import pytest
from django.utils import timezone

from apps.gateway.tests.conftest import Gateway, record_for, usage_for, wait_for
from apps.plans.models import Subscription
from apps.plans.selectors import plan_cache
from apps.plans.tests.factories import plan_factory

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "tell me a long story"}]}


def test_a_stream_closed_by_the_openai_sdk_mid_way_is_a_499_billed_for_what_was_delivered(gateway: Gateway) -> None:
    client = gateway.openai()
    stream = client.chat.completions.create(
        **CHAT, max_tokens=200, stream=True, extra_headers={"x-sim-chunk-delay-ms": "50"}
    )
    request_id = stream.response.headers["x-request-id"]
    received = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
        if received == 5:
            break
    stream.close()

    record = wait_for(lambda: (r := record_for(request_id)) and r.status == 499 and r)
    assert record, "the abandoned stream was not recorded as closed by the client (499)"
    assert record.completion_tokens is not None and 5 <= record.completion_tokens < 200
    (usage,) = usage_for(request_id)
    assert usage.completion_tokens == record.completion_tokens
    assert usage.total_tokens >= usage.completion_tokens


def test_a_stream_abandoned_near_its_end_is_billed_the_workers_own_usage(gateway: Gateway, settings) -> None:
    settings.PENDRA_ABANDONED_USAGE_WAIT = 5.0
    body = {**CHAT, "max_tokens": 12, "stream": True}
    with (
        gateway.http() as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers={"x-sim-chunk-delay-ms": "30"}) as resp,
    ):
        request_id = resp.headers["x-request-id"]
        next(resp.iter_bytes())
    record = wait_for(lambda: (r := record_for(request_id)) and r.status == 499 and r)
    assert record
    # The worker's own report: 5 prompt words, 12 completion tokens.
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (5, 12, 17)
    (usage,) = usage_for(request_id)
    assert usage.total_tokens == 17


def test_a_non_streamed_request_whose_client_left_is_billed_when_the_worker_answers(gateway: Gateway, settings) -> None:
    settings.PENDRA_ABANDONED_USAGE_WAIT = 5.0
    request_id = "abandoned-plain-0123456789"
    with (
        httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.key}"}) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.post(
            "/v1/chat/completions",
            json={**CHAT, "max_tokens": 4},
            headers={"x-sim-ttft-ms": "600", "x-request-id": request_id},
            timeout=httpx.Timeout(5, read=0.2),
        )
    record = wait_for(lambda: (r := record_for(request_id)) and r.status == 499 and r, timeout=8)
    assert record
    assert record.total_tokens == 5 + 4
    (usage,) = usage_for(request_id)
    assert usage.total_tokens == 9


def test_tokens_of_an_abandoned_stream_count_against_the_token_limit(gateway: Gateway) -> None:
    plan_cache.clear()
    plan = plan_factory(name="Tokens", chat_tpm=10_000)
    Subscription.objects.update_or_create(org=gateway.actor.org, defaults={"plan": plan, "since": timezone.now()})
    with gateway.http() as http:
        before = int(
            http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 1}).headers["x-ratelimit-remaining-tokens"]
        )
        body = {**CHAT, "max_tokens": 300, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body, headers={"x-sim-chunk-delay-ms": "30"}) as resp:
            request_id = resp.headers["x-request-id"]
            for _ in resp.iter_lines():
                if resp.num_bytes_downloaded > 2000:
                    break
        record = wait_for(lambda: (r := record_for(request_id)) and r.status == 499 and r)
        assert record and record.total_tokens
        time.sleep(0.3)  # tokens are counted just after the record is handed over, off the request path
        after = int(
            http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 1}).headers["x-ratelimit-remaining-tokens"]
        )
    # The first request (5 prompt + 1 completion tokens) and the abandoned stream are both counted.
    assert after == before - 6 - record.total_tokens
