"""Hostile bodies, keys and sizes on /v1: each is a 4xx that names the problem, never a 500,
and none of them is free: once the key is known a refused request counts against the
org's request bucket, and random keys cannot each cost a database query."""

from __future__ import annotations

import secrets
import threading
import time

import httpx
import pytest
from django.utils import timezone

from apps.gateway.tests.conftest import Gateway
from apps.keys import tokens
from apps.plans import limit_decision
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from pendra_console.jsonbody import MAX_JSON_DEPTH

pytestmark = pytest.mark.django_db(transaction=True)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _random_key() -> str:
    return tokens.format_key(tokens.new_public_id(), tokens.new_secret())


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_json_nested_deeper_than_the_limit_is_a_400_on_v1(gateway: Gateway, depth: int) -> None:
    body = '{"model": "sim-chat", "messages": [{"role": "user", "content": ' + _nested(depth) + "}]}"
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "nested" in response.json()["detail"]
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_json_nested_up_to_the_limit_is_accepted_on_v1(gateway: Gateway) -> None:
    # messages (2 levels) + a content array holding the rest: exactly MAX_JSON_DEPTH in all.
    content = _nested(MAX_JSON_DEPTH - 3)
    body = '{"model": "sim-chat", "max_tokens": 2, "messages": [{"role": "user", "content": ' + content + "}]}"
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("size", ["4096x4096", "10x10", "1023x1024"])
def test_an_image_size_the_model_does_not_accept_is_a_400(gateway: Gateway, size: str) -> None:
    with gateway.http() as http:
        response = http.post("/v1/images/generations", json={"model": "sim-image", "prompt": "a cat", "size": size})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "size"
    assert "1024x1024" in response.json()["detail"]


def test_an_accepted_image_size_is_served(gateway: Gateway) -> None:
    with gateway.http() as http:
        response = http.post(
            "/v1/images/generations", json={"model": "sim-image", "prompt": "a cat", "size": "512x512"}
        )
    assert response.status_code == 200


def test_refused_requests_count_against_the_orgs_request_bucket(gateway: Gateway) -> None:
    Subscription.objects.update_or_create(
        org=gateway.actor.org, defaults={"plan": plan_factory(name="Three", chat_rpm=3), "since": timezone.now()}
    )
    left = limit_decision.window_end(limit_decision.org_subject(gateway.actor.org.pk)) - time.time()
    if left < 10:
        time.sleep(left + 1)  # the whole test inside one minute's window
    bad = {"model": "sim-chat", "messages": "not a list"}
    with gateway.http() as http:
        refused = [http.post("/v1/chat/completions", json=bad).status_code for _ in range(3)]
        valid = http.post(
            "/v1/chat/completions", json={"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}]}
        )
    assert refused == [400, 400, 400]
    assert valid.status_code == 429
    assert valid.headers["x-ratelimit-bucket"] == "chat"


def test_an_oversized_body_counts_against_the_orgs_request_bucket(gateway: Gateway, settings) -> None:
    settings.PENDRA_MAX_BODY_BYTES = 2048
    Subscription.objects.update_or_create(
        org=gateway.actor.org, defaults={"plan": plan_factory(name="One", embeddings_rpm=1), "since": timezone.now()}
    )
    left = limit_decision.window_end(limit_decision.org_subject(gateway.actor.org.pk)) - time.time()
    if left < 10:
        time.sleep(left + 1)
    with gateway.http() as http:
        too_big = http.post("/v1/embeddings", json={"model": "sim-embed", "input": "x" * 4096})
        valid = http.post("/v1/embeddings", json={"model": "sim-embed", "input": "hi"})
    assert too_big.status_code == 413
    assert "2048 bytes" in too_big.json()["detail"]
    assert valid.status_code == 429


def test_random_well_formed_keys_from_one_address_hit_a_budget(gateway: Gateway, settings) -> None:
    settings.PENDRA_UNKNOWN_KEY_BUDGET = 5
    settings.PENDRA_KEY_CACHE_SECONDS = 60
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {gateway.key}"}).status_code == 200
        statuses = [
            http.get("/v1/models", headers={"Authorization": f"Bearer {_random_key()}"}).status_code for _ in range(8)
        ]
        # A key this process already knows costs no lookup, so the budget does not stop it.
        known = http.get("/v1/models", headers={"Authorization": f"Bearer {gateway.key}"})
    assert statuses == [401] * 5 + [429] * 3
    assert known.status_code == 200


def test_an_unknown_key_is_looked_up_once_then_answered_from_the_negative_cache(gateway: Gateway, settings) -> None:
    from apps.keys.authentication import key_cache

    settings.PENDRA_KEY_CACHE_SECONDS = 0.01
    key = _random_key()
    public_id = tokens.parse_key(key).public_id  # type: ignore[union-attr]
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        first = http.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        time.sleep(0.05)  # well past the positive cache's lifetime
        entry = key_cache.peek(public_id)
    assert first.status_code == 401
    assert entry is not None and entry[1] is None
    assert entry[0] > time.monotonic() + 1  # the unknown id stays cached far longer than a real key


def test_unknown_key_budget_is_per_address_behind_a_trusted_proxy(gateway: Gateway, settings) -> None:
    settings.PENDRA_UNKNOWN_KEY_BUDGET = 2
    settings.PENDRA_TRUSTED_PROXIES = ["127.0.0.0/8"]
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        first = [
            http.get(
                "/v1/models",
                headers={"Authorization": f"Bearer {_random_key()}", "X-Forwarded-For": "198.51.100.7"},
            ).status_code
            for _ in range(3)
        ]
        other = http.get(
            "/v1/models", headers={"Authorization": f"Bearer {_random_key()}", "X-Forwarded-For": "198.51.100.8"}
        )
    assert first == [401, 401, 429]
    assert other.status_code == 401


def test_a_random_secret_never_reaches_the_error_body(gateway: Gateway) -> None:
    secret = secrets.token_hex(8)
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        response = http.get("/v1/models", headers={"Authorization": f"Bearer pnd_{secret}"})
    assert response.status_code == 401
    assert secret not in response.text


def test_a_large_body_is_parsed_off_the_event_loop_so_other_requests_keep_flowing(gateway: Gateway) -> None:
    """Hundreds of thousands of messages take a while to parse and check; meanwhile the
    process must go on answering other requests instead of stalling on that one."""
    messages = ',{"role": "user", "content": "x"}' * 400_000
    body = '{"model": "sim-chat", "max_tokens": 1, "messages": [' + messages[1:] + "]}"
    gaps: list[float] = []
    big: dict[str, float] = {}

    def post_big() -> None:
        with gateway.http() as http:
            started = time.monotonic()
            status = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
            big["seconds"], big["status"] = time.monotonic() - started, status.status_code

    with gateway.http() as http:
        http.get("/v1/models").raise_for_status()  # warm: the key and the fleet are cached
        sender = threading.Thread(target=post_big)
        sender.start()
        while sender.is_alive():
            started = time.monotonic()
            assert http.get("/v1/models").status_code == 200
            gaps.append(time.monotonic() - started)
        sender.join()
    assert big["status"] < 500
    # Parsed on the loop, one small request would wait the whole parse; off it, many get through.
    assert len(gaps) >= 5, (big, gaps)
    assert max(gaps) < big["seconds"] / 2, (big, max(gaps))
