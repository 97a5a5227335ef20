"""PostgreSQL stopped: ``/v1`` and ``/api/v1`` answer the contract's 503 (never a 500, never a
hang), ``/readyz`` says so, the records of what was answered meanwhile are written once the
database is back, and the same web process serves again without a restart.

The web node is a real server process (``python -m pendra_console.serving``) on a
PostgreSQL cluster of this test's own, loaded with a copy of the session database (so the
actors, plans and workers the fixtures made are there), which the test stops at once (as
a crash or a failover looks to clients) and starts again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from django.conf import settings

from testing.actors import Actor
from testing.forms import sign_in
from testing.live import ServerProcesses, session_database_url
from testing.require import require_service
from testing.servers import StoppablePostgres, StoppableRedis, _find_binary

pytestmark = pytest.mark.timeout(120)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
# A request never waits on the database longer than this, outage or not.
PATIENCE = 5.0


@dataclass
class Node:
    url: str
    postgres: StoppablePostgres
    servers: ServerProcesses

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.postgres.url) as connection:
            return connection.execute(sql, params).fetchall()


@pytest.fixture(params=["memory", "redis"])
def node(
    request: pytest.FixtureRequest,
    transactional_db: None,
    owner: Actor,
    admin: Actor,
    member: Actor,
    simulator: Any,
    register_sim: Callable[[Any], Any],
) -> Iterator[Node]:
    require_service(_find_binary("initdb") is not None and _find_binary("pg_dump") is not None, "PostgreSQL")
    for name in ("sim-a", "sim-b"):
        register_sim(simulator(name))
    postgres = StoppablePostgres().start()
    # The hand-off of records: the web process's own writer, or (production's default with
    # Redis) a Redis Stream of this test's own and a record_writer process.
    redis = StoppableRedis().start() if request.param == "redis" else None
    writer = None
    try:
        postgres.load(session_database_url())
        env = {
            **os.environ,
            **({"REDIS_URL": redis.url} if redis else {}),
            "PENDRA_RECORD_HANDOFF": request.param,
            "DATABASE_URL": postgres.url,
            "PENDRA_LOG_LEVEL": "WARNING",
            # The owner's key is warm for the whole outage; the admin's key is never seen before it.
            "PENDRA_KEY_CACHE_SECONDS": "60",
            "PENDRA_PLAN_CACHE_SECONDS": "60",
            "PENDRA_DB_CONNECT_TIMEOUT": "1",
        }
        if redis:
            writer = subprocess.Popen(
                [sys.executable, "manage.py", "record_writer"],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        servers = ServerProcesses(env)
        with servers as (url,):
            yield Node(url=url, postgres=postgres, servers=servers)
    finally:
        if writer is not None:
            writer.terminate()
            writer.wait(timeout=30)
        if redis:
            redis.close()
        postgres.close()


def _timed(call: Callable[[], httpx.Response]) -> httpx.Response:
    started = time.monotonic()
    response = call()
    assert time.monotonic() - started < PATIENCE, f"{response.request.url} took {time.monotonic() - started:.1f} s"
    return response


def _assert_unavailable(response: httpx.Response, *, inference: bool) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert "database" in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if inference:
        assert body["error"] == {
            "message": body["detail"],
            "type": "api_error",
            "code": "service_unavailable",
            "param": None,
        }


def _wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_postgres_stopped_is_a_503_everywhere_loses_no_record_and_recovers_without_restart(
    node: Node, owner: Actor, admin: Actor
) -> None:
    warm = httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {owner.key}"}, timeout=30)
    cold = httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {admin.key}"}, timeout=30)
    pid = node.servers.started[0][0].pid
    browser = httpx.Client(base_url=node.url, timeout=30)
    with warm, cold, browser:
        assert warm.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert sign_in(browser, owner.email, owner.password).status_code == 302

        node.postgres.stop()

        # A key, plan and fleet the process already knows are served from its memory.
        answered = [_timed(lambda: warm.post("/v1/chat/completions", json=CHAT)) for _ in range(3)]
        # Anything that has to read the database is a 503 in the contract's shape.
        inference = _timed(lambda: cold.post("/v1/chat/completions", json=CHAT))
        admin_api = _timed(lambda: warm.get("/api/v1/plans/"))
        ready = _timed(lambda: httpx.get(f"{node.url}/readyz", timeout=30))
        alive = _timed(lambda: httpx.get(f"{node.url}/healthz", timeout=30))
        console = _timed(lambda: browser.get("/"))

        assert [response.status_code for response in answered] == [200, 200, 200]
        _assert_unavailable(inference, inference=True)
        _assert_unavailable(admin_api, inference=False)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "down"
        assert alive.status_code == 200
        assert console.status_code == 503
        assert console.headers["retry-after"] == "5"
        assert "database" in console.text

        node.postgres.start()

        assert _wait_for(lambda: cold.post("/v1/chat/completions", json=CHAT).status_code == 200)
        assert warm.get("/api/v1/plans/").status_code == 200
        assert httpx.get(f"{node.url}/readyz", timeout=30).json()["checks"]["database"] == "ok"

    assert node.servers.started[0][0].pid == pid and node.servers.started[0][0].poll() is None
    # Every request answered during the outage has its record, and each success one usage row.
    during = {response.headers["x-request-id"]: response.status_code for response in [*answered, inference, admin_api]}
    recorded = _wait_for(
        lambda: (
            dict(
                node.rows(
                    "SELECT request_id, status FROM requestlog_requestrecord WHERE request_id = ANY(%s)", list(during)
                )
            )
            == during
            and during
        ),
        timeout=10,
    )
    assert recorded, node.rows(
        "SELECT request_id, status FROM requestlog_requestrecord WHERE request_id = ANY(%s)", list(during)
    )
    billed = node.rows(
        "SELECT request_id, count(*) FROM requestlog_usagerecord WHERE request_id = ANY(%s) GROUP BY request_id",
        list(during),
    )
    assert dict(billed) == {response.headers["x-request-id"]: 1 for response in answered}
    log = node.servers.log(0)
    assert "Internal Server Error" not in log and "nhandled error" not in log, log[:3000]


@pytest.mark.parametrize("node", ["memory"], indirect=True)  # nothing here depends on the hand-off
def test_a_postgres_that_hangs_is_a_503_within_the_connect_timeout_not_a_hang(node: Node, member: Actor) -> None:
    with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {member.key}"}, timeout=30) as http:
        node.postgres.freeze()
        try:
            inference = _timed(lambda: http.post("/v1/chat/completions", json=CHAT))
            admin_api = _timed(lambda: http.get("/api/v1/plans/"))
        finally:
            node.postgres.thaw()

        _assert_unavailable(inference, inference=True)
        _assert_unavailable(admin_api, inference=False)
        assert _wait_for(lambda: http.post("/v1/chat/completions", json=CHAT).status_code == 200)
