"""Token limits hold before the work is done: a request reserves its upper bound at admission.

The bound is the prompt's estimate plus ``max_tokens`` x ``n`` (``PENDRA_DEFAULT_MAX_TOKENS``
when the request names none), as OpenAI counts it; after the response the reservation is
settled to the tokens the worker reported. Both back ends: Redis (one Lua script) and the
embedded one (Django's cache API), which the gateway uses when ``REDIS_URL`` is unset.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.utils import timezone

from apps.gateway.tests.conftest import Gateway, wait_for
from apps.plans.models import Subscription
from apps.plans.tests.conftest import reached_a_worker
from apps.plans.tests.factories import plan_factory

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
HELLO = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}]}


def _put_on_plan(gw: Gateway, **limits: object) -> None:
    plan = plan_factory(name="Tiny", **limits)
    Subscription.objects.update_or_create(org=gw.actor.org, defaults={"plan": plan, "since": timezone.now()})


def _in_background(gw: Gateway, body: dict[str, Any], **headers: str) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []

    def run() -> None:
        with gw.http() as http:
            answers.append(http.post(CHAT, json=body, headers=headers))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answers


def test_a_request_that_can_never_fit_the_plans_minute_is_refused_up_front(gateway: Gateway, backend: str) -> None:
    _put_on_plan(gateway, chat_tpm=100)

    with gateway.http() as http:
        response = http.post(CHAT, json={**HELLO, "max_tokens": 60, "n": 2})

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert 'bucket "chat_tokens"' in detail
    assert "100 tokens/minute" in detail
    assert response.json()["error"]["param"] == "max_tokens"
    assert all(not sim.stats()["requests"].get("/v1/chat/completions") for sim in gateway.sims)


def test_tokens_in_flight_are_reserved_so_a_second_request_cannot_overspend_the_minute(
    gateway: Gateway, backend: str
) -> None:
    _put_on_plan(gateway, chat_tpm=1000)
    slow, answers = _in_background(gateway, {**HELLO, "max_tokens": 600}, **{"x-sim-ttft-ms": "3000"})
    assert wait_for(lambda: reached_a_worker(gateway)), "the first request was never admitted"

    with gateway.http() as http:
        second = http.post(CHAT, json={**HELLO, "max_tokens": 600})
    slow.join()

    assert answers[0].status_code == 200
    assert second.status_code == 429
    assert second.headers["x-ratelimit-bucket"] == "chat_tokens"


def test_the_reservation_is_settled_to_the_tokens_the_worker_reported(gateway: Gateway, backend: str) -> None:
    _put_on_plan(gateway, chat_tpm=1000)
    with gateway.http() as http:
        # Reserves 2 x 400 and more; the simulator reports one choice's tokens, about 400.
        first = http.post(CHAT, json={**HELLO, "max_tokens": 400, "n": 2})
        # Settled just after the response, off its path: then the minute holds what was used.
        later = wait_for(lambda: (r := http.post(CHAT, json={**HELLO, "max_tokens": 500})).status_code == 200 and r)

    assert first.status_code == 200
    assert first.json()["usage"]["total_tokens"] < 500
    assert later, "the reservation was never settled to the reported usage"


def test_without_max_tokens_the_documented_default_is_reserved(gateway: Gateway, backend: str, settings) -> None:
    settings.PENDRA_DEFAULT_MAX_TOKENS = 400
    _put_on_plan(gateway, chat_tpm=1000)
    slow, answers = _in_background(gateway, {**HELLO}, **{"x-sim-ttft-ms": "3000"})
    assert wait_for(lambda: reached_a_worker(gateway)), "the first request was never admitted"

    with gateway.http() as http:
        second = http.post(CHAT, json={**HELLO, "max_tokens": 700})
    slow.join()

    assert answers[0].status_code == 200
    assert second.status_code == 429


def test_a_refused_request_reserves_nothing(gateway: Gateway, backend: str) -> None:
    _put_on_plan(gateway, chat_tpm=1000, chat_rpm=1)
    with gateway.http() as http:
        assert http.post(CHAT, json={**HELLO, "max_tokens": 3}).status_code == 200
        refused = http.post(CHAT, json={**HELLO, "max_tokens": 900})

    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-bucket"] == "chat"
    assert int(refused.headers["x-ratelimit-remaining-tokens"]) > 900
