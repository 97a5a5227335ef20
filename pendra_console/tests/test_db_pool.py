"""PENDRA_DB_POOL_SIZE: a burst of admin requests shares a bounded set of PostgreSQL connections."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import httpx
import pytest
from django.db import connection

from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url

APPLICATION_NAME = "pendra-pool-test"


def _connections_of_the_server() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APPLICATION_NAME])
        return int(cursor.fetchone()[0])


async def _burst(url: str, key: str, total: int) -> list[int]:
    limits = httpx.Limits(max_connections=total)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}) for _ in range(total))
        )
    return [response.status_code for response in responses]


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_admin_requests_stays_within_the_pool(owner: Actor, redis_required: None) -> None:
    url = session_database_url()
    env = {
        **os.environ,
        "DATABASE_URL": f"{url}?application_name={APPLICATION_NAME}",
        "PENDRA_DB_POOL_SIZE": "4",
        "PENDRA_LOG_LEVEL": "WARNING",
    }
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        try:
            while not done.is_set():
                peak = max(peak, _connections_of_the_server())
                time.sleep(0.005)
        finally:
            connection.close()  # this thread's own connection

    with ServerProcesses(env) as [server]:
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            statuses = asyncio.run(_burst(server, owner.key, 60))
        finally:
            done.set()
            watcher.join()

    assert statuses == [200] * 60
    assert 1 <= peak <= 4
