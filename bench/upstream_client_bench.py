"""Which async HTTP client the gateway uses to reach workers: its own, aiohttp or httpx, measured.

The clients send the same POST to a static nginx upstream on loopback with 32
requests in flight on uvloop, after a warm-up, and report requests/s and the CPU each
request cost the client process. Usage: ``.venv/bin/python bench/upstream_client_bench.py
[--requests 4000] [--write]``; needs nginx (Debian ``nginx-light``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import django
import httpx
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_bench import BODY, nginx_config  # noqa: E402
from bench.procs import write_block  # noqa: E402
from testing.servers import free_port  # noqa: E402

CONCURRENCY = 32


async def _measure(one: Callable[[], Awaitable[None]], requests: int) -> tuple[float, float]:
    for _ in range(200):
        await one()

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
    return requests / (time.perf_counter() - wall), (time.process_time() - cpu) * 1e6 / requests


async def with_aiohttp(url: str, requests: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=256)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=100)

        async def one() -> None:
            response = await session.post(url, data=BODY, headers={"Content-Type": "application/json"}, timeout=timeout)
            await response.read()
            response.release()

        return await _measure(one, requests)


async def with_pendra(url: str, requests: int) -> tuple[float, float]:
    from apps.gateway.upstream import Upstream

    upstream = Upstream(limit_per_host=256)
    headers = {"content-type": "application/json", "X-Request-Id": "req_bench", "Accept-Encoding": "identity"}
    body = BODY.encode()

    async def one() -> None:
        response = await upstream.post(
            url, body, headers, connect_timeout=5, read_timeout=100, deadline=time.monotonic() + 600
        )
        await response.read_bounded(1 << 20)
        response.close()

    try:
        return await _measure(one, requests)
    finally:
        upstream.close()


async def with_httpx(url: str, requests: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(100, connect=5)) as client:

        async def one() -> None:
            response = await client.post(url, content=BODY, headers={"Content-Type": "application/json"})
            await response.aread()

        return await _measure(one, requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--write", action="store_true", help="record the table in bench/README.md")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pendra_console.settings")
    os.environ.setdefault("SECRET_KEY", "bench-" + os.urandom(16).hex())  # settings only, nothing signed
    django.setup()
    workdir = tempfile.mkdtemp(prefix="pendra-client-bench-")
    port = free_port()
    Path(workdir, "nginx.conf").write_text(nginx_config(port, workdir))
    nginx = subprocess.Popen(
        [shutil.which("nginx") or "/usr/sbin/nginx", "-c", f"{workdir}/nginx.conf", "-g", "daemon off;"]
    )
    try:
        time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        rows = [
            (name, uvloop.run(run(url, args.requests)))
            for name, run in (
                ("Pendra's own (`apps/gateway/upstream.py`)", with_pendra),
                ("aiohttp", with_aiohttp),
                ("httpx", with_httpx),
            )
        ]
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    table = "\n".join(
        [
            f"{args.requests} POSTs, {CONCURRENCY} in flight, uvloop, static nginx upstream on loopback.",
            "",
            "| client | requests/s | client CPU per request |",
            "|---|---:|---:|",
            *(f"| {name} | {rps:.0f} | {cpu:.0f} µs |" for name, (rps, cpu) in rows),
        ]
    )
    print(table)
    if args.write:
        write_block(
            ROOT / "bench" / "README.md",
            "client-bench",
            table,
            heading="## The upstream client (`bench/upstream_client_bench.py`)",
        )


if __name__ == "__main__":
    main()
