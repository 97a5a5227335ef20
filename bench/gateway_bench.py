"""What the /v1 gateway adds to a request: the same load straight to an upstream and through Pendra.

One run, all on loopback, production-shaped:

- throwaway PostgreSQL and Redis (the test suite's starters, ``testing/servers.py``);
- a static upstream: nginx answering a fixed chat completion (it costs almost no CPU,
  so what is measured is the gateway, not a simulator);
- the gateway: ``uvicorn pendra_console.asgi:application --workers N`` with key auth,
  plan limits (Redis), routing, request records (PostgreSQL) all on;
- load: wrk, a fixed number of connections, first straight to nginx, then through the
  gateway; the difference in latency at the same concurrency is what Pendra adds.

Usage: ``.venv/bin/python bench/gateway_bench.py [--duration 10] [--connections 32]
[--workers 2] [--write]``. Needs ``wrk`` and ``nginx`` (Debian packages). ``--write`` puts the
result table into ``bench/README.md``. Traffic stays on 127.0.0.1 and every step ends by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis as redis_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import write_block  # noqa: E402
from pendra_console.serving import uvicorn_command  # noqa: E402
from testing import servers  # noqa: E402

COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": "bench-chat",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}
MODELS = {"object": "list", "data": [{"id": "bench-chat", "object": "model"}]}
# A plan whose limits the load cannot reach, so every check runs and nothing is refused;
# "{org}" is the seeded org's slug. For `manage.py shell -c`.
BIG_PLAN = (
    "from apps.plans.models import Plan; from apps.plans.services import subscription_change; "
    "from apps.orgs.models import Organisation; "
    "big = dict(chat_rpm=10**9, embeddings_rpm=10**9, images_rpm=10**9, audio_rpm=10**9, api_rpm=10**9, "
    "chat_tpm=2*10**9, embeddings_tpm=2*10**9, concurrent_streams=10**6, max_keys=10**6); "
    "plan, _ = Plan.objects.update_or_create(slug='bench', defaults=dict(name='Bench', **big)); "
    "subscription_change(org=Organisation.objects.get(slug='{org}'), plan=plan, actor=None)"
)
BODY = json.dumps({"model": "bench-chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 1})


def bench_env(
    *, database_url: str, redis_url: str, workdir: str | None = None, conn_max_age: int = 60
) -> dict[str, str]:
    """The environment every bench runs its gateway and ``manage.py`` with: production settings
    (DEBUG off, no env file) on the bench's throwaway PostgreSQL and Redis, loopback workers allowed,
    warnings only in the log, and database connections kept for ``conn_max_age`` seconds."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "bench-" + os.urandom(16).hex(),
        "DEBUG": "0",
        "PENDRA_ENV_FILE": "",
        "PENDRA_SSL_REDIRECT": "0",
        "PENDRA_ALLOW_PRIVATE_WORKER_URLS": "1",
        "PENDRA_LOG_LEVEL": "WARNING",
        "PENDRA_DB_CONN_MAX_AGE": str(conn_max_age),
    }
    if workdir is not None:
        env["PENDRA_VAR_DIR"] = workdir
    return env


def nginx_config(port: int, workdir: str) -> str:
    def literal(payload: object) -> str:
        return json.dumps(json.dumps(payload))[1:-1].replace("'", "\\'")

    return f"""
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location = /health {{ return 200 '{{"status": "ok"}}'; }}
        location = /v1/models {{ return 200 '{literal(MODELS)}'; }}
        location / {{ return 200 '{literal(COMPLETION)}'; }}
    }}
}}
"""


def run_wrk(url: str, *, duration: int, connections: int, headers: dict[str, str], workdir: str) -> dict[str, float]:
    script = Path(workdir, "post.lua")
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(BODY)}"]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    return parse_wrk(output)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> dict[str, float]:
    result: dict[str, float] = {}
    for percentile, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)", output, re.MULTILINE):
        result[f"p{percentile}"] = _ms(value, unit)
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    result["requests"] = float(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = float(errors[1]) if errors else 0.0
    return result


def written_by(client: redis_client.Redis, timeout: float = 60) -> None:
    """Wait until the record writer has emptied the stream, then for the in-process writers' tick."""
    deadline = time.monotonic() + timeout
    while client.xlen("pendra:records") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback only)
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn processes")
    parser.add_argument("--write", action="store_true", help="write the table into bench/README.md")
    parser.add_argument("--handoff-rounds", type=int, default=3, help="alternated runs per records' hand-off")
    parser.add_argument(
        "--profile", metavar="FILE", help="with --workers 1: sample the gateway with py-spy into FILE (speedscope)"
    )
    args = parser.parse_args()
    # Here, not at the top: ops_bench imports this module.
    from bench.ops_bench import group_cpu_seconds

    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is needed: apt-get install -y {tool if tool == 'wrk' else 'nginx-light'}")

    workdir = tempfile.mkdtemp(prefix="pendra-bench-")
    postgres, redis = servers.start_postgresql(), servers.start_redis()
    if postgres is None or redis is None:
        sys.exit("PostgreSQL and redis-server binaries are needed")
    processes: list[subprocess.Popen[bytes]] = []
    env = bench_env(database_url=postgres.url, redis_url=redis.url, workdir=workdir, conn_max_age=60)
    manage = [sys.executable, str(ROOT / "manage.py")]
    try:
        nginx_port, gateway_port = servers.free_port(), servers.free_port()
        Path(workdir, "nginx.conf").write_text(nginx_config(nginx_port, workdir))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        processes.append(subprocess.Popen([nginx, "-c", f"{workdir}/nginx.conf", "-g", "daemon off;"]))
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
        subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], env=env, check=True)
        seeded = json.loads(
            subprocess.run([*manage, "seed_demo", "--json"], env=env, check=True, capture_output=True, text=True).stdout
        )
        # A plan whose limits the load cannot reach: the checks run, nothing is refused.
        subprocess.run(
            [
                *manage,
                "shell",
                "-c",
                BIG_PLAN.format(org=seeded["org"]),
            ],
            env=env,
            check=True,
        )
        wait_http(f"http://127.0.0.1:{nginx_port}/health")
        subprocess.run(
            [
                *manage,
                "register_worker",
                "bench-nginx",
                f"http://127.0.0.1:{nginx_port}",
                "--models",
                "bench-chat:chat",
                "--probe",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        # With REDIS_URL records go through the Redis Stream (the durable hand-off): a writer empties it.
        writer = subprocess.Popen([*manage, "record_writer"], env=env, cwd=ROOT, start_new_session=True)
        processes.append(writer)

        def start_gateway(handoff: str) -> subprocess.Popen[bytes]:
            gateway = subprocess.Popen(
                uvicorn_command(host="127.0.0.1", port=gateway_port, workers=args.workers, log_level="warning"),
                env={**env, "PENDRA_RECORD_HANDOFF": handoff},
                cwd=ROOT,
                start_new_session=True,  # its process group: the CPU of all its processes is counted
            )
            wait_http(f"http://127.0.0.1:{gateway_port}/healthz")
            return gateway

        processes.append(start_gateway("redis"))
        key = seeded["keys"]["owner"]
        auth = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

        def load(port: int, connections: int, duration: int = args.duration) -> dict[str, float]:
            return run_wrk(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                duration=duration,
                connections=connections,
                headers=auth,
                workdir=workdir,
            )

        load(gateway_port, args.connections, duration=2)  # warm the connections and the caches first

        # Latency on one connection: what the gateway adds to a request when nothing queues.
        direct_one, through_one = load(nginx_port, 1), load(gateway_port, 1)
        # Throughput with many connections: how much the gateway serves when saturated.
        direct = load(nginx_port, args.connections)
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--format",
                    "speedscope",
                    "-o",
                    args.profile,
                    "-d",
                    str(args.duration),
                    "-p",
                    str(processes[-1].pid),
                ]
            )
        # wrk's connections land unevenly on uvicorn's processes, so throughput varies run to
        # run: three runs, the median reported and the range shown.
        runs = sorted((load(gateway_port, args.connections) for _ in range(3)), key=lambda result: result["rps"])
        through = runs[1]
        if profiler is not None:
            profiler.wait(timeout=60)
        # Records through the durable hand-off (Redis Stream + record_writer) against records kept
        # in process memory: same load, the gateway restarted for each run, runs alternated.
        by_handoff: dict[str, list[dict[str, float]]] = {"redis": [], "memory": []}
        stream_client = redis_client.Redis.from_url(redis.url)
        loads: list[float] = []
        for handoff in ("memory", "redis") * args.handoff_rounds:
            gateway = processes.pop()
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=30)
            processes.append(start_gateway(handoff))
            load(gateway_port, args.connections, duration=2)
            written_by(stream_client)
            loads.append(os.getloadavg()[0])
            cpu = group_cpu_seconds(processes[-1].pid) + group_cpu_seconds(writer.pid)
            result = load(gateway_port, args.connections)
            written_by(stream_client)  # the records' writing is part of the request's cost
            cpu = group_cpu_seconds(processes[-1].pid) + group_cpu_seconds(writer.pid) - cpu
            result["cpu_us"] = cpu / max(result["requests"], 1) * 1e6
            by_handoff[handoff].append(result)
        time.sleep(2.0)  # let the record writers flush
        records = subprocess.run(
            [
                *manage,
                "shell",
                "-v",
                "0",
                "-c",
                "from apps.requestlog.models import RequestRecord, UsageRecord; "
                "print(RequestRecord.objects.filter(route='/v1/chat/completions').count(), "
                "UsageRecord.objects.count())",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    def row(label: str, result: dict[str, float]) -> str:
        return (
            f"| {label} | {result['rps']:.0f} | {result['p50']:.2f} | {result['p99']:.2f} | {result['non_2xx']:.0f} |"
        )

    run_rates = ", ".join(f"{result['rps']:.0f}" for result in runs)

    def median(results: list[dict[str, float]]) -> dict[str, float]:
        return sorted(results, key=lambda result: result["rps"])[len(results) // 2]

    durable, in_memory = median(by_handoff["redis"]), median(by_handoff["memory"])
    change = (durable["rps"] / in_memory["rps"] - 1) * 100

    def cpu_median(handoff: str) -> float:
        return statistics.median(result["cpu_us"] for result in by_handoff[handoff])

    header = ["| path | requests/s | p50 ms | p99 ms | non-2xx |", "|---|---:|---:|---:|---:|"]
    table = "\n".join(
        [
            f"Run on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({platform.machine()}), "
            f"{args.duration} s per row, gateway: {args.workers} uvicorn processes (httptools, uvloop), "
            "PostgreSQL and Redis on the same machine, wrk -t1.",
            "",
            "Latency, one connection (nothing queues):",
            "",
            *header,
            row("straight to the upstream (nginx)", direct_one),
            row("through the gateway (auth, limits, routing, records)", through_one),
            f"| **added by the gateway** | | **{through_one['p50'] - direct_one['p50']:.2f}** "
            f"| **{through_one['p99'] - direct_one['p99']:.2f}** | |",
            "",
            f"Throughput, {args.connections} connections (saturated; latency here is mostly queueing):",
            "",
            *header,
            row("straight to the upstream (nginx)", direct),
            row("through the gateway (auth, limits, routing, records), median of 3 runs", through),
            "",
            f"The three gateway runs: {run_rates} requests/s.",
            "",
            "Records' durable hand-off (Redis Stream, written by `manage.py record_writer`; the default with "
            "REDIS_URL) against records kept in process memory (`PENDRA_RECORD_HANDOFF=memory`), "
            f"same load, runs alternated ({args.handoff_rounds} each), "
            f"load average (1 min) at the runs: {', '.join(f'{value:.1f}' for value in loads)}:",
            "",
            *header,
            row(f"records via the Redis Stream, median of {len(by_handoff['redis'])}", durable),
            row(f"records in process memory, median of {len(by_handoff['memory'])}", in_memory),
            f"| **throughput with the hand-off vs without** | **{change:+.1f} %** | | | |",
            "",
            "CPU per request of the gateway's processes plus the record writer's (records written "
            f"included), median: {cpu_median('redis'):.0f} µs with the hand-off, {cpu_median('memory'):.0f} µs "
            f"without ({(cpu_median('redis') / cpu_median('memory') - 1) * 100:+.1f} %). It moves far less than "
            "requests/s with load from elsewhere on a shared machine.",
            "",
            "Runs, in order (requests/s, CPU µs per request): "
            + ", ".join(
                f"{name} {result['rps']:.0f} ({result['cpu_us']:.0f})"
                for pair in zip(by_handoff["memory"], by_handoff["redis"], strict=True)
                for name, result in zip(("memory", "redis"), pair, strict=True)
            )
            + " requests/s.",
            "",
            f"Request records written for the gateway runs (warm-up included): {records[0]}; "
            f"usage records: {records[1]} (requests cut off when wrk stops are recorded, not billed).",
        ]
    )
    print(table)
    if args.write:
        write_block(
            ROOT / "bench" / "README.md",
            "gateway-bench",
            table,
            heading="## Gateway overhead (`bench/gateway_bench.py`)",
        )


if __name__ == "__main__":
    main()
