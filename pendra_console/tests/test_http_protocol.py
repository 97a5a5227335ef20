"""The web server's HTTP protocol (pendra_console/http_protocol.py): a response's head waits for
its first body bytes, and nothing a client receives changes because of it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pendra_console.http_protocol import HeadHoldingTransport
from pendra_console.serving import HTTP_PROTOCOL, uvicorn_command
from testing.live import LiveServer


async def _slow_head(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sends its head, then its body a second later: as a stream whose first event is slow."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await asyncio.sleep(1.0)
        await send({"type": "http.response.body", "body": b"late", "more_body": False})
        return
    answer = b"%s %s %d" % (scope["method"].encode(), scope["path"].encode(), len(body))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer, "more_body": False})


@pytest.fixture
def server() -> Iterator[LiveServer]:
    live = LiveServer(_slow_head).start()
    try:
        yield live
    finally:
        live.stop()


def _connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_until(sock: socket.socket, marker: bytes, count: int = 1) -> bytes:
    data = b""
    while data.count(marker) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_production_and_the_live_test_server_serve_with_the_same_protocol() -> None:
    command = uvicorn_command(host="127.0.0.1", port=8000)
    assert command[command.index("--http") + 1] == HTTP_PROTOCOL
    assert LiveServer(_slow_head).server.config.http == HTTP_PROTOCOL


def test_no_response_names_the_server_software(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
        head = _read_until(sock, b"\r\n\r\n").split(b"\r\n\r\n")[0].lower()
    assert b"\r\ndate: " in head
    assert b"\r\nserver:" not in head
    assert "--no-server-header" in uvicorn_command(host="127.0.0.1", port=8000)


def test_a_head_sent_before_a_slow_body_reaches_the_client_at_once(server: LiveServer) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        head = _read_until(sock, b"\r\n\r\n")
        waited = time.monotonic() - started
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert waited < 0.8, f"the head waited {waited:.2f} s for the body"
        rest = _read_until(sock, b"late")
        assert rest.endswith(b"4\r\nlate\r\n0\r\n\r\n") or rest.endswith(b"late")


def test_pipelined_requests_are_answered_whole_and_in_order(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
            b"GET /three HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        data = _read_until(sock, b"HTTP/1.1 200 OK", 3)
        data += _read_until(sock, b"GET /three 0") if b"GET /three 0" not in data else b""
    answers = [part.split(b"\r\n\r\n", 1)[1] for part in data.split(b"HTTP/1.1 200 OK")[1:]]
    assert answers == [b"POST /one 3", b"POST /two 5", b"GET /three 0"]


def test_expect_100_continue_still_gets_its_interim_answer_before_the_body_is_sent(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        interim = _read_until(sock, b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"data")
        final = interim.split(b"\r\n\r\n", 1)[1] + _read_until(sock, b"POST /upload 4")
    assert final.startswith(b"HTTP/1.1 200 OK\r\n")
    assert final.endswith(b"POST /upload 4")


class _Socket:
    """What the operating system's socket was sent, one entry per system call."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.calls.append(b"".join(parts))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_a_head_and_its_body_leave_in_one_write_and_a_lone_head_at_the_end_of_the_turn() -> None:
    async def scenario() -> list[bytes]:
        sent = _Socket()
        transport = HeadHoldingTransport(sent, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.expect_head()
        transport.write(b"HEAD1")
        transport.write(b"body1")
        assert sent.calls == [b"HEAD1body1"]
        transport.expect_head()
        transport.write(b"HEAD2")
        assert sent.calls == [b"HEAD1body1"]  # held
        await asyncio.sleep(0)  # the turn ends: the head goes alone
        assert sent.calls == [b"HEAD1body1", b"HEAD2"]
        transport.write(b"body2")
        transport.expect_head()
        transport.write(b"HEAD3")
        transport.close()  # a close sends what is held first
        return sent.calls

    assert asyncio.run(scenario()) == [b"HEAD1body1", b"HEAD2", b"body2", b"HEAD3"]
