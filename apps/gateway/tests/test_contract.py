"""The public contract under /v1: request ids on every response, the OpenAI error envelope."""

from __future__ import annotations

import httpx
import pytest

from apps.gateway.app import GatewayApplication
from apps.gateway.tests.conftest import Gateway

pytestmark = pytest.mark.django_db(transaction=True)

VALID_ID = "client-chosen.id_0123456789"


@pytest.mark.parametrize(
    ("method", "path", "body", "authorised", "status"),
    [
        ("GET", "/v1/models", None, True, 200),
        ("GET", "/v1/models", None, False, 401),
        ("GET", "/v1/no-such-route", None, True, 404),
        ("GET", "/v1/chat/completions", None, True, 405),
        ("POST", "/v1/chat/completions", b"{not json", True, 400),
    ],
)
def test_every_v1_response_carries_a_request_id(
    gateway: Gateway, method: str, path: str, body: bytes | None, authorised: bool, status: int
) -> None:
    headers = {"Authorization": f"Bearer {gateway.key}"} if authorised else {}
    response = httpx.request(method, gateway.url + path, content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["x-request-id"].startswith("req_")


def test_a_forced_500_under_v1_is_the_apology_with_the_envelope(gateway: Gateway, monkeypatch) -> None:
    async def explode(self, exchange):  # a test-only fault inside the request path
        raise RuntimeError("secret-internal-detail")

    monkeypatch.setattr(GatewayApplication, "authenticate", explode)
    response = httpx.get(f"{gateway.url}/v1/models", headers={"X-Request-Id": VALID_ID})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == VALID_ID
    assert response.json() == {
        "detail": "Sorry, something went wrong on our side. Quote the request id to support.",
        "request_id": VALID_ID,
        "error": {
            "message": "Sorry, something went wrong on our side. Quote the request id to support.",
            "type": "api_error",
            "code": None,
            "param": None,
        },
    }
    assert "secret-internal-detail" not in response.text


@pytest.mark.parametrize(
    "incoming", ["short", "x" * 10_000, "caf\u00e9-request-id-0123456789".encode(), "a b c d e f g h i j k l m n"]
)
def test_an_invalid_request_id_is_replaced_under_v1(gateway: Gateway, incoming: str | bytes) -> None:
    response = httpx.get(f"{gateway.url}/v1/models", headers={"X-Request-Id": incoming})
    assert response.headers["x-request-id"].startswith("req_")


def test_a_valid_request_id_is_echoed_under_v1(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/v1/models", headers={"X-Request-Id": VALID_ID})
    assert response.headers["x-request-id"] == VALID_ID


def test_401_under_v1_is_the_openai_envelope(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/v1/models", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["detail"] == "Invalid or expired token"
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["message"] == "Invalid or expired token"


def test_an_admin_route_under_v1_hints_at_the_admin_prefix(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/v1/orgs/", headers={"Authorization": f"Bearer {gateway.key}"})
    assert response.status_code == 404
    assert "use /api/v1/orgs/" in response.json()["detail"]
    assert response.json()["error"]["type"] == "not_found_error"


def test_two_different_keys_are_refused(gateway: Gateway, member) -> None:
    response = httpx.get(
        f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {gateway.key}", "x-api-key": member.key}
    )
    assert response.status_code == 401


def test_the_x_api_key_header_works(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/v1/models", headers={"x-api-key": gateway.key})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, '"model" is required.'),
        ({"model": "sim-chat"}, '"messages" is required.'),
        ({"model": "sim-chat", "messages": "hi"}, '"messages" must be a non-empty array.'),
        (
            {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**9},
            '"max_tokens" must be an integer from 1 to 131072.',
        ),
        (
            {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "n": 500},
            '"n" must be an integer from 1 to 16.',
        ),
        (
            {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
            '"stream" must be true or false.',
        ),
        (
            {"model": "sim-embed", "messages": [{"role": "user", "content": "hi"}]},
            'Model "sim-embed" is a embeddings model; it cannot serve /v1/chat/completions.',
        ),
        ([1, 2], "The request body must be a JSON object."),
    ],
)
def test_bad_chat_input_is_a_400_naming_the_field_and_reaches_no_worker(
    gateway: Gateway, body: object, detail: str
) -> None:
    before = sum(sum(sim.stats()["requests"].values()) for sim in gateway.sims)
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {gateway.key}"}
    )
    assert response.status_code == 400
    assert response.json()["detail"] == detail
    assert sum(sum(sim.stats()["requests"].values()) for sim in gateway.sims) == before


def test_an_oversized_body_is_a_413(gateway: Gateway, settings) -> None:
    settings.PENDRA_MAX_BODY_BYTES = 2048
    response = httpx.post(
        f"{gateway.url}/v1/embeddings",
        json={"model": "sim-embed", "input": "x" * 4096},
        headers={"Authorization": f"Bearer {gateway.key}"},
    )
    assert response.status_code == 413
    assert "exceeds 2048 bytes" in response.json()["detail"]
