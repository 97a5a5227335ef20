"""Streams at scale and memory over time, for ONE gateway process (issue 15).

1. ``--streams`` (1,000) streamed chat requests open at once through one uvicorn process
   to a slow simulator (``simulate_worker --chunk-delay-ms``: every stream lasts
   ``--stream-seconds``). Each must end with ``data: [DONE]`` and no error event; the
   gateway process's RSS is sampled while they are open (bound: ``--max-rss-mb``, 300).
2. ``--requests`` (200,000) requests through the same process, in wrk runs to nginx's
   canned answers: non-streamed chat, streamed chat, and one in ten refused (an unknown
   key, a body that is not JSON), every request with its own ``X-Request-Id``, so caches
   keyed by anything a client chooses are exercised. RSS after a tenth of them against
   RSS at the end: growth within ``--max-growth`` (10 %).

Loopback only; raises its open-file limit to the hard limit (each stream holds two
sockets in the gateway); every server stops at the end. Usage:
``.venv/bin/python bench/streams_bench.py [--streams 1000] [--requests 200000] [--write]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import procs  # noqa: E402
from bench.canned import WORKLOADS, nginx_config  # noqa: E402
from bench.gateway_bench import BIG_PLAN, bench_env, parse_wrk, wait_http  # noqa: E402
from pendra_console.serving import uvicorn_command  # noqa: E402
from testing import servers  # noqa: E402

# Per request: a counter picks the kind; the id is fresh every time. 1 in 10 refused.
WRK_MIX = """
local chat = %(chat)s
local stream = %(stream)s
local counter = 0
request = function()
    counter = counter + 1
    local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
    headers["X-Request-Id"] = "bench-" .. counter .. "-" .. math.random(1e9)
    local body = chat
    if counter %% 2 == 0 then body = stream end
    if counter %% 10 == 3 then
        headers["Authorization"] = "Bearer pk_live_" .. math.random(1e9) .. "_" .. math.random(1e9)
    elseif counter %% 10 == 7 then
        body = "{not json"
    end
    return wrk.format("POST", "/v1/chat/completions", headers, body)
end
"""


async def open_streams(url: str, key: str, count: int, tokens: int, gateway_pid: int) -> tuple[int, int, float]:
    """``count`` streams at once; (completed, failed, the highest RSS in MB seen while they ran)."""
    body = {"model": "sim-chat", "messages": [{"role": "user", "content": "a b"}], "max_tokens": tokens, "stream": True}
    headers = {"Authorization": f"Bearer {key}"}
    peak = 0.0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def one() -> bool:
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    data = await response.read()
                    return response.status == 200 and data.rstrip().endswith(b"data: [DONE]") and b'"error"' not in data
            except (aiohttp.ClientError, TimeoutError):
                return False

        tasks = [asyncio.ensure_future(one()) for _ in range(count)]
        while not all(task.done() for task in tasks):
            peak = max(peak, procs.rss_bytes(gateway_pid) / 2**20)
            await asyncio.sleep(0.25)
        results = [task.result() for task in tasks]
    return sum(results), len(results) - sum(results), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--stream-seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--max-rss-mb", type=float, default=300)
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument("--write", action="store_true", help="write the result into bench/README.md")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # inherited by every server started below
    if wanted < 3 * args.streams + 200:
        sys.exit(f"the open-file limit ({wanted}) is too low for {args.streams} streams: raise `ulimit -Hn`")

    started_at = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="pendra-streams-")
    postgres, redis = servers.start_postgresql(), servers.start_redis()
    if postgres is None or redis is None:
        sys.exit("PostgreSQL and redis-server binaries are needed")
    processes: list[subprocess.Popen[bytes]] = []
    env = bench_env(database_url=postgres.url, redis_url=redis.url, workdir=workdir, conn_max_age=600)
    manage = [sys.executable, str(ROOT / "manage.py")]
    load_before = os.getloadavg()
    chunk_delay_ms = args.stream_seconds * 1000 / 20
    try:
        json_port, sse_port, sim_port, gateway_port = (servers.free_port() for _ in range(4))
        Path(workdir, "nginx.conf").write_text(nginx_config(json_port, sse_port, workdir))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        processes.append(subprocess.Popen([nginx, "-c", f"{workdir}/nginx.conf", "-g", "daemon off;"]))
        processes.append(
            subprocess.Popen(
                [*manage, "simulate_worker", "--port", str(sim_port), "--chunk-delay-ms", str(chunk_delay_ms)],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
        seeded = json.loads(
            subprocess.run([*manage, "seed_demo", "--json"], env=env, check=True, capture_output=True, text=True).stdout
        )
        subprocess.run([*manage, "shell", "-c", BIG_PLAN.format(org=seeded["org"])], env=env, check=True)
        for url in (f"http://127.0.0.1:{json_port}/health", f"http://127.0.0.1:{sim_port}/health"):
            wait_http(url)
        for name, port, models in (
            ("bench-json", json_port, "bench-chat:chat"),
            ("bench-sse", sse_port, "bench-stream:chat"),
            ("bench-sim", sim_port, "sim-chat:chat"),
        ):
            register = [*manage, "register_worker", name, f"http://127.0.0.1:{port}", "--models", models, "--probe"]
            subprocess.run(register, env=env, check=True, capture_output=True)
        key = seeded["keys"]["owner"]
        processes.append(subprocess.Popen([*manage, "record_writer"], env=env, start_new_session=True))
        gateway = subprocess.Popen(
            uvicorn_command(host="127.0.0.1", port=gateway_port, workers=1, log_level="warning"),
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        processes.append(gateway)
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz")
        rss_start = procs.rss_bytes(gateway.pid) / 2**20

        # 1. The open streams.
        streams_started = time.monotonic()
        completed, failed, peak = asyncio.run(
            open_streams(f"http://127.0.0.1:{gateway_port}/v1/chat/completions", key, args.streams, 20, gateway.pid)
        )
        streams_took = time.monotonic() - streams_started

        # 2. Memory over many requests.
        script = Path(workdir, "mix.lua")
        script.write_text(
            WRK_MIX
            % {
                "chat": json.dumps(json.dumps(WORKLOADS["chat"])),
                "stream": json.dumps(json.dumps(WORKLOADS["stream"])),
                "key": key,
            }
        )
        done = 0
        statuses = {"2xx": 0, "other": 0}
        samples: list[tuple[int, float]] = []
        checkpoint = args.requests // 10
        requests_started = time.monotonic()
        while done < args.requests:
            target = checkpoint if not samples else args.requests
            # Short runs near the checkpoint, longer ones after: the count is known only when a run ends.
            seconds = 5 if not samples else 20
            output = subprocess.run(
                [
                    "wrk",
                    "-t1",
                    f"-c{args.connections}",
                    f"-d{seconds}s",
                    "-s",
                    str(script),
                    f"http://127.0.0.1:{gateway_port}",
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=True,
            ).stdout
            result = parse_wrk(output + "\n    50%  0ms\n    99%  0ms\n")
            done += int(result["requests"])
            statuses["other"] += int(result["non_2xx"])
            statuses["2xx"] += int(result["requests"] - result["non_2xx"])
            if done >= target:
                samples.append((done, procs.rss_bytes(gateway.pid) / 2**20))
        requests_took = time.monotonic() - requests_started
    finally:
        for process in reversed(processes):  # the gateway before its upstreams
            try:
                os.killpg(process.pid, signal.SIGTERM) if process.pid != os.getpid() else None
            except (ProcessLookupError, PermissionError):
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    (early_n, early), (late_n, late) = samples[0], samples[-1]
    growth = late / early - 1
    streams_ok = failed == 0 and completed == args.streams and peak < args.max_rss_mb
    growth_ok = growth <= args.max_growth
    text = "\n".join(
        [
            f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, one uvicorn "
            f"process, load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after; the run took "
            f"{(time.monotonic() - started_at) / 60:.1f} min.",
            "",
            "| measure | value | bound | |",
            "|---|---:|---:|---|",
            f"| streams open at once (simulator: a chunk every {chunk_delay_ms:.0f} ms, 20 chunks) | {args.streams} "
            f"| | |",
            f"| streams completed with `[DONE]` / failed | {completed} / {failed} | 0 failed | "
            f"{'PASS' if completed == args.streams and not failed else 'FAIL'} |",
            f"| gateway RSS: at start → highest while the streams were open | {rss_start:.0f} → {peak:.0f} MB "
            f"| < {args.max_rss_mb:.0f} MB | {'PASS' if peak < args.max_rss_mb else 'FAIL'} |",
            f"| the {args.streams} streams took | {streams_took:.1f} s | | |",
            f"| requests (chat, streamed chat, 1 in 10 refused), 2xx / other | {statuses['2xx']} / "
            f"{statuses['other']} | | |",
            f"| gateway RSS after {early_n} requests → after {late_n} | {early:.1f} → {late:.1f} MB "
            f"(**{growth:+.1%}**) | ≤ +{args.max_growth:.0%} | {'PASS' if growth_ok else 'FAIL'} |",
            f"| those requests took | {requests_took:.0f} s ({late_n / requests_took:.0f} requests/s) | | |",
        ]
    )
    print(text)
    if args.write:
        procs.write_block(ROOT / "bench" / "README.md", "streams-bench", text)
    if not (streams_ok and growth_ok):
        sys.exit(1)


if __name__ == "__main__":
    main()
