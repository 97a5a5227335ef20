"""The gateway's per-process caches (pendra_console.ttl_cache): an expired entry is reloaded
once for all the requests waiting for it, not once per request."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db.backends import utils as db_utils

from apps.gateway.tests.conftest import Gateway
from apps.plans.selectors import plan_cache
from pendra_console.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = {"model": "sim-embed", "input": "hello"}
BURST = 12


def _slow_counting_execute(queries: Counter[str], tables: tuple[str, ...]):
    original = db_utils.CursorWrapper.execute

    def execute(self, sql, params=None):
        # A slow database (a second a query): every request of the burst arrives while the
        # first load is under way, however busy the machine running the test.
        for table in tables:
            if f'FROM "{table}"' in sql:
                queries[table] += 1
                time.sleep(1.0)
        return original(self, sql, params)

    return execute


def _burst(gateway: Gateway, path: str, **request) -> Counter[int]:
    def one(_: int) -> int:
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.key}"}, timeout=30) as http:
            return http.request(url=path, **request).status_code

    start = threading.Barrier(BURST)

    def together(n: int) -> int:
        start.wait()
        return one(n)

    with ThreadPoolExecutor(BURST) as pool:
        return Counter(pool.map(together, range(BURST)))


def test_an_expired_plan_is_loaded_once_for_a_burst(gateway: Gateway, settings, monkeypatch) -> None:
    settings.PENDRA_KEY_CACHE_SECONDS = 60
    settings.PENDRA_PLAN_CACHE_SECONDS = 60
    with gateway.http() as http:
        assert http.post("/v1/embeddings", json=EMBED).status_code == 200  # warms key, plan and fleet
    plan_cache.clear()
    queries: Counter[str] = Counter()
    monkeypatch.setattr(db_utils.CursorWrapper, "execute", _slow_counting_execute(queries, ("plans_subscription",)))

    statuses = _burst(gateway, "/v1/embeddings", method="POST", json=EMBED)

    assert statuses == Counter({200: BURST})
    assert queries["plans_subscription"] == 1


def test_the_fleet_is_loaded_once_for_a_burst(gateway: Gateway, settings, monkeypatch) -> None:
    settings.PENDRA_KEY_CACHE_SECONDS = 60
    with gateway.http() as http:
        assert http.get("/v1/models").status_code == 200
    application.pool.invalidate()
    queries: Counter[str] = Counter()
    monkeypatch.setattr(db_utils.CursorWrapper, "execute", _slow_counting_execute(queries, ("workers_worker",)))

    statuses = _burst(gateway, "/v1/models", method="GET")

    assert statuses == Counter({200: BURST})
    # One load of the fleet reads the worker table twice (routable workers, the model catalogue).
    # A background refresh begun before the invalidation may add one load of its own
    # (it cannot store what it read); a load per request would be 24 queries.
    assert 2 <= queries["workers_worker"] <= 4
