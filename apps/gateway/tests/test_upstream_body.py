"""What a worker receives as the request body: the client's bytes, and for a stream the
usage report billing needs asked for, without the body being encoded again when it need
not be (``apps/gateway/validation.py``)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from testing.scripted_workers import COMPLETION, JSON, MODEL, SSE, sse_chunk

pytestmark = pytest.mark.django_db(transaction=True)

USAGE = {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
# Spacing, escapes and a number as no JSON encoder writes them: anything encoded again shows.
TAIL = (
    b' "model" :  "%s",\n "messages": [{"role": "user", "content": "caf\\u00e9 \\ud83d\\ude00"}],'
    b' "max_tokens": 3, "temperature": 1.0E0 }'
)


def _capturing_worker(scripted_worker: Any, register_scripted: Any) -> list[bytes]:
    bodies: list[bytes] = []

    def script(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        if path != "/v1/chat/completions":
            return None
        bodies.append(body)
        if json.loads(body).get("stream"):
            usage = {"object": "chat.completion.chunk", "model": MODEL, "choices": [], "usage": USAGE}
            return 200, SSE, [sse_chunk("hi"), b"data: %s\n\n" % json.dumps(usage).encode(), b"data: [DONE]\n\n"]
        return 200, JSON, json.dumps(COMPLETION).encode()

    register_scripted(scripted_worker(script))
    return bodies


def _post(live: Any, key: str, body: bytes, content_type: str = "application/json") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    return httpx.post(f"{live.url}/v1/chat/completions", content=body, headers=headers, timeout=30)


def test_a_request_reaches_the_worker_byte_for_byte(live, owner, scripted_worker, register_scripted) -> None:
    bodies = _capturing_worker(scripted_worker, register_scripted)
    body = b"{" + TAIL % MODEL.encode()

    assert _post(live, owner.key, body).status_code == 200
    assert bodies == [body]


def test_a_stream_asks_the_worker_for_usage_and_keeps_the_rest_of_the_body_as_the_client_wrote_it(
    live, owner, scripted_worker, register_scripted
) -> None:
    bodies = _capturing_worker(scripted_worker, register_scripted)
    body = b'  {"stream": true,' + TAIL % MODEL.encode()

    response = _post(live, owner.key, body)

    assert response.status_code == 200
    assert '"usage"' not in response.text, "the usage chunk the client did not ask for reached it"
    (sent,) = bodies
    assert json.loads(sent)["stream_options"] == {"include_usage": True}
    assert sent.endswith(body.lstrip()[1:]), "the client's members were encoded again"


@pytest.mark.parametrize(
    "stream_options",
    [b'"stream_options": null,', b'"stream_options": {"include_usage": false},', b'"stream_options": {},'],
)
def test_a_stream_whose_body_names_stream_options_gets_usage_asked_for_all_the_same(
    live, owner, scripted_worker, register_scripted, stream_options
) -> None:
    bodies = _capturing_worker(scripted_worker, register_scripted)
    body = b'{"stream": true, ' + stream_options + TAIL % MODEL.encode()

    assert _post(live, owner.key, body).status_code == 200
    (sent,) = bodies
    parsed = json.loads(sent)
    assert parsed["stream_options"] == {"include_usage": True}
    assert parsed["messages"][0]["content"] == "caf\u00e9 \U0001f600"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16", "utf-32-le", "utf-8-sig"])
def test_a_stream_in_another_unicode_encoding_reaches_the_worker_as_valid_json_asking_for_usage(
    live, owner, scripted_worker, register_scripted, encoding
) -> None:
    bodies = _capturing_worker(scripted_worker, register_scripted)
    text = json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hello"}]})

    assert _post(live, owner.key, text.encode(encoding)).status_code == 200
    (sent,) = bodies
    assert json.loads(sent)["stream_options"] == {"include_usage": True}
