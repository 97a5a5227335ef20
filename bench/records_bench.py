"""Record reads at scale: the console's and the support desk's queries over a million request records.

One run, on a throwaway PostgreSQL (the tests' binaries, loopback only), or on the database
``--database-url`` names:

1. ``manage.py migrate`` and ``manage.py generate_records --count N --orgs 100`` (the same
   write path as the gateway, so the usage roll-up is filled as production fills it), then
   ``VACUUM ANALYZE``.
2. Each read is timed ``--iterations`` times in this process, the database round trips
   included (what the server spends, without the network to the browser):
   - support's lookup of a request by its ``X-Request-Id`` (ids drawn from the data);
   - the first page of the busiest org's request list, and a deep page (a cursor half-way
     through its history: keyset pagination makes depth free);
   - the busiest org's 30-day usage report, by day, by model, by key and by member;
   - the org dashboard, as the browser gets it: the whole page rendered by Django for its owner.
3. ``EXPLAIN (ANALYZE, BUFFERS)`` of every SQL statement each read runs, and whether any of them
   reads a record table without an index.

Usage: ``.venv/bin/python bench/records_bench.py [--count 1000000] [--orgs 100] [--iterations 200]
[--database-url postgres://... --skip-generate] [--write]`` (``make bench-records``). ``--write``
puts the tables into ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import write_block  # noqa: E402
from testing import servers  # noqa: E402

RECORD_TABLES = (
    "requestlog_requestrecord",
    "requestlog_usagerecord",
    "requestlog_usagerollup",
    "requestlog_requestrollup",
)
# Issue 12's targets; the explained lookup has none of its own (shown for what the page costs).
TARGETS_MS: dict[str, float | None] = {"lookup": 5, "explained": None, "list": 20, "report": 50, "dashboard": 100}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--database-url", help="use this PostgreSQL instead of a throwaway one")
    parser.add_argument("--skip-generate", action="store_true", help="the database already holds the records")
    parser.add_argument("--write", action="store_true", help="write the tables into bench/README.md")
    return parser.parse_args()


def setup_django(database_url: str) -> None:
    os.environ.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="pendra_console.settings",
        DEBUG="0",
        SECRET_KEY="records-bench-" + "x" * 40,
        ALLOWED_HOSTS="testserver,127.0.0.1",
        PENDRA_RECORD_HANDOFF="memory",
        PENDRA_LOG_LEVEL="WARNING",  # no access-log line per timed page
    )
    os.environ.pop("REDIS_URL", None)  # reads only: the embedded cache is enough
    import django

    django.setup()


def timed(call: Callable[[], Any], iterations: int) -> list[float]:
    call()  # warm: the first call pays for imports and for pages PostgreSQL has not read yet
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def explain(call: Callable[[], Any]) -> list[tuple[str, str]]:
    """Every statement ``call`` runs that touches a record table, with its plan as PostgreSQL ran it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        call()
    plans = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            if not any(table in sql for table in RECORD_TABLES) or not sql.lstrip().upper().startswith("SELECT"):
                continue
            # The captured text has its parameters already quoted in; EXPLAIN runs it as it was run.
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql)
            plans.append((sql, "\n".join(row[0] for row in cursor.fetchall())))
    return plans


def seq_scans(plan: str) -> list[str]:
    return [line.strip() for line in plan.splitlines() if "Seq Scan" in line and any(t in line for t in RECORD_TABLES)]


def main() -> None:
    args = parse_args()
    server = None
    url = args.database_url
    if url is None:
        server = servers.start_postgresql()
        if server is None:
            sys.exit("PostgreSQL binaries (initdb, pg_ctl) not found")
        url = server.url
    try:
        run(args, url)
    finally:
        if server is not None:
            server.stop()


def run(args: argparse.Namespace, url: str) -> None:
    setup_django(url)
    from django.core.management import call_command
    from django.db import connection

    from bench.records_reads import Reads

    call_command("migrate", verbosity=0)
    # Pages render with the production static storage, whose manifest collectstatic writes.
    call_command("collectstatic", interactive=False, verbosity=0)
    generation = ""
    if not args.skip_generate:
        started = time.monotonic()
        call_command("generate_records", count=args.count, orgs=args.orgs)
        generation = f"generated in {time.monotonic() - started:.0f} s"
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT count(*) FROM requestlog_requestrecord")
        records = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('requestlog_requestrecord'))")
        size = cursor.fetchone()[0]

    reads = Reads.prepare(iterations=args.iterations)
    rows, plans = [], []
    for name, kind, call in reads.calls():
        samples = timed(call, args.iterations)
        median, p99 = statistics.median(samples), percentile(samples, 0.99)
        target = TARGETS_MS[kind]
        if target is None:
            rows.append(f"| {name} | {median:.2f} | {p99:.2f} | | |")
        else:
            verdict = "yes" if p99 < target else ("median only" if median < target else "**no**")
            rows.append(f"| {name} | {median:.2f} | {p99:.2f} | < {target:g} | {verdict} |")
        for sql, plan in explain(call):
            plans.append((name, sql, plan, seq_scans(plan)))
        print(rows[-1], flush=True)

    load = os.getloadavg()
    scans = [f"{name}: {line}" for name, _, _, lines in plans for line in lines]
    lines = [
        f"{records:,} request records ({size}) across {args.orgs} organisations on PostgreSQL "
        f"{connection.pg_version // 10000}; the busiest org holds {reads.org_records:,} of them. "
        f"{generation + '. ' if generation else ''}Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f} / {load[1]:.1f}. {args.iterations} timed calls each, after one warm-up call.",
        "",
        "| read | median ms | p99 ms | target ms | p99 within target |",
        "|---|---:|---:|---:|---|",
        *rows,
        "",
        "Statements that read a record table without an index: " + ("; ".join(scans) if scans else "none."),
        "",
        "<details><summary>Query plans (EXPLAIN ANALYZE, BUFFERS)</summary>",
        "",
    ]
    for name, sql, plan, _ in plans:
        lines += [f"**{name}**", "", "```sql", sql[:1500], "```", "", "```", plan, "```", ""]
    lines.append("</details>")
    table = "\n".join(lines)
    print("\n".join(lines[: 8 + len(rows)]))
    if scans:
        print("\n".join(scans))
    if args.write:
        write_block(
            ROOT / "bench" / "README.md",
            "records-bench",
            table,
            heading="## Record reads at a million rows (`bench/records_bench.py`)",
        )


if __name__ == "__main__":
    main()
