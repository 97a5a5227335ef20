"""The warm path: no table read, the request id handed to the worker, no secret in the record."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db.backends import utils as db_utils

from apps.gateway.tests.conftest import Gateway, record_for

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}


# A key with every per-key control on: its models, address ranges and own limits are cached too.
CONTROLS = {"allowed_models": ["sim-chat"], "allowed_ips": ["127.0.0.0/8"], "rpm_limit": 30, "tpm_limit": 2000}


@pytest.mark.parametrize("controls", [{}, CONTROLS], ids=["plain key", "key with every control and budgets"])
def test_a_warm_request_reads_no_table(gateway: Gateway, settings, monkeypatch, controls) -> None:
    settings.PENDRA_KEY_CACHE_SECONDS = 60
    settings.PENDRA_PLAN_CACHE_SECONDS = 60  # a slow run must not see the plan expire mid-test
    if controls:  # after the settings: creating the key caches the plan (its limits bound the key's)
        client = gateway.actor.client()
        created = client.post("/api/v1/orgs/acme/keys/", {"name": "ctl", **controls}, format="json")
        assert created.status_code == 201, created.content
        gateway.key = created.json()["key"]
        # Budgets too: the key's hard one is checked at admission, the org's soft one only alerts.
        budget = {"monthly_usd": "1000", "hard": True}
        key_budget = f"/api/v1/orgs/acme/keys/{created.json()['id']}/budget/"
        assert client.put(key_budget, budget, format="json").status_code == 200
        assert client.put("/api/v1/orgs/acme/budget/", {"monthly_usd": "1000"}, format="json").status_code == 200
    queries: Counter[str] = Counter()
    original = db_utils.CursorWrapper.execute

    def counting_execute(self, sql, params=None):  # observes every query, from every thread
        # Off the request path: the batch writer, and the fleet view reloaded every half second.
        if threading.current_thread().name != "pendra-recorder" and "workers_worker" not in sql:
            queries[sql.split(" WHERE ")[0]] += 1
        return original(self, sql, params)

    with gateway.http() as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200  # warms the caches
        # The changes above reach this process's caches as epochs (pendra_console/epochs.py) within a
        # second, clearing what they changed: warm again once that is done.
        time.sleep(1.0)
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        monkeypatch.setattr(db_utils.CursorWrapper, "execute", counting_execute)
        for _ in range(20):
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        monkeypatch.setattr(db_utils.CursorWrapper, "execute", original)
    assert queries == Counter()


def test_the_request_id_reaches_the_worker(gateway: Gateway) -> None:
    request_id = "forwarded-to-worker-0123456789"
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json=CHAT, headers={"X-Request-Id": request_id})
    assert response.headers["x-request-id"] == request_id
    seen = [entry["request_id"] for sim in gateway.sims for entry in sim.stats()["recent"]]
    assert request_id in seen


def test_the_workers_never_see_the_clients_key(gateway: Gateway) -> None:
    with gateway.http() as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert all(not entry["authorization"] for sim in gateway.sims for entry in sim.stats()["recent"])


def test_the_record_holds_no_prompt_output_or_key(gateway: Gateway) -> None:
    secret_prompt = "my-secret-prompt-words"
    with gateway.http() as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": "sim-chat", "messages": [{"role": "user", "content": secret_prompt}], "max_tokens": 3},
        )
    output = response.json()["choices"][0]["message"]["content"]
    record = record_for(response.headers["x-request-id"])
    stored = " ".join(str(value) for value in record.__dict__.values())
    assert secret_prompt not in stored
    assert output not in stored
    assert gateway.key not in stored
