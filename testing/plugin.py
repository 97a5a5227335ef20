"""Loaded with ``-p testing.plugin`` (pyproject.toml) before pytest-django sets Django up.

It starts the throwaway PostgreSQL and Redis and points the settings at them through
the environment, exactly as production configures Pendra. Without the binaries the
suite falls back to SQLite and tests that need Redis skip; under ``CI=true`` a missing
binary stops the run instead.
"""

from __future__ import annotations

import atexit
import os
import secrets
import tempfile
from collections.abc import Generator

import pytest

from testing import servers

RUNNING: dict[str, servers.Server] = {}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def distributes_tests(config: pytest.Config) -> bool:
    """True in the controller of a pytest-xdist run (``-n N``, N > 0), which only hands tests out."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return False
    return bool(getattr(config.known_args_namespace, "numprocesses", None))


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pendra_console.settings")
    # A `make run` checkout has a .env; the suite and its subprocesses configure themselves.
    os.environ["PENDRA_ENV_FILE"] = ""
    os.environ["SECRET_KEY"] = "test-" + secrets.token_urlsafe(40)
    os.environ["DEBUG"] = "0"
    os.environ["PENDRA_SSL_REDIRECT"] = "0"
    os.environ["PENDRA_SECURE_COOKIES"] = "0"
    os.environ["PENDRA_ALLOW_PRIVATE_WORKER_URLS"] = "1"
    os.environ["PENDRA_FORWARD_SIM_HEADERS"] = "1"
    os.environ["PENDRA_VAR_DIR"] = tempfile.mkdtemp(prefix="pendra-test-var-")
    os.environ["PENDRA_RECORD_FLUSH_SECONDS"] = "0.05"
    # Tests read records the in-process writer wrote; the durable hand-off's tests (and the
    # processes they start) switch to the Redis Stream and run record_writer themselves.
    os.environ["PENDRA_RECORD_HANDOFF"] = "memory"
    # Argon2 at its production cost spends ~0.1 s and 100 MiB per password; hundreds of users are made.
    os.environ["PENDRA_ARGON2_MEMORY_KIB"] = "1024"
    os.environ["PENDRA_ARGON2_TIME_COST"] = "1"

    if os.environ.get("PENDRA_TEST_SERVERS", "1") == "1":
        if distributes_tests(early_config):
            # The xdist controller runs no test: each worker (this same hook, in its own process)
            # starts a PostgreSQL and a Redis of its own, so no test sees another worker's rows or
            # keys. Here only the CI rule is checked, once, before any worker is spawned.
            binaries = {"PostgreSQL": ("initdb", "pg_ctl"), "Redis": ("redis-server",)}
            missing = [name for name, needed in binaries.items() if not all(map(servers._find_binary, needed))]
            if missing and _in_ci():
                raise pytest.UsageError(
                    f"CI=true but {', '.join(missing)} binaries are missing: install them (see .ci/run)"
                )
            return (yield)
        postgres = servers.start_postgresql()
        redis = servers.start_redis()
        missing = [name for name, server in (("PostgreSQL", postgres), ("Redis", redis)) if server is None]
        if missing and _in_ci():
            raise pytest.UsageError(
                f"CI=true but {', '.join(missing)} binaries are missing: install them (see .ci/run)"
            )
        for name, server in (("postgres", postgres), ("redis", redis)):
            if server is not None:
                RUNNING[name] = server
                atexit.register(server.stop)
        if postgres:
            os.environ["DATABASE_URL"] = postgres.url
        if redis:
            os.environ["REDIS_URL"] = redis.url
    return (yield)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if distributes_tests(config):
        return ["pendra: each xdist worker runs its own throwaway PostgreSQL and Redis"]
    return [
        f"pendra: database {os.environ.get('DATABASE_URL', 'sqlite (embedded default)')}",
        f"pendra: redis {os.environ.get('REDIS_URL', 'none (local-memory cache)')}",
    ]


def pytest_unconfigure(config: pytest.Config) -> None:
    for server in RUNNING.values():
        server.stop()
    RUNNING.clear()
