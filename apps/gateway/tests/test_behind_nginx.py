"""The gateway behind the shipped nginx site config (deploy/nginx/): streams stay streams, ids travel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from apps.gateway.tests.conftest import Gateway, record_for
from testing.nginx import Nginx, nginx_binary
from testing.require import require_service


@pytest.fixture
def proxied(gateway: Gateway) -> Iterator[str]:
    require_service(nginx_binary() is not None, "nginx")
    with Nginx([urlsplit(gateway.url).netloc]) as nginx:
        yield nginx.url


def test_streamed_chunks_pass_through_nginx_as_they_are_generated(gateway: Gateway, proxied: str) -> None:
    arrivals = []
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{proxied}/v1/chat/completions",
        json={"model": "sim-chat", "messages": [{"role": "user", "content": "a b c"}], "stream": True},
        headers={"Authorization": f"Bearer {gateway.key}", "x-sim-chunk-delay-ms": "200", "x-sim-ttft-ms": "0"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - started)
    # Buffered, every chunk would arrive together at the end.
    assert len(arrivals) >= 4
    assert arrivals[0] < arrivals[-1] - 0.5


def test_the_clients_request_id_reaches_the_gateway_through_nginx(gateway: Gateway, proxied: str) -> None:
    request_id = "req_ticket_1234567890abcdef"
    response = httpx.post(
        f"{proxied}/v1/embeddings",
        json={"model": "sim-embed", "input": "hello"},
        headers={"Authorization": f"Bearer {gateway.key}", "X-Request-Id": request_id},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == request_id
    assert record_for(request_id).status == 200


def test_without_a_client_id_nginx_and_the_gateway_share_one(gateway: Gateway, proxied: str) -> None:
    response = httpx.post(
        f"{proxied}/v1/embeddings",
        json={"model": "sim-embed", "input": "hello"},
        headers={"Authorization": f"Bearer {gateway.key}"},
        timeout=30,
    )
    request_id = response.headers["X-Request-Id"]
    # nginx's $request_id: 32 hex characters, kept by the gateway because it is well-formed.
    assert len(request_id) == 32
    assert int(request_id, 16) >= 0
    assert record_for(request_id).status == 200
