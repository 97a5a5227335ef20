"""What the plan rate-limit check adds to a request: ``admit()`` before it, ``settle()`` after it.

One process, on loopback, production-shaped: a throwaway Redis (the cache holding the
counters) and PostgreSQL (read once a second per org, when the 1 s plan cache expires),
started with the test suite's starters (``testing/servers.py``); SQLite when PostgreSQL's
binaries are missing. Each case runs thousands of calls after a warm-up and reports the
median and p99 latency and the Redis commands per call (from ``INFO stats``):

- ``admit`` / ``settle`` called directly (the synchronous cost);
- the gateway's ``apps.plans.limits_async.admit`` (one ``EVAL`` on the event loop), which is
  what a /v1 request waits for before the upstream call; ``settle`` runs after the response,
  off the request's path, and is measured on its own;
- the synchronous core through a thread hop, as the gateway called it before;
- for reference: an empty hop, and one Redis ``PING``.

Usage: ``.venv/bin/python bench/limits_bench.py [--calls 5000] [--write]``. ``--write`` puts
the table into ``bench/README.md`` between this bench's markers, keeping the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import write_block  # noqa: E402
from testing import servers  # noqa: E402

README = ROOT / "bench" / "README.md"


def _setup() -> list[servers.Server]:
    started: list[servers.Server] = []
    redis = servers.start_redis()
    if redis is None:
        sys.exit("limits_bench needs redis-server (Debian package redis-server)")
    started.append(redis)
    postgres = servers.start_postgresql()
    os.environ["PENDRA_VAR_DIR"] = tempfile.mkdtemp(prefix="pendra-bench-var-")
    if postgres is not None:
        started.append(postgres)
        os.environ["DATABASE_URL"] = postgres.url
    os.environ["REDIS_URL"] = redis.url
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(40)
    os.environ["DEBUG"] = "0"
    os.environ["PENDRA_LOG_LEVEL"] = "ERROR"
    os.environ["DJANGO_SETTINGS_MODULE"] = "pendra_console.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return started


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _redis_commands() -> int:
    import redis

    info = redis.Redis.from_url(os.environ["REDIS_URL"]).info("stats")
    return int(info["total_commands_processed"])


def _measure_sync(fn: Callable[[], object], calls: int) -> tuple[float, float, float]:
    for _ in range(200):
        fn()
    before = _redis_commands()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    # Each _redis_commands() call is one INFO, counted in the "after" total.
    commands = (_redis_commands() - before - 1) / calls
    median, p99 = _percentiles(samples)
    return median, p99, commands


def _measure_async(fn: Callable[[], Awaitable[object]], calls: int) -> tuple[float, float, float]:
    async def run() -> tuple[list[float], int]:
        for _ in range(200):
            await fn()
        before = _redis_commands()
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            await fn()
            samples.append(time.perf_counter() - started)
        return samples, before

    samples, before = asyncio.run(run())
    commands = (_redis_commands() - before - 1) / calls
    median, p99 = _percentiles(samples)
    return median, p99, commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--write", action="store_true", help="record the table in bench/README.md")
    args = parser.parse_args()
    calls = max(100, min(args.calls, 200_000))

    started = _setup()
    try:
        from django.core.cache import cache
        from django.db import connection

        from apps.orgs.models import Organisation
        from apps.plans import limits, limits_async
        from apps.plans.catalogue import CATALOGUE
        from apps.plans.limit_decision import Admission, TokenBound
        from apps.plans.models import Plan, Subscription
        from pendra_console.aio import run_db

        # Limits no bench run can reach: every call takes the "allowed" path, as most requests do.
        unlimited = dict.fromkeys(("chat_rpm", "embeddings_rpm", "api_rpm", "chat_tpm"), 10**9)
        plan = Plan.objects.create(**{**CATALOGUE[0], "slug": "bench", "name": "Bench", **unlimited})
        org = Organisation.objects.create(slug="bench", name="Bench")
        Subscription.objects.create(org=org, plan=plan, since=org.created_at)
        org_id = org.pk

        bound = TokenBound(prompt=6, output=16)  # what a short chat request reserves
        admit_chat = functools.partial(limits.admit, org_id=org_id, kind="chat", streaming=False, bound=bound)
        admit_stream = functools.partial(limits.admit, org_id=org_id, kind="chat", streaming=True, bound=bound)
        raw = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
        settled = Admission(allowed=True, bucket="chat", detail="", retry_after=0, reserved=22)
        settle_chat = functools.partial(limits.settle, org_id=org_id, kind="chat", tokens=6, admission=settled)

        def admit_and_settle() -> None:
            limits.settle(org_id=org_id, kind="chat", tokens=6, admission=admit_chat())

        def admit_and_settle_stream() -> None:
            limits.settle(org_id=org_id, kind="chat", tokens=6, admission=admit_stream())

        async def hop_admit() -> None:
            await run_db(admit_chat)

        async def gateway_admit() -> None:
            await limits_async.admit(org_id=org_id, kind="chat", streaming=False, bound=bound)

        async def gateway_settle() -> None:
            await limits_async.settle(org_id=org_id, kind="chat", tokens=6, admission=settled)

        async def gateway_admit_stream() -> None:
            admission = await limits_async.admit(org_id=org_id, kind="chat", streaming=True, bound=bound)
            await limits_async.settle(org_id=org_id, kind="chat", tokens=6, admission=admission)

        async def hop_empty() -> None:
            await run_db(lambda: None)

        rows = [
            (
                "**gateway: limits_async.admit(), chat: what a /v1 request waits for**",
                _measure_async(gateway_admit, calls),
            ),
            ("gateway: limits_async.settle(), chat (after the response)", _measure_async(gateway_settle, calls)),
            ("gateway: admit() + settle(), streamed chat", _measure_async(gateway_admit_stream, calls)),
            ("admit() + settle(), chat, direct", _measure_sync(admit_and_settle, calls)),
            ("admit() + settle(), streamed chat, direct", _measure_sync(admit_and_settle_stream, calls)),
            ("admit() alone, chat, direct", _measure_sync(admit_chat, calls)),
            ("settle() alone, chat, direct (after the response)", _measure_sync(settle_chat, calls)),
            (
                "sync admit() through a thread hop (the gateway before limits_async)",
                _measure_async(hop_admit, calls),
            ),
            ("reference: empty thread hop", _measure_async(hop_empty, calls)),
            ("reference: one Redis PING", _measure_sync(raw.ping, calls)),
        ]
        database = connection.vendor
    finally:
        for server in started:
            server.stop()

    header = (
        f"`limits_bench.py`: {calls} calls per case after 200 warm-up calls; Redis and "
        f"{database} on loopback; Python {platform.python_version()}, {os.cpu_count()} CPUs.\n\n"
        "| case | median | p99 | Redis commands / call (an EVAL counts with its inner commands) |\n"
        "|---|---:|---:|---:|\n"
    )
    table = header + "".join(
        f"| {name} | {median * 1e6:.0f} µs | {p99 * 1e6:.0f} µs | {commands:.1f} |\n"
        for name, (median, p99, commands) in rows
    )
    print(table)
    if args.write:
        _write(table)


def _write(table: str) -> None:
    notes = (
        "\nThe gateway counts with `apps.plans.limits_async`: one `EVAL` (the minute's tokens, "
        "django-ratelimit's request counter under its own key and window, the stream slot) on the "
        "event loop, no thread. The synchronous core (`apps.plans.limits`, django-ratelimit's "
        "`get_usage`) serves the admin API and the embedded default: on the chat path it makes "
        "three Redis round trips, a streamed request two more. Plans come from process memory, "
        "read from the database at most once a second per org and process. `settle()` runs after "
        "the response is sent. Rerun on a quiet machine: other processes inflate p99 most.\n"
    )
    write_block(README, "limits_bench", f"## Rate-limit check (`bench/limits_bench.py`)\n\n{table}{notes}".rstrip("\n"))
    print(f"recorded in {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
