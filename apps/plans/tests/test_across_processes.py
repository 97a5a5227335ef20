"""Limits hold across server processes: two uvicorn processes share one Redis, so a plan's
limit does not multiply with the number of replicas."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from apps.plans import limit_decision
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url

REPO = Path(settings.BASE_DIR)


@pytest.fixture
def two_servers(transactional_db: None, redis_required: None) -> Iterator[list[str]]:
    env = {**os.environ, "DATABASE_URL": session_database_url(), "PENDRA_LOG_LEVEL": "WARNING"}
    with ServerProcesses(env, count=2) as urls:
        yield urls


def _wait_for_fresh_window(org_id: int, *, needed: float) -> None:
    """Start the burst early in the org's minute, so the window cannot roll over in the middle of it."""
    left = limit_decision.window_end(f"org:{org_id}") - time.time()
    if left < needed:
        time.sleep(left + 1)


async def _burst(
    urls: list[str], path: str, key: str, total: int, json: Any = None, connections: int = 50
) -> Counter[int]:
    """All requests are submitted at once, spread over both servers.

    Each server gets at most ``connections`` at a time, 50 by default: Django runs every
    in-flight sync view in its own thread with its own database connection, and the
    session's PostgreSQL accepts 200 connections in all (``/v1`` reads no table).
    """
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": "203.0.113.9"}
    clients = [
        httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=connections)) for url in urls
    ]
    try:
        method = "POST" if json is not None else "GET"
        responses = await asyncio.gather(
            *(clients[n % len(clients)].request(method, path, headers=headers, json=json) for n in range(total))
        )
    finally:
        for client in clients:
            await client.aclose()
    return Counter(response.status_code for response in responses)


def test_two_processes_sharing_redis_let_exactly_the_plans_limit_through(two_servers: list[str], owner: Actor) -> None:
    Subscription.objects.update_or_create(
        org=owner.org, defaults={"plan": plan_factory(name="Fifty", api_rpm=50), "since": timezone.now()}
    )
    _wait_for_fresh_window(owner.org.pk, needed=10)

    statuses = asyncio.run(_burst(two_servers, "/api/v1/plans/", owner.key, 200))

    assert statuses == Counter({200: 50, 429: 150})


def test_two_gateway_processes_sharing_redis_let_exactly_the_plans_chat_limit_through(
    two_servers: list[str], owner: Actor, simulator: Any, register_sim: Any
) -> None:
    for name in ("sim-a", "sim-b"):
        register_sim(simulator(name))
    Subscription.objects.update_or_create(
        org=owner.org, defaults={"plan": plan_factory(name="Fifty", chat_rpm=50), "since": timezone.now()}
    )
    body = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    _wait_for_fresh_window(owner.org.pk, needed=15)

    statuses = asyncio.run(_burst(two_servers, "/v1/chat/completions", owner.key, 200, json=body))

    assert statuses == Counter({200: 50, 429: 150})


def test_a_burst_of_streams_larger_than_any_connection_pool_is_held_to_the_plans_concurrent_streams(
    two_servers: list[str], owner: Actor, simulator: Any, register_sim: Any
) -> None:
    """300 streams at once over two processes, each held open three seconds: exactly the plan's 100 run.

    More admissions at once than a Redis connection pool holds (128 was the pool once, when
    bench/streams_bench.py saw the limits fail open under 1,000 streams); the per-turn pipeline
    over one connection per process must neither refuse one of the 100 nor let a 101st through.
    """
    register_sim(simulator("sim-slow", ttft_ms=3000))
    Subscription.objects.update_or_create(
        org=owner.org,
        defaults={
            "plan": plan_factory(name="Streams", chat_rpm=10_000, concurrent_streams=100),
            "since": timezone.now(),
        },
    )
    body = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}
    _wait_for_fresh_window(owner.org.pk, needed=15)

    statuses = asyncio.run(_burst(two_servers, "/v1/chat/completions", owner.key, 300, json=body, connections=150))

    assert statuses == Counter({200: 100, 429: 200})
