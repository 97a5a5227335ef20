"""The reference for what Python does per request on this machine: a bare aiohttp proxy.

It does the least a gateway can: the key looked up in a dict, a token bucket per org in
process memory, the model's upstream from a dict, the body forwarded over a pooled
connection (a stream relayed chunk by chunk as it arrives), one log line per request
written to a file in batches. No database, no Redis, nothing shared between processes:
what Pendra does on top (limits exact across processes, durable records, routing with
health) is the difference ``bench/side_by_side.py`` measures against this.

``--redis URL`` adds the least that Pendra's two guarantees cost, and nothing else:
before forwarding, one round trip that admits the request against a per-org counter shared
by every process (a Lua script: exact across processes); after the upstream answers and
before the client has its last byte, one round trip that hands the log line to a Redis
Stream (durable if this process dies the next instant). Both over the gateway's own Redis
connection (:class:`pendra_console.redis_mux.Multiplexer`: one pipelined connection, replies
parsed by hiredis), so the figure is the round trips' floor with Pendra's client.

Usage: ``python bench/bare_proxy.py --port 8100 --upstream MODEL=URL [...] --key KEY
[--log FILE] [--redis URL]``; one process, one event loop (uvloop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pendra_console.redis_mux import Multiplexer, encode

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class Bucket:
    """A token bucket: ``rate`` requests a second, bursts up to ``burst``."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


# Admit against a one-minute window per org, exact across processes: INCR, then expire a new window.
ADMIT = b"local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], 60000) end return n"


class BareProxy:
    def __init__(self, *, keys: dict[str, str], upstreams: dict[str, str], log_path: str, redis: str = "") -> None:
        self.keys = keys  # key -> org
        self.upstreams = upstreams  # model -> base URL
        self.buckets: dict[str, Bucket] = {}
        self.lines: list[str] = []
        self.log_path = log_path
        self.session: aiohttp.ClientSession | None = None
        self.redis = Multiplexer(redis) if redis else None
        self.admit_sha = b""

    async def start(self, app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        app["flusher"] = asyncio.get_running_loop().create_task(self.flush_every(0.25))
        if self.redis is not None:
            [sha] = await self.redis.execute([encode("SCRIPT", "LOAD", ADMIT)])
            assert isinstance(sha, bytes), sha
            self.admit_sha = sha

    async def stop(self, app: web.Application) -> None:
        app["flusher"].cancel()
        self.flush()
        if self.session is not None:
            await self.session.close()
        if self.redis is not None:
            self.redis.close()

    async def flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.flush()

    def flush(self) -> None:
        if self.lines:
            lines, self.lines = self.lines, []
            with open(self.log_path, "a") as log:
                log.write("".join(lines))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        authorization = request.headers.get("Authorization", "")
        org = self.keys.get(authorization.removeprefix("Bearer "))
        if org is None:
            return web.json_response({"error": {"message": "invalid key"}}, status=401)
        bucket = self.buckets.get(org)
        if bucket is None:
            bucket = self.buckets[org] = Bucket(rate=1e9, burst=1e9)
        if not bucket.take():
            return web.json_response({"error": {"message": "rate limited"}}, status=429)
        if self.redis is not None:
            window = b"bare:admit:%s:%d" % (org.encode(), int(time.time() // 60))
            [admitted] = await self.redis.execute([encode("EVALSHA", self.admit_sha, 1, window)])
            if not isinstance(admitted, int) or admitted > 10**12:
                return web.json_response({"error": {"message": "rate limited"}}, status=429)
        body = await request.read()
        try:
            model = json.loads(body)["model"]
            base = self.upstreams[model]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": {"message": "bad request"}}, status=400)
        assert self.session is not None
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        async with self.session.post(base + request.path, data=body, headers=headers) as upstream:
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            if upstream.content_type == "text/event-stream":
                response = web.StreamResponse(status=upstream.status, headers=out_headers)
                try:
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
                    await self.record(org, request.path, model, upstream.status, started)
                    await response.write_eof()
                except ConnectionResetError:  # the client left (wrk stopping): nothing to answer
                    return response
                return response
            response = web.Response(status=upstream.status, body=await upstream.read(), headers=out_headers)
        await self.record(org, request.path, model, upstream.status, started)
        return response

    async def record(self, org: str, path: str, model: str, status: int, started: float) -> None:
        line = f"{time.time():.3f} {org} {path} {model} {status} {(time.perf_counter() - started) * 1000:.2f}ms\n"
        if self.redis is None:
            self.lines.append(line)
        else:  # handed off durably before the client has its last byte
            await self.redis.execute([encode("XADD", "bare:log", "MAXLEN", "~", 100_000, "*", "line", line)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", default=[], metavar="MODEL=URL")
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", default="/dev/null")
    parser.add_argument("--redis", default="", metavar="URL", help="admit and log through this Redis")
    args = parser.parse_args()
    upstreams = dict(value.split("=", 1) for value in args.upstream)
    proxy = BareProxy(keys={args.key: "org-1"}, upstreams=upstreams, log_path=args.log, redis=args.redis)
    app = web.Application()
    app.on_startup.append(proxy.start)
    app.on_cleanup.append(proxy.stop)
    app.router.add_get("/health", lambda _: web.json_response({"status": "ok"}))
    app.router.add_post("/v1/{tail:.*}", proxy.handle)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
