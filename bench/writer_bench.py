"""The record path outside the web process: the writer's and PostgreSQL's CPU per record.

Two checkouts (A and B; one may be this one) against one throwaway PostgreSQL (a database
each, migrated by its own checkout) and Redis, in turns A, B, A, B, ... Each round is a
fresh process of that checkout's code which:

1. empties the record and roll-up tables and the stream;
2. builds ``--count`` realistic records (chat successes with usage, one in ten a refusal
   or a failure without) with ``services.record_request(hand_off=True)``, the web side's
   own function, and hands them to the stream with ``handoff.encode`` (its CPU is timed:
   that is the web process's share of the stream format);
3. runs ``handoff.write_pass`` until the stream is empty, timing this process's CPU and
   the CPU of its PostgreSQL backend (``pg_backend_pid()``, from ``/proc``) and of the
   whole PostgreSQL server (WAL writer, checkpointer and autovacuum included).

Usage: ``.venv/bin/python bench/writer_bench.py TREE_A TREE_B [--count 20000] [--rounds 4]
[--batch 500] [--batch-b N] [--labels before,after]``. Both checkouts run on this virtualenv's Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHILD = "--child" in sys.argv
if not CHILD:  # a round runs the code of the checkout it was started in (PYTHONPATH), not this one
    sys.path.insert(0, str(ROOT))

from bench.procs import tree_cpu_seconds  # noqa: E402

TABLES = "requestlog_requestrecord, requestlog_usagerecord, requestlog_requestrollup, requestlog_usagerollup"
FIGURES = ("encode_us", "writer_us", "backend_us", "postgres_us")


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(count: int, batch: int, postmaster: int) -> dict[str, float]:
    """One round, in the checkout this process was started in."""
    import django

    django.setup()
    import uuid
    from datetime import timedelta
    from decimal import Decimal

    from django.db import connection
    from django.utils import timezone

    from apps.requestlog import handoff, services

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLES}")
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    redis = handoff.client()
    redis.delete(handoff.STREAM)
    handoff.ensure_group(redis)
    start = timezone.now()
    workers = [str(uuid.uuid4()) for _ in range(4)]
    built = []
    for n in range(count):
        org, key = 1 + n % 10, 1 + n % 50
        worker = workers[n % 4]
        ok = n % 10 != 0
        rows = services.record_request(
            uid=uuid.uuid4().hex,
            request_id=f"req_{uuid.uuid4().hex[:24]}",
            route="/v1/chat/completions",
            method="POST",
            status=200 if ok else 429,
            latency_ms=12.5 + n % 7,
            org_id=org,
            api_key_id=key,
            user_id=100 + n % 20,
            model=f"bench-chat-{n % 3}",
            worker_id=worker if ok else None,
            worker_name=f"worker-{n % 4}" if ok else "",
            attempts=1 if ok else 0,
            streamed=n % 3 == 0,
            upstream_latency_ms=10.25 if ok else None,
            ttfb_ms=4.5 if ok else None,
            usage=services.TokenUsage(prompt_tokens=12, completion_tokens=30 + n % 40, total_tokens=42 + n % 40)
            if ok
            else None,
            billed_units=1 if ok else None,
            cost=Decimal("0.0000123400") if ok else Decimal(0),
            error="" if ok else "rate limit reached for requests",
            key_public_id=f"pk_{key:08d}",
            limit_hit=None if ok else services.LimitHit(bucket="rpm", plan="Free", limit="60/min", reset_s=30),
            worker_trail=[{"worker_id": worker, "worker": f"worker-{n % 4}", "result": "ok"}] if ok else [],
            created_at=start + timedelta(milliseconds=n),
            hand_off=True,
        )
        built.append((rows.record, rows.usage))
    encode_cpu = time.process_time()
    encoded = [handoff.encode(record, usage) for record, usage in built]
    encode_cpu = time.process_time() - encode_cpu
    with redis.pipeline(transaction=False) as pipe:
        for entry in encoded:
            pipe.xadd(handoff.STREAM, {handoff.FIELD: entry})
        pipe.execute()
    consumer = handoff.consumer_name()
    handoff.write_pass(consumer, batch=1, recover=False)  # warm: imports, prepared adapters
    written = 1
    cpu, backend_cpu, postgres_cpu = time.process_time(), _cpu_of(backend), tree_cpu_seconds([postmaster])
    while taken := handoff.write_pass(consumer, batch=batch, recover=False):
        written += taken
    cpu = time.process_time() - cpu
    backend_cpu = _cpu_of(backend) - backend_cpu
    postgres_cpu = tree_cpu_seconds([postmaster]) - postgres_cpu
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM requestlog_requestrecord")
        stored = cursor.fetchone()[0]
    if written != count or stored != count:
        raise SystemExit(f"wrote {written} entries, {stored} rows, of {count}")
    measured = count - 1
    return {
        "encode_us": encode_cpu / count * 1e6,
        "writer_us": cpu / measured * 1e6,
        "backend_us": backend_cpu / measured * 1e6,
        "postgres_us": postgres_cpu / measured * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree_a", type=Path, nargs="?")
    parser.add_argument("tree_b", type=Path, nargs="?")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batch-b", type=int, default=None, help="B's batch, when it differs from A's")
    parser.add_argument("--labels", default="A,B")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)  # the postmaster's pid
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.count, args.batch, args.child)))
        return
    if args.tree_a is None or args.tree_b is None:
        parser.error("two checkouts are needed (one may be .)")
    import psycopg

    from bench.gateway_bench import bench_env
    from bench.procs import postgres_postmaster
    from testing import servers

    postgres, redis = servers.start_postgresql(), servers.start_redis()
    if postgres is None or redis is None:
        sys.exit("PostgreSQL and redis-server binaries are needed")
    var_dir = tempfile.mkdtemp(prefix="pendra-writer-bench-")
    try:
        env = bench_env(database_url=postgres.url, redis_url=redis.url, workdir=var_dir)
        env["DJANGO_SETTINGS_MODULE"] = "pendra_console.settings"
        trees = [args.tree_a.resolve(), args.tree_b.resolve()]
        envs = []
        with psycopg.connect(postgres.url, autocommit=True) as connection:
            for index, tree in enumerate(trees):  # a database each: the versions' schemas may differ
                connection.execute(f"CREATE DATABASE wb{index}")
                envs.append({**env, "DATABASE_URL": postgres.url.rsplit("/", 1)[0] + f"/wb{index}"})
                envs[-1]["PYTHONPATH"] = str(tree)
                subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=tree, env=envs[-1], check=True)
        postmaster = postgres_postmaster(postgres.workdir)
        labels = args.labels.split(",")
        results: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
        loads = [os.getloadavg()[0]]
        for round_ in range(args.rounds):
            for label, tree, tree_env in zip(labels, trees, envs, strict=True):
                command = [sys.executable, str(ROOT / "bench" / "writer_bench.py"), "--child", str(postmaster)]
                batch = args.batch_b if label == labels[1] and args.batch_b else args.batch
                command += ["--count", str(args.count), "--batch", str(batch)]
                done = subprocess.run(
                    command, cwd=tree, env=tree_env, check=True, capture_output=True, text=True
                )
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                results[label].append(figures)
                print(f"round {round_ + 1} {label}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
            loads.append(os.getloadavg()[0])
        print(report(results, args, loads))
    finally:
        postgres.stop()
        redis.stop()
        shutil.rmtree(var_dir, ignore_errors=True)


def report(results: dict[str, list[dict[str, float]]], args: Any, loads: list[float]) -> str:
    lines = [
        f"{args.rounds} interleaved rounds of {args.count} records, batches of {args.batch}; "
        f"load average (1 min) through the run: {' → '.join(f'{load:.1f}' for load in loads)}. "
        "CPU per record, µs, median (runs):",
        "",
        "| version | encode (web side) | writer | its PostgreSQL backend | whole PostgreSQL server |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, runs in results.items():
        cells = []
        for figure in FIGURES:
            values = [run[figure] for run in runs]
            cells.append(f"{statistics.median(values):.1f} ({', '.join(f'{v:.0f}' for v in values)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
