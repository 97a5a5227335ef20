"""Pendra's full /v1 path beside a bare proxy and the upstream itself, in ONE run, interleaved.

On a shared 2-core machine absolute requests/s measure the neighbours as much as the
code; a ratio between paths measured in turns (direct, bare, Pendra, direct, bare,
Pendra, ...) in the same minutes does not. So this runs, all on loopback:

- nginx answering canned OpenAI answers (a chat completion, an SSE stream with its
  usage chunk, an embedding): the upstream, and the "direct" path;
- ``bench/bare_proxy.py``: one aiohttp process, key in a dict, token bucket in memory,
  pooled upstream connection, batched file log (the reference for Python per request);
- Pendra: ``pendra_console.serving``'s uvicorn processes with auth, Redis limits,
  routing, records through the Redis Stream and ``manage.py record_writer``, with its
  PostgreSQL and Redis.

The proxies, their PostgreSQL, Redis and record writer are pinned with ``taskset`` to
core 0, wrk and nginx to core 1 (``--no-pin`` to not). For each workload (non-streamed
chat, streamed chat, embeddings) at ``--connections``, the three paths alternate for
``--rounds`` rounds; medians are reported with CPU per request (Pendra's includes its
PostgreSQL, Redis and record writer). Then one connection, non-streamed chat, the paths
alternating: what each adds over direct at p50 and p99. There a fourth path joins them: the
bare proxy with ``--redis``, its admission and its log line each one Redis round trip (the
least that limits exact across processes and records durable before the answer cost).

Usage: ``.venv/bin/python bench/side_by_side.py [--duration 6] [--rounds 3] [--workers 1]
[--write] [--profile FILE.svg]``. ``--profile`` samples one Pendra process with py-spy during
an extra non-streamed run. Every server stops at the end.
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import procs  # noqa: E402
from bench.canned import WORKLOADS, nginx_config, wrk  # noqa: E402
from bench.gateway_bench import BIG_PLAN, bench_env, wait_http  # noqa: E402
from pendra_console.serving import uvicorn_command  # noqa: E402
from testing import servers  # noqa: E402

LABELS = {"chat": "non-streamed chat", "stream": "streamed chat", "embeddings": "embeddings"}
PINNED = "proxies, PostgreSQL, Redis and the record writer on core 0, wrk and nginx on core 1 (taskset)"
PATHS = ("direct", "bare", "pendra")
ONE_CONNECTION_PATHS = ("direct", "bare", "bare_redis", "pendra")
PATH_LABELS = {
    "direct": "straight to the upstream (nginx, canned answer)",
    "bare": "bare aiohttp proxy, 1 process (`bench/bare_proxy.py`)",
    "bare_redis": "the bare proxy + one Redis round trip to admit, one to log (`--redis`)",
    "pendra": "Pendra's full path",
}


def measure(load: Callable[[], dict[str, float]], parts: dict[str, list[int]]) -> dict[str, float]:
    """wrk's result, with CPU µs per request: ``cpu_us`` in all, ``cpu_us:NAME`` for each part's process trees."""
    before = {name: procs.tree_cpu_seconds(roots) for name, roots in parts.items()}
    result = load()
    requests = max(result["requests"], 1)
    for name, roots in parts.items():
        result[f"cpu_us:{name}"] = (procs.tree_cpu_seconds(roots) - before[name]) / requests * 1e6
    result["cpu_us"] = sum(result[f"cpu_us:{name}"] for name in parts)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    # One: the proxies get one core here, and one event loop per core is how Pendra is run
    # (PENDRA_WEB_PROCESSES = cores); a second process on the same core only adds switches
    # between the two, and splits each loop turn's Redis batch in half (bench/README.md).
    parser.add_argument("--workers", type=int, default=1, help="Pendra's uvicorn processes")
    parser.add_argument("--no-pin", action="store_true", help="no taskset (e.g. a one-core machine)")
    parser.add_argument("--write", action="store_true", help="write the tables into bench/README.md")
    parser.add_argument("--profile", metavar="FILE", help="py-spy: sample a Pendra process into FILE (.svg/.json)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE", help="for Pendra only")
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "taskset"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is needed (Debian packages wrk, nginx-light, util-linux)")
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    proxy_cpu, client_cpu = ("0", "1") if pin else ("", "")

    def pinned(command: list[str], cpu: str) -> list[str]:
        return ["taskset", "-c", cpu, *command] if cpu else command

    started_at = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="pendra-sbs-")
    postgres, redis = servers.start_postgresql(), servers.start_redis()
    if postgres is None or redis is None:
        sys.exit("PostgreSQL and redis-server binaries are needed")
    processes: list[subprocess.Popen[bytes]] = []
    env = bench_env(database_url=postgres.url, redis_url=redis.url, workdir=workdir, conn_max_age=600)
    manage = [sys.executable, str(ROOT / "manage.py")]
    loads = [os.getloadavg()]
    try:
        json_port, sse_port, bare_port, bare_redis_port, pendra_port = (servers.free_port() for _ in range(5))
        Path(workdir, "nginx.conf").write_text(nginx_config(json_port, sse_port, workdir))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        processes.append(
            subprocess.Popen(
                pinned([nginx, "-c", f"{workdir}/nginx.conf", "-g", "daemon off;"], client_cpu),
                start_new_session=True,
            )
        )
        nginx_group = processes[-1].pid
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
        subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], env=env, check=True)
        seeded = json.loads(
            subprocess.run([*manage, "seed_demo", "--json"], env=env, check=True, capture_output=True, text=True).stdout
        )
        subprocess.run([*manage, "shell", "-c", BIG_PLAN.format(org=seeded["org"])], env=env, check=True)
        wait_http(f"http://127.0.0.1:{json_port}/health")
        wait_http(f"http://127.0.0.1:{sse_port}/health")
        for name, port, models in (
            ("bench-json", json_port, "bench-chat:chat,bench-embed:embeddings"),
            ("bench-sse", sse_port, "bench-stream:chat"),
        ):
            register = [*manage, "register_worker", name, f"http://127.0.0.1:{port}", "--models", models, "--probe"]
            subprocess.run(register, env=env, check=True, capture_output=True)
        key = seeded["keys"]["owner"]
        pendra_env = {**env, **dict(value.split("=", 1) for value in args.server_env)}
        writer = subprocess.Popen(pinned([*manage, "record_writer"], proxy_cpu), env=env, start_new_session=True)
        processes.append(writer)
        gateway = subprocess.Popen(
            pinned(
                uvicorn_command(host="127.0.0.1", port=pendra_port, workers=args.workers, log_level="warning"),
                proxy_cpu,
            ),
            env=pendra_env,
            cwd=ROOT,
            start_new_session=True,
        )
        processes.append(gateway)
        bare_command = [
            sys.executable,
            str(ROOT / "bench" / "bare_proxy.py"),
            "--key",
            key,
            "--upstream",
            f"bench-chat=http://127.0.0.1:{json_port}",
            "--upstream",
            f"bench-embed=http://127.0.0.1:{json_port}",
            "--upstream",
            f"bench-stream=http://127.0.0.1:{sse_port}",
        ]
        bare = subprocess.Popen(
            pinned([*bare_command, "--port", str(bare_port), "--log", f"{workdir}/bare.log"], proxy_cpu),
            start_new_session=True,
        )
        processes.append(bare)
        bare_redis = subprocess.Popen(
            pinned([*bare_command, "--port", str(bare_redis_port), "--redis", redis.url], proxy_cpu),
            start_new_session=True,
        )
        processes.append(bare_redis)
        database = procs.postgres_postmaster(postgres.workdir)
        redis_pid = redis.process.pid if redis.process is not None else 0
        if pin:  # the already running servers: every thread of every process in their trees
            procs.pin_trees([database, redis_pid], proxy_cpu)
        wait_http(f"http://127.0.0.1:{pendra_port}/healthz")
        wait_http(f"http://127.0.0.1:{bare_port}/health")
        wait_http(f"http://127.0.0.1:{bare_redis_port}/health")

        urls = {
            ("direct", "chat"): f"http://127.0.0.1:{json_port}/v1/chat/completions",
            ("direct", "stream"): f"http://127.0.0.1:{sse_port}/v1/chat/completions",
            ("direct", "embeddings"): f"http://127.0.0.1:{json_port}/v1/embeddings",
            ("bare_redis", "chat"): f"http://127.0.0.1:{bare_redis_port}/v1/chat/completions",
        }
        for workload in WORKLOADS:
            path = "/v1/embeddings" if workload == "embeddings" else "/v1/chat/completions"
            urls["bare", workload] = f"http://127.0.0.1:{bare_port}{path}"
            urls["pendra", workload] = f"http://127.0.0.1:{pendra_port}{path}"
        cpu_roots = {
            "direct": {"nginx": [nginx_group]},
            "bare": {"proxy": [bare.pid]},
            "bare_redis": {"proxy": [bare_redis.pid], "redis": [redis_pid]},
            "pendra": {"web": [gateway.pid], "writer": [writer.pid], "postgres": [database], "redis": [redis_pid]},
        }

        def run(path: str, workload: str, connections: int, duration: int) -> dict[str, float]:
            return measure(
                lambda: wrk(
                    urls[path, workload],
                    WORKLOADS[workload],
                    key=key,
                    duration=duration,
                    connections=connections,
                    workdir=workdir,
                    cpu=client_cpu,
                ),
                cpu_roots[path],
            )

        for (_path, workload), url in urls.items():  # every path answers every workload, or the run stops here
            procs.check_post(url, WORKLOADS[workload], key)
        for path, workload in urls:  # warm connections, caches and the pools
            run(path, workload, args.connections, 1)
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            loads.append(os.getloadavg())
            for workload in WORKLOADS:
                for path in PATHS:
                    results.setdefault((path, workload), []).append(
                        run(path, workload, args.connections, args.duration)
                    )
        one: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for path in ONE_CONNECTION_PATHS:
                one.setdefault(path, []).append(run(path, "chat", 1, args.duration))
        loads.append(os.getloadavg())
        if args.profile:
            profile_pid = procs.children(gateway.pid)[-1] if args.workers > 1 else gateway.pid
            sampler = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--nonblocking",
                    "-r",
                    "200",
                    "-d",
                    str(int(args.duration) * 2),
                    "-o",
                    args.profile,
                    *procs.profile_format(args.profile),
                    "-p",
                    str(profile_pid),
                ],
            )
            run("pendra", "chat", args.connections, args.duration)
            run("pendra", "stream", args.connections, args.duration)
            sampler.wait(timeout=120)
        records = subprocess.run(
            [
                *manage,
                "shell",
                "-v",
                "0",
                "-c",
                "import time; from apps.requestlog.models import RequestRecord; time.sleep(3); "
                "print(RequestRecord.objects.count())",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    finally:
        procs.stop(processes)
        postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started_at
    table = render(args, results, one, loads, records, elapsed, pin)
    print(table)
    if args.write:
        procs.write_block(ROOT / "bench" / "README.md", "side-by-side", table)


def render(
    args: argparse.Namespace,
    results: dict[tuple[str, str], list[dict[str, float]]],
    one: dict[str, list[dict[str, float]]],
    loads: list[tuple[float, float, float]],
    records: str,
    elapsed: float,
    pin: bool,
) -> str:
    def med(values: list[dict[str, float]], name: str) -> float:
        return statistics.median(value[name] for value in values)

    load_text = " → ".join(f"{value[0]:.1f}" for value in loads)
    lines = [
        f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores; "
        f"{PINNED if pin else 'not pinned'}; "
        f"Pendra: {args.workers} uvicorn processes; {args.rounds} interleaved rounds of {args.duration:g} s per path "
        f"and workload, medians; load average (1 min) through the run: {load_text}; the whole run took "
        f"{elapsed / 60:.1f} min. CPU per request: the path's own processes (Pendra's: its web processes, "
        "record writer, PostgreSQL and Redis; direct: nginx).",
        "",
        f"{args.connections} connections:",
        "",
        "| workload | path | requests/s | CPU per request | Pendra / bare proxy | runs (requests/s) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for workload in WORKLOADS:
        bare_rps = med(results["bare", workload], "rps")
        for path in PATHS:
            values = results[path, workload]
            rps = med(values, "rps")
            ratio = f"**{rps / bare_rps:.0%}**" if path == "pendra" else ""
            runs = ", ".join(f"{value['rps']:.0f}" for value in values)
            if errors := sum(value["non_2xx"] for value in values):
                runs += f" ({errors:.0f} non-2xx)"
            lines.append(
                f"| {LABELS[workload]} | {PATH_LABELS[path]} | {rps:.0f} | {med(values, 'cpu_us'):.0f} µs "
                f"| {ratio} | {runs} |"
            )
    direct_p50, direct_p99 = med(one["direct"], "p50"), med(one["direct"], "p99")
    lines += [
        "",
        "One connection, non-streamed chat (nothing queues), medians of the interleaved runs:",
        "",
        "| path | requests/s | p50 ms | p99 ms | added p50 ms | added p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for path in ONE_CONNECTION_PATHS:
        p50, p99 = med(one[path], "p50"), med(one[path], "p99")
        added = "" if path == "direct" else f"**{p50 - direct_p50:+.2f}** | **{p99 - direct_p99:+.2f}**"
        lines.append(
            f"| {PATH_LABELS[path]} | {med(one[path], 'rps'):.0f} | {p50:.2f} | {p99:.2f} | {added or ' | '} |"
        )
    parts = ("web", "writer", "postgres", "redis")
    lines += [
        "",
        f"Where Pendra's CPU per request goes, {args.connections} connections (medians, µs):",
        "",
        "| workload | web processes | record writer | PostgreSQL | Redis | bare proxy, for scale |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        cells = " | ".join(f"{med(results['pendra', workload], f'cpu_us:{part}'):.0f}" for part in parts)
        lines.append(f"| {LABELS[workload]} | {cells} | {med(results['bare', workload], 'cpu_us'):.0f} |")
    non_2xx = sum(value["non_2xx"] for values in [*results.values(), *one.values()] for value in values)
    lines += ["", f"Non-2xx answers in all runs: {non_2xx:.0f}; request records written by Pendra: {records}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
