"""Hypothesis against every /v1 route, through the live ASGI server with simulated workers.

Generated: the method, the path (every route, model lookups, and made-up paths), the key
(the owner's, random well-formed ones, malformed strings, none, two that disagree), the
headers (content type, request id, arbitrary extra headers) and the body (objects built
from the fields the routes read, any JSON value, raw bytes). The contract: never a 5xx
(the simulated workers take every request the gateway lets through), always JSON with a
``detail`` on an error, and the request id on every response.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from apps.gateway.tests.conftest import Gateway
from apps.keys import tokens
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from testing.fuzz import TimeBudget, fuzz_settings

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

ROUTES = [
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/images/generations",
    "/v1/audio/transcriptions",
    "/v1/audio/speech",
    "/v1/models",
    "/v1/models/sim-chat",
]
MODELS = ["sim-chat", "sim-embed", "sim-image", "sim-whisper", "sim-tts", "nope", ""]
FIELDS = [
    "model",
    "messages",
    "role",
    "content",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "temperature",
    "top_p",
    "stream",
    "stream_options",
    "include_usage",
    "input",
    "encoding_format",
    "dimensions",
    "prompt",
    "size",
    "response_format",
    "voice",
    "speed",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "text/plain",
    "",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from([*MODELS, "user", "assistant", "1024x1024", "512x512", "wav", "float", "b64_json"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "robot"]) | scalars},
        optional={"content": st.text(max_size=60) | json_values},
    ),
    max_size=3,
)
shaped_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS) | scalars},
    optional={"messages": messages | json_values, **dict.fromkeys(FIELDS[2:], json_values)},
)
_nesting = st.integers(min_value=1, max_value=300).map(lambda n: "[" * n + "]" * n)
bodies = st.one_of(
    shaped_bodies.map(lambda body: json.dumps(body).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    _nesting.map(lambda nested: f'{{"model": "sim-chat", "messages": {nested}}}'.encode()),
    st.binary(max_size=512),
)
# What HTTP lets a client put in a header value (printable ASCII, no outer spaces); the server's
# HTTP parser refuses anything else before the application sees it.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.strip)
# x-sim-* headers are the simulator's fault switches: a 502 they cause is the contract working.
extra_header_names = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z").filter(
    lambda name: not name.startswith("x-sim") and name not in {"content-length", "host", "transfer-encoding"}
)
path_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#%"), max_size=30)


def _random_key() -> str:
    return tokens.format_key(tokens.new_public_id(), tokens.new_secret())


@pytest.fixture
def fuzz_gateway(gateway: Gateway, settings: Any) -> Gateway:
    # Limits high enough that the examples reach validation and the workers, not only the 429.
    plan = plan_factory(
        name="Fuzz", chat_rpm=10**6, embeddings_rpm=10**6, images_rpm=10**6, audio_rpm=10**6, concurrent_streams=1000
    )
    Subscription.objects.update_or_create(org=gateway.actor.org, defaults={"plan": plan, "since": timezone.now()})
    settings.PENDRA_UNKNOWN_KEY_BUDGET = 10**6
    return gateway


_budget = TimeBudget()


@given(data=st.data())
@fuzz_settings(brief=80)
def test_no_v1_request_gets_a_server_error_or_leaves_the_contract(fuzz_gateway: Gateway, data: Any) -> None:
    if _budget.spent():
        return
    path = data.draw(st.sampled_from(ROUTES) | path_text.map(lambda text: "/v1/" + text), label="path")
    method = data.draw(st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "HEAD", "OPTIONS"]), label="method")
    key = data.draw(
        st.sampled_from([fuzz_gateway.key] * 4 + [None])
        | st.builds(_random_key)
        | header_text.map(lambda text: "pnd_" + text),
        label="key",
    )
    headers: dict[str, str] = {}
    if key is not None:
        style = data.draw(st.sampled_from(["bearer", "x-api-key", "both", "lowercase", "disagree"]), label="style")
        if style in {"bearer", "both"}:
            headers["Authorization"] = f"Bearer {key}"
        if style in {"x-api-key", "both"}:
            headers["x-api-key"] = key
        if style == "lowercase":
            headers["authorization"] = f"bearer {key}"
        if style == "disagree":
            headers |= {"Authorization": f"Bearer {key}", "x-api-key": _random_key()}
    headers["Content-Type"] = data.draw(st.sampled_from(CONTENT_TYPES) | header_text, label="content type")
    if data.draw(st.booleans(), label="request id"):
        headers["X-Request-Id"] = data.draw(header_text | st.from_regex(r"\A[A-Za-z0-9._-]{20,40}\Z"))
    headers |= data.draw(st.dictionaries(extra_header_names, header_text, max_size=3), label="headers")
    body = data.draw(bodies, label="body") if method in {"POST", "PUT", "DELETE"} else b""

    with httpx.Client(base_url=fuzz_gateway.url, timeout=60) as http:
        response = http.request(method, path, headers=headers, content=body)

    assert response.status_code < 500, response.text
    assert response.headers.get("x-request-id"), "every response carries its request id"
    if response.status_code >= 400 and method != "HEAD":
        error = response.json()
        assert isinstance(error.get("detail"), str) and error["detail"]
