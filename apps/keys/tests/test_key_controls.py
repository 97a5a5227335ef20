"""Per-key controls through the admin API: validated inside the org's plan and models, narrowed
by members, widened only by owners and admins, kept across rotation."""

from __future__ import annotations

from typing import Any

import pytest

from apps.keys.models import ApiKey
from testing.actors import Actor

KEYS = "/api/v1/orgs/acme/keys/"


@pytest.fixture
def served(register_sim: Any, simulator: Any) -> None:
    """One shared worker serving the simulator's models (sim-chat, sim-embed, ...)."""
    register_sim(simulator("sim-a"))


def _create(actor: Actor, **controls: Any) -> Any:
    return actor.client().post(KEYS, {"name": "ctl", **controls}, format="json")


def test_a_key_is_created_with_its_controls_normalised(owner: Actor, served: None) -> None:
    response = _create(
        owner, allowed_models=["sim-embed", "sim-chat", "sim-chat"], allowed_ips=["203.0.113.7/24", "::1"], rpm_limit=5
    )

    assert response.status_code == 201
    body = response.json()
    assert body["allowed_models"] == ["sim-chat", "sim-embed"]
    assert body["allowed_ips"] == ["203.0.113.0/24", "::1/128"]
    assert (body["rpm_limit"], body["tpm_limit"]) == (5, None)


@pytest.mark.parametrize(
    ("controls", "field", "says"),
    [
        ({"allowed_ips": ["10.0.0.300/8"]}, "allowed_ips", "is not an IP address or CIDR range"),
        ({"allowed_ips": ["203.0.113.0/33"]}, "allowed_ips", "is not an IP address or CIDR range"),
        ({"allowed_ips": "203.0.113.0/24"}, "allowed_ips", ""),
        ({"allowed_models": ["gpt-imaginary"]}, "allowed_models", "Not offered to this organisation: gpt-imaginary"),
        ({"allowed_models": [""]}, "allowed_models", ""),
        ({"rpm_limit": -1}, "rpm_limit", ""),
        ({"rpm_limit": 0}, "rpm_limit", ""),
        ({"rpm_limit": 10**12}, "rpm_limit", ""),
        ({"rpm_limit": 100000}, "rpm_limit", "the organisation's plan allows no more"),
        ({"tpm_limit": 10**9}, "tpm_limit", "the organisation's plan allows no more"),
        ({"tpm_limit": "lots"}, "tpm_limit", ""),
    ],
)
def test_bad_controls_are_a_400_naming_the_field_and_change_nothing(
    owner: Actor, served: None, controls: dict[str, Any], field: str, says: str
) -> None:
    before = ApiKey.objects.count()

    response = _create(owner, **controls)

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert says in str(response.json())
    assert ApiKey.objects.count() == before


def test_a_member_narrows_their_own_key(owner: Actor, member: Actor, served: None) -> None:
    key_id = member.api_key.pk
    client = member.session_client()

    steps = [
        client.patch(f"{KEYS}{key_id}/", {"allowed_models": ["sim-chat", "sim-embed"], "rpm_limit": 10}, format="json"),
        client.patch(f"{KEYS}{key_id}/", {"allowed_models": ["sim-chat"], "rpm_limit": 5}, format="json"),
        client.patch(f"{KEYS}{key_id}/", {"allowed_ips": ["203.0.113.0/24"]}, format="json"),
        client.patch(f"{KEYS}{key_id}/", {"allowed_ips": ["203.0.113.128/25"]}, format="json"),
    ]

    assert [s.status_code for s in steps] == [200, 200, 200, 200]
    body = steps[-1].json()
    assert (body["allowed_models"], body["rpm_limit"], body["allowed_ips"]) == (["sim-chat"], 5, ["203.0.113.128/25"])


@pytest.mark.parametrize(
    "widening",
    [
        {"allowed_models": ["sim-chat", "sim-embed"]},
        {"allowed_models": []},
        {"rpm_limit": 6},
        {"rpm_limit": None},
        {"allowed_ips": ["203.0.113.0/24"]},
        {"allowed_ips": []},
    ],
)
def test_a_member_cannot_loosen_what_an_admin_set_but_the_admin_can(
    admin: Actor, member: Actor, served: None, widening: dict[str, Any]
) -> None:
    route = f"{KEYS}{member.api_key.pk}/"
    narrowed = {"allowed_models": ["sim-chat"], "rpm_limit": 5, "allowed_ips": ["203.0.113.128/25"]}
    assert admin.session_client().patch(route, narrowed, format="json").status_code == 200

    refused = member.session_client().patch(route, widening, format="json")
    allowed = admin.session_client().patch(route, widening, format="json")

    assert refused.status_code == 403
    assert "an owner or admin may" in refused.json()["detail"]
    assert allowed.status_code == 200


def test_a_rotated_keys_successor_keeps_its_controls(owner: Actor, served: None) -> None:
    created = _create(owner, allowed_models=["sim-chat"], allowed_ips=["203.0.113.0/24"], rpm_limit=3).json()

    successor = owner.client().post(f"{KEYS}{created['id']}/rotate/", {"grace_seconds": 0}, format="json").json()

    assert (successor["allowed_models"], successor["allowed_ips"], successor["rpm_limit"]) == (
        ["sim-chat"],
        ["203.0.113.0/24"],
        3,
    )


def test_the_schema_documents_the_key_controls(owner: Actor) -> None:
    schema = owner.client().get("/api/v1/schema/?format=json").json()["components"]["schemas"]

    for name in ("ApiKey", "ApiKeyCreateRequest", "PatchedApiKeyUpdateRequest"):
        assert {"allowed_models", "allowed_ips", "rpm_limit", "tpm_limit"} <= set(schema[name]["properties"]), name
