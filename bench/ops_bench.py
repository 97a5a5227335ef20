"""Operations bench: what metrics cost the gateway, and whether the shipped nginx config keeps streams unbuffered.

One run, all on loopback (throwaway PostgreSQL and Redis, as in ``gateway_bench.py``):

1. **Metrics on vs off.** Two gateway nodes (``python -m pendra_console.serving --workers 2``,
   each with its own ``PROMETHEUS_MULTIPROC_DIR``), one with ``PENDRA_METRICS=1`` and one with
   ``PENDRA_METRICS=0``, in front of the same static nginx upstream. wrk loads them in turn
   (on, off, on, off, ...), so a busy neighbour on the machine hits both alike, and the medians
   are compared. Requests/s and latency move with whatever else the machine runs; the CPU the
   node's processes spent per request (read from ``/proc``) moves much less, and the CPU time
   of the metering call itself (measured alone) not at all.
2. **Streaming through nginx.** The simulated worker streams a chat completion (first chunk at
   once, the rest 25 ms apart); time to first byte is measured straight to the gateway node and
   through nginx running ``deploy/nginx/default.conf.template`` (:mod:`testing.nginx`), the two
   paths alternating request by request so each pair sees the same machine; the median of the
   pairs' differences is what nginx adds. Buffered, the first byte would wait for the whole
   stream (~175 ms).

Usage: ``.venv/bin/python bench/ops_bench.py [--duration 8] [--rounds 3] [--connections 32]
[--streams 60] [--write]``. ``--write`` puts the tables into ``bench/README.md``.
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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_bench import nginx_config, run_wrk, wait_http  # noqa: E402
from testing import servers  # noqa: E402
from testing.nginx import Nginx, nginx_binary  # noqa: E402

BIG_PLAN = (
    "from apps.plans.models import Plan; from apps.plans.services import subscription_change; "
    "from apps.orgs.models import Organisation; "
    "big = dict(chat_rpm=10**9, embeddings_rpm=10**9, images_rpm=10**9, audio_rpm=10**9, "
    "api_rpm=10**9, chat_tpm=2*10**9, embeddings_tpm=2*10**9, concurrent_streams=10**6); "
    "plan, _ = Plan.objects.update_or_create(slug='bench', defaults=dict(name='Bench', **big)); "
    "subscription_change(org=Organisation.objects.get(slug='{org}'), plan=plan, actor=None)"
)
CHUNK_DELAY_MS = 25
STREAM_TOKENS = 8
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def start_node(port: int, env: dict[str, str], metrics_dir: str) -> subprocess.Popen[bytes]:
    """A gateway node as production starts one; its own session, so its processes share a group id."""
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "pendra_console.serving", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "2", "--log-level", "warning"),
        ],
        env={**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir},
        cwd=ROOT,
        start_new_session=True,
    )


def group_cpu_seconds(group: int) -> float:
    """User + system CPU seconds of every live process in process group ``group``."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLOCK_TICKS


def metering_cpu_us(env: dict[str, str], calls: int = 20000) -> float:
    """CPU µs per request of the gateway's metering: ``meter.observe`` and its share of the flush."""
    code = f"""
import asyncio, time, django
django.setup()
from apps.gateway.exchange import Exchange
from apps.gateway.routes import ROUTES
from apps.gateway import metrics
from apps.workers.selectors import WorkerTarget
scope = {{"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}}
worker = WorkerTarget(id="w1", name="w1", base_url="http://127.0.0.1:1", models={{}}, dedicated_org_id=None)
def one():
    exchange = Exchange(scope, None, None, "u")
    exchange.route = ROUTES["/v1/chat/completions"]
    exchange.worker = worker
    exchange.attempts = 1
    exchange.first_byte_at = exchange.started
    return exchange
exchanges = [one() for _ in range({calls})]
async def run():
    for exchange in exchanges[:1000]:
        metrics.meter.observe(exchange, 200, exchange.started)
    metrics.meter.flush()
    started = time.process_time()
    for exchange in exchanges:
        metrics.meter.observe(exchange, 200, exchange.started)
    metrics.meter.flush()  # what the batching defers is counted too
    return started
started = asyncio.run(run())
print((time.process_time() - started) / {calls} * 1e6)
"""
    with tempfile.TemporaryDirectory(prefix="pendra-metering-") as metrics_dir:
        output = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "DJANGO_SETTINGS_MODULE": "pendra_console.settings"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    return float(output.strip().splitlines()[-1])


def stream_ttfb_ms(client: httpx.Client, url: str, key: str) -> tuple[float, float]:
    """Milliseconds from sending a streamed chat request to its first body bytes, and from those to its last."""
    body = {"model": "sim-chat", "messages": [{"role": "user", "content": "a b"}], "max_tokens": STREAM_TOKENS}
    body["stream"] = True
    started = time.perf_counter()
    with client.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as response:
        response.raise_for_status()
        chunks = response.iter_raw()
        next(chunks)
        first = last = time.perf_counter()
        for _ in chunks:
            last = time.perf_counter()
    return (first - started) * 1000, (last - first) * 1000


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per setting, alternating")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--streams", type=int, default=60, help="streamed requests per path for the TTFB")
    parser.add_argument("--write", action="store_true", help="write the tables into bench/README.md")
    args = parser.parse_args()
    if not shutil.which("wrk") or nginx_binary() is None:
        sys.exit("wrk and nginx are needed: apt-get install -y wrk nginx-light")

    workdir = tempfile.mkdtemp(prefix="pendra-ops-bench-")
    postgres, redis = servers.start_postgresql(), servers.start_redis()
    if postgres is None or redis is None:
        sys.exit("PostgreSQL and redis-server binaries are needed")
    processes: list[subprocess.Popen[bytes]] = []
    nodes: dict[str, subprocess.Popen[bytes]] = {}
    proxy: Nginx | None = None
    env = {
        **os.environ,
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis.url,
        "SECRET_KEY": "bench-" + os.urandom(16).hex(),
        "DEBUG": "0",
        "PENDRA_ENV_FILE": "",
        "PENDRA_SSL_REDIRECT": "0",
        "PENDRA_ALLOW_PRIVATE_WORKER_URLS": "1",
        "PENDRA_VAR_DIR": workdir,
        "PENDRA_LOG_LEVEL": "WARNING",
        "PENDRA_DB_CONN_MAX_AGE": "60",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    load_before = load_average()
    try:
        upstream_port, sim_port = servers.free_port(), servers.free_port()
        ports = {"on": servers.free_port(), "off": servers.free_port()}
        Path(workdir, "nginx.conf").write_text(nginx_config(upstream_port, workdir))
        processes.append(
            subprocess.Popen([nginx_binary() or "nginx", "-c", f"{workdir}/nginx.conf", "-g", "daemon off;"])
        )
        processes.append(
            subprocess.Popen(
                [
                    *(*manage, "simulate_worker", "--port", str(sim_port), "--name", "sim"),
                    *("--models", "sim-chat:chat", "--chunk-delay-ms", str(CHUNK_DELAY_MS)),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
        subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], env=env, check=True)
        seeded = json.loads(
            subprocess.run([*manage, "seed_demo", "--json"], env=env, check=True, capture_output=True, text=True).stdout
        )
        subprocess.run([*manage, "shell", "-c", BIG_PLAN.format(org=seeded["org"])], env=env, check=True)
        wait_http(f"http://127.0.0.1:{upstream_port}/health")
        wait_http(f"http://127.0.0.1:{sim_port}/health")
        for name, port, models in (
            ("bench-nginx", upstream_port, "bench-chat:chat"),
            ("sim", sim_port, "sim-chat:chat"),
        ):
            subprocess.run(
                [*manage, "register_worker", name, f"http://127.0.0.1:{port}", "--models", models, "--probe"],
                env=env,
                check=True,
                capture_output=True,
            )
        for setting, metrics in (("on", "1"), ("off", "0")):
            node_env = {**env, "PENDRA_METRICS": metrics}
            nodes[setting] = start_node(ports[setting], node_env, f"{workdir}/metrics-{setting}")
        for port in ports.values():
            wait_http(f"http://127.0.0.1:{port}/healthz")
        key = seeded["keys"]["owner"]
        auth = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

        def load(setting: str, connections: int, duration: int = args.duration) -> dict[str, float]:
            cpu_before = group_cpu_seconds(nodes[setting].pid)
            result = run_wrk(
                f"http://127.0.0.1:{ports[setting]}/v1/chat/completions",
                duration=duration,
                connections=connections,
                headers=auth,
                workdir=workdir,
            )
            # wrk's rate is requests over its own elapsed time: rate x duration is the count served.
            served = max(result["rps"] * duration, 1.0)
            result["cpu_us"] = (group_cpu_seconds(nodes[setting].pid) - cpu_before) / served * 1e6
            return result

        for setting in ports:
            load(setting, args.connections, duration=2)  # warm connections and caches
        results: dict[str, dict[str, list[dict[str, float]]]] = {s: {"one": [], "many": []} for s in ports}
        for round_number in range(args.rounds):
            # Alternate which setting goes first, so neither always follows the other's warm-up.
            order = ("on", "off") if round_number % 2 == 0 else ("off", "on")
            for setting in order:
                results[setting]["one"].append(load(setting, 1))
                results[setting]["many"].append(load(setting, args.connections))
        metering_us = metering_cpu_us(env)

        # Streaming: straight to the metrics-on node, and through the shipped nginx config in front of it.
        proxy = Nginx([f"127.0.0.1:{ports['on']}"]).start()
        paths = {"direct": f"http://127.0.0.1:{ports['on']}", "nginx": proxy.url}
        # One kept-alive connection per path, as a client in production holds: connection set-up is not measured.
        clients = {path: httpx.Client() for path in paths}
        for path, url in paths.items():
            stream_ttfb_ms(clients[path], url, key)
        ttfb: dict[str, list[float]] = {"direct": [], "nginx": []}
        spread: dict[str, list[float]] = {"direct": [], "nginx": []}
        for index in range(args.streams):
            order_paths = ("direct", "nginx") if index % 2 == 0 else ("nginx", "direct")
            for path in order_paths:
                first, rest = stream_ttfb_ms(clients[path], paths[path], key)
                ttfb[path].append(first)
                spread[path].append(rest)
    finally:
        if proxy is not None:
            proxy.stop()
        for node in nodes.values():
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*nodes.values(), *processes]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = load_average()

    def median(setting: str, kind: str, field: str) -> float:
        return statistics.median(run[field] for run in results[setting][kind])

    def change(field: str, kind: str) -> str:
        on, off = median("on", kind, field), median("off", kind, field)
        return f"{(on - off) / off * 100:+.1f} %"

    def runs(setting: str, kind: str, field: str) -> str:
        digits = 0 if field in ("rps", "cpu_us") else 2
        return ", ".join(f"{run[field]:.{digits}f}" for run in results[setting][kind])

    differences = [nginx - direct for nginx, direct in zip(ttfb["nginx"], ttfb["direct"], strict=True)]
    added = statistics.median(differences)

    def stream_row(label: str, path: str) -> str:
        return (
            f"| {label} | {statistics.median(ttfb[path]):.2f} | {statistics.quantiles(ttfb[path], n=10)[-1]:.2f} "
            f"| {statistics.median(spread[path]):.1f} |"
        )

    many = f"{args.connections} connections"
    table = "\n".join(
        [
            f"Run on {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores ({platform.machine()}), load "
            f"average (1/5/15 min) {load_before} before and {load_after} after; each gateway node 2 uvicorn "
            f"processes; {args.rounds} interleaved wrk runs of {args.duration} s per setting and load, medians; "
            "PostgreSQL, Redis and the static upstream on the same machine.",
            "",
            "| | metrics on | metrics off | on vs off |",
            "|---|---:|---:|---:|",
            f"| one connection: p50 ms | {median('on', 'one', 'p50'):.2f} | {median('off', 'one', 'p50'):.2f} "
            f"| {change('p50', 'one')} |",
            f"| {many}: requests/s | {median('on', 'many', 'rps'):.0f} | {median('off', 'many', 'rps'):.0f} "
            f"| {change('rps', 'many')} |",
            f"| {many}: node CPU µs per request | {median('on', 'many', 'cpu_us'):.0f} "
            f"| {median('off', 'many', 'cpu_us'):.0f} | {change('cpu_us', 'many')} |",
            "",
            f"Runs at {many}, requests/s: on {runs('on', 'many', 'rps')}; off {runs('off', 'many', 'rps')}; "
            f"node CPU µs per request: on {runs('on', 'many', 'cpu_us')}; off {runs('off', 'many', 'cpu_us')}. "
            f"One connection, p50 ms: on {runs('on', 'one', 'p50')}; off {runs('off', 'one', 'p50')}.",
            "",
            "CPU time of the gateway's metering per request (`apps.gateway.metrics.meter`: the observation "
            f"plus its share of the batched write, multiprocess mode, 20,000 requests): **{metering_us:.1f} µs**.",
            "",
            f"Streaming through the shipped nginx config (`deploy/nginx/`), {args.streams} streamed chat "
            f"requests per path, alternating; first chunk at once, then one every {CHUNK_DELAY_MS} ms:",
            "",
            "| path | time to first byte, median ms | p90 ms | first to last byte, median ms |",
            "|---|---:|---:|---:|",
            stream_row("straight to the node", "direct"),
            stream_row("through nginx", "nginx"),
            f"| **added by nginx** (median of the {args.streams} paired differences) | **{added:.2f}** | | |",
            "",
            "A buffering proxy would deliver the first byte with the last: its first-to-last time would "
            "be near zero and its time to first byte longer by the whole first-to-last time.",
        ]
    )
    print(table)
    if args.write:
        readme = ROOT / "bench" / "README.md"
        text = readme.read_text()
        start, end = "<!-- ops-bench:start -->", "<!-- ops-bench:end -->"
        block = f"{start}\n{table}\n{end}"
        if start in text:
            text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n## Metrics and nginx (`bench/ops_bench.py`)\n\n" + block + "\n"
        readme.write_text(text)


if __name__ == "__main__":
    main()
