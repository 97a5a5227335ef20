"""The gateway's HTTP/1.1 client for workers: pooled keep-alive connections, httptools' parser.

The gateway sends every ``/v1`` request on to a worker. aiohttp's client did that for about
190 µs of CPU per request on this machine; this client does the same hop for about 40
(bench/README.md): a request is one ``write`` of a head built in one format call, and the
answer is parsed by httptools (llhttp, Node's C parser, which uvicorn already uses for
the requests coming in). It does only what the gateway needs, and bounds what a worker
can make it hold:

- ``POST`` with a body of known length; no redirects followed (a 3xx is returned as it is);
  no cookies kept; no decompression;
- connections kept alive per worker address (idle ones closed after
  ``KEEPALIVE_SECONDS``), at most ``limit_per_host`` per address, further requests waiting
  for one to free up; a connection is reused only after a complete answer the worker did
  not ask to close, and a reused connection that turns out closed before any byte of its
  answer is replaced once, as a stale keep-alive is no fault of the worker;
- every new connection re-checks the addresses its host name resolves to against the
  workers' egress rules (:mod:`apps.workers.egress`, DNS rebinding); IP literals were
  judged at registration;
- the head of an answer is bounded (``MAX_HEAD_BYTES``), and a body is read in chunks that
  stop the socket being read while ``MAX_BUFFERED_BYTES`` wait for the caller;
- a connect timeout, an idle timeout between reads (``read_timeout``, chat's silence limit)
  and a deadline for the whole request.

Failures are aiohttp's exception classes, which the proxy already tells apart
(:mod:`apps.gateway.proxy`): ``ConnectionTimeoutError`` (connecting took too long),
``ServerTimeoutError`` (the worker went silent or the deadline passed), other
``ClientError`` s (refused, reset, closed early, not HTTP).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httptools

from apps.workers.egress import RefusedAddress, check_resolved, worker_tls_context

KEEPALIVE_SECONDS = 30.0
MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one answer
MAX_BUFFERED_BYTES = 256 * 1024  # body read from the socket and not yet taken by the caller


class MalformedAnswer(aiohttp.ClientPayloadError):
    """What the worker sent is not an HTTP/1.1 answer this client accepts."""


class Headers(dict[str, str]):
    """An answer's headers by lower-case name (the last of a repeated header wins)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class _Connection(asyncio.Protocol):
    """One connection to a worker and the answer being read on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers = Headers()
        self.head_bytes = 0
        self.head_done = False
        self.keep_alive = False
        self.complete = False
        self.received = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.active = False

    # --- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.active:
            # Bytes nobody asked for (after a complete answer): this connection cannot be trusted.
            self._fail(MalformedAnswer("the worker sent bytes after its answer"))
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(MalformedAnswer(f"the worker's answer is not HTTP/1.1 ({exc.__class__.__name__})"))
            return
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.active and not self.complete and self.error is None:
            if self.head_done and self._ends_at_close():
                self.complete = True  # an answer framed by the end of the connection (HTTP/1.0 style)
            else:
                self.error = aiohttp.ServerDisconnectedError()
        self._wake()

    # --- httptools callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        if self.head_done:  # a second answer to one request: the worker is not speaking HTTP/1.1 to us
            raise MalformedAnswer("the worker sent a second answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES:
            raise MalformedAnswer(f"the answer's headers exceed {MAX_HEAD_BYTES} bytes")
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        # Read now: once the message is complete, llhttp has moved on and no longer says.
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > MAX_BUFFERED_BYTES and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True

    # --- for the request ---------------------------------------------------------

    def _ends_at_close(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", "")

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, read_timeout: float | None, deadline: float) -> None:
        """Until something arrives; ``ServerTimeoutError`` after ``read_timeout`` of silence or at ``deadline``."""
        limit = deadline - time.monotonic()
        if read_timeout is not None and read_timeout < limit:
            limit = read_timeout
        if limit <= 0:
            raise aiohttp.ServerTimeoutError("timed out waiting for the worker")
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(limit, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def take(self) -> bytes:
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks = []
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.complete and not self.closed and self.error is None and self.keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(aiohttp.ServerTimeoutError("timed out waiting for the worker"))


class Response:
    """A worker's answer: its status and headers now, its body as it arrives."""

    __slots__ = ("_conn", "_deadline", "_pool", "_read_timeout", "headers", "status")

    def __init__(self, pool: _HostPool, conn: _Connection, read_timeout: float | None, deadline: float) -> None:
        self._pool, self._conn = pool, conn
        self._read_timeout, self._deadline = read_timeout, deadline
        self.status = conn.status
        self.headers = conn.headers

    @property
    def content_type(self) -> str:
        """The media type without its parameters, as aiohttp gives it."""
        value = self.headers.get("content-type")
        return value.split(";", 1)[0].strip().lower() if value else "application/octet-stream"

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None

    async def readany(self) -> bytes:
        """What has arrived of the body (waiting for something if nothing has); b"" at its end."""
        conn = self._conn
        while not conn.chunks:
            if conn.complete:
                return b""
            if conn.error is not None:
                raise conn.error
            await conn.wait(self._read_timeout, self._deadline)
        return conn.take()

    async def read_bounded(self, limit: int) -> bytes | None:
        """The whole body, or None as soon as it is known to be longer than ``limit`` bytes."""
        declared = self.content_length
        if declared is not None and declared > limit:
            return None
        parts: list[bytes] = []
        size = 0
        while chunk := await self.readany():
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Done with the answer: the connection goes back to the pool if it can carry another."""
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is not None:
            self._pool.release(conn)


class _HostPool:
    """The connections to one worker address."""

    def __init__(self, scheme: str, host: str, port: int, limit: int) -> None:
        self.scheme, self.host, self.port, self.limit = scheme, host, port, limit
        self.host_header = (host if port == (443 if scheme == "https" else 80) else f"{host}:{port}").encode("idna")
        self.idle: deque[_Connection] = deque()
        self.count = 0  # connections open or being opened, idle or not
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()

    async def acquire(self, connect_timeout: float) -> tuple[_Connection, bool]:
        """A connection (and whether it was reused), opening one if the limit allows, else waiting."""
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_SECONDS:
                return conn, True
            conn.close()
            self.count -= 1
        if self.count >= self.limit:
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.release(waiter.result())  # type: ignore[arg-type]
                elif waiter in self.waiters:
                    self.waiters.remove(waiter)
                raise
            if handed is not None:
                return handed, True
        self.count += 1
        try:
            return await self._open(connect_timeout), False
        except BaseException:
            self._forget()
            raise

    async def _open(self, connect_timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = worker_tls_context() if self.scheme == "https" else None
        try:
            async with asyncio.timeout(connect_timeout):
                addresses = await _allowed_addresses(loop, self.host, self.port)
                failure: OSError | None = None
                for address in addresses:
                    try:
                        _, conn = await loop.create_connection(
                            lambda: _Connection(loop),
                            address,
                            self.port,
                            ssl=tls,
                            server_hostname=self.host if tls is not None else None,
                        )
                    except OSError as exc:
                        failure = exc
                        continue
                    transport = conn.transport
                    if transport is not None:
                        sock = transport.get_extra_info("socket")
                        if sock is not None:
                            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return conn
                raise failure or OSError(f"{self.host} has no address")
        except TimeoutError:
            raise aiohttp.ConnectionTimeoutError(f"connecting to {self.host}:{self.port} timed out") from None
        except RefusedAddress as exc:
            raise aiohttp.ClientConnectionError(str(exc)) from None
        except OSError as exc:
            reason = exc.strerror or exc
            raise aiohttp.ClientConnectionError(f"cannot connect to {self.host}:{self.port}: {reason}") from None

    def release(self, conn: _Connection) -> None:
        if conn.reusable():
            conn._reset()
            conn.idle_since = time.monotonic()
            while self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)
                    return
            self.idle.append(conn)
            return
        conn.close()
        self._forget()

    def _forget(self) -> None:
        """A connection closed or never opened: a request waiting for one may open its own."""
        self.count -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


async def _allowed_addresses(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[str]:
    """``host`` itself if it is an IP literal; else what it resolves to, refused if any address is."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [str(sockaddr[0]) for *_, sockaddr in infos]
    check_resolved(host, addresses)
    return addresses


class Upstream:
    """The pools of one web process, by worker address."""

    def __init__(self, *, limit_per_host: int) -> None:
        self.limit_per_host = limit_per_host
        self._pools: dict[tuple[str, str, int], _HostPool] = {}
        self._targets: dict[str, tuple[tuple[str, str, int], bytes]] = {}

    async def post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float | None,
        deadline: float,
    ) -> Response:
        """Send ``body`` to ``url`` and return once the answer's head has arrived."""
        key, target = self._target(url)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _HostPool(*key, limit=self.limit_per_host)
        head = _head(target, pool.host_header, len(body), headers)
        for _ in range(2):
            conn, reused = await pool.acquire(connect_timeout)
            conn.active = True
            try:
                if conn.transport is None or conn.closed:
                    raise aiohttp.ServerDisconnectedError()
                conn.transport.write(head + body if len(body) < 65536 else head)
                if len(body) >= 65536:
                    conn.transport.write(body)
                while not conn.head_done:
                    if conn.error is not None:
                        raise conn.error
                    if conn.complete:  # pragma: no cover (a message completes after its head)
                        break
                    await conn.wait(read_timeout, deadline)
            except aiohttp.ServerDisconnectedError:
                pool.release(conn)
                if reused and not conn.received:
                    continue  # the worker had closed this idle connection: one more try on a new one
                raise
            except BaseException:
                pool.release(conn)
                raise
            if conn.status < 200:
                pool.release(conn)
                raise MalformedAnswer(f"the worker answered with HTTP {conn.status}")
            return Response(pool, conn, read_timeout, deadline)
        raise aiohttp.ServerDisconnectedError()  # pragma: no cover (the loop returns or raises)

    def _target(self, url: str) -> tuple[tuple[str, str, int], bytes]:
        known = self._targets.get(url)
        if known is None:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme not in {"http", "https"} or not parts.hostname:
                raise aiohttp.InvalidURL(url)
            port = parts.port or (443 if scheme == "https" else 80)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            known = ((scheme, parts.hostname, port), target.encode("ascii"))
            if len(self._targets) > 10_000:
                self._targets.clear()  # bounded, as worker URLs come and go
            self._targets[url] = known
        return known

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def _head(target: bytes, host: bytes, length: int, headers: dict[str, str]) -> bytes:
    lines = [b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (target, host, length)]
    if "content-type" not in headers:  # what aiohttp sent for a body of bytes
        lines.append(b"Content-Type: application/octet-stream\r\n")
    for name, value in headers.items():
        raw_name, raw_value = name.encode("latin-1"), value.encode("latin-1")
        if b"\r" in raw_value or b"\n" in raw_value or b"\r" in raw_name or b"\n" in raw_name or b":" in raw_name:
            raise ValueError(f"header {name!r} cannot be sent")
        lines.append(b"%s: %s\r\n" % (raw_name, raw_value))
    lines.append(b"\r\n")
    return b"".join(lines)
