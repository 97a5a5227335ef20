"""Per-key controls at the gateway: a key limited to some models, or to some source addresses.

The keys are made through the admin API, and called with the OpenAI SDK and plain HTTP
against the live gateway and the simulators. The live server's clients connect from 127.0.0.1.
"""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from apps.gateway.tests.conftest import Gateway

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = "/api/v1/orgs/acme/keys/"
CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _key(gateway: Gateway, **controls: Any) -> dict[str, Any]:
    response = gateway.actor.client().post(KEYS, {"name": "scoped", **controls}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def test_a_key_scoped_to_one_model_sees_only_it_and_is_refused_another(gateway: Gateway) -> None:
    key = _key(gateway, allowed_models=["sim-embed"])["key"]
    client = _client(gateway, key)

    listed = [model.id for model in client.models.list()]
    embedded = client.embeddings.create(model="sim-embed", input="hello")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(**CHAT)

    assert listed == ["sim-embed"]
    assert len(embedded.data) == 1
    assert refused.value.status_code == 403
    assert refused.value.body["message"] == (
        'This API key may only call sim-embed (its allowed_models); not "sim-chat".'
    )
    with gateway.http() as http:
        http.headers["Authorization"] = f"Bearer {key}"
        assert http.get("/v1/models/sim-chat").status_code == 404
    assert not any(sim.stats()["requests"].get("/v1/chat/completions") for sim in gateway.sims)


def test_an_unscoped_key_sees_every_model(gateway: Gateway) -> None:
    listed = {model.id for model in gateway.openai().models.list()}

    assert {"sim-chat", "sim-embed"} <= listed


def test_narrowing_a_keys_models_applies_to_its_next_request(gateway: Gateway) -> None:
    created = _key(gateway)
    client = _client(gateway, created["key"])
    assert client.chat.completions.create(**CHAT).choices

    response = gateway.actor.client().patch(f"{KEYS}{created['id']}/", {"allowed_models": ["sim-embed"]}, format="json")

    assert response.status_code == 200
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(**CHAT)


def test_a_key_limited_to_another_address_range_is_refused(gateway: Gateway) -> None:
    key = _key(gateway, allowed_ips=["203.0.113.0/24", "2001:db8::/32"])["key"]

    with gateway.http() as http:
        http.headers["Authorization"] = f"Bearer {key}"
        refused = http.post("/v1/chat/completions", json=CHAT)
        spoofed = http.post("/v1/chat/completions", json=CHAT, headers={"X-Forwarded-For": "203.0.113.9"})
        admin_api = http.get("/api/v1/me")

    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "This API key only accepts requests from its allowed address ranges (allowed_ips); 127.0.0.1 is not in them."
    )
    assert spoofed.status_code == 403  # no trusted proxy is configured: the header is not believed
    assert admin_api.status_code == 403


def test_a_key_limited_to_the_clients_range_is_served(gateway: Gateway) -> None:
    key = _key(gateway, allowed_ips=["127.0.0.0/8"])["key"]

    assert _client(gateway, key).chat.completions.create(**CHAT).choices


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_one_judged(gateway: Gateway, settings: Any) -> None:
    settings.PENDRA_TRUSTED_PROXIES = ["127.0.0.1/32"]
    key = _key(gateway, allowed_ips=["203.0.113.0/24"])["key"]

    with gateway.http() as http:
        http.headers["Authorization"] = f"Bearer {key}"
        inside = http.post("/v1/chat/completions", json=CHAT, headers={"X-Forwarded-For": "203.0.113.9"})
        outside = http.post("/v1/chat/completions", json=CHAT, headers={"X-Forwarded-For": "198.51.100.7"})

    assert inside.status_code == 200
    assert outside.status_code == 403


def test_a_range_set_on_a_working_key_refuses_it_within_a_second(gateway: Gateway) -> None:
    created = _key(gateway)
    client = _client(gateway, created["key"])
    assert client.chat.completions.create(**CHAT).choices

    gateway.actor.client().patch(f"{KEYS}{created['id']}/", {"allowed_ips": ["203.0.113.0/24"]}, format="json")
    time.sleep(1.1)  # another process's cached copy lasts at most PENDRA_KEY_CACHE_SECONDS

    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(**CHAT)
