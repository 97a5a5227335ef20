"""One multiplexed Redis connection per event loop, for the gateway's commands on every request.

Each ``/v1`` request sends Redis an admission (``EVALSHA``) before it is forwarded and a
settle and its record (``EVALSHA``, ``XADD``) before its last bytes. Through redis-py's
asyncio client each of those batches was a pipeline object, a connection checked out of a
pool under a lock, a timeout context and a pure-Python command packer: about a sixth of
the gateway's CPU per request (bench/README.md). Here a batch is one ``write`` on one
connection that every request of the process shares, and the replies are parsed by
hiredis (Redis's own C parser) and handed back in order: Redis answers the commands of a
connection in the order it received them, so the n-th reply is the n-th command's.

What it keeps from the pooled client, so callers see the same failures:

- an error reply is returned in place of that command's result, as an exception object
  (``NOSCRIPT`` as :class:`~redis.exceptions.NoScriptError`), like a pipeline's
  ``execute(raise_on_error=False)``; the other commands' results are unaffected;
- a connection that cannot be made within ``connect_timeout``, breaks, or leaves a batch
  unanswered for ``timeout`` seconds fails every batch waiting on it with
  :class:`~redis.exceptions.ConnectionError` or :class:`~redis.exceptions.TimeoutError`
  and is closed; the next batch opens a new one. (One unanswered batch means the
  connection is stuck; the batches queued behind it would wait as long.)
- ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs, with a username, password and
  database, as redis-py reads them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


def encode(*arguments: Any) -> bytes:
    """One command in RESP: an array of bulk strings (str as UTF-8, numbers in decimal).

    hiredis's C encoder (the same bytes a Python loop made, at a quarter of the CPU); it
    refuses anything but bytes, str, int and float, booleans included (Redis has none).
    """
    packed: bytes = hiredis.pack_command(arguments)
    return packed


class _Batch:
    """Commands written together; the future gets their replies once the last has come."""

    __slots__ = ("deadline", "future", "replies", "size")

    def __init__(self, future: asyncio.Future[list[Any]], size: int, deadline: float) -> None:
        self.future = future
        self.size = size
        self.deadline = deadline
        self.replies: list[Any] = []


class _Protocol(asyncio.Protocol):
    def __init__(self, connection: Multiplexer) -> None:
        self.connection = connection
        self.reader = hiredis.Reader(replyError=ResponseError)

    def data_received(self, data: bytes) -> None:
        self.connection._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection._lost(self, exc)


class Multiplexer:
    """Batches of commands written on one connection, replies matched in order."""

    def __init__(self, url: str, *, timeout: float = 1.0, connect_timeout: float = 1.0) -> None:
        options: dict[str, Any] = dict(parse_url(url))
        self._path: str | None = options.get("path")
        self._host = options.get("host", "localhost")
        self._port = int(options.get("port", 6379))
        self._ssl = _ssl_context(options) if options.get("connection_class") is SSLConnection else None
        self._setup = _setup_commands(options)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._waiting: deque[_Batch] = deque()
        self._watchdog: asyncio.TimerHandle | None = None

    async def execute(self, commands: list[bytes]) -> list[Any]:
        """The replies to ``commands`` (each made by :func:`encode`), in order; an error reply is
        its exception, in its place. Raises ``ConnectionError`` or ``TimeoutError`` (redis-py's)."""
        if self._transport is None:
            await self._connect()
        return await self._send(commands)

    def _send(self, commands: list[bytes]) -> asyncio.Future[list[Any]]:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise RedisConnectionError("the Redis connection closed")
        loop = asyncio.get_running_loop()
        batch = _Batch(loop.create_future(), len(commands), time.monotonic() + self.timeout)
        self._waiting.append(batch)
        transport.write(b"".join(commands))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.timeout, self._check_deadline)
        return batch.future

    async def _connect(self) -> None:
        # Every request arriving while the connection is made waits for the same attempt.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        await asyncio.shield(self._connecting)

    def _connected(self, attempt: asyncio.Future[None]) -> None:
        self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved: each waiter sees it raised from its own await

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self._path is not None:
                    transport, protocol = await loop.create_unix_connection(lambda: _Protocol(self), self._path)
                else:
                    transport, protocol = await loop.create_connection(
                        lambda: _Protocol(self), self._host, self._port, ssl=self._ssl
                    )
        except TimeoutError:
            raise RedisTimeoutError("timed out connecting to Redis") from None
        except OSError as exc:
            raise RedisConnectionError(f"could not connect to Redis: {exc.strerror or exc}") from None
        self._transport, self._protocol = transport, protocol
        if self._setup:
            replies = await self._send(self._setup)
            failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
            if failed is not None:
                self._close(RedisConnectionError(f"Redis refused the connection's setup: {failed}"))
                raise RedisConnectionError(f"Redis refused the connection's setup: {failed}")

    def _received(self, protocol: _Protocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return
        reader = protocol.reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if not self._waiting:
                    raise hiredis.ProtocolError("a reply no command asked for")
                batch = self._waiting[0]
                if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
                    reply = NoScriptError(str(reply))
                batch.replies.append(reply)
                if len(batch.replies) == batch.size:
                    self._waiting.popleft()
                    if not batch.future.done():  # its caller may have been cancelled
                        batch.future.set_result(batch.replies)
        except hiredis.ProtocolError as exc:
            self._close(RedisConnectionError(f"Redis sent what is not RESP: {exc}"))

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is self._protocol:
            self._close(RedisConnectionError(f"the Redis connection was lost: {exc or 'closed by the server'}"))

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        now = time.monotonic()
        oldest = self._waiting[0].deadline
        if oldest <= now:
            self._close(RedisTimeoutError(f"Redis did not answer within {self.timeout:g} s"))
        else:
            self._watchdog = asyncio.get_running_loop().call_later(oldest - now, self._check_deadline)

    def _close(self, error: Exception) -> None:
        """Fail every batch waiting on this connection and drop it; the next batch reconnects."""
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            transport.abort()
        waiting, self._waiting = self._waiting, deque()
        for batch in waiting:
            if not batch.future.done():
                batch.future.set_exception(error)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def close(self) -> None:
        self._close(RedisConnectionError("the Redis connection was closed"))


def _setup_commands(options: dict[str, Any]) -> list[bytes]:
    setup = []
    if options.get("password") is not None:
        credentials = [options["username"], options["password"]] if options.get("username") else [options["password"]]
        setup.append(encode("AUTH", *credentials))
    if int(options.get("db") or 0):
        setup.append(encode("SELECT", int(options["db"])))
    return setup


def _ssl_context(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    if str(options.get("ssl_cert_reqs", "required")).lower() in {"none", "cert_none"}:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


_connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Multiplexer]] = weakref.WeakKeyDictionary()


def for_loop(url: str) -> Multiplexer:
    """This event loop's connection to ``url`` (a uvicorn process has one loop, so one connection)."""
    loop = asyncio.get_running_loop()
    by_url = _connections.get(loop)
    if by_url is None:
        by_url = _connections[loop] = {}
    connection = by_url.get(url)
    if connection is None:
        connection = by_url[url] = Multiplexer(url)
    return connection
