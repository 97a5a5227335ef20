"""Limits hold across server processes: two uvicorn processes share one Redis, so a plan's
limit does not multiply with the number of replicas."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.plans import limits
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from testing.actors import Actor
from testing.require import require_service
from testing.servers import free_port

REPO = Path(settings.BASE_DIR)


def _database_url() -> str:
    db = connection.settings_dict
    require_service(connection.vendor == "postgresql", "the session's PostgreSQL")
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix=f"pendra-uvicorn-{port}-", suffix=".log", delete=False)  # noqa: SIM115
    command = [sys.executable, "-m", "uvicorn", "pendra_console.asgi:application", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log_path = log.name  # type: ignore[attr-defined]
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {Path(process.log_path).read_text()[-2000:]}")  # type: ignore[attr-defined]
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not start within 60 s")


@pytest.fixture
def two_servers(transactional_db: None, redis_required: None) -> Iterator[list[str]]:
    env = {**os.environ, "DATABASE_URL": _database_url(), "PENDRA_LOG_LEVEL": "WARNING"}
    started = [_start_server(env) for _ in range(2)]
    try:
        for process, url in started:
            _wait_ready(process, url)
        yield [url for _, url in started]
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
            Path(process.log_path).unlink(missing_ok=True)  # type: ignore[attr-defined]


def _wait_for_fresh_window(org_id: int, *, needed: float) -> None:
    """Start the burst early in the org's minute, so the window cannot roll over in the middle of it."""
    left = limits._window_end(f"org:{org_id}") - time.time()
    if left < needed:
        time.sleep(left + 1)


async def _burst(urls: list[str], path: str, key: str, total: int, json: Any = None) -> Counter[int]:
    """All requests are submitted at once, spread over both servers.

    Each server gets at most 50 connections at a time: Django runs every in-flight sync
    view in its own thread with its own database connection, and the session's
    PostgreSQL accepts 200 connections in all.
    """
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": "203.0.113.9"}
    clients = [httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=50)) for url in urls]
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
