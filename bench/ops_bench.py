"""Operations bench: what metrics and tracing cost the gateway; whether the shipped nginx keeps streams unbuffered.

One run, all on loopback (throwaway PostgreSQL and Redis, as in ``gateway_bench.py``):

1. **Metrics and tracing on vs off.** Three gateway nodes (``python -m pendra_console.serving
   --workers 2``, each with its own ``PROMETHEUS_MULTIPROC_DIR``) in front of the same static
   nginx upstream: all off; ``PENDRA_METRICS=1``; metrics and ``PENDRA_OTEL_ENABLED=1``
   (exporting to a collector on loopback). wrk loads them in turn, the order rotating each
   round, so a busy neighbour on the machine hits all alike, and the medians are compared.
   Requests/s and latency move with whatever else the machine runs; the CPU the node's
   processes spent per request (read from ``/proc``) moves much less, and the CPU time of
   the hooks measured alone (:mod:`bench.hook_cpu`) not at all.
2. **Streaming through nginx.** The simulated worker streams a chat completion (first chunk at
   once, the rest 25 ms apart); time to first byte is measured straight to the gateway node and
   through nginx running ``deploy/nginx/default.conf.template`` (:mod:`testing.nginx`), the two
   paths alternating request by request so each pair sees the same machine; the median of the
   pairs' differences is what nginx adds. Buffered, the first byte would wait for the whole
   stream (~250 ms).

Usage: ``.venv/bin/python bench/ops_bench.py [--duration 5] [--rounds 5] [--connections 32]
[--streams 100] [--write]``. ``--write`` puts the tables into ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_bench import BIG_PLAN, bench_env, nginx_config, run_wrk, wait_http  # noqa: E402
from bench.hook_cpu import metering_cpu_us, tracing_cpu_us  # noqa: E402
from bench.procs import write_block  # noqa: E402
from testing import servers  # noqa: E402
from testing.nginx import Nginx, nginx_binary  # noqa: E402
from testing.otlp import Collector  # noqa: E402

# The nodes compared: everything off; metrics on; metrics and tracing on (every request traced,
# exported over OTLP/HTTP to a collector on loopback that only counts what it receives).
SETTINGS = {
    "off": {"PENDRA_METRICS": "0", "PENDRA_OTEL_ENABLED": "0"},
    "metrics": {"PENDRA_METRICS": "1", "PENDRA_OTEL_ENABLED": "0"},
    "tracing": {"PENDRA_METRICS": "1", "PENDRA_OTEL_ENABLED": "1"},
}
CHUNK_DELAY_MS = 25
STREAM_TOKENS = 8
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def start_node(port: int, env: dict[str, str], metrics_dir: str, workers: int = 2) -> subprocess.Popen[bytes]:
    """A gateway node as production starts one; its own session, so its processes share a group id.

    Its output goes to ``<metrics_dir>.log``, printed if the bench fails.
    """
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "pendra_console.serving", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", str(workers), "--log-level", "warning"),
        ],
        env={**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir},
        cwd=ROOT,
        start_new_session=True,
        stdout=Path(f"{metrics_dir}.log").open("wb"),
        stderr=subprocess.STDOUT,
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


def wakeup_delay_ms(seconds: float = 2.0) -> float:
    """How late a process waking from a 1 ms sleep runs, median ms: the wait for a CPU at this moment.

    A request through nginx wakes one more process twice (request in, first bytes out).
    """
    code = (
        "import statistics, time\n"
        "late, end = [], time.monotonic() + float(__import__('sys').argv[1])\n"
        "while time.monotonic() < end:\n"
        "    t = time.perf_counter(); time.sleep(0.001); late.append(time.perf_counter() - t - 0.001)\n"
        "print(statistics.median(late) * 1000)\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(seconds)], capture_output=True, text=True, check=True)
    return float(run.stdout)


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="wrk runs per setting, interleaved")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--streams", type=int, default=100, help="streamed requests per path for the TTFB")
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
    collector = Collector(decode=False).start()
    env = bench_env(database_url=postgres.url, redis_url=redis.url, workdir=workdir, conn_max_age=60)
    manage = [sys.executable, str(ROOT / "manage.py")]
    load_before = load_average()
    try:
        upstream_port, sim_port = servers.free_port(), servers.free_port()
        ports = {setting: servers.free_port() for setting in SETTINGS}
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
        for setting, values in SETTINGS.items():
            node_env = {**env, **values, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
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
        names = list(SETTINGS)
        for round_number in range(args.rounds):
            # Rotate which setting goes first, so none always follows another's run.
            shift = round_number % len(names)
            for setting in names[shift:] + names[:shift]:
                results[setting]["one"].append(load(setting, 1))
                results[setting]["many"].append(load(setting, args.connections))
        metering_us = metering_cpu_us(env)
        tracing_us: dict[str, list[float]] = {mode: [] for mode in ("none", "off", "on", "sampled")}
        for _ in range(3):  # interleaved, medians
            for mode, values in tracing_us.items():
                values.append(tracing_cpu_us(env, mode=mode, endpoint=collector.url))

        # Streaming: straight to a node, and through the shipped nginx config in front of it.
        # A node of one process, metrics on: with two, each path's kept-alive connection lands on
        # one of them at random, and which one moved the medians by ±5 ms from run to run.
        stream_port = servers.free_port()
        nodes["stream"] = start_node(
            stream_port, {**env, **SETTINGS["metrics"]}, f"{workdir}/metrics-stream", workers=1
        )
        wait_http(f"http://127.0.0.1:{stream_port}/healthz")
        proxy = Nginx([f"127.0.0.1:{stream_port}"]).start()
        paths = {"direct": f"http://127.0.0.1:{stream_port}", "nginx": proxy.url}
        # One kept-alive connection per path, as a client in production holds: connection set-up is not
        # measured. TCP_NODELAY: httpx writes headers and body apart, and with Nagle the body waits for the
        # server's delayed ACK (up to 40 ms), which measured the client's socket rather than the paths.
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        clients = {path: httpx.Client(transport=httpx.HTTPTransport(socket_options=nodelay)) for path in paths}
        for path, url in paths.items():
            stream_ttfb_ms(clients[path], url, key)
        ttfb: dict[str, list[float]] = {"direct": [], "nginx": []}
        spread: dict[str, list[float]] = {"direct": [], "nginx": []}
        wakeup = [wakeup_delay_ms()]
        for index in range(args.streams):
            order_paths = ("direct", "nginx") if index % 2 == 0 else ("nginx", "direct")
            for path in order_paths:
                first, rest = stream_ttfb_ms(clients[path], paths[path], key)
                ttfb[path].append(first)
                spread[path].append(rest)
        wakeup.append(wakeup_delay_ms())
    except BaseException:
        for log in sorted(Path(workdir).glob("metrics-*.log")):
            print(f"--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
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
        collector.stop()
        postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = load_average()

    def median(setting: str, kind: str, field: str) -> float:
        return statistics.median(run[field] for run in results[setting][kind])

    def change(setting: str, base: str, kind: str, field: str) -> str:
        value, reference = median(setting, kind, field), median(base, kind, field)
        return f"{(value - reference) / reference * 100:+.1f} %"

    def runs(setting: str, kind: str, field: str) -> str:
        digits = 0 if field in ("rps", "cpu_us") else 2
        return ", ".join(f"{run[field]:.{digits}f}" for run in results[setting][kind])

    def row(label: str, kind: str, field: str, digits: int) -> str:
        values = " | ".join(f"{median(setting, kind, field):.{digits}f}" for setting in SETTINGS)
        return (
            f"| {label} | {values} | {change('metrics', 'off', kind, field)} "
            f"| {change('tracing', 'metrics', kind, field)} |"
        )

    differences = [nginx - direct for nginx, direct in zip(ttfb["nginx"], ttfb["direct"], strict=True)]
    added = statistics.median(differences)

    def stream_row(label: str, path: str) -> str:
        return (
            f"| {label} | {statistics.median(ttfb[path]):.2f} | {min(ttfb[path]):.2f} "
            f"| {statistics.quantiles(ttfb[path], n=10)[-1]:.2f} | {statistics.median(spread[path]):.1f} |"
        )

    hooks = {mode: statistics.median(values) for mode, values in tracing_us.items()}
    many = f"{args.connections} connections"
    all_runs = "; ".join(
        f"{setting}: {runs(setting, 'many', 'rps')} requests/s, {runs(setting, 'many', 'cpu_us')} µs CPU, "
        f"one connection p50 {runs(setting, 'one', 'p50')} ms"
        for setting in SETTINGS
    )
    table = "\n".join(
        [
            f"Run on {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores ({platform.machine()}), load "
            f"average (1/5/15 min) {load_before} before and {load_after} after; each gateway node 2 uvicorn "
            f"processes; {args.rounds} interleaved wrk runs of {args.duration} s per setting and load, medians; "
            "PostgreSQL, Redis and the static upstream on the same machine. Nodes: all off; metrics on; "
            "metrics and tracing on (every request traced and exported over OTLP/HTTP).",
            "",
            "| | all off | metrics on | metrics + tracing on | metrics on vs off | tracing on vs off |",
            "|---|---:|---:|---:|---:|---:|",
            row("one connection: p50 ms", "one", "p50", 2),
            row(f"{many}: requests/s", "many", "rps", 0),
            row(f"{many}: node CPU µs per request", "many", "cpu_us", 0),
            "",
            f"Every run at {many} (in order): {all_runs}.",
            "",
            "CPU time per request of the hooks alone (fresh process each, CPU time of all its threads, so "
            "other processes do not inflate it; `bench/hook_cpu.py`, 20,000 requests (5,000 traced), medians of 3):",
            "",
            "| hook | CPU µs per request |",
            "|---|---:|",
            f"| metering (`apps.gateway.metrics.meter`, its share of the batched write included) | {metering_us:.1f} |",
            f"| tracing hooks, tracing off (start, one attempt, finish; loop subtracted) "
            f"| {hooks['off'] - hooks['none']:.2f} |",
            f"| tracing on, every request traced (2 spans, their OTLP export included) "
            f"| {hooks['on'] - hooks['none']:.0f} |",
            f"| tracing on, 1 % of traces sampled (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`) "
            f"| {hooks['sampled'] - hooks['none']:.1f} |",
            "",
            f"Streaming through the shipped nginx config (`deploy/nginx/`) to a node of one process (metrics "
            f"on), {args.streams} streamed chat "
            f"requests per path, alternating; first chunk at once, then one every {CHUNK_DELAY_MS} ms:",
            "",
            "| path | time to first byte, median ms | fastest ms | p90 ms | first to last byte, median ms |",
            "|---|---:|---:|---:|---:|",
            stream_row("straight to the node", "direct"),
            stream_row("through nginx", "nginx"),
            f"| **added by nginx** (median of the {args.streams} paired differences; fastest minus fastest) "
            f"| **{added:.2f}** | **{min(ttfb['nginx']) - min(ttfb['direct']):.2f}** | | |",
            "",
            "A buffering proxy would deliver the first byte with the last: its first-to-last time would "
            "be near zero and its time to first byte longer by the whole first-to-last time. "
            "How long a process waited for a CPU at the time (waking from a 1 ms sleep, median, before and "
            f"after the streams): {wakeup[0]:.2f} and {wakeup[1]:.2f} ms.",
        ]
    )
    print(table)
    if args.write:
        write_block(
            ROOT / "bench" / "README.md", "ops-bench", table, heading="## Metrics and nginx (`bench/ops_bench.py`)"
        )


if __name__ == "__main__":
    main()
