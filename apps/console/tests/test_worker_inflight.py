"""Requests in flight per worker, held open by a slow worker behind live gateways: the fleet page and the API.

The gateway processes publish their counts to Redis from their fleet-refresh loop; the
console sums every live process's counts, so two processes' requests add up and a killed
process's drop out when its entry expires.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from apps.console.tests.conftest import signed_in
from apps.workers.inflight import TTL_SECONDS
from apps.workers.models import Worker
from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url
from testing.scripted_workers import COMPLETION, JSON, MODEL, ScriptedWorker

pytestmark = pytest.mark.django_db(transaction=True)

FLEET = "/platform/workers/"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}


class Held:
    """A worker that answers nothing until released: each chat request it gets stays in flight."""

    def __init__(self, start: Callable[..., ScriptedWorker]) -> None:
        self.release = threading.Event()
        self.worker = start(self._answer)

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        if path != "/v1/chat/completions":
            return None
        self.release.wait(timeout=60)
        return 200, JSON, json.dumps(COMPLETION).encode()


@pytest.fixture
def held(scripted_worker: Callable[..., ScriptedWorker], register_scripted: Callable[..., Worker]) -> Iterator[Any]:
    slow = Held(scripted_worker)
    slow.row = register_scripted(slow.worker, name="slow")
    yield slow
    slow.release.set()


@pytest.fixture
def idle(simulator: Any, register_sim: Callable[[Any], Any]) -> Worker:
    register_sim(simulator("sim-a"))
    return Worker.objects.get(name="sim-a")


def _send(pool: ThreadPoolExecutor, url: str, key: str, count: int) -> list[Future[httpx.Response]]:
    def call() -> httpx.Response:
        return httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    return [pool.submit(call) for _ in range(count)]


def _page_in_flight(operator: Actor) -> dict[str, str]:
    """Worker name -> its "In flight" cell on the fleet page, as an operator reads it over HTTP."""
    response = signed_in(operator).get(FLEET)
    assert response.status_code == 200
    rows = re.findall(r'mono" href="[^"]+">([^<]+)</a>.*?data-in-flight>([^<]*)<', response.content.decode(), re.S)
    return dict(rows)


def _api_in_flight(operator: Actor) -> dict[str, int]:
    body = operator.client().get("/api/v1/workers/").json()
    return {worker["name"]: worker["in_flight"] for worker in body["results"]}


def _eventually(read: Callable[[], Any], expected: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while (seen := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return seen


def test_the_fleet_page_and_the_api_show_the_requests_a_worker_holds_open(
    live: Any, held: Any, idle: Worker, owner: Actor, operator: Actor
) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        calls = _send(pool, live.url, owner.key, 3)

        assert _eventually(lambda: _page_in_flight(operator), {"sim-a": "0", "slow": "3"}) == {
            "sim-a": "0",
            "slow": "3",
        }
        assert _api_in_flight(operator) == {"sim-a": 0, "slow": 3}
        detail = operator.client().get(f"/api/v1/workers/{held.row.pk}/").json()
        assert detail["in_flight"] == 3

        held.release.set()
        assert [call.result().status_code for call in calls] == [200, 200, 200]

    assert _eventually(lambda: _page_in_flight(operator), {"sim-a": "0", "slow": "0"}) == {"sim-a": "0", "slow": "0"}
    assert _api_in_flight(operator) == {"sim-a": 0, "slow": 0}


@pytest.fixture
def two_gateways(transactional_db: None, redis_required: None) -> Iterator[ServerProcesses]:
    env = {**os.environ, "DATABASE_URL": session_database_url(), "PENDRA_LOG_LEVEL": "WARNING"}
    servers = ServerProcesses(env, count=2)
    with servers:
        yield servers


def test_two_gateway_processes_counts_add_up_and_a_killed_ones_expire(
    two_gateways: ServerProcesses, held: Any, idle: Worker, owner: Actor, operator: Actor
) -> None:
    first, second = (url for _, url, _ in two_gateways.started)
    with ThreadPoolExecutor(max_workers=5) as pool:
        _send(pool, first, owner.key, 2)
        from_second = _send(pool, second, owner.key, 3)

        assert _eventually(lambda: _api_in_flight(operator), {"sim-a": 0, "slow": 5}) == {"sim-a": 0, "slow": 5}

        two_gateways.signal(0, signal.SIGKILL)
        killed_at = time.monotonic()
        assert _eventually(lambda: _api_in_flight(operator), {"sim-a": 0, "slow": 3}, timeout=TTL_SECONDS + 5) == {
            "sim-a": 0,
            "slow": 3,
        }
        assert time.monotonic() - killed_at <= TTL_SECONDS + 2  # gone by expiry, not by anything slower
        assert _page_in_flight(operator) == {"sim-a": "0", "slow": "3"}

        held.release.set()
        assert [call.result().status_code for call in from_second] == [200, 200, 200]

    assert _eventually(lambda: _api_in_flight(operator), {"sim-a": 0, "slow": 0}) == {"sim-a": 0, "slow": 0}


def test_with_redis_unreachable_the_fleet_shows_in_flight_as_unknown_not_zero(
    idle: Worker, operator: Actor, stoppable_redis: Any
) -> None:
    client = signed_in(operator)  # the session lives in the database, not in the cache
    stoppable_redis.terminate()
    stoppable_redis.wait(timeout=10)

    page = client.get(FLEET)
    api = operator.client().get(f"/api/v1/workers/{idle.pk}/")

    assert page.status_code == 200
    assert re.search(r'data-in-flight><span class="muted"[^>]*>unknown<', page.content.decode())
    assert (api.status_code, api.json()["in_flight"]) == (200, None)
