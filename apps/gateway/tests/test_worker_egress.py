"""What the gateway takes from and sends to a worker is bounded: no redirects, no rebinding, no floods.

Each worker here is a loopback server scripted to misbehave (``testing/scripted_workers.py``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from apps.gateway.tests.conftest import Gateway, record_for, usage_for
from testing.scripted_workers import COMPLETION, JSON, MODEL, SSE
from testing.scripted_workers import sse_chunk as _chunk

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}


def _post(live: Any, key: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        return http.post("/v1/chat/completions", json=body, headers=headers)


def _on_inference(answer: Any) -> Any:
    def script(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        return answer if path == "/v1/chat/completions" else None

    return script


def test_the_gateway_does_not_follow_a_workers_redirect(live, owner, scripted_worker, register_scripted) -> None:
    target = scripted_worker(_on_inference((200, JSON, json.dumps(COMPLETION).encode())))
    redirect = (307, {"Location": f"{target.url}/v1/chat/completions", "Content-Length": "0"}, b"")
    worker = scripted_worker(_on_inference(redirect))
    register_scripted(worker)

    response = _post(live, owner.key, CHAT)

    assert response.status_code == 502
    assert "redirect" in response.json()["detail"]
    assert target.hits == []
    assert len(worker.inference_hits()) >= 1


def test_a_worker_host_that_now_resolves_to_a_refused_address_is_not_contacted(
    live, owner, scripted_worker, register_scripted, settings
) -> None:
    # Registered as "localhost" while loopback was allowed; the name now leads somewhere refused
    # (DNS rebinding looks the same from here): the connection is checked, not just the registration.
    worker = scripted_worker(_on_inference((200, JSON, json.dumps(COMPLETION).encode())), host="localhost")
    register_scripted(worker)
    settings.PENDRA_ALLOW_PRIVATE_WORKER_URLS = False

    response = _post(live, owner.key, CHAT)

    assert response.status_code == 502
    assert worker.inference_hits() == []


def test_a_non_streamed_answer_larger_than_the_bound_is_a_502(
    live, owner, scripted_worker, register_scripted, settings
) -> None:
    settings.PENDRA_WORKER_MAX_BODY_BYTES = 2000
    padded = {**COMPLETION, "padding": "x" * 5000}
    register_scripted(scripted_worker(_on_inference((200, JSON, json.dumps(padded).encode()))))

    response = _post(live, owner.key, CHAT)

    assert response.status_code == 502
    assert "2000 bytes" in response.json()["detail"]
    assert "xxxx" not in response.text
    assert usage_for(response.headers["x-request-id"]) == []


def test_an_error_answer_larger_than_the_bound_is_not_passed_on(
    live, owner, scripted_worker, register_scripted, settings
) -> None:
    settings.PENDRA_WORKER_MAX_ERROR_BYTES = 1000
    envelope = {"error": {"message": "y" * 5000, "type": "invalid_request_error"}}
    register_scripted(scripted_worker(_on_inference((400, JSON, json.dumps(envelope).encode()))))

    response = _post(live, owner.key, CHAT)

    assert response.status_code == 502
    assert "1000 bytes" in response.json()["detail"]
    assert "yyyy" not in response.text


def test_a_stream_event_larger_than_the_bound_breaks_the_stream(
    live, owner, scripted_worker, register_scripted, settings
) -> None:
    settings.PENDRA_WORKER_MAX_EVENT_BYTES = 1000
    events = [_chunk("a"), _chunk("b" * 5000), _chunk("c"), b"data: [DONE]\n\n"]
    register_scripted(scripted_worker(_on_inference((200, SSE, events))))

    response = _post(live, owner.key, {**CHAT, "stream": True})

    assert response.status_code == 200
    assert "bbbb" not in response.text
    final = json.loads(response.text.strip().split("\n\n")[-1].removeprefix("data: "))
    assert final["error"]["code"] == "stream_broken"
    assert "1000 bytes" in final["detail"]
    assert record_for(response.headers["x-request-id"]).status == 502


def test_done_inside_content_does_not_finish_the_stream(live, owner, scripted_worker, register_scripted) -> None:
    # The model wrote "data: [DONE]" as text and the worker then died: not a finished, billable stream.
    events = [_chunk("data: [DONE]"), _chunk("[DONE]", usage={"prompt_tokens": 1, "completion_tokens": 2})]
    register_scripted(scripted_worker(_on_inference((200, SSE, events))))

    response = _post(live, owner.key, {**CHAT, "stream": True})

    final = json.loads(response.text.strip().split("\n\n")[-1].removeprefix("data: "))
    assert final["error"]["code"] == "stream_broken"
    record = record_for(response.headers["x-request-id"])
    assert record.status == 502
    assert usage_for(response.headers["x-request-id"]) == []


def test_a_finished_stream_with_done_inside_content_is_metered(live, owner, scripted_worker, register_scripted) -> None:
    usage = {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
    events = [_chunk("say data: [DONE] now"), _chunk("", usage=usage), b"data: [DONE]\n\n"]
    register_scripted(scripted_worker(_on_inference((200, SSE, events))))

    response = _post(live, owner.key, {**CHAT, "stream": True, "stream_options": {"include_usage": True}})

    assert response.text.endswith("data: [DONE]\n\n")
    [billed] = usage_for(response.headers["x-request-id"])
    assert billed.total_tokens == 9


def test_simulator_fault_headers_do_not_reach_workers_unless_the_simulator_is_in_use(
    gateway: Gateway, settings
) -> None:
    settings.PENDRA_FORWARD_SIM_HEADERS = False
    with gateway.http() as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
            headers={"x-sim-status": "500"},
        )
    assert response.status_code == 200


def test_simulator_fault_headers_reach_the_simulator_when_it_is_in_use(gateway: Gateway, settings) -> None:
    settings.PENDRA_FORWARD_SIM_HEADERS = True
    with gateway.http() as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
            headers={"x-sim-status": "500"},
        )
    assert response.status_code == 502
