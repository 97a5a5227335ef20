"""The gateway's connections to workers (``apps/gateway/upstream.py``): kept alive when the worker
allows it, never reused when it does not, and bounded against a worker that floods or lies.

Each worker is a loopback HTTP/1.1 server scripted by the test (``testing/scripted_workers.py``).
"""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.gateway.tests.conftest import record_for
from apps.workers import egress
from testing.scripted_workers import COMPLETION as WORKER_COMPLETION
from testing.scripted_workers import JSON, MODEL, ScriptedWorker

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}
COMPLETION = json.dumps(WORKER_COMPLETION).encode()


def _on_inference(answer: Any) -> Any:
    def script(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        return answer if path == "/v1/chat/completions" else None

    return script


def _chats(live: Any, key: str, count: int) -> list[httpx.Response]:
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        return [http.post("/v1/chat/completions", json=CHAT) for _ in range(count)]


def _inference_ports(worker: Any) -> list[int]:
    return [port for path, port in worker.peers if path == "/v1/chat/completions"]


def test_one_kept_alive_connection_carries_a_clients_requests_one_after_another(
    live, owner, scripted_worker, register_scripted
) -> None:
    worker = scripted_worker(_on_inference((200, JSON, COMPLETION)), keep_alive=True)
    register_scripted(worker)

    responses = _chats(live, owner.key, 12)

    assert [response.status_code for response in responses] == [200] * 12
    assert all(response.json()["usage"]["total_tokens"] == 3 for response in responses)
    assert len(set(_inference_ports(worker))) == 1, "each request opened a connection of its own"


def test_a_worker_that_closes_each_connection_is_asked_on_a_new_one_and_never_failed_over(
    live, owner, scripted_worker, register_scripted
) -> None:
    worker = scripted_worker(_on_inference((200, {**JSON, "Connection": "close"}, COMPLETION)), keep_alive=True)
    register_scripted(worker)

    responses = _chats(live, owner.key, 8)

    assert [response.status_code for response in responses] == [200] * 8
    assert len(set(_inference_ports(worker))) == 8
    assert record_for(responses[-1].headers["x-request-id"]).attempts == 1


def test_a_worker_flooding_its_headers_is_a_failed_worker_not_a_full_memory(
    live, owner, scripted_worker, register_scripted
) -> None:
    flood = {f"X-Flood-{number}": "x" * 60 for number in range(2000)}  # about 150 KB of headers
    worker = scripted_worker(_on_inference((200, {**JSON, **flood}, COMPLETION)), keep_alive=True)
    register_scripted(worker)

    (response,) = _chats(live, owner.key, 1)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "worker_error"
    record = record_for(response.headers["x-request-id"])
    assert record.status == 502


def test_a_second_answer_to_one_request_is_not_taken_for_the_next_requests_answer(
    live, owner, scripted_worker, register_scripted
) -> None:
    forged = json.dumps({**json.loads(COMPLETION), "usage": {"prompt_tokens": 0, "completion_tokens": 0}}).encode()
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(forged),
        forged,
    )
    answer = (200, {**JSON, "Content-Length": str(len(COMPLETION))}, [COMPLETION + smuggled])
    worker = scripted_worker(_on_inference(answer), keep_alive=True)
    register_scripted(worker)

    responses = _chats(live, owner.key, 3)

    # Each request is answered (and billed) by the worker's answer to it, never by the smuggled one.
    assert [response.status_code for response in responses] == [200] * 3
    assert [response.json()["usage"]["total_tokens"] for response in responses] == [3, 3, 3]


@pytest.fixture
def tls_worker(tmp_path: Path, register_scripted: Any) -> Iterator[tuple[ScriptedWorker, Path]]:
    """A keep-alive worker speaking HTTPS with a certificate of its own for 127.0.0.1, registered
    healthy (the probe's aiohttp has its own trust store; the gateway's client is what is tested)."""
    from apps.workers import services
    from apps.workers.models import Worker, WorkerState
    from pendra_console.asgi import application

    cert, key = tmp_path / "worker.pem", tmp_path / "worker.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    worker = ScriptedWorker(_on_inference((200, JSON, COMPLETION)), keep_alive=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    worker.server.socket = context.wrap_socket(worker.server.socket, server_side=True)
    worker.start()
    row = services.worker_register(
        name="tls", base_url=f"https://127.0.0.1:{worker.port}", models={MODEL: "chat"}, actor=None
    )
    Worker.objects.filter(pk=row.pk).update(state=WorkerState.HEALTHY)
    application.pool.invalidate()
    egress._tls_context.cache_clear()  # the trust store is read when the first TLS connection is made
    yield worker, cert
    egress._tls_context.cache_clear()
    worker.stop()


def test_a_worker_over_https_is_reached_when_its_certificate_is_trusted(live, owner, tls_worker, monkeypatch) -> None:
    worker, cert = tls_worker
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default trust store, as an operator sets it

    responses = _chats(live, owner.key, 3)

    assert [response.status_code for response in responses] == [200] * 3
    assert len(set(_inference_ports(worker))) == 1  # kept alive over TLS too


def test_a_worker_whose_certificate_is_not_trusted_never_receives_the_request(live, owner, tls_worker) -> None:
    worker, _ = tls_worker

    (response,) = _chats(live, owner.key, 1)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "worker_error"
    assert worker.inference_hits() == []  # the handshake failed before any byte of the request left


def test_a_worker_behind_a_private_ca_named_in_pendra_worker_ca_file_is_reached(
    live, owner, tls_worker, settings
) -> None:
    worker, cert = tls_worker
    settings.PENDRA_WORKER_CA_FILE = str(cert)  # the fleet's own authority, not the system's

    responses = _chats(live, owner.key, 3)

    assert [response.status_code for response in responses] == [200] * 3
    assert len(set(_inference_ports(worker))) == 1


def test_the_health_probe_trusts_pendra_worker_ca_file_as_the_gateway_does(tls_worker, settings) -> None:
    from django.core.management import call_command

    from apps.workers.models import Worker, WorkerState

    worker, cert = tls_worker
    url = f"https://127.0.0.1:{worker.port}"
    call_command("register_worker", "untrusted", url, "--models", f"{MODEL}:chat", "--probe", "--wait", "0")
    assert Worker.objects.get(name="untrusted").state == WorkerState.UNHEALTHY

    settings.PENDRA_WORKER_CA_FILE = str(cert)
    call_command("register_worker", "trusted", url, "--models", f"{MODEL}:chat", "--probe", "--wait", "0")
    assert Worker.objects.get(name="trusted").state == WorkerState.HEALTHY
