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
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ab_gateway import Version, lab  # noqa: E402
from bench.canned import WORKLOADS  # noqa: E402
from bench.gateway_bench import wait_http  # noqa: E402
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

    with lab("pendra-ab-low-") as (_, base_env, json_url, sse_url):
        labels = args.labels.split(",")
        versions = [
            Version(labels[index], tree, index, base_env, {}) for index, tree in enumerate((args.tree_a, args.tree_b))
        ]
        for version in versions:
            version.prepare(json_url, sse_url)
        load_before = os.getloadavg()[0]
        results: dict[str, list[tuple[float, float]]] = {version.label: [] for version in versions}
        for _ in range(args.rounds):
            for version in versions:
                results[version.label].append(run(version, duration=args.duration, rate=args.rate))
                print(f"{version.label}: %.1f ms CPU/s, %.0f µs CPU/request" % results[version.label][-1], flush=True)
        load_after = os.getloadavg()[0]

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
