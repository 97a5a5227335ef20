"""The foundation's contract: request ids, JSON errors, probes, settings."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

VALID_ID = "client-chosen.id_0123456789"


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


@pytest.fixture
def forced_errors(settings) -> None:
    settings.ROOT_URLCONF = "testing.urls_forced_error"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/healthz", 200),
        ("get", "/", 302),  # the console sends a signed-out visitor to sign in
        ("get", "/no-such-page", 404),
        ("post", "/healthz", 405),
        ("get", "/api/v1/schema/", 200),
        ("get", "/api/v1/no-such-route/", 404),
        ("get", "/api/v1/me", 401),
        ("put", "/api/v1/schema/", 405),
        ("post", "/console-page-that-does-not-exist", 404),
        ("get", "/static/css/console.css", 200),
    ],
)
def test_every_response_carries_a_request_id(client: Client, method: str, path: str, status: int) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response["X-Request-Id"].startswith("req_")


@pytest.mark.parametrize("path", ["/boom", "/api/v1/boom", "/api/v1/plain-boom"])
def test_a_forced_500_carries_a_request_id_and_no_traceback(client: Client, forced_errors: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 500
    assert response["X-Request-Id"].startswith("req_")
    body = response.content.decode()
    assert "Traceback" not in body
    assert "secret-internal-detail" not in body
    assert "RuntimeError" not in body


@pytest.mark.parametrize("path", ["/api/v1/boom", "/api/v1/plain-boom"])
def test_an_api_500_is_a_json_apology_with_the_request_id(client: Client, forced_errors: None, path: str) -> None:
    response = client.get(path, HTTP_X_REQUEST_ID=VALID_ID)
    assert response.status_code == 500
    assert response.json() == {
        "detail": "Sorry, something went wrong on our side. Quote the request id to support.",
        "request_id": VALID_ID,
    }


def test_a_valid_incoming_request_id_is_echoed(client: Client) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID=VALID_ID)
    assert response["X-Request-Id"] == VALID_ID


@pytest.mark.parametrize(
    "incoming",
    [
        "short",
        "x" * 10_000,
        "caf\u00e9-request-id-0123456789",
        "abc\r\nSet-Cookie: evil=1-0123456789",
        "has space 0123456789",
    ],
)
def test_an_invalid_incoming_request_id_is_replaced(client: Client, incoming: str) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-Id"].startswith("req_")
    assert response["X-Request-Id"] != incoming


def test_an_unknown_admin_route_is_json_naming_what_was_not_found(client: Client) -> None:
    response = client.get("/api/v1/no-such-route/", HTTP_X_REQUEST_ID=VALID_ID)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found: /api/v1/no-such-route/", "request_id": VALID_ID}


@pytest.mark.parametrize("route", ["chat/completions", "embeddings", "models", "audio/speech"])
def test_an_inference_route_under_the_admin_prefix_hints_at_v1(client: Client, route: str) -> None:
    response = client.get(f"/api/v1/{route}")
    assert response.status_code == 404
    assert f"use /v1/{route}" in response.json()["detail"]


def test_a_405_under_the_admin_prefix_is_json(client: Client) -> None:
    response = client.delete("/api/v1/schema/")
    assert response.status_code in {401, 405}
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_a_console_404_is_a_page_not_json(client: Client) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_healthz_is_json(client: Client) -> None:
    response = client.get("/healthz")
    assert response.json() == {"status": "ok"}


def test_readyz_reports_every_component_up(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["checks"]) == ("ok", {"database": "ok", "cache": "ok", "broker": "ok"})


def test_malformed_json_under_the_admin_api_is_a_400_with_a_request_id(owner) -> None:
    response = owner.client().post(
        "/api/v1/orgs/acme/keys/",
        data=b'{"name": "unterminated',
        content_type="application/json",
        HTTP_X_REQUEST_ID=VALID_ID,
    )
    assert response.status_code == 400
    assert response["X-Request-Id"] == VALID_ID
    body = response.json()
    assert body["detail"].startswith("Malformed JSON")
    assert body["request_id"] == VALID_ID


def test_a_405_under_the_admin_api_names_the_allowed_methods(owner) -> None:
    response = owner.client().put("/api/v1/me")
    assert response.status_code == 405
    assert response.json()["detail"] == 'Method "PUT" not allowed.'
    assert response["X-Request-Id"].startswith("req_")


def test_the_api_docs_page_serves_its_scripts_itself(client: Client) -> None:
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/redoc/" in html
    assert "cdn." not in html
    script = html.split('src="', 1)[1].split('"', 1)[0]
    assert client.get(script).status_code == 200
