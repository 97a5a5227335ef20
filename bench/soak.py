"""``make soak``: the whole system under a bounded mixed load with faults, then the books checked.

Starts, all on loopback: throwaway PostgreSQL and Redis, two web processes (uvicorn), a
Celery worker and beat, the ``record_writer`` (records go through the Redis Stream, the
durable hand-off) and two simulated GPU workers. Then, for ``--duration`` seconds,
``--concurrency`` clients send the random mix of ``bench/soak_load.py``.

At the end, once the record backlog is written, it checks and prints:

- every answered request id has exactly one request record;
- usage rows are exactly the successes (plus abandoned streams, billed for what they got);
- no response and no record is a 500;
- no process's resident memory grew by 10 % or more between the end of the warm-up
  (a fifth of the run) and the end; the growth in the run's first and second halves
  is shown apart, so warm-up (growth that stops) and a leak (growth that goes on) differ.

Usage: ``.venv/bin/python bench/soak.py [--duration 600] [--concurrency 12] [--write]``;
exits 1 if a check fails. ``--write`` puts the summary table into ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_bench import BIG_PLAN  # noqa: E402
from bench.procs import write_block  # noqa: E402
from bench.soak_load import Load  # noqa: E402
from pendra_console.serving import uvicorn_command  # noqa: E402
from testing import servers  # noqa: E402

BOOKS = (
    "import json; from django.db.models import Count; "
    "from apps.requestlog.models import RequestRecord, UsageRecord; "
    "records = dict(RequestRecord.objects.values_list('request_id').annotate(n=Count('id'))); "
    "odd = {r: [s, e[:100], st] for r, s, e, st in "
    "RequestRecord.objects.exclude(status__lt=300).values_list('request_id', 'status', 'error', 'streamed')}; "
    "usage = list(UsageRecord.objects.values_list('request_id', flat=True)); "
    "errors = RequestRecord.objects.filter(status=500).count(); "
    "print(json.dumps({'records': records, 'usage': usage, 'record_500s': errors, 'odd': odd}))"
)


def manage(env: dict[str, str], *args: str, capture: bool = False) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, check=True, capture_output=capture, text=True
    )
    return done.stdout if capture else ""


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def drain(url: str, timeout: float = 120) -> int | None:
    """Wait until /readyz reports no record left to write (the stream's and the process's own)."""
    deadline = time.monotonic() + timeout
    backlog = None
    while time.monotonic() < deadline:
        try:
            backlog = httpx.get(f"{url}/readyz", timeout=5).json().get("records_backlog")
        except (httpx.HTTPError, ValueError):
            backlog = None
        if backlog == 0:
            time.sleep(1)  # the writer acknowledges after its commit; the other web process's thread too
            return 0
        time.sleep(0.5)
    return backlog


def start(
    processes: dict[str, subprocess.Popen[bytes]], name: str, command: list[str], env: dict[str, str], log: Any
) -> None:
    processes[name] = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=float(os.environ.get("SOAK_SECONDS", "600")))
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--write", action="store_true", help="write the summary table into bench/README.md")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="pendra-soak-")
    postgres, redis = servers.start_postgresql(), servers.start_redis()
    if postgres is None or redis is None:
        sys.exit("PostgreSQL and redis-server binaries are needed")
    env = {
        **os.environ,
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis.url,
        "PENDRA_RECORD_HANDOFF": "redis",
        "SECRET_KEY": "soak-" + os.urandom(16).hex(),
        "DEBUG": "0",
        "PENDRA_ENV_FILE": "",
        "PENDRA_SSL_REDIRECT": "0",
        "PENDRA_ALLOW_PRIVATE_WORKER_URLS": "1",
        "PENDRA_FORWARD_SIM_HEADERS": "1",
        "PENDRA_VAR_DIR": workdir,
        "PENDRA_LOG_LEVEL": "ERROR",
        "PENDRA_HEALTH_INTERVAL": "5",
        # Small enough that an oversized body is cheap to send.
        "PENDRA_MAX_BODY_BYTES": str(1024 * 1024),
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    log = open(Path(workdir, "processes.log"), "wb")  # noqa: SIM115 (closed in finally)
    samples: list[tuple[float, dict[str, int]]] = []
    try:
        manage(env, "migrate", "-v0")
        manage(env, "collectstatic", "--noinput", "-v0")
        seeded = json.loads(manage(env, "seed_demo", "--json", capture=True))
        org, key = seeded["org"], seeded["keys"]["owner"]
        # A plan the load cannot use up: limits are checked, hardly anything is refused.
        manage(env, "shell", "-v", "0", "-c", BIG_PLAN.format(org=org))
        sims = []
        for name in ("sim-a", "sim-b"):
            port = servers.free_port()
            start(
                processes,
                name,
                [sys.executable, "manage.py", "simulate_worker", "--port", str(port), "--name", name],
                env,
                log,
            )
            sims.append(f"http://127.0.0.1:{port}")
            wait_http(f"{sims[-1]}/health")
            manage(env, "register_worker", name, sims[-1], "--probe", capture=True)
        celery = [sys.executable, "-m", "celery", "-A", "pendra_console"]
        start(
            processes,
            "celery worker",
            [*celery, "worker", "--loglevel", "WARNING", "--concurrency", "1", "--pool", "solo"],
            env,
            log,
        )
        start(
            processes,
            "celery beat",
            [*celery, "beat", "--loglevel", "WARNING", "--schedule", f"{workdir}/beat-schedule"],
            env,
            log,
        )
        start(processes, "record writer", [sys.executable, "manage.py", "record_writer"], env, log)
        urls = []
        for index in (1, 2):
            port = servers.free_port()
            start(
                processes, f"web {index}", uvicorn_command(host="127.0.0.1", port=port, log_level="warning"), env, log
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_http(f"{url}/healthz")
        created = httpx.post(
            f"{urls[0]}/api/v1/orgs/{org}/keys/",
            json={"name": "soak rotation"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        created.raise_for_status()

        load = Load(urls, key, org, created.json()["id"], sims)
        started = time.monotonic()

        async def run_and_sample() -> None:
            runner = asyncio.ensure_future(load.run(args.duration, args.concurrency))
            while not runner.done():
                samples.append((time.monotonic() - started, {n: rss_kib(p.pid) for n, p in processes.items()}))
                await asyncio.wait({runner}, timeout=min(10.0, args.duration / 20))
            await runner

        asyncio.run(run_and_sample())
        samples.append((time.monotonic() - started, {n: rss_kib(p.pid) for n, p in processes.items()}))
        elapsed = time.monotonic() - started
        backlog_left = drain(urls[0])
        books = manage(env, "shell", "-v", "0", "-c", BOOKS, capture=True)
        exits = {name: process.poll() for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        if os.environ.get("PENDRA_SOAK_KEEP_LOG"):
            shutil.copy(Path(workdir, "processes.log"), os.environ["PENDRA_SOAK_KEEP_LOG"])
        postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    data = json.loads(books.strip().splitlines()[-1])
    died = sorted(name for name, code in exits.items() if code is not None)
    return report(args, load, data, samples, elapsed, backlog_left, died)


def memory_at(samples: list[tuple[float, dict[str, int]]], moment: float) -> dict[str, int]:
    """The first sample taken at or after ``moment`` seconds into the load."""
    return next((rss for at, rss in samples if at >= moment), samples[-1][1])


def report(
    args: argparse.Namespace,
    load: Load,
    data: dict[str, Any],
    samples: list[tuple[float, dict[str, int]]],
    elapsed: float,
    backlog_left: int | None,
    died: list[str],
) -> int:
    tally = load.tally
    records: dict[str, int] = data["records"]
    usage = Counter(data["usage"])
    answered = set(tally.answered)
    missing = sorted(answered - set(records))
    doubled = sorted(request_id for request_id in answered if records.get(request_id, 0) > 1)
    billed = set(usage)
    unbilled = sorted(tally.successes - billed)
    overbilled = sorted(billed - tally.successes - tally.abandoned)
    billed_twice = sorted(request_id for request_id, count in usage.items() if count > 1)
    warm, middle, final = memory_at(samples, elapsed / 5), memory_at(samples, elapsed / 2), samples[-1][1]

    def growth(start: dict[str, int], end: dict[str, int], name: str) -> float:
        return (end[name] - start[name]) / start[name] * 100 if start.get(name) else 0.0

    checks = {
        "every answered request has exactly one record": not missing and not doubled,
        "usage rows = successes (+ abandoned streams billed)": not unbilled and not overbilled and not billed_twice,
        "no 500 answered or recorded": tally.statuses[500] == 0 and data["record_500s"] == 0,
        "memory growth < 10 % per process": all(growth(warm, final, name) < 10 for name in final),
        "record backlog written": backlog_left == 0,
        "no process died": not died,
    }
    statuses = ", ".join(f"{code}: {count}" for code, count in sorted(tally.statuses.items()))
    lines = [
        f"Run on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {elapsed:.0f} s of load, "
        f"{args.concurrency} clients, two web processes (records through the Redis Stream), the record "
        f"writer, Celery worker and beat, two simulators, PostgreSQL and Redis, all on loopback; "
        f"load average (1/5/15 min) at the end: {' / '.join(f'{value:.1f}' for value in os.getloadavg())}.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| requests answered | {len(answered)} |",
        f"| answers by status | {statuses} |",
        f"| requests without an answer (client-side errors) | {sum(tally.errors.values())} |",
        f"| successes | {len(tally.successes)} |",
        f"| streams abandoned by the client (499) | {len(tally.abandoned)} |",
        f"| key rotations | {load.rotations} |",
        f"| request records for answered ids | {sum(records.get(rid, 0) for rid in answered)} |",
        f"| answered ids without a record / with more than one | {len(missing)} / {len(doubled)} |",
        f"| usage rows | {sum(usage.values())} |",
        f"| successes not billed / billed without success or abandonment / billed twice | "
        f"{len(unbilled)} / {len(overbilled)} / {len(billed_twice)} |",
        f"| 500s answered / recorded | {tally.statuses[500]} / {data['record_500s']} |",
        *(
            f"| memory, {name}: warm-up end → middle → end (MiB) | {warm[name] / 1024:.0f} → "
            f"{middle[name] / 1024:.0f} → {final[name] / 1024:.0f} ({growth(warm, final, name):+.1f} %; "
            f"{growth(warm, middle, name):+.1f} % then {growth(middle, final, name):+.1f} %) |"
            for name in final
        ),
        "",
        *(f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in checks.items()),
    ]
    table = "\n".join(lines)
    print(table)
    if missing or unbilled or overbilled or died:
        print("examples:", {"missing": missing[:5], "unbilled": unbilled[:5], "overbilled": overbilled[:5]})
        print("their records:", {rid: data["odd"].get(rid) for rid in overbilled[:5] + unbilled[:5]})
        print("died:", died)
    if tally.errors:
        print("client-side errors:", dict(tally.errors))
    if args.write:
        write_block(ROOT / "bench" / "README.md", "soak", table, heading="## Soak (`make soak`, `bench/soak.py`)")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
