"""The gateway's Redis connection as production meets it: scripts forgotten by a restart or a
failover, a password and a database number in ``REDIS_URL``, a wrong password."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.utils import timezone

from apps.gateway.tests.conftest import Gateway, wait_for
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from testing import servers
from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url

CHAT = "/v1/chat/completions"
HELLO = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}
PASSWORD = "correct horse battery staple"
_redis_processes: dict[int, subprocess.Popen[bytes]] = {}


def _put_on_plan(org: Any, **limits: object) -> None:
    Subscription.objects.update_or_create(
        org=org, defaults={"plan": plan_factory(name="Tiny", **limits), "since": timezone.now()}
    )


def _stream(http: httpx.Client) -> httpx.Response:
    with http.stream("POST", CHAT, json={**HELLO, "stream": True}) as response:
        body = b"".join(response.iter_raw())
    assert response.status_code != 200 or b"[DONE]" in body
    return response


@pytest.mark.django_db(transaction=True)
def test_the_limits_count_exactly_after_redis_forgets_its_scripts(gateway: Gateway, settings: Any) -> None:
    """A Redis restarted or failed over knows none of the scripts: the admission and the settle
    (which gives a stream's slot back) are sent again with their text, and nothing is skipped."""
    _put_on_plan(gateway.actor.org, chat_rpm=100, concurrent_streams=1)
    http = gateway.http()
    assert http.post(CHAT, json=HELLO).headers["x-ratelimit-remaining-requests"] == "99"
    redis.Redis.from_url(settings.REDIS_URL).script_flush()

    first = _stream(http)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-requests"] == "98"  # counted, not failed open
    # One slot: another stream is admitted only once the first one's settle gave its lease back
    # (a settle lost to the forgotten script would hold the slot for the whole 30 s lease).
    assert wait_for(lambda: _stream(http).status_code == 200, timeout=5)


@pytest.fixture
def guarded_redis(redis_required: None) -> Iterator[int]:
    """A Redis of this test's own that asks for a password, as a managed Redis does."""
    workdir = tempfile.mkdtemp(prefix="pendra-auth-redis-")
    port = servers.free_port()
    process = servers.start_redis_at(port, workdir)
    redis.Redis(port=port).config_set("requirepass", PASSWORD)
    _redis_processes[port] = process
    yield port
    del _redis_processes[port]
    process.kill()
    process.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _node(redis_url: str, key: str) -> Iterator[tuple[httpx.Client, Path]]:
    """A web process on the session's PostgreSQL and ``redis_url``: a client with ``key``, and its log."""
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "REDIS_URL": redis_url,
        "PENDRA_RECORD_HANDOFF": "redis",
        "PENDRA_LOG_LEVEL": "WARNING",
    }
    node_servers = ServerProcesses(env)
    with node_servers as (url,), httpx.Client(base_url=url, timeout=20) as http:
        http.headers["Authorization"] = f"Bearer {key}"
        yield http, Path(node_servers.started[0][2])


@pytest.mark.timeout(120)
def test_a_redis_url_with_a_password_and_a_database_counts_there(
    transactional_db: None, guarded_redis: int, owner: Actor, simulator: Any, register_sim: Callable[[Any], Any]
) -> None:
    register_sim(simulator("sim-a"))
    _put_on_plan(owner.org, chat_rpm=2)
    url = f"redis://:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{guarded_redis}/3"
    with _node(url, owner.key) as (http, _):
        statuses = [http.post(CHAT, json=HELLO).status_code for _ in range(3)]
        stored = redis.Redis(port=guarded_redis, password=PASSWORD, db=3)
        records = wait_for(lambda: stored.xlen("pendra:records") >= 3, timeout=5)
    assert statuses == [200, 200, 429]  # counted in Redis, not failed open
    assert records, "the three records did not reach the stream in database 3"
    assert not redis.Redis(port=guarded_redis, password=PASSWORD, db=0).keys("*")


@pytest.mark.timeout(120)
def test_a_wrong_redis_password_fails_open_and_says_so(
    transactional_db: None, guarded_redis: int, owner: Actor, simulator: Any, register_sim: Callable[[Any], Any]
) -> None:
    register_sim(simulator("sim-a"))
    _put_on_plan(owner.org, chat_rpm=2)
    url = f"redis://:not-the-password-7f3@127.0.0.1:{guarded_redis}/0"
    with _node(url, owner.key) as (http, log_path):
        responses = [http.post(CHAT, json=HELLO) for _ in range(3)]
        log = log_path.read_text()
    assert [response.status_code for response in responses] == [200, 200, 200]  # unmetered, never a 500
    assert all("x-ratelimit-limit-requests" not in response.headers for response in responses)
    assert "Redis" in log
    assert "not-the-password-7f3" not in log  # the password in REDIS_URL is never logged


@pytest.mark.timeout(120)
def test_a_redis_that_hangs_costs_a_request_at_most_its_timeout_then_counting_resumes(
    transactional_db: None, guarded_redis: int, owner: Actor, simulator: Any, register_sim: Callable[[Any], Any]
) -> None:
    """A Redis that stops answering (frozen, a network partition) without closing the connection:
    the requests waiting on it are answered unmetered after the 1 s timeout, not held for ever,
    and once it answers again the same process counts again."""
    register_sim(simulator("sim-a"))
    _put_on_plan(owner.org, chat_rpm=1000)
    url = f"redis://:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{guarded_redis}/0"
    frozen = _redis_processes[guarded_redis]
    with _node(url, owner.key) as (http, _):
        assert "x-ratelimit-limit-requests" in http.post(CHAT, json=HELLO).headers
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            during = [http.post(CHAT, json=HELLO) for _ in range(2)]
            waited = time.monotonic() - started
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        after = wait_for(lambda: "x-ratelimit-limit-requests" in http.post(CHAT, json=HELLO).headers, timeout=10)
    assert [response.status_code for response in during] == [200, 200]
    assert all("x-ratelimit-limit-requests" not in response.headers for response in during)
    # Each waits for the admission's timeout and then the hand-off's: about 2 s, never the 20 s client timeout.
    assert waited < 8, f"two requests took {waited:.1f} s with Redis frozen"
    assert after, "the process did not count again once Redis answered"
