"""Two versions of the gateway at a low, steady request rate, in turns: what does a quiet process cost?

``ab_gateway.py`` saturates the process, where work done once a second (the caches' reloads
before their epochs, a publisher's tick) is a few µs per request and lost in the spread. Here
one client sends ``--rate`` chat requests a second for ``--duration`` seconds, and the figure
is the gateway process group's CPU per second of wall time (and per request), medians over
alternating runs. Same set-up as ``ab_gateway.py`` (its ``Version``: a checkout, its own
database and Redis db, seeded once; nginx's canned answer upstream).

Usage::

    .venv/bin/python bench/ab_low_rate.py /tmp/before . [--rounds 3] [--duration 15] [--rate 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ab_gateway import Version  # noqa: E402
from bench.canned import WORKLOADS, nginx_config  # noqa: E402
from bench.gateway_bench import bench_env, wait_http  # noqa: E402
from bench.ops_bench import group_cpu_seconds  # noqa: E402
from pendra_console.serving import uvicorn_command  # noqa: E402
from testing import servers  # noqa: E402


def run(version: Version, *, duration: float, rate: float) -> tuple[float, float]:
    """(ms of CPU per second, µs of CPU per request) of one uvicorn process at ``rate`` requests/s."""
    port = servers.free_port()
    command = uvicorn_command(host="127.0.0.1", port=port, workers=1, log_level="warning")
    server = subprocess.Popen(command, cwd=version.tree, env=version.env, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        with httpx.Client(headers={"Authorization": f"Bearer {version.key}"}, timeout=30) as http:
            for _ in range(20):  # warm: keys, plan, fleet, connections
                http.post(url, json=WORKLOADS["chat"])
            time.sleep(1.5)  # past the caches' first second
            before, started, sent = group_cpu_seconds(server.pid), time.monotonic(), 0
            while time.monotonic() - started < duration:
                assert http.post(url, json=WORKLOADS["chat"]).status_code == 200
                sent += 1
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
            spent, elapsed = group_cpu_seconds(server.pid) - before, time.monotonic() - started
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return spent / elapsed * 1e3, spent / sent * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree_a", type=Path)
    parser.add_argument("tree_b", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--labels", default="A,B")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="pendra-ab-low-")
    postgres, redis = servers.start_postgresql(), servers.start_redis()
    if postgres is None or redis is None:
        sys.exit("PostgreSQL and redis-server binaries are needed")
    nginx_process = None
    try:
        with psycopg.connect(postgres.url, autocommit=True) as connection:
            for index in (0, 1):
                connection.execute(f"CREATE DATABASE ab{index}")
        base_env = bench_env(database_url=postgres.url, redis_url=redis.url, conn_max_age=60)
        labels = args.labels.split(",")
        versions = [
            Version(labels[index], tree, index, base_env, {}) for index, tree in enumerate((args.tree_a, args.tree_b))
        ]
        nginx_port, sse_port = servers.free_port(), servers.free_port()
        Path(workdir, "nginx.conf").write_text(nginx_config(nginx_port, sse_port, workdir))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        nginx_process = subprocess.Popen([nginx, "-c", f"{workdir}/nginx.conf", "-g", "daemon off;"])
        wait_http(f"http://127.0.0.1:{nginx_port}/health")
        for version in versions:
            version.prepare(f"http://127.0.0.1:{nginx_port}", f"http://127.0.0.1:{sse_port}")
        load_before = os.getloadavg()[0]
        results: dict[str, list[tuple[float, float]]] = {version.label: [] for version in versions}
        for _ in range(args.rounds):
            for version in versions:
                results[version.label].append(run(version, duration=args.duration, rate=args.rate))
                print(f"{version.label}: %.1f ms CPU/s, %.0f µs CPU/request" % results[version.label][-1], flush=True)
        load_after = os.getloadavg()[0]
    finally:
        if nginx_process is not None:
            nginx_process.terminate()
            nginx_process.wait(timeout=15)
        postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M')}, one uvicorn process, {args.rate:g} requests/s from one client, "
        f"{args.rounds} alternating rounds of {args.duration:g} s, load average {load_before:.1f} → {load_after:.1f}.\n"
    )
    print("| version | CPU per second (median) | runs | CPU per request (median) |")
    print("|---|---:|---|---:|")
    for label, runs in results.items():
        per_second = [value for value, _ in runs]
        print(
            f"| {label} | {statistics.median(per_second):.1f} ms | {', '.join(f'{v:.1f}' for v in per_second)} | "
            f"{statistics.median(value for _, value in runs):.0f} µs |"
        )


if __name__ == "__main__":
    main()
