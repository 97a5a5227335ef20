"""Scale-out: two web nodes behind nginx, two Celery workers and one beat act as one deployment.

Everything is real and on loopback: two uvicorn nodes started as production starts them
(``python -m pendra_console.serving``, each in its own process group and on its own port)
behind the shipped nginx site config (deploy/nginx/), Celery workers and beat as
subprocesses, the session's PostgreSQL and Redis, simulated GPU workers. Every load is
bounded in count and time. ``make scaleout`` runs this module alone; ``make test`` runs it
with the rest.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.utils import timezone

from apps.keys.services import api_key_create
from apps.plans import limit_decision
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from apps.requestlog.models import RequestRecord
from apps.workers.models import Worker, WorkerState
from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url
from testing.nginx import Nginx, nginx_binary
from testing.require import require_service

pytestmark = [pytest.mark.scaleout, pytest.mark.timeout(240)]

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@dataclass
class Deployment:
    nodes: list[str]  # each node's own URL
    proxy: str  # nginx in front of both
    servers: ServerProcesses
    nginx: Nginx
    sims: list[Any]

    def upstreams_used(self) -> set[str]:
        """The node addresses nginx's access log shows it sent requests to."""
        return set(re.findall(r"upstream=(127\.0\.0\.1:\d+)", self.nginx.access_log.read_text()))


@pytest.fixture
def deployment(
    transactional_db: None, redis_required: None, simulator: Any, register_sim: Callable[[Any], Any]
) -> Iterator[Deployment]:
    require_service(nginx_binary() is not None, "nginx")
    sims = [simulator("sim-a"), simulator("sim-b")]
    for sim in sims:
        register_sim(sim)
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "PENDRA_LOG_LEVEL": "WARNING",
        # Each node keeps keys, plans and the fleet this long unless Redis's change epochs move:
        # only they can carry a revocation or a health change to the other node within a second.
        "PENDRA_WATCHED_CACHE_SECONDS": "600",
    }
    servers = ServerProcesses(env, count=2)
    with servers as nodes, Nginx([urlsplit(url).netloc for url in nodes]) as nginx:
        yield Deployment(nodes=nodes, proxy=nginx.url, servers=servers, nginx=nginx, sims=sims)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _load(
    url: str, key: str, total: int, *, concurrency: int, headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    """``total`` chat requests to ``url``, ``concurrency`` at a time; every response (or error) kept."""
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, headers={**_auth(key), **(headers or {})}) as client:

        async def one() -> httpx.Response:
            async with semaphore:
                return await client.post("/v1/chat/completions", json=CHAT)

        return list(await asyncio.gather(*(one() for _ in range(total))))


def _wait_until(condition: Callable[[], Any], *, timeout: float, interval: float = 0.05) -> float:
    """Seconds until ``condition()`` held; fails the test after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def test_the_plans_rate_limit_holds_exactly_across_both_nodes(deployment: Deployment, owner: Actor) -> None:
    Subscription.objects.update_or_create(
        org=owner.org, defaults={"plan": plan_factory(name="Forty", chat_rpm=40), "since": timezone.now()}
    )
    # Start early in the org's minute, so the window cannot roll over in the middle of the burst.
    left = limit_decision.window_end(f"org:{owner.org.pk}") - time.time()
    if left < 20:
        time.sleep(left + 1)

    responses = asyncio.run(_load(deployment.proxy, owner.key, 120, concurrency=24))

    assert Counter(response.status_code for response in responses) == Counter({200: 40, 429: 80})
    assert {response.headers["x-ratelimit-bucket"] for response in responses if response.status_code == 429} == {"chat"}
    assert deployment.upstreams_used() == {urlsplit(url).netloc for url in deployment.nodes}


def test_a_revoked_key_is_refused_on_both_nodes_within_a_second(deployment: Deployment, owner: Actor) -> None:
    api_key, key = api_key_create(org=owner.org, user=owner.user, actor=owner.user, name="to revoke")
    for node in deployment.nodes:  # both nodes have the key in their cache
        assert httpx.get(f"{node}/v1/models", headers=_auth(key), timeout=10).status_code == 200

    revoked = httpx.delete(
        f"{deployment.proxy}/api/v1/orgs/{owner.org.slug}/keys/{api_key.pk}/", headers=_auth(owner.key), timeout=10
    )
    assert revoked.status_code in {200, 204}, revoked.text
    revoked_at = time.monotonic()

    delays = []
    for node in deployment.nodes:
        _wait_until(
            lambda node=node: httpx.get(f"{node}/v1/models", headers=_auth(key), timeout=10).status_code == 401,
            timeout=5,
        )
        delays.append(time.monotonic() - revoked_at)
    # PENDRA_KEY_CACHE_SECONDS is 1 s (the cached entry lives 600 s, but the keys' epoch in Redis
    # moves); a quarter second more covers polling on a busy machine.
    assert max(delays) < 1.25, delays


def _worker_names(node: str, key: str, count: int) -> set[str]:
    names = set()
    for _ in range(count):
        response = httpx.post(f"{node}/v1/chat/completions", json=CHAT, headers=_auth(key), timeout=10)
        assert response.status_code == 200, response.text
        names.add(response.headers["X-Worker-Name"])
    return names


def test_a_worker_marked_unhealthy_leaves_routing_on_both_nodes(
    deployment: Deployment, owner: Actor, celery_stack: Any
) -> None:
    stack = celery_stack(PENDRA_HEALTH_INTERVAL="0.5", PENDRA_HEALTH_FAILURES="1", PENDRA_HEALTH_TIMEOUT="1")
    stack.worker()
    stack.worker()
    stack.beat()
    sim_b = deployment.sims[1]
    for node in deployment.nodes:
        assert _worker_names(node, owner.key, 8) == {"sim-a", "sim-b"}

    sim_b.set_faults(health_status=503)
    _wait_until(lambda: Worker.objects.get(name="sim-b").state == WorkerState.UNHEALTHY, timeout=15)
    marked_at = time.monotonic()

    # Each node reloads its view of the fleet within a second of the fleet's epoch moving; allow
    # half a second more on a busy machine.
    time.sleep(max(0.0, marked_at + 1.5 - time.monotonic()))
    for node in deployment.nodes:
        assert _worker_names(node, owner.key, 12) == {"sim-a"}


def test_health_sweeps_run_once_per_interval_not_once_per_node_or_worker(
    deployment: Deployment, celery_stack: Any
) -> None:
    stack = celery_stack(PENDRA_HEALTH_INTERVAL="1")
    stack.worker()
    stack.worker()
    stack.beat()
    sim_a = deployment.sims[0]
    _wait_until(lambda: sim_a.stats()["requests"].get("/health", 0) > 0, timeout=20)
    sim_a.reset_stats()

    time.sleep(6)

    probes = sim_a.stats()["requests"].get("/health", 0)
    # One sweep a second for 6 s (beat's ticks may straddle the window's edges); two web nodes
    # and two Celery workers add none: once per node would be 12, once per worker 12 too.
    assert 5 <= probes <= 7, probes


def test_a_node_stopped_under_load_loses_no_answered_requests_record(deployment: Deployment, owner: Actor) -> None:
    Subscription.objects.update_or_create(
        org=owner.org, defaults={"plan": plan_factory(name="Roomy", chat_rpm=100_000), "since": timezone.now()}
    )

    async def load_and_stop() -> list[httpx.Response]:
        # Requests take 150 ms at the worker, so the stopped node has some in flight.
        load = asyncio.ensure_future(
            _load(deployment.proxy, owner.key, 240, concurrency=12, headers={"x-sim-latency-ms": "150"})
        )
        await asyncio.sleep(1.0)
        deployment.servers.signal(0, signal.SIGTERM)
        return await load

    responses = asyncio.run(load_and_stop())
    stopped = deployment.servers.started[0][0]
    # uvicorn finishes what is in flight and runs the lifespan shutdown (which flushes the
    # records), then re-raises the signal: -SIGTERM is its normal graceful exit.
    assert stopped.wait(timeout=30) in {0, -signal.SIGTERM}, deployment.servers.log(0)

    answered = [response.headers["X-Request-Id"] for response in responses if response.status_code == 200]
    assert len(answered) >= 230, Counter(response.status_code for response in responses)
    _wait_until(lambda: RequestRecord.objects.filter(request_id__in=answered).count() == len(answered), timeout=10)
    assert deployment.upstreams_used() == {urlsplit(url).netloc for url in deployment.nodes}
