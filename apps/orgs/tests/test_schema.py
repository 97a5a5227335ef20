"""The OpenAPI schema validates and documents every org and key endpoint with its errors."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

from testing.actors import Actor

pytestmark = pytest.mark.django_db

OURS = ("/api/v1/me", "/api/v1/orgs/", "/api/v1/invitations/")
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def schema(member: Actor) -> dict[str, Any]:
    response = member.client().get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        if path.startswith(OURS)
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_schema_validates(schema: dict[str, Any]) -> None:
    validate_schema(schema)


def test_schema_generation_has_no_warnings() -> None:
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=StringIO())


def test_every_route_of_the_issue_is_documented(schema: dict[str, Any]) -> None:
    documented = {(path, method) for path, method, _ in _operations(schema)}
    expected = {
        ("/api/v1/me", "get"),
        ("/api/v1/orgs/", "get"),
        ("/api/v1/orgs/", "post"),
        ("/api/v1/orgs/{slug}/", "get"),
        ("/api/v1/orgs/{slug}/", "patch"),
        ("/api/v1/orgs/{slug}/", "delete"),
        ("/api/v1/orgs/{slug}/members/", "get"),
        ("/api/v1/orgs/{slug}/members/", "post"),
        ("/api/v1/orgs/{slug}/members/{member_id}/", "patch"),
        ("/api/v1/orgs/{slug}/members/{member_id}/", "delete"),
        ("/api/v1/orgs/{slug}/transfer-ownership/", "post"),
        ("/api/v1/orgs/{slug}/invitations/", "get"),
        ("/api/v1/orgs/{slug}/invitations/", "post"),
        ("/api/v1/invitations/accept/", "post"),
        ("/api/v1/orgs/{slug}/keys/", "get"),
        ("/api/v1/orgs/{slug}/keys/", "post"),
        ("/api/v1/orgs/{slug}/keys/{key_id}/", "get"),
        ("/api/v1/orgs/{slug}/keys/{key_id}/", "patch"),
        ("/api/v1/orgs/{slug}/keys/{key_id}/", "delete"),
        ("/api/v1/orgs/{slug}/keys/{key_id}/rotate/", "post"),
        ("/api/v1/orgs/{slug}/keys/{key_id}/reveal/", "post"),
        ("/api/v1/orgs/{slug}/audit-events/", "get"),
    }
    assert expected <= documented


def test_every_operation_documents_its_errors(schema: dict[str, Any]) -> None:
    for path, method, operation in _operations(schema):
        codes = set(operation["responses"])
        assert {"401", "429"} <= codes, (path, method)
        if "{slug}" in path:
            assert "404" in codes, (path, method)
        if method in {"post", "patch"} and not path.endswith("/reveal/"):
            assert "400" in codes, (path, method)
        error = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert error["$ref"].endswith("/Error")


def test_owner_only_operations_document_403(schema: dict[str, Any]) -> None:
    for path, method in [
        ("/api/v1/orgs/{slug}/", "delete"),
        ("/api/v1/orgs/{slug}/members/{member_id}/", "patch"),
        ("/api/v1/orgs/{slug}/keys/{key_id}/rotate/", "post"),
    ]:
        assert "403" in schema["paths"][path][method]["responses"]


def test_both_key_headers_are_documented(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer pnd_..."}
    assert schemes["apiKeyHeader"]["name"] == "x-api-key"


def test_the_docs_page_renders(member: Actor) -> None:
    response = member.session_client().get("/api/v1/docs/")
    assert response.status_code == 200
