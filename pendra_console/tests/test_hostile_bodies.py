"""The admin API under hostile bodies: bounded in size before Django reads them, bounded in
nesting before a parser recurses, and answered with the JSON error contract."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from pendra_console.jsonbody import MAX_JSON_DEPTH
from testing.actors import Actor


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_json_nested_deeper_than_the_limit_is_a_400_on_the_admin_api(owner: Actor, depth: int) -> None:
    body = '{"name": "Deep", "extra": ' + _nested(depth) + "}"
    response = owner.client().patch("/api/v1/orgs/acme/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested" in response.json()["detail"]


def _raw_request(url: str, head: bytes, body: bytes, *, timeout: float = 5.0) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as conn:
        conn.sendall(head + body)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


@pytest.mark.django_db(transaction=True)
def test_an_admin_api_body_declared_over_the_limit_is_refused_before_it_is_read(live: Any, owner: Actor) -> None:
    # Only a few bytes follow a declared gigabyte: an answer within the timeout shows the
    # server refused on the header instead of waiting to spool the body.
    head = (
        b"PATCH /api/v1/orgs/acme/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + owner.key.encode() + b"\r\nContent-Length: 1000000000\r\n\r\n"
    )
    answer = _raw_request(live.url, head, b'{"name": ')
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.django_db(transaction=True)
def test_a_chunked_admin_api_body_over_the_limit_is_a_413_json_error(live: Any, owner: Actor, settings: Any) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(64):
            yield b"x" * 65536
        yield b'"}'

    with httpx.Client(base_url=live.url, timeout=30) as http:
        response = http.patch(
            "/api/v1/orgs/acme/",
            content=chunks(),
            headers={"Authorization": f"Bearer {owner.key}", "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["detail"].startswith("The request body exceeds")
    assert response.headers["x-request-id"] == response.json()["request_id"]


@pytest.mark.django_db(transaction=True)
def test_an_admin_api_body_within_the_limit_is_served(live: Any, owner: Actor) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        response = http.patch(
            "/api/v1/orgs/acme/",
            content=json.dumps({"name": "Within"}),
            headers={"Authorization": f"Bearer {owner.key}", "Content-Type": "application/json"},
        )
    assert response.status_code == 200, response.text
