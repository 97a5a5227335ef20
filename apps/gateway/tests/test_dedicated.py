"""Workers dedicated to an organisation: its traffic goes there first; other orgs never see them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from testing.actors import Actor

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}


@pytest.fixture
def fleet(live: Any, owner: Actor, outsider: Actor, simulator: Any, register_sim: Any) -> Any:
    register_sim(simulator("shared"))
    register_sim(simulator("acme-only"), dedicated_org=owner.org)
    register_sim(simulator("private", models={"acme-secret-model": "chat"}), dedicated_org=owner.org)
    return live


def _chat(live: Any, key: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{live.url}/v1/chat/completions", json={**CHAT, "model": model}, headers={"Authorization": f"Bearer {key}"}
    )


def test_an_orgs_traffic_goes_to_its_dedicated_worker_first(fleet: Any, owner: Actor) -> None:
    served = {_chat(fleet, owner.key, "sim-chat").headers["x-worker-name"] for _ in range(8)}
    assert served == {"acme-only"}


def test_other_orgs_never_reach_a_dedicated_worker(fleet: Any, outsider: Actor) -> None:
    served = {_chat(fleet, outsider.key, "sim-chat").headers["x-worker-name"] for _ in range(8)}
    assert served == {"shared"}


def test_another_orgs_dedicated_model_is_unknown_not_unavailable(fleet: Any, owner: Actor, outsider: Actor) -> None:
    assert _chat(fleet, owner.key, "acme-secret-model").status_code == 200
    refused = _chat(fleet, outsider.key, "acme-secret-model")
    assert refused.status_code == 400
    assert refused.json()["detail"] == 'Unknown model "acme-secret-model": GET /v1/models lists the models available.'
    listed = httpx.get(f"{fleet.url}/v1/models", headers={"Authorization": f"Bearer {outsider.key}"}).json()
    assert "acme-secret-model" not in {model["id"] for model in listed["data"]}
