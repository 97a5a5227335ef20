"""uvicorn's httptools protocol, sending a response's head and its first body bytes in one write.

uvicorn writes the status line and headers to the socket as soon as the application sends
``http.response.start``, and the body on the next message: two ``send`` system calls, and on
loopback two TCP segments, for every response that fits in one. On this machine a write to
a socket costs the web process about as much CPU as a few thousand lines of Python
(bench/README.md, "What changed, each measured A/B"), so the head waits for what follows it.

The held bytes go out with the next write on the connection, or at the end of the current
turn of the event loop if nothing follows (an application that sends its head and then
waits), or before the connection is closed; bytes are never reordered or dropped, so every
response is exactly what uvicorn would have sent. ``--http`` names this class
(:func:`pendra_console.serving.uvicorn_command`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadHoldingTransport:
    """A connection's transport that holds the first write of each response until the next.

    :meth:`expect_head` marks that the next write is a response's head. Everything else is
    the transport's own; the methods uvicorn calls on every request are spelled out rather
    than found through ``__getattr__``.
    """

    __slots__ = ("_held", "_loop", "_next_is_head", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._next_is_head = False

    def expect_head(self) -> None:
        self._next_is_head = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._next_is_head:
            self._next_is_head = False
            self.flush()  # whatever an earlier response left held goes first
            self._held = bytes(data)
            # Nothing may follow in this turn (a head sent, then a wait): it leaves at the turn's end.
            self._loop.call_soon(self.flush)
            return
        held = self._held
        if held is None:
            self.transport.write(data)
        else:
            self._held = None
            self.transport.writelines((held, data))  # one system call; uvloop writes both buffers at once

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class PendraHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's protocol over a :class:`HeadHoldingTransport`."""

    transport: Any

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeadHoldingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        # A request's headers are in: uvicorn's next write on this connection is a response's head
        # (its "100 Continue" included, which then goes out at the end of the turn, unmerged).
        self.transport.expect_head()
        super().on_headers_complete()
