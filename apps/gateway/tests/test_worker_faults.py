"""Workers that misbehave the way real ones do: flapping health, dripping bytes, invalid
bodies, streams that stop half way. Each test drives the live gateway over HTTP and
checks the status, the error the contract promises, the record and the bill.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apps.gateway.tests.conftest import Gateway, record_for, usage_for
from apps.workers.health import health_sweep
from apps.workers.models import Worker, WorkerState
from testing.scripted_workers import COMPLETION, JSON, MODEL, SSE
from testing.scripted_workers import sse_chunk as _chunk

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}
SCRIPTED_CHAT = {**CHAT, "model": MODEL}


def _on_inference(answer: Any) -> Any:
    """A script answering ``answer`` (or ``answer()``, for a fresh generator) to inference requests."""

    def script(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        if path != "/v1/chat/completions":
            return None
        return answer() if callable(answer) else answer

    return script


def _http(live: Any, key: str) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _stream(http: httpx.Client, body: dict[str, Any], *, give_up_after: float = 10.0) -> tuple[int, str, list[str]]:
    """(status, request id, the stream's events) of one streamed request.

    The client gives up after ``give_up_after`` seconds, so a gateway that never ends the
    stream fails the test instead of hanging it.
    """
    raw = b""
    deadline = time.monotonic() + give_up_after
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        for data in response.iter_raw():
            raw += data
            assert time.monotonic() < deadline, f"the stream was still going after {give_up_after} s"
    events = [event for event in raw.decode("utf-8", "replace").split("\n\n") if event.strip()]
    return response.status_code, response.headers["x-request-id"], events


def _assert_broken_stream(events: list[str], request_id: str, detail: str) -> dict[str, Any]:
    """The stream ended with the contract's error event, not [DONE], and was not billed."""
    final = json.loads(events[-1].removeprefix("data: "))
    assert final["error"]["code"] == "stream_broken"
    assert detail in final["detail"]
    assert final["request_id"] == request_id
    assert not any(event.strip() == "data: [DONE]" for event in events)
    return final


# --- flapping -------------------------------------------------------------------------


def _sweeps(count: int) -> None:
    for _ in range(count):
        health_sweep(min_interval=0, timeout=0.5)


def _state(name: str) -> str:
    return Worker.objects.get(name=name).state


def _hits(sim: Any) -> int:
    return int(sim.stats()["requests"].get("/v1/chat/completions", 0))


def _skips(sim: Any, send: Any) -> bool:
    """Whether a request went by without ``sim`` seeing it (it may have been tried and failed)."""
    before = _hits(sim)
    send()
    return _hits(sim) == before


def _routing_follows(check: Any, timeout: float = 10.0) -> None:
    """Wait until the gateway routes as the health checks decided.

    Its fleet view is reloaded every half second; a reload that read the table just before
    the change can still be stored after it, so the change shows within a second or two.
    """
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "routing did not follow the workers' health"
        time.sleep(0.1)


def test_a_flapping_worker_gets_no_request_while_unhealthy_and_gets_them_again_when_back(
    gateway: Gateway, settings
) -> None:
    sim_a, _ = gateway.sims
    # sim-b refuses this request, so it can only succeed on sim-a: it shows whether sim-a is routable.
    only_sim_a = {"x-sim-status": "500", "x-sim-only": "sim-b"}
    with gateway.http() as http:
        for _cycle in range(2):
            # Down: health checks fail and so does inference.
            sim_a.set_faults(health_status=503, status=503)
            answered = [http.post("/v1/chat/completions", json=CHAT) for _ in range(3)]
            # Before the health checks notice, requests that meet sim-a fail over to sim-b.
            assert [(r.status_code, r.headers["x-worker-name"]) for r in answered] == [(200, "sim-b")] * 3
            _sweeps(settings.PENDRA_HEALTH_FAILURES)
            assert _state("sim-a") == WorkerState.UNHEALTHY
            # With sim-b failing the request, sim-a would be tried if it were still routable.
            _routing_follows(
                lambda: _skips(sim_a, lambda: http.post("/v1/chat/completions", json=CHAT, headers=only_sim_a))
            )
            hits_before = _hits(sim_a)

            refused = http.post("/v1/chat/completions", json=CHAT, headers=only_sim_a)
            served = [http.post("/v1/chat/completions", json=CHAT) for _ in range(4)]

            assert refused.status_code == 502
            assert (refused.headers["x-worker-name"], record_for(refused.headers["x-request-id"]).attempts) == (
                "sim-b",
                1,
            )
            assert {(r.status_code, r.headers["x-worker-name"]) for r in served} == {(200, "sim-b")}
            assert _hits(sim_a) == hits_before

            # Up again: after the recoveries the health rule asks for, sim-a is routed to again.
            sim_a.set_faults()
            _sweeps(settings.PENDRA_HEALTH_RECOVERIES)
            assert _state("sim-a") == WorkerState.HEALTHY
            _routing_follows(
                lambda: http.post("/v1/chat/completions", json=CHAT, headers=only_sim_a).status_code == 200
            )

            back = http.post("/v1/chat/completions", json=CHAT, headers=only_sim_a)

            assert (back.status_code, back.headers["x-worker-name"]) == (200, "sim-a")
            assert len(usage_for(back.headers["x-request-id"])) == 1


def test_a_worker_that_fails_every_other_request_never_fails_a_client(
    live, owner, scripted_worker, register_scripted
) -> None:
    turns = itertools.cycle([(503, JSON, b'{"detail": "overloaded"}'), (200, JSON, json.dumps(COMPLETION).encode())])
    flapping = scripted_worker(_on_inference(lambda: next(turns)))
    steady = scripted_worker(_on_inference((200, JSON, json.dumps(COMPLETION).encode())))
    register_scripted(flapping, name="flapping")
    register_scripted(steady, name="steady")

    with _http(live, owner.key) as http:
        responses = [http.post("/v1/chat/completions", json=SCRIPTED_CHAT) for _ in range(8)]

    assert {r.status_code for r in responses} == {200}
    for response in responses:
        record = record_for(response.headers["x-request-id"])
        assert record.status == 200
        assert len(usage_for(response.headers["x-request-id"])) == 1
    assert len(flapping.inference_hits()) >= 1


# --- dripping -------------------------------------------------------------------------


def _drip_stream(interval: float) -> Iterator[bytes]:
    """Content events a little faster than the idle limit, forever (until the gateway hangs up)."""
    for n in itertools.count():
        yield _chunk(f"w{n} ")
        time.sleep(interval)


def _drip_bytes(body: bytes, interval: float) -> Iterator[bytes]:
    """A body one byte at a time, then the same again, forever."""
    for byte in itertools.cycle(body):
        yield bytes([byte])
        time.sleep(interval)


def test_a_stream_that_drips_forever_is_cut_at_the_chat_limit_and_not_billed(
    live, owner, scripted_worker, register_scripted, settings
) -> None:
    settings.PENDRA_CHAT_IDLE_TIMEOUT = 1.0
    settings.PENDRA_CHAT_MAX_SECONDS = 2.0
    worker = scripted_worker(_on_inference(lambda: (200, SSE, _drip_stream(0.2))))
    register_scripted(worker)

    started = time.monotonic()
    with _http(live, owner.key) as http:
        status, request_id, events = _stream(http, SCRIPTED_CHAT)
    elapsed = time.monotonic() - started

    assert status == 200  # the stream had begun: the end is an error event
    assert 2.0 <= elapsed < 6.0
    final = _assert_broken_stream(events, request_id, "2 s")
    assert final["error"]["type"] == "api_error"
    record = record_for(request_id)
    assert (record.status, record.streamed) == (504, True)
    assert usage_for(request_id) == []


def _finished_then_silent(seconds: float) -> Iterator[bytes]:
    """A whole stream, [DONE] and usage included, then the connection held open without a byte."""
    yield _chunk("one ")
    yield _chunk("", usage={"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3})
    yield b"data: [DONE]\n\n"
    time.sleep(seconds)


def test_a_stream_whose_worker_finishes_but_keeps_the_connection_open_is_whole_and_billed(
    live, owner, scripted_worker, register_scripted, settings
) -> None:
    settings.PENDRA_CHAT_IDLE_TIMEOUT = 1.0
    worker = scripted_worker(_on_inference(lambda: (200, SSE, _finished_then_silent(4.0))))
    register_scripted(worker)

    started = time.monotonic()
    with _http(live, owner.key) as http:
        status, request_id, events = _stream(http, {**SCRIPTED_CHAT, "stream_options": {"include_usage": True}})
    elapsed = time.monotonic() - started

    assert status == 200
    assert events[-1] == "data: [DONE]"  # no error event after the worker's own end
    assert not any('"stream_broken"' in event for event in events)
    assert elapsed < 3.0  # the idle limit ends the wait; the stream was already whole
    record = record_for(request_id)
    assert (record.status, record.streamed, record.error) == (200, True, "")
    assert [usage.total_tokens for usage in usage_for(request_id)] == [3]


def test_a_plain_answer_that_drips_forever_is_a_504_at_the_chat_limit(
    live, owner, scripted_worker, register_scripted, settings
) -> None:
    settings.PENDRA_CHAT_IDLE_TIMEOUT = 1.0
    settings.PENDRA_CHAT_MAX_SECONDS = 2.0
    worker = scripted_worker(_on_inference(lambda: (200, JSON, _drip_bytes(b'{"choices": []}  ', 0.2))))
    register_scripted(worker)

    started = time.monotonic()
    with _http(live, owner.key) as http:
        response = http.post("/v1/chat/completions", json=SCRIPTED_CHAT, timeout=10)
    elapsed = time.monotonic() - started

    assert response.status_code == 504
    assert 2.0 <= elapsed < 6.0
    body = response.json()
    assert "2 s" in body["detail"]
    assert body["error"]["type"] == "timeout_error"
    assert record_for(response.headers["x-request-id"]).status == 504
    assert usage_for(response.headers["x-request-id"]) == []


# --- invalid bodies -------------------------------------------------------------------

INVALID_BODIES = {
    "bad JSON": (200, JSON, b'{"choices": [{"message": '),
    "wrong content type": (200, {"Content-Type": "text/html"}, b"<html><body>Sign in to the proxy</body></html>"),
    "invalid UTF-8": (200, JSON, b'{"object": "chat.completion", "choices": [], "id": "\xff\xfe"}'),
    "not an object": (200, JSON, b"[1, 2, 3]"),
    "shorter than its length": (200, {**JSON, "Content-Length": "500"}, b'{"object": "chat.completion"'),
}


@pytest.mark.parametrize("answer", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_an_invalid_body_from_the_only_worker_is_a_502_and_not_billed(
    live, owner, scripted_worker, register_scripted, answer
) -> None:
    worker = scripted_worker(_on_inference(answer))
    register_scripted(worker)

    with _http(live, owner.key) as http:
        response = http.post("/v1/chat/completions", json=SCRIPTED_CHAT)

    assert response.status_code == 502
    body = response.json()
    assert body["detail"].startswith("The GPU worker failed")
    assert body["error"]["type"] == "api_error"
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["x-worker-name"] == "scripted"
    record = record_for(response.headers["x-request-id"])
    assert (record.status, record.worker_name) == (502, "scripted")
    assert usage_for(response.headers["x-request-id"]) == []


INVALID_STREAMS = {
    "truncated, no [DONE]": ([_chunk("one "), _chunk("two ")], "without finishing"),
    "an event of invalid UTF-8": (
        [_chunk("one "), b'data: {"choices": [{"delta": {"content": "\xff\xfe"}}]}\n\n', b"data: [DONE]\n\n"],
        "invalid",
    ),
}


@pytest.mark.parametrize(("chunks", "detail"), INVALID_STREAMS.values(), ids=INVALID_STREAMS.keys())
def test_an_invalid_stream_ends_with_an_error_event_and_is_not_billed(
    live, owner, scripted_worker, register_scripted, chunks, detail
) -> None:
    worker = scripted_worker(_on_inference(lambda: (200, SSE, list(chunks))))
    register_scripted(worker)

    with _http(live, owner.key) as http:
        status, request_id, events = _stream(http, SCRIPTED_CHAT)

    assert status == 200
    _assert_broken_stream(events, request_id, detail)
    assert "\ufffd" not in "".join(events)  # nothing undecodable reached the client
    record = record_for(request_id)
    assert (record.status, record.streamed) == (502, True)
    assert usage_for(request_id) == []


# --- closing mid-stream ---------------------------------------------------------------


def _chunked(*events: bytes) -> list[bytes]:
    """HTTP/1.1 chunked framing by hand, with no final zero-length chunk: the worker just closes."""
    return [f"{len(event):x}\r\n".encode() + event + b"\r\n" for event in events]


def test_a_worker_closing_a_chunked_stream_mid_way_ends_it_with_an_error_event_billing_nothing(
    live, owner, scripted_worker, register_scripted
) -> None:
    headers = {**SSE, "Transfer-Encoding": "chunked"}
    worker = scripted_worker(_on_inference(lambda: (200, headers, _chunked(_chunk("one "), _chunk("two ")))))
    register_scripted(worker)

    with _http(live, owner.key) as http:
        status, request_id, events = _stream(http, SCRIPTED_CHAT)

    assert status == 200
    assert len(events) == 3  # both content events, then the error event; nothing replayed
    _assert_broken_stream(events, request_id, "broke off")
    record = record_for(request_id)
    assert (record.status, record.streamed, record.attempts) == (502, True, 1)
    assert usage_for(request_id) == []
