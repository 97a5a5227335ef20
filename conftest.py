"""Fixtures shared by every app's tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from testing import servers
from testing.live import LiveServer
from testing.plugin import distributes_tests
from testing.require import require_service

# Fixture families live in their own modules so each app's tests can share them.
pytest_plugins = ["testing.actors", "testing.workers", "testing.scripted_workers", "testing.celery", "testing.browser"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Static files are collected once, as a deployment would, before any test module is
    even imported: a module that builds the ASGI app at import time starts WhiteNoise, which
    indexes STATIC_ROOT once, and an empty one would leave every page without its CSS."""
    from django.core.management import call_command

    if distributes_tests(session.config):
        return  # an xdist controller imports no test module and serves no page; its workers collect
    call_command("collectstatic", interactive=False, verbosity=0)


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    """Rate-limit counters and cached lookups never leak from one test into the next.

    The per-process caches too: on SQLite a rolled-back test's ids are handed out again,
    so a cached plan or key of the last test would answer for this one's.
    """
    from apps.keys.authentication import key_cache, unknown_keys
    from apps.plans.selectors import plan_cache

    cache.clear()
    key_cache.clear()
    unknown_keys.clear()
    plan_cache.clear()
    yield


@pytest.fixture
def redis_required() -> None:
    require_service(bool(os.environ.get("REDIS_URL")), "redis-server")


@pytest.fixture
def stoppable_redis(redis_required: None, settings: Any) -> Iterator[subprocess.Popen[bytes]]:
    """The default cache on a Redis of its own, which the test may stop (cache-down behaviour)."""
    from apps.plans import limits

    workdir = tempfile.mkdtemp(prefix="pendra-stoppable-redis-")
    port = servers.free_port()
    process = servers.start_redis_at(port, workdir)
    settings.CACHES = {
        "default": {
            "BACKEND": "pendra_console.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    limits.outage.down = False
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture(scope="session")
def live_server_session() -> Iterator[LiveServer]:
    from apps.requestlog.recorder import recorder
    from pendra_console.asgi import application

    server = LiveServer(application).start()
    yield server
    server.stop()
    recorder.flush()


@pytest.fixture
def live(live_server_session: LiveServer, transactional_db: None) -> Iterator[LiveServer]:
    """The running ASGI server, with a database its threads can see.

    The gateway caches keys and the fleet for a second; tests flush the database between
    them, which production never does, so each test starts with those caches empty.
    """
    from apps.keys.authentication import key_cache
    from pendra_console.asgi import application

    key_cache.clear()
    application.pool.invalidate()
    yield live_server_session
    live_server_session.settle()
