"""Request records and usage over the admin API: who sees what, and the support lookup."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.requestlog.models import RequestRecord
from apps.requestlog.services import write_records
from testing.actors import Actor

pytestmark = pytest.mark.django_db

ORG = "/api/v1/orgs/acme"


def _record(actor: Actor, request_id: str, *, status: int = 200, tokens: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "uid": secrets.token_hex(16),
        "request_id": request_id,
        "created_at": timezone.now(),
        "org_id": actor.org.pk if actor.org else None,
        "api_key_id": actor.api_key.pk,
        "user_id": actor.user.pk,
        "route": "/v1/chat/completions",
        "method": "POST",
        "model": "sim-chat",
        "status": status,
        "latency_ms": 12.5,
        "total_tokens": tokens or None,
        **extra,
    }


def _usage(record: dict[str, Any], tokens: int, model: str = "sim-chat") -> dict[str, Any]:
    return {
        "request_uid": record["uid"],
        "request_id": record["request_id"],
        "created_at": record["created_at"],
        "org_id": record["org_id"],
        "api_key_id": record["api_key_id"],
        "route": record["route"],
        "model": model,
        "prompt_tokens": tokens // 2,
        "completion_tokens": tokens - tokens // 2,
        "total_tokens": tokens,
    }


@pytest.fixture
def traffic(owner: Actor, admin: Actor, member: Actor, outsider: Actor) -> None:
    records = [
        _record(owner, "req-owner-000000000000000001"),
        _record(admin, "req-admin-000000000000000001", status=502, error="The GPU worker failed"),
        _record(member, "req-member-00000000000000001"),
        _record(outsider, "req-outsider-000000000000001"),
    ]
    write_records(records, [_usage(records[0], 10), _usage(records[2], 30, model="sim-embed")])


def _request_ids(response: Any) -> set[str]:
    return {row["request_id"] for row in response.json()["results"]}


ALL_ACME = {"req-owner-000000000000000001", "req-admin-000000000000000001", "req-member-00000000000000001"}


@pytest.mark.parametrize("auth", ["key", "session"])
@pytest.mark.parametrize(
    ("actor_name", "expected"),
    [("owner", ALL_ACME), ("admin", ALL_ACME), ("member", {"req-member-00000000000000001"})],
)
def test_org_request_records_owner_and_admin_see_all_members_their_own(
    request: pytest.FixtureRequest, traffic: None, auth: str, actor_name: str, expected: set[str]
) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    client = actor.client() if auth == "key" else actor.session_client()
    response = client.get(f"{ORG}/requests/", {"route": "/v1/chat/completions"})
    assert response.status_code == 200
    assert _request_ids(response) == expected


@pytest.mark.parametrize("actor_name", ["support", "operator", "outsider"])
def test_non_members_cannot_list_an_orgs_records(
    request: pytest.FixtureRequest, traffic: None, actor_name: str
) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    assert actor.client().get(f"{ORG}/requests/").status_code == 404


def test_a_member_cannot_open_someone_elses_request(traffic: None, member: Actor) -> None:
    response = member.client().get(f"{ORG}/requests/req-owner-000000000000000001/")
    assert response.status_code == 404


def test_records_filter_by_status(traffic: None, owner: Actor) -> None:
    response = owner.client().get(f"{ORG}/requests/", {"status": 502})
    assert _request_ids(response) == {"req-admin-000000000000000001"}


def test_a_bad_filter_is_a_400_naming_it(traffic: None, owner: Actor) -> None:
    response = owner.client().get(f"{ORG}/requests/", {"since": "yesterday"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("since:")


@pytest.mark.parametrize("auth", ["key", "session"])
@pytest.mark.parametrize("actor_name", ["support", "operator"])
def test_platform_staff_look_up_any_request_and_the_lookup_is_audited(
    request: pytest.FixtureRequest, traffic: None, outsider: Actor, auth: str, actor_name: str
) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    client = actor.client() if auth == "key" else actor.session_client()
    response = client.get("/api/v1/requests/req-outsider-000000000000001/")
    assert response.status_code == 200
    [row] = response.json()
    assert (row["org"], row["status"], row["model"]) == (outsider.org.slug, 200, "sim-chat")
    event = AuditEvent.objects.get(event_type=AuditEvent.Type.REQUEST_LOOKED_UP)
    assert (event.actor, event.target_id) == (actor.user, "req-outsider-000000000000001")


@pytest.mark.parametrize("actor_name", ["owner", "admin", "member"])
def test_org_roles_cannot_look_up_arbitrary_requests(
    request: pytest.FixtureRequest, traffic: None, actor_name: str
) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    response = actor.client().get("/api/v1/requests/req-outsider-000000000000001/")
    assert response.status_code == 403
    assert "requires the support or operator role" in response.json()["detail"]


def test_the_support_lookup_is_read_only(traffic: None, support: Actor) -> None:
    response = support.client().delete("/api/v1/requests/req-outsider-000000000000001/")
    assert response.status_code == 405
    assert RequestRecord.objects.filter(request_id="req-outsider-000000000000001").exists()


def test_an_unknown_request_id_is_a_404(support: Actor) -> None:
    response = support.client().get("/api/v1/requests/req-nothing-here-0000000000/")
    assert response.status_code == 404
    assert response.json()["detail"] == "No request with id req-nothing-here-0000000000."


def test_every_admin_api_request_leaves_a_record(owner: Actor) -> None:
    response = owner.client().get(f"{ORG}/", HTTP_X_REQUEST_ID="admin-call-0000000000000001")
    assert response.status_code == 200
    record = RequestRecord.objects.get(request_id="admin-call-0000000000000001")
    assert (record.method, record.status, record.route) == ("GET", 200, "/api/v1/orgs/<slug:slug>/")
    assert (record.org_id, record.api_key_id, record.user_id) == (owner.org.pk, owner.api_key.pk, owner.user.pk)


@pytest.mark.parametrize("actor_name", ["owner", "admin"])
def test_usage_totals_by_model(request: pytest.FixtureRequest, traffic: None, actor_name: str) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    response = actor.client().get(f"{ORG}/usage/", {"group_by": "model"})
    assert response.status_code == 200
    body = response.json()
    assert body["totals"]["requests"] == 2
    assert body["totals"]["total_tokens"] == 40
    assert [(row["model"], row["total_tokens"]) for row in body["rows"]] == [("sim-embed", 30), ("sim-chat", 10)]


def test_a_member_sees_only_their_own_keys_usage(traffic: None, member: Actor) -> None:
    body = member.client().get(f"{ORG}/usage/", {"group_by": "model"}).json()
    assert (body["totals"]["requests"], body["totals"]["total_tokens"]) == (1, 30)
    assert [(row["model"], row["total_tokens"]) for row in body["rows"]] == [("sim-embed", 30)]


def test_usage_rejects_an_inverted_range(owner: Actor) -> None:
    now = timezone.now()
    response = owner.client().get(
        f"{ORG}/usage/", {"since": now.isoformat(), "until": (now - timedelta(days=1)).isoformat()}
    )
    assert response.status_code == 400
    assert "since: must be before until." in response.json()["detail"]


def test_a_session_callers_record_names_the_org(owner: Actor) -> None:
    response = owner.session_client().get(f"{ORG}/members/", HTTP_X_REQUEST_ID="session-call-00000000000001")
    assert response.status_code == 200
    record = RequestRecord.objects.get(request_id="session-call-00000000000001")
    assert (record.org_id, record.api_key_id, record.user_id) == (owner.org.pk, None, owner.user.pk)
