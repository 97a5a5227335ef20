"""What Pendra's transport costs alone: uvicorn and the gateway's upstream client, no gateway logic.

An ASGI app that reads the body, sends it to the canned nginx upstream through
``apps.gateway.upstream.Upstream`` (the client the gateway uses) and returns the answer:
no key, no limits, no routing, no record. Run under uvicorn exactly as the gateway is
(httptools, uvloop, one process), pinned to core 0 with wrk and nginx on core 1 as in
``bench/side_by_side.py``. What Pendra's web process spends per request above this floor
is its own Python (bench/README.md, "Where the remaining time goes").

Usage: ``.venv/bin/python bench/transport_floor.py [--duration 6] [--rounds 3]``; needs
nginx and wrk. Loopback only; everything stops at the end.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT))

_upstream: Any = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor: body in, the upstream's answer out."""
    global _upstream
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if _upstream is None:
        import django

        django.setup()
        from apps.gateway.upstream import Upstream

        _upstream = Upstream(limit_per_host=100)
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    response = await _upstream.post(
        os.environ["FLOOR_UPSTREAM"],
        b"".join(parts),
        {"content-type": "application/json"},
        connect_timeout=5,
        read_timeout=30,
        deadline=time.monotonic() + 30,
    )
    try:
        content = await response.read_bounded(1 << 20) or b""
    finally:
        response.close()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content))]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def main() -> None:
    from bench import procs
    from bench.canned import WORKLOADS, nginx_config, wrk
    from bench.gateway_bench import wait_http
    from testing import servers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pendra-floor-")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        json_port, sse_port, port = (servers.free_port() for _ in range(3))
        Path(workdir, "nginx.conf").write_text(nginx_config(json_port, sse_port, workdir))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        processes.append(
            subprocess.Popen(
                ["taskset", "-c", "1", nginx, "-c", f"{workdir}/nginx.conf", "-g", "daemon off;"],
                start_new_session=True,
            )
        )
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "pendra_console.settings",
            "SECRET_KEY": "transport-floor-bench-" + "x" * 40,
            "PYTHONPATH": str(ROOT),
            "FLOOR_UPSTREAM": f"http://127.0.0.1:{json_port}/v1/chat/completions",
        }
        server = [sys.executable, "-m", "uvicorn", "bench.transport_floor:app", "--host", "127.0.0.1"]
        server += ["--port", str(port), "--log-level", "warning", "--no-access-log", "--no-proxy-headers"]
        processes.append(subprocess.Popen(["taskset", "-c", "0", *server], env=env, cwd=ROOT, start_new_session=True))
        wait_http(f"http://127.0.0.1:{json_port}/health")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        deadline = time.monotonic() + 30
        while True:
            try:
                procs.check_post(url, WORKLOADS["chat"], "unused")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        results: dict[int, list[dict[str, float]]] = {32: [], 1: []}
        wrk(url, WORKLOADS["chat"], key="unused", duration=2, connections=32, workdir=workdir, cpu="1")
        for _ in range(args.rounds):
            for connections in results:
                before = procs.tree_cpu_seconds([processes[-1].pid])
                result = wrk(
                    url,
                    WORKLOADS["chat"],
                    key="unused",
                    duration=args.duration,
                    connections=connections,
                    workdir=workdir,
                    cpu="1",
                )
                spent = procs.tree_cpu_seconds([processes[-1].pid]) - before
                result["cpu_us"] = spent / max(result["requests"], 1) * 1e6
                results[connections].append(result)
        print(f"transport floor (uvicorn + apps.gateway.upstream, no gateway logic), {args.rounds} rounds, medians:")
        for connections, runs in results.items():
            rps = statistics.median(run["rps"] for run in runs)
            cpu = statistics.median(run["cpu_us"] for run in runs)
            p50 = statistics.median(run["p50"] for run in runs)
            p99 = statistics.median(run["p99"] for run in runs)
            label = f"{connections} connection{'s' if connections > 1 else ''}"
            figures = f"{rps:.0f} requests/s | {cpu:.0f} µs CPU per request | p50 {p50:.2f} ms | p99 {p99:.2f} ms"
            print(f"| {label} | {figures} |")
    finally:
        procs.stop(processes)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
