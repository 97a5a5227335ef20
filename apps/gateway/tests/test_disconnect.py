"""A client that goes away mid-stream frees the worker at once."""

from __future__ import annotations

import socket
import time

import pytest

from apps.gateway.tests.conftest import Gateway, record_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_client_disconnect_mid_stream_closes_the_upstream_within_a_second(gateway: Gateway) -> None:
    body = (
        b'{"model": "sim-chat", "stream": true, "max_tokens": 100,'
        b' "messages": [{"role": "user", "content": "a long story"}]}'
    )
    host, port = gateway.url.removeprefix("http://").split(":")
    request_id = "disconnect-test-0123456789"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {gateway.key}\r\nX-Request-Id: {request_id}\r\n".encode()
            + b"x-sim-chunk-delay-ms: 100\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while received.count(b"data: ") < 2:
            data = sock.recv(4096)
            assert data, f"the gateway closed the connection: {received!r}"
            received += data
            assert b"200 OK" in received, received
        before = sum(sim.stats()["disconnects"] for sim in gateway.sims)
        sock.shutdown(socket.SHUT_RDWR)
        closed_at = time.monotonic()

    while sum(sim.stats()["disconnects"] for sim in gateway.sims) == before:
        assert time.monotonic() - closed_at < 1.0, "the worker did not see the disconnect within a second"
        time.sleep(0.02)
    record = record_for(request_id)
    assert record.status == 499
    assert "client disconnected" in record.error
