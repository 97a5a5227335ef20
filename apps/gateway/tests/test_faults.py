"""Fault tests: each asserts the status, the headers, the request record and the usage."""

from __future__ import annotations

import json

import httpx
import pytest

from apps.gateway.tests.conftest import Gateway, record_for, usage_for
from apps.workers.models import Worker, WorkerState

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}


def test_a_worker_returning_500_fails_over_to_another(gateway: Gateway) -> None:
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json=CHAT, headers={"x-sim-status": "500", "x-sim-only": "sim-a"})
    assert response.status_code == 200
    assert response.headers["x-worker-name"] == "sim-b"
    record = record_for(response.headers["x-request-id"])
    assert (record.status, record.worker_name) == (200, "sim-b")
    assert record.attempts in {1, 2}  # 2 when sim-a was tried first
    assert len(usage_for(response.headers["x-request-id"])) == 1


def test_when_every_worker_fails_the_502_names_the_last_one(gateway: Gateway) -> None:
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json=CHAT, headers={"x-sim-status": "503"})
    assert response.status_code == 502
    body = response.json()
    assert body["detail"].startswith("The GPU worker failed (HTTP 503)")
    assert body["error"]["type"] == "api_error"
    last = response.headers["x-worker-name"]
    assert last in {"sim-a", "sim-b"}
    assert response.headers["x-worker-id"] == str(Worker.objects.get(name=last).id)
    record = record_for(response.headers["x-request-id"])
    assert (record.status, record.attempts, record.worker_name) == (502, 2, last)
    assert usage_for(response.headers["x-request-id"]) == []


def test_a_hang_is_a_504_after_the_timeout_and_is_not_billed(gateway: Gateway, settings) -> None:
    settings.PENDRA_EMBEDDINGS_TIMEOUT = 0.5
    with gateway.http() as http:
        response = http.post("/v1/embeddings", json={"model": "sim-embed", "input": "hi"}, headers={"x-sim-hang": "1"})
    assert response.status_code == 504
    assert "exceeded the 0.5 s limit" in response.json()["detail"]
    assert "smaller batches" in response.json()["detail"]
    assert response.headers["x-worker-name"] in {"sim-a", "sim-b"}
    record = record_for(response.headers["x-request-id"])
    assert record.status == 504
    assert usage_for(response.headers["x-request-id"]) == []


def test_a_stream_reset_after_three_chunks_ends_with_an_error_event_and_no_replay(gateway: Gateway) -> None:
    body = {**CHAT, "max_tokens": 10, "stream": True}
    with (
        gateway.http() as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers={"x-sim-reset-after": "3"}) as response,
    ):
        assert response.status_code == 200
        raw = b"".join(response.iter_raw()).decode()
        request_id = response.headers["x-request-id"]
    events = [event.removeprefix("data: ") for event in raw.strip().split("\n\n")]
    content_events = [json.loads(e) for e in events[:-1]]
    assert len(content_events) == 3
    ids = [event["choices"][0]["delta"].get("content") for event in content_events]
    assert len(ids) == len(set(ids))  # nothing was replayed from a second worker
    final = json.loads(events[-1])
    assert final["error"]["code"] == "stream_broken"
    assert "[DONE]" not in raw
    record = record_for(request_id)
    assert (record.status, record.streamed) == (502, True)
    assert usage_for(request_id) == []


def test_an_upstream_error_envelope_is_passed_through_byte_for_byte(gateway: Gateway) -> None:
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json=CHAT, headers={"x-sim-error-envelope": "400"})
        direct = httpx.post(
            f"{gateway.sims[0].url}/v1/chat/completions", json=CHAT, headers={"x-sim-error-envelope": "400"}
        )
    assert response.status_code == 400
    assert response.content == direct.content
    assert response.json()["error"]["code"] == "sim_error"
    assert usage_for(response.headers["x-request-id"]) == []


def test_garbage_from_a_worker_is_retried_elsewhere(gateway: Gateway) -> None:
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json=CHAT, headers={"x-sim-garbage": "1", "x-sim-only": "sim-b"})
    assert response.status_code == 200
    assert response.headers["x-worker-name"] == "sim-a"


def test_no_healthy_worker_is_a_503_with_retry_after(gateway: Gateway) -> None:
    Worker.objects.update(state=WorkerState.UNHEALTHY)
    import time

    time.sleep(1.1)  # the gateway's view of the fleet is at most a second old
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "No healthy worker" in response.json()["detail"]
    assert record_for(response.headers["x-request-id"]).status == 503
