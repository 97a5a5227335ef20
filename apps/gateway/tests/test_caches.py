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


def test_a_warm_process_under_steady_traffic_does_not_reload_keys_plans_or_the_fleet(
    gateway: Gateway, monkeypatch, redis_required
) -> None:
    # The default one-second TTLs: with Redis, entries live on while the change epochs confirm
    # nothing changed (pendra_console/epochs.py), instead of a reload per second and table.
    tables = ("keys_apikey", "plans_subscription", "workers_worker")
    with gateway.http() as http:
        assert http.post("/v1/embeddings", json=EMBED).status_code == 200
        # Entries loaded before the epoch watcher's first answer keep their one-second life (it
        # confirms only what is loaded after it): warm again once they have expired.
        time.sleep(1.2)
        assert http.post("/v1/embeddings", json=EMBED).status_code == 200
        queries: Counter[str] = Counter()
        original = db_utils.CursorWrapper.execute

        def counting_execute(self, sql, params=None):  # observes every query, from every thread
            if sql.startswith("SELECT"):
                queries.update(table for table in tables if f'FROM "{table}"' in sql)
            return original(self, sql, params)

        monkeypatch.setattr(db_utils.CursorWrapper, "execute", counting_execute)
        deadline = time.monotonic() + 3.5
        requests = 0
        while time.monotonic() < deadline:
            assert http.post("/v1/embeddings", json=EMBED).status_code == 200
            requests += 1
            time.sleep(0.02)
        monkeypatch.setattr(db_utils.CursorWrapper, "execute", original)

    assert requests > 20
    assert queries == Counter()
