"""The suite runs on the production services when they are installed (always under CI)."""

from __future__ import annotations

import os

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client

from pendra_console.celery import app as celery_app

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.mark.django_db
def test_the_database_is_postgresql_when_its_binaries_are_installed() -> None:
    expected = "postgresql" if (IN_CI or os.environ.get("DATABASE_URL", "").startswith("postgres")) else "sqlite"
    assert connection.vendor == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_the_cache_is_a_real_redis_round_trip(redis_required: None) -> None:
    import redis

    cache.set("infrastructure-probe", {"answer": 42}, timeout=30)
    assert cache.get("infrastructure-probe") == {"answer": 42}
    raw = redis.Redis.from_url(os.environ["REDIS_URL"])
    assert raw.ping() is True
    assert any(b"infrastructure-probe" in key for key in raw.keys("*"))


@pytest.mark.django_db
def test_readyz_names_redis_when_it_is_stopped(stoppable_redis, settings, monkeypatch) -> None:
    # The cache (set by the fixture) and the broker both on the Redis this test stops.
    monkeypatch.setattr(celery_app.conf, "broker_url", settings.CACHES["default"]["LOCATION"])
    client = Client(raise_request_exception=False)
    assert client.get("/readyz").status_code == 200
    stoppable_redis.terminate()
    stoppable_redis.wait(timeout=10)

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"] == {"database": "ok", "cache": "down", "broker": "down"}
    assert body["detail"] == "Not ready: cache, broker unreachable"
    assert response["X-Request-Id"].startswith("req_")
