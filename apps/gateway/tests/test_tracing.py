"""OpenTelemetry tracing, through the public interface: a node started with the settings, a real collector.

The node is started as production starts one (``python -m pendra_console.serving``) with
``PENDRA_OTEL_ENABLED`` and the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a tiny
OTLP/HTTP collector on loopback (:mod:`testing.otlp`), which decodes the protobuf export. The
OpenAI SDK makes the requests; the simulated workers report the ``traceparent`` they received.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url
from testing.otlp import Collector, ExportedSpan
from testing.servers import free_port

CHAT = [{"role": "user", "content": "hello there"}]
# Spans are exported in batches every 100 ms here (OTEL_BSP_SCHEDULE_DELAY); silence for this long means none.
QUIET_SECONDS = 2.0


class Node:
    """``node(tracing=True, **env) -> url`` starts one gateway process; ``node.log()`` is its output so far."""

    def __init__(self, start: Callable[..., str], log: Callable[[], str]) -> None:
        self.start, self.log = start, log

    def __call__(self, *, tracing: bool = True, **env: str) -> str:
        return self.start(tracing=tracing, **env)


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector().start()
    yield running
    running.stop()


@pytest.fixture
def node(transactional_db: None, redis_required: None, collector: Collector) -> Iterator[Node]:
    """``node(tracing=True, **env) -> url``: one gateway process exporting to ``collector`` (or with tracing off)."""
    stack: list[ServerProcesses] = []

    def start(*, tracing: bool = True, **extra: str) -> str:
        env = {
            **os.environ,
            "DATABASE_URL": session_database_url(),
            "PENDRA_LOG_LEVEL": "WARNING",
            "PENDRA_OTEL_ENABLED": "1" if tracing else "0",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_SERVICE_NAME": "pendra-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            **extra,
        }
        processes = ServerProcesses(env, count=1, workers=1)
        (url,) = processes.__enter__()
        stack.append(processes)
        return url

    yield Node(start, lambda: stack[-1].log(0))
    for processes in stack:
        processes.__exit__(None, None, None)


def _client(url: str, actor: Actor) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=actor.key, max_retries=0, timeout=30)


def _request_id() -> str:
    return "req_trace_" + secrets.token_hex(8)


def _server_span(collector: Collector, request_id: str) -> tuple[ExportedSpan, list[ExportedSpan]]:
    """The request's server span and every span of its trace, once its attempts have arrived too."""

    def server(spans: list[ExportedSpan]) -> ExportedSpan | None:
        return next(
            (s for s in spans if s.kind == "SERVER" and s.attributes.get("pendra.request_id") == request_id), None
        )

    def complete(spans: list[ExportedSpan]) -> bool:
        found = server(spans)
        attempts = found.attributes.get("pendra.attempts", 0) if found else 0
        return found is not None and sum(1 for s in spans if s.parent_span_id == found.span_id) >= attempts

    spans = collector.wait_for(complete)
    found = server(spans)
    assert found is not None, f"no server span for {request_id}; received {[s.name for s in spans]}"
    return found, [s for s in spans if s.trace_id == found.trace_id]


def _received(sim: Any, request_id: str) -> dict[str, Any]:
    return next(entry for entry in sim.stats()["recent"] if entry["request_id"] == request_id)


def _traceparent(sim: Any, request_id: str) -> tuple[str, str, bool]:
    """(trace id, parent span id, sampled) of the traceparent ``sim`` received with the request."""
    version, trace_id, span_id, flags = _received(sim, request_id)["traceparent"].split("-")
    assert version == "00"
    return trace_id, span_id, bool(int(flags, 16) & 1)


def test_a_v1_request_is_a_server_span_whose_attempt_span_the_worker_received_as_traceparent(
    node: Node, collector: Collector, owner: Actor, simulator: Any, register_sim: Any
) -> None:
    sim = simulator("sim-a")
    worker = register_sim(sim)
    url = node(PENDRA_LOG_FORMAT="json", PENDRA_LOG_LEVEL="INFO")
    request_id = _request_id()

    raw = _client(url, owner).chat.completions.with_raw_response.create(
        model="sim-chat", messages=CHAT, max_tokens=3, extra_headers={"X-Request-Id": request_id}
    )

    assert raw.http_response.status_code == 200 and raw.headers["x-request-id"] == request_id
    span, trace = _server_span(collector, request_id)
    assert span.name == "POST /v1/chat/completions"
    assert span.service_name == "pendra-test"
    assert span.parent_span_id == ""  # the client sent no traceparent: a new trace
    assert span.attributes == {
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "pendra.request_id": request_id,
        "pendra.attempts": 1,
        "pendra.streamed": False,
        "gen_ai.request.model": "sim-chat",
        "pendra.org_id": owner.org.pk,  # type: ignore[union-attr]
        "pendra.key_id": owner.api_key.pk,
        "pendra.worker_id": str(worker.pk),
        "pendra.worker_name": "sim-a",
    }
    assert span.status == "UNSET"
    (attempt,) = [s for s in trace if s is not span]
    assert attempt.kind == "CLIENT" and attempt.parent_span_id == span.span_id
    assert attempt.attributes["pendra.worker_id"] == raw.headers["x-worker-id"] == str(worker.pk)
    assert attempt.attributes["http.response.status_code"] == 200
    assert _traceparent(sim, request_id) == (span.trace_id, attempt.span_id, True)
    assert owner.key not in repr(trace)  # the key's row id is traced, never the key
    lines = [json.loads(line) for line in node.log().splitlines() if line.startswith("{")]
    (access,) = [line for line in lines if line["logger"] == "pendra.access" and line["request_id"] == request_id]
    assert access["trace_id"] == span.trace_id  # the access line leads to the trace


def test_a_failover_is_one_attempt_span_per_worker_under_the_callers_trace(
    node: Node, collector: Collector, owner: Actor, simulator: Any, register_sim: Any
) -> None:
    good, failing = simulator("sim-a"), simulator("sim-b", status=500)
    register_sim(good)
    register_sim(failing)
    url = node()
    client = _client(url, owner)
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    # Workers are tried in random order: a request fails over when it meets sim-b first (1 in 2 each).
    for _ in range(30):
        request_id = _request_id()
        raw = client.chat.completions.with_raw_response.create(
            model="sim-chat",
            messages=CHAT,
            max_tokens=3,
            extra_headers={"X-Request-Id": request_id, "traceparent": f"00-{caller_trace}-{caller_span}-01"},
        )
        if failing.stats()["requests"].get("/v1/chat/completions"):
            break
    assert raw.http_response.status_code == 200

    span, trace = _server_span(collector, request_id)
    assert (span.trace_id, span.parent_span_id) == (caller_trace, caller_span)
    assert span.attributes["pendra.attempts"] == 2
    attempts = sorted(
        (s for s in trace if s.parent_span_id == span.span_id), key=lambda s: s.attributes["pendra.attempt"]
    )
    assert [(s.attributes["pendra.worker_name"], s.status) for s in attempts] == [
        ("sim-b", "ERROR"),
        ("sim-a", "UNSET"),
    ]
    assert attempts[0].status_message == "HTTP 500"
    for sim, attempt in ((failing, attempts[0]), (good, attempts[1])):
        assert _traceparent(sim, request_id) == (caller_trace, attempt.span_id, True)


def test_an_admin_api_request_is_a_server_span_named_by_its_route(
    node: Node, collector: Collector, owner: Actor
) -> None:
    url = node()
    request_id = _request_id()
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)

    response = httpx.get(
        f"{url}/api/v1/plans/",
        headers={
            "Authorization": f"Bearer {owner.key}",
            "X-Request-Id": request_id,
            "traceparent": f"00-{caller_trace}-{caller_span}-01",
        },
        timeout=30,
    )

    assert response.status_code == 200
    span, _ = _server_span(collector, request_id)
    assert span.name == "GET /api/v1/plans/"
    assert (span.trace_id, span.parent_span_id) == (caller_trace, caller_span)
    assert span.attributes["http.route"] == "/api/v1/plans/"
    assert span.attributes["http.response.status_code"] == 200


def test_with_tracing_off_nothing_is_exported_and_workers_get_no_traceparent(
    node: Node, collector: Collector, owner: Actor, simulator: Any, register_sim: Any
) -> None:
    sim = simulator("sim-a")
    register_sim(sim)
    url = node(tracing=False)
    request_id = _request_id()
    caller = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"

    raw = _client(url, owner).chat.completions.with_raw_response.create(
        model="sim-chat", messages=CHAT, max_tokens=3, extra_headers={"X-Request-Id": request_id, "traceparent": caller}
    )
    admin = httpx.get(f"{url}/api/v1/plans/", headers={"Authorization": f"Bearer {owner.key}"}, timeout=30)

    assert raw.http_response.status_code == 200 and admin.status_code == 200
    assert collector.wait_for(lambda spans: bool(spans), timeout=QUIET_SECONDS) == []
    assert collector.exports == 0
    assert _received(sim, request_id)["traceparent"] is None  # not even the caller's is passed on


def test_an_unsampled_request_exports_nothing_and_tells_the_worker_it_is_not_sampled(
    node: Node, collector: Collector, owner: Actor, simulator: Any, register_sim: Any
) -> None:
    sim = simulator("sim-a")
    register_sim(sim)
    url = node(OTEL_TRACES_SAMPLER="always_off")
    request_id = _request_id()

    raw = _client(url, owner).chat.completions.with_raw_response.create(
        model="sim-chat", messages=CHAT, max_tokens=3, extra_headers={"X-Request-Id": request_id}
    )

    assert raw.http_response.status_code == 200
    trace_id, _, sampled = _traceparent(sim, request_id)
    assert len(trace_id) == 32 and not sampled  # the worker's own tracing follows the decision
    assert collector.wait_for(lambda spans: bool(spans), timeout=QUIET_SECONDS) == []


def test_a_collector_that_is_down_costs_spans_never_requests(
    node: Node, owner: Actor, simulator: Any, register_sim: Any
) -> None:
    sim = simulator("sim-a")
    register_sim(sim)
    url = node(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    client = _client(url, owner)

    statuses = [
        client.chat.completions.with_raw_response.create(model="sim-chat", messages=CHAT, max_tokens=2).status_code
        for _ in range(5)
    ]
    admin = httpx.get(f"{url}/api/v1/plans/", headers={"Authorization": f"Bearer {owner.key}"}, timeout=30)

    assert statuses == [200] * 5 and admin.status_code == 200
    assert sim.stats()["requests"]["/v1/chat/completions"] == 5
