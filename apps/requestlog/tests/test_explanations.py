"""Every /v1 request is findable by its X-Request-Id, explained in plain language.

Real calls through the live gateway and the simulated workers (a 401, a 429, a 502, a 504,
a 404 and a success), then the lookups over HTTP: support staff through
``/api/v1/requests/{id}/`` (audited), the org's people through its own route (members for
their own keys only), another org's owner never.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.gateway.tests.conftest import Gateway, usage_for, wait_for
from apps.gateway.tests.conftest import call_with_id as _call
from apps.keys import tokens
from apps.keys.services import api_key_revoke
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from apps.requestlog.models import RequestRecord
from testing.actors import Actor

pytestmark = pytest.mark.django_db(transaction=True)


def _lookup(actor: Actor, request_id: str) -> list[dict[str, Any]]:
    response = actor.client().get(f"/api/v1/requests/{request_id}/")
    assert response.status_code == 200, response.content
    return response.json()


def _text(row: dict[str, Any]) -> str:
    return row["summary"] + "\n" + "\n".join(fact["text"] for fact in row["facts"])


def test_support_finds_a_401_naming_the_presented_key_and_its_org_never_the_secret(
    gateway: Gateway, owner: Actor, support: Actor
) -> None:
    forged = tokens.format_key(owner.api_key.public_id, "A" * tokens.SECRET_LENGTH)
    assert _call(gateway, "ticket-401-00000000000000001", key=forged).status_code == 401

    [row] = _lookup(support, "ticket-401-00000000000000001")

    assert (row["status"], row["org"], row["key_public_id"]) == (401, "acme", owner.api_key.public_id)
    assert row["summary"] == "Refused (401): the API key was not accepted."
    assert f"Key {owner.api_key.prefix}" in _text(row) and "secret presented did not match" in _text(row)
    assert "Organisation Acme (acme)." in _text(row)
    stored = json.dumps(
        model_to_dict(RequestRecord.objects.get(request_id="ticket-401-00000000000000001")), default=str
    )
    assert "A" * tokens.SECRET_LENGTH not in stored


def test_a_revoked_keys_401_says_it_was_revoked(gateway: Gateway, owner: Actor, support: Actor) -> None:
    api_key_revoke(key=owner.api_key, actor=owner.user)
    assert _call(gateway, "ticket-401-revoked-0000000001").status_code == 401

    [row] = _lookup(support, "ticket-401-revoked-0000000001")

    assert row["org"] == "acme"
    assert "had been revoked on" in _text(row)


def test_a_401_without_a_well_formed_key_says_so(gateway: Gateway, support: Actor) -> None:
    assert _call(gateway, "ticket-401-garbage-0000000001", key="not-a-key").status_code == 401

    [row] = _lookup(support, "ticket-401-garbage-0000000001")

    assert (row["org"], row["key_public_id"]) == (None, "")
    assert "not a well-formed Pendra key" in _text(row)


def test_support_finds_a_429_naming_bucket_plan_limit_and_reset(gateway: Gateway, support: Actor) -> None:
    plan = plan_factory(name="Tiny", chat_rpm=1)
    Subscription.objects.update_or_create(org=gateway.actor.org, defaults={"plan": plan, "since": timezone.now()})
    assert _call(gateway, "ticket-429-first-000000000001").status_code == 200
    refused = _call(gateway, "ticket-429-00000000000000001")
    assert refused.status_code == 429

    [row] = _lookup(support, "ticket-429-00000000000000001")

    assert row["limit"] == {
        "bucket": "chat",
        "plan": "Tiny",
        "limit": "1 requests/minute",
        "reset_s": int(refused.headers["retry-after"]),
    }
    assert row["summary"] == 'Refused (429): the "chat" limit of plan Tiny was used up (1 requests/minute).'
    assert 'The "chat" limit fired: 1 requests/minute on plan Tiny; it reset' in _text(row)


def test_support_finds_a_502_naming_every_worker_tried_and_what_each_returned(gateway: Gateway, support: Actor) -> None:
    assert _call(gateway, "ticket-502-00000000000000001", headers={"x-sim-status": "500"}).status_code == 502

    [row] = _lookup(support, "ticket-502-00000000000000001")

    assert sorted(entry["worker"] for entry in row["worker_trail"]) == ["sim-a", "sim-b"]
    assert {entry["result"] for entry in row["worker_trail"]} == {"HTTP 500"}
    assert row["summary"].startswith("Failed (502): the worker(s) tried failed: ")
    assert "sim-a" in row["summary"] and "sim-b" in row["summary"]
    assert "Retried 1 time(s) on another worker." in _text(row)
    assert "Not billed" in _text(row)


def test_support_finds_a_504_naming_the_timeout(gateway: Gateway, support: Actor, settings: Any) -> None:
    settings.PENDRA_EMBEDDINGS_TIMEOUT = 0.5
    body = {"model": "sim-embed", "input": "hi"}
    response = _call(
        gateway, "ticket-504-00000000000000001", path="/v1/embeddings", body=body, headers={"x-sim-hang": "1"}
    )
    assert response.status_code == 504

    [row] = _lookup(support, "ticket-504-00000000000000001")

    assert row["timeout"] == {"name": "embeddings total", "seconds": 0.5}
    assert row["summary"] == "Timed out (504): the embeddings total timeout (0.5 s) hit."
    assert "took longer than its 0.5 s limit" in _text(row)
    assert row["worker_trail"][0]["result"] == "timed out (0.5 s)"


def test_support_finds_a_success_naming_the_billed_tokens(gateway: Gateway, support: Actor) -> None:
    response = _call(gateway, "ticket-200-00000000000000001")
    assert response.status_code == 200
    tokens_used = response.json()["usage"]["total_tokens"]
    assert len(usage_for("ticket-200-00000000000000001")) == 1

    [row] = _lookup(support, "ticket-200-00000000000000001")

    assert row["billed"]["total_tokens"] == tokens_used
    assert f"billed {tokens_used} tokens" in row["summary"]
    assert f"Billed {tokens_used} tokens" in _text(row)
    assert row["worker_trail"][0]["result"] == "HTTP 200"


def test_support_finds_a_404_on_the_gateway(gateway: Gateway, support: Actor) -> None:
    assert _call(gateway, "ticket-404-00000000000000001", path="/v1/no/such/route").status_code == 404

    [row] = _lookup(support, "ticket-404-00000000000000001")

    assert (row["status"], row["org"]) == (404, None)
    assert "answered before routing" in _text(row)


def test_a_reused_id_shows_every_match_each_with_its_org(gateway: Gateway, outsider: Actor, support: Actor) -> None:
    _call(gateway, "ticket-reused-000000000000001")
    _call(gateway, "ticket-reused-000000000000001", key=outsider.key, headers={"x-sim-status": "500"})
    # _call waited for *a* record with this id, and the first one already was: wait for the second.
    assert wait_for(lambda: RequestRecord.objects.filter(request_id="ticket-reused-000000000000001").count() == 2)

    rows = _lookup(support, "ticket-reused-000000000000001")

    assert sorted((row["org"], row["status"]) for row in rows) == [("acme", 200), ("globex", 502)]


def test_each_support_lookup_is_an_audit_event(gateway: Gateway, support: Actor, operator: Actor) -> None:
    _call(gateway, "ticket-audited-00000000000001")
    _lookup(support, "ticket-audited-00000000000001")
    _lookup(operator, "ticket-audited-00000000000001")
    assert support.client().get("/api/v1/requests/ticket-missing-00000000000001/").status_code == 404

    events = AuditEvent.objects.filter(event_type=AuditEvent.Type.REQUEST_LOOKED_UP).order_by("id")
    assert [(e.actor, e.target_id, e.data["found"], e.org) for e in events] == [
        (support.user, "ticket-audited-00000000000001", 1, None),
        (operator.user, "ticket-audited-00000000000001", 1, None),
        (support.user, "ticket-missing-00000000000001", 0, None),
    ]
    assert events[0].data["orgs"] == ["acme"]


@pytest.mark.parametrize("path", ["/api/v1/orgs/acme/requests/{id}/", "/api/v1/orgs/globex/requests/{id}/"])
def test_another_orgs_owner_gets_404(gateway: Gateway, outsider: Actor, path: str) -> None:
    _call(gateway, "ticket-foreign-00000000000001", headers={"x-sim-status": "500"})

    response = outsider.client().get(path.format(id="ticket-foreign-00000000000001"))

    assert response.status_code == 404


@pytest.mark.parametrize("actor_name", ["owner", "admin"])
def test_owners_and_admins_read_any_of_their_orgs_requests_explained(
    request: pytest.FixtureRequest, gateway: Gateway, member: Actor, actor_name: str
) -> None:
    _call(gateway, "ticket-members-0000000000001", key=member.key, headers={"x-sim-status": "500"})
    actor: Actor = request.getfixturevalue(actor_name)

    response = actor.client().get("/api/v1/orgs/acme/requests/ticket-members-0000000000001/")

    assert response.status_code == 200
    [row] = response.json()
    assert row["status"] == 502 and row["summary"].startswith("Failed (502)")
    assert f"of {member.email}" in _text(row)


def test_a_member_sees_only_their_own_keys_requests(gateway: Gateway, owner: Actor, member: Actor) -> None:
    forged = tokens.format_key(member.api_key.public_id, "B" * tokens.SECRET_LENGTH)
    _call(gateway, "ticket-mine-00000000000000001", key=forged)
    _call(gateway, "ticket-owners-000000000000001")

    mine = member.client().get("/api/v1/orgs/acme/requests/ticket-mine-00000000000000001/")
    owners = member.client().get("/api/v1/orgs/acme/requests/ticket-owners-000000000000001/")
    listed = member.client().get("/api/v1/orgs/acme/requests/")

    assert mine.status_code == 200 and mine.json()[0]["status"] == 401
    assert owners.status_code == 404
    assert {row["request_id"] for row in listed.json()["results"]} >= {"ticket-mine-00000000000000001"}
    assert "ticket-owners-000000000000001" not in {row["request_id"] for row in listed.json()["results"]}


@pytest.mark.parametrize("request_id", ["short", "bad%00id-00000000000000000000", "é" * 30, "x" * 201])
def test_a_lookup_of_something_that_is_no_request_id_is_a_400_and_writes_nothing(
    support: Actor, owner: Actor, request_id: str
) -> None:
    for client, path in ((support.client(), "/api/v1/requests/"), (owner.client(), "/api/v1/orgs/acme/requests/")):
        response = client.get(f"{path}{request_id}/")
        assert response.status_code == 400, response.content
        assert "not a request id" in response.json()["detail"]
    assert not AuditEvent.objects.filter(event_type=AuditEvent.Type.REQUEST_LOOKED_UP).exists()


def test_the_admin_apis_401_names_the_presented_key_and_its_org(owner: Actor, support: Actor, api: Any) -> None:
    forged = tokens.format_key(owner.api_key.public_id, "C" * tokens.SECRET_LENGTH)
    response = api.get(
        "/api/v1/orgs/acme/", HTTP_AUTHORIZATION=f"Bearer {forged}", HTTP_X_REQUEST_ID="ticket-admin-401-00000000001"
    )
    assert response.status_code == 401

    [row] = _lookup(support, "ticket-admin-401-00000000001")

    assert (row["org"], row["key_public_id"]) == ("acme", owner.api_key.public_id)
    assert "secret presented did not match" in _text(row)


def test_a_429_for_too_many_unknown_keys_names_that_limit(gateway: Gateway, support: Actor, settings: Any) -> None:
    settings.PENDRA_UNKNOWN_KEY_BUDGET = 1
    unknown = [tokens.format_key(tokens.new_public_id(), tokens.new_secret()) for _ in range(2)]
    assert _call(gateway, "ticket-unknown-keys-00000001", key=unknown[0]).status_code == 401
    assert _call(gateway, "ticket-unknown-keys-00000002", key=unknown[1]).status_code == 429

    # Support signs in with a session: its key, unknown to this process, would meet the same budget.
    session = support.session_client()
    [first] = session.get("/api/v1/requests/ticket-unknown-keys-00000001/").json()
    [row] = session.get("/api/v1/requests/ticket-unknown-keys-00000002/").json()

    assert f"Key pnd_{tokens.parse_key(unknown[0]).public_id} was presented; no such key exists." in _text(first)
    assert row["limit"]["bucket"] == "unknown keys"
    assert row["limit"]["limit"] == "1 unknown keys/minute from one address"
    assert 'The "unknown keys" limit fired: 1 unknown keys/minute from one address; it reset' in _text(row)
