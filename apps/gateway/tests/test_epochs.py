"""Two gateway processes keep keys, plans and the fleet for minutes (PENDRA_WATCHED_CACHE_SECONDS),
yet a change made through one of them takes effect on both within a second: the change epochs
in Redis (pendra_console/epochs.py). With Redis stopped they fall back to the one-second TTL.

The processes are real (``python -m pendra_console.serving``) on the session's PostgreSQL and a
Redis of this module's own, which a test may stop. Every change goes through a process's admin
API, as an owner or operator makes it.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.utils import timezone

from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from apps.workers.models import Worker
from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url
from testing.servers import StoppableRedis

pytestmark = pytest.mark.timeout(120)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
# The promise is one second (PENDRA_KEY_CACHE_SECONDS, PENDRA_PLAN_CACHE_SECONDS, the fleet's
# SNAPSHOT_SECONDS); a quarter second more covers one request's time on a busy machine.
WITHIN = 1.25
# Long enough that only an epoch (or the short TTL as its fallback) can explain a change seen in time.
WATCHED_SECONDS = "600"


@dataclass
class Nodes:
    urls: list[str]
    redis: StoppableRedis
    servers: ServerProcesses


@pytest.fixture
def nodes(
    transactional_db: None, redis_required: None, owner: Actor, simulator: Any, register_sim: Callable[[Any], Any]
) -> Iterator[Nodes]:
    for name in ("sim-a", "sim-b"):
        register_sim(simulator(name))
    Subscription.objects.update_or_create(
        org=owner.org, defaults={"plan": plan_factory(name="Roomy", chat_rpm=100_000), "since": timezone.now()}
    )
    redis = StoppableRedis().start()
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "REDIS_URL": redis.url,
        "PENDRA_WATCHED_CACHE_SECONDS": WATCHED_SECONDS,
        "PENDRA_LOG_LEVEL": "WARNING",
    }
    servers = ServerProcesses(env, count=2)
    try:
        with servers as urls:
            yield Nodes(urls=urls, redis=redis, servers=servers)
    finally:
        redis.close()


def _chat(url: str, key: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}, timeout=20)


def _warm(nodes: Nodes, key: str, seconds: float = 2.5) -> None:
    """Traffic on both nodes for longer than the short TTL: what they serve now is their long-lived entries."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for url in nodes.urls:
            assert _chat(url, key).status_code == 200


def _watch(
    url: str, request: Callable[[str], httpx.Response], seconds: float = WITHIN + 1.0
) -> list[tuple[float, Any]]:
    """``request(url)`` again and again for ``seconds``: (when each was sent, its response)."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent = time.monotonic()
        seen.append((sent, request(url)))
        time.sleep(0.02)
    return seen


def _last_old(seen: list[tuple[float, Any]], since: float, is_old: Callable[[Any], bool]) -> float:
    """Seconds after ``since`` at which the last request still answered the old way (0: none did)."""
    return max((sent - since for sent, response in seen if is_old(response)), default=0.0)


def _key(url: str, owner: Actor) -> dict[str, Any]:
    created = httpx.post(
        f"{url}/api/v1/orgs/{owner.org.slug}/keys/",
        json={"name": "watched"},
        headers={"Authorization": f"Bearer {owner.key}"},
        timeout=20,
    )
    assert created.status_code == 201, created.text
    return created.json()


def _revoke(url: str, owner: Actor, key_id: int) -> float:
    revoked = httpx.delete(
        f"{url}/api/v1/orgs/{owner.org.slug}/keys/{key_id}/",
        headers={"Authorization": f"Bearer {owner.key}"},
        timeout=20,
    )
    assert revoked.status_code in {200, 204}, revoked.text
    return time.monotonic()


def test_a_key_revoked_on_one_process_is_refused_on_both_within_a_second(nodes: Nodes, owner: Actor) -> None:
    created = _key(nodes.urls[0], owner)
    _warm(nodes, created["key"])

    revoked_at = _revoke(nodes.urls[0], owner, created["id"])

    for url in nodes.urls:
        seen = _watch(url, lambda url: _chat(url, created["key"]))
        assert {response.status_code for _, response in seen} <= {200, 401}
        assert seen[-1][1].status_code == 401
        assert _last_old(seen, revoked_at, lambda response: response.status_code == 200) < WITHIN


def test_a_plan_change_on_one_process_applies_on_the_other_within_a_second(nodes: Nodes, owner: Actor) -> None:
    smaller = plan_factory(name="Smaller", chat_rpm=90_000)
    _warm(nodes, owner.key)

    changed = httpx.put(
        f"{nodes.urls[0]}/api/v1/orgs/{owner.org.slug}/plan/",
        json={"plan": smaller.slug},
        headers={"Authorization": f"Bearer {owner.key}"},
        timeout=20,
    )
    changed_at = time.monotonic()

    assert changed.status_code == 200, changed.text
    seen = _watch(nodes.urls[1], lambda url: _chat(url, owner.key))
    limits = [response.headers["x-ratelimit-limit-requests"] for _, response in seen]
    assert limits[-1] == "90000"
    assert _last_old(seen, changed_at, lambda response: response.headers["x-ratelimit-limit-requests"] != "90000") < (
        WITHIN
    )


def test_a_worker_drained_on_one_process_leaves_routing_on_the_other_within_a_second(
    nodes: Nodes, owner: Actor, operator: Actor
) -> None:
    _warm(nodes, owner.key)
    sim_b = Worker.objects.get(name="sim-b")

    drained = httpx.post(
        f"{nodes.urls[0]}/api/v1/workers/{sim_b.pk}/drain/",
        headers={"Authorization": f"Bearer {operator.key}"},
        timeout=20,
    )
    drained_at = time.monotonic()

    assert drained.status_code == 200, drained.text
    seen = _watch(nodes.urls[1], lambda url: _chat(url, owner.key), seconds=WITHIN + 2)
    assert {response.status_code for _, response in seen} == {200}
    assert _last_old(seen, drained_at, lambda response: response.headers["x-worker-name"] == "sim-b") < WITHIN
    # Enough requests after the second that sim-b, were it still routed to, would have had some.
    assert sum(1 for sent, _ in seen if sent - drained_at >= WITHIN) >= 10


def test_with_redis_stopped_a_revoked_key_is_still_refused_within_a_second_and_nothing_fails(
    nodes: Nodes, owner: Actor
) -> None:
    created = _key(nodes.urls[0], owner)
    _warm(nodes, created["key"])

    nodes.redis.stop()
    statuses = Counter(_chat(url, created["key"]).status_code for url in nodes.urls)
    revoked_at = _revoke(nodes.urls[0], owner, created["id"])

    for url in nodes.urls:
        seen = _watch(url, lambda url: _chat(url, created["key"]))
        statuses.update(response.status_code for _, response in seen)
        assert seen[-1][1].status_code == 401
        assert _last_old(seen, revoked_at, lambda response: response.status_code == 200) < WITHIN
    assert set(statuses) <= {200, 401}, statuses
    for index in range(len(nodes.urls)):
        assert "Traceback" not in nodes.servers.log(index), nodes.servers.log(index)[-3000:]


def test_an_org_deleted_on_one_process_frees_its_dedicated_worker_on_the_other_within_a_second(
    nodes: Nodes, owner: Actor, outsider: Actor, operator: Actor
) -> None:
    sim_b = Worker.objects.get(name="sim-b")
    dedicated = httpx.patch(
        f"{nodes.urls[0]}/api/v1/workers/{sim_b.pk}/",
        json={"dedicated_org": "globex"},
        headers={"Authorization": f"Bearer {operator.key}"},
        timeout=20,
    )
    assert dedicated.status_code == 200, dedicated.text
    _warm(nodes, owner.key)  # acme is served by sim-a alone, from entries both nodes keep for minutes

    deleted = httpx.delete(
        f"{nodes.urls[0]}/api/v1/orgs/globex/", headers={"Authorization": f"Bearer {outsider.key}"}, timeout=20
    )
    deleted_at = time.monotonic()

    assert deleted.status_code == 204, deleted.text
    seen = _watch(nodes.urls[1], lambda url: _chat(url, owner.key), seconds=WITHIN + 2)
    assert {response.status_code for _, response in seen} == {200}
    later = [response.headers["x-worker-name"] for sent, response in seen if sent - deleted_at >= WITHIN]
    assert len(later) >= 10
    assert "sim-b" in later  # no longer dedicated to an org that is gone: shared, so acme's requests reach it
