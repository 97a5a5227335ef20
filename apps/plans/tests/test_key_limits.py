"""A key's own requests and tokens per minute (the ``key`` bucket), inside the org's limits.

On the live gateway with both counter back ends (Redis's one Lua script, and the embedded
cache of ``make run``), and across two server processes sharing Redis.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.utils import timezone

from apps.gateway.tests.conftest import Gateway
from apps.plans import limit_decision
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
HELLO = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}
KEYS = "/api/v1/orgs/acme/keys/"


def _key(actor: Actor, **controls: Any) -> str:
    response = actor.client().post(KEYS, {"name": "limited", **controls}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["key"])


def _fresh_window(org_id: int, *, needed: float) -> None:
    left = limit_decision.window_end(f"org:{org_id}") - time.time()
    if left < needed:
        time.sleep(left + 1)


def test_a_keys_own_rpm_refuses_with_the_key_bucket_while_the_org_has_room(gateway: Gateway, backend: str) -> None:
    key = _key(gateway.actor, rpm_limit=2)
    _fresh_window(gateway.actor.org.pk, needed=5)
    limited = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    statuses = [limited.post(CHAT, json=HELLO).status_code for _ in range(2)]
    refused = limited.post(CHAT, json=HELLO)
    other_key = gateway.http().post(CHAT, json=HELLO)

    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-bucket"] == "key"
    retry = int(refused.headers["retry-after"])
    assert refused.json()["detail"] == (
        f'Rate limit exceeded for bucket "key" (2 requests/minute for this API key); retry in {retry} s'
    )
    assert other_key.status_code == 200  # the org's own bucket was not spent by the key's refusal


def test_a_keys_own_tokens_per_minute_are_used_up_by_what_the_worker_reports(gateway: Gateway, backend: str) -> None:
    key = _key(gateway.actor, tpm_limit=60)
    _fresh_window(gateway.actor.org.pk, needed=5)
    limited = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    body = {**HELLO, "max_tokens": 20}

    statuses = [limited.post(CHAT, json=body).status_code for _ in range(4)]

    assert statuses[0] == 200
    assert 429 in statuses
    assert (
        limited.post(CHAT, json={**HELLO, "max_tokens": 500}).json()["detail"].startswith("This request may use up to")
    )


@pytest.fixture
def two_servers(transactional_db: None, redis_required: None) -> Iterator[list[str]]:
    # FORWARDED_ALLOW_IPS=* as the deployment recipes once set: uvicorn must not act on it.
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "PENDRA_LOG_LEVEL": "WARNING",
        "FORWARDED_ALLOW_IPS": "*",
    }
    with ServerProcesses(env, count=2) as urls:
        yield urls


async def _burst(urls: list[str], key: str, total: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {key}"}
    clients = [httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=50)) for url in urls]
    try:
        return list(
            await asyncio.gather(
                *(clients[n % len(clients)].post(CHAT, headers=headers, json=HELLO) for n in range(total))
            )
        )
    finally:
        for client in clients:
            await client.aclose()


def test_a_keys_own_rpm_holds_across_two_processes(
    two_servers: list[str], owner: Actor, simulator: Any, register_sim: Any
) -> None:
    for name in ("sim-a", "sim-b"):
        register_sim(simulator(name))
    Subscription.objects.update_or_create(
        org=owner.org, defaults={"plan": plan_factory(name="Roomy", chat_rpm=1000), "since": timezone.now()}
    )
    key = _key(owner, rpm_limit=20)
    _fresh_window(owner.org.pk, needed=15)

    responses = asyncio.run(_burst(two_servers, key, 100))

    assert Counter(r.status_code for r in responses) == Counter({200: 20, 429: 80})
    assert {r.headers["x-ratelimit-bucket"] for r in responses if r.status_code == 429} == {"key"}


def test_a_forwarded_address_never_passes_a_keys_range_without_a_trusted_proxy(
    two_servers: list[str], owner: Actor, simulator: Any, register_sim: Any
) -> None:
    register_sim(simulator("sim-a"))
    key = _key(owner, allowed_ips=["203.0.113.0/24"])
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": "203.0.113.9"}

    statuses = [httpx.post(f"{url}{CHAT}", headers=headers, json=HELLO, timeout=30).status_code for url in two_servers]

    assert statuses == [403, 403]
