"""API keys over HTTP: both headers, every 401, rotation with grace, reveal, demotion, fixed fields."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.keys import tokens
from apps.keys.authentication import authenticate_key
from apps.keys.models import ApiKey
from apps.keys.services import api_key_reveal, api_key_rotate
from pendra_console.api.exceptions import Conflict
from testing.actors import Actor

pytestmark = pytest.mark.django_db

ORG = "/api/v1/orgs/acme"
ME = "/api/v1/me"


def _assert_401(response: Any) -> None:
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or expired token"
    assert response["WWW-Authenticate"] == "Bearer"
    assert response["X-Request-Id"]


def test_a_key_works_as_a_bearer_token(member: Actor) -> None:
    assert APIClient().get(ME, HTTP_AUTHORIZATION=f"Bearer {member.key}").status_code == 200


def test_a_key_works_in_x_api_key(member: Actor) -> None:
    assert APIClient().get(ME, HTTP_X_API_KEY=member.key).status_code == 200


def test_the_same_key_in_both_headers_works(member: Actor) -> None:
    response = APIClient().get(ME, HTTP_AUTHORIZATION=f"Bearer {member.key}", HTTP_X_API_KEY=member.key)
    assert response.status_code == 200


def test_two_different_keys_are_refused(member: Actor, owner: Actor) -> None:
    _assert_401(APIClient().get(ME, HTTP_AUTHORIZATION=f"Bearer {member.key}", HTTP_X_API_KEY=owner.key))


def _unknown_key() -> str:
    return tokens.format_key(tokens.new_public_id(), tokens.new_secret())


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no key"),
        pytest.param({"HTTP_AUTHORIZATION": "Bearer not-a-key"}, id="malformed"),
        pytest.param({"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}, id="other scheme"),
        pytest.param({"HTTP_AUTHORIZATION": "Bearer "}, id="empty bearer"),
        pytest.param({"HTTP_X_API_KEY": "pnd_" + "a" * 60}, id="malformed x-api-key"),
        pytest.param({"HTTP_AUTHORIZATION": f"Bearer {_unknown_key()}"}, id="unknown"),
    ],
)
def test_a_missing_malformed_or_unknown_key_is_401(db: None, headers: dict[str, str]) -> None:
    _assert_401(APIClient().get(ME, **headers))


def test_a_mistyped_key_is_401(member: Actor) -> None:
    typo = member.key[:20] + ("A" if member.key[20] != "A" else "B") + member.key[21:]
    _assert_401(APIClient().get(ME, HTTP_X_API_KEY=typo))


def test_a_right_id_with_a_wrong_secret_is_401(member: Actor) -> None:
    forged = tokens.format_key(member.api_key.public_id, tokens.new_secret())
    _assert_401(APIClient().get(ME, HTTP_X_API_KEY=forged))


def test_a_revoked_key_is_401(member: Actor) -> None:
    assert member.client().delete(f"{ORG}/keys/{member.api_key.pk}/").status_code == 200
    _assert_401(member.client().get(ME))


def test_an_expired_key_is_401(member: Actor) -> None:
    ApiKey.objects.filter(pk=member.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _assert_401(member.client().get(ME))


def test_a_deactivated_users_key_is_401(member: Actor) -> None:
    member.user.is_active = False
    member.user.save()
    _assert_401(member.client().get(ME))


MALFORMED = ["garbage", "pnd_" + "x" * 51, "", "Bearer", "pnd_abcdefghijkl_" + "A" * 38]


def _non_log_queries(captured: CaptureQueriesContext) -> list[str]:
    """Queries other than the admin request record, which every /api/v1 request writes by design."""
    return [
        q["sql"] for q in captured.captured_queries if "requestlog_" not in q["sql"] and "SAVEPOINT" not in q["sql"]
    ]


@pytest.mark.parametrize("raw", MALFORMED)
def test_a_malformed_key_costs_no_query(db: None, django_assert_num_queries: Any, raw: str) -> None:
    with django_assert_num_queries(0):
        assert authenticate_key(raw) is None


@pytest.mark.parametrize("raw", MALFORMED)
def test_a_malformed_key_over_http_makes_no_key_or_user_query(db: None, raw: str) -> None:
    with CaptureQueriesContext(connection) as captured:
        response = APIClient().get(ME, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401
    assert _non_log_queries(captured) == []


def test_a_mistyped_key_costs_no_query(member: Actor, django_assert_num_queries: Any) -> None:
    typo = member.key[:-1] + ("a" if member.key[-1] != "a" else "b")
    with django_assert_num_queries(0):
        assert authenticate_key(typo) is None
    with CaptureQueriesContext(connection) as captured:
        response = APIClient().get(ME, HTTP_X_API_KEY=typo)
    assert response.status_code == 401
    assert _non_log_queries(captured) == []


def test_creating_a_key_returns_it_once_and_lists_never_show_it(member: Actor) -> None:
    created = member.client().post(f"{ORG}/keys/", {"name": "ci"}, format="json").json()
    assert created["key"].startswith(created["prefix"] + "_")
    assert created["last_four"] == created["key"][-4:]
    listed = member.client().get(f"{ORG}/keys/").json()["results"]
    detail = member.client().get(f"{ORG}/keys/{created['id']}/").json()
    for shown in [*listed, detail]:
        assert "key" not in shown
        assert "secret_hash" not in shown
    assert created["key"] not in str(listed) + str(detail)


def test_a_member_lists_only_their_own_keys(member: Actor, admin: Actor) -> None:
    ids = {row["id"] for row in member.client().get(f"{ORG}/keys/").json()["results"]}
    assert ids == {member.api_key.pk}


def test_an_admin_lists_everyones_keys(member: Actor, admin: Actor, owner: Actor) -> None:
    ids = {row["id"] for row in admin.client().get(f"{ORG}/keys/").json()["results"]}
    assert ids == {member.api_key.pk, admin.api_key.pk, owner.api_key.pk}


def test_the_old_secret_works_during_the_grace_period_and_fails_after(member: Actor) -> None:
    rotated = member.client().post(f"{ORG}/keys/{member.api_key.pk}/rotate/", {"grace_seconds": 1}, format="json")
    assert rotated.status_code == 201
    successor = rotated.json()["key"]
    assert member.client().get(ME).status_code == 200
    assert APIClient().get(ME, HTTP_X_API_KEY=successor).status_code == 200
    time.sleep(1.2)
    _assert_401(member.client().get(ME))
    assert APIClient().get(ME, HTTP_X_API_KEY=successor).status_code == 200


def test_a_zero_grace_rotation_stops_the_old_secret_at_once(member: Actor) -> None:
    rotated = member.client().post(f"{ORG}/keys/{member.api_key.pk}/rotate/", {"grace_seconds": 0}, format="json")
    _assert_401(member.client().get(ME))
    assert APIClient().get(ME, HTTP_X_API_KEY=rotated.json()["key"]).status_code == 200


def test_a_rotated_key_cannot_be_rotated_again(member: Actor) -> None:
    url = f"{ORG}/keys/{member.api_key.pk}/rotate/"
    member.client().post(url, {"grace_seconds": 60}, format="json")
    again = member.client().post(url, {"grace_seconds": 60}, format="json")
    assert again.status_code == 409
    assert ApiKey.objects.filter(rotated_from=member.api_key).count() == 1


@pytest.mark.parametrize("grace", [-1, 10**9, "soon"])
def test_a_bad_grace_is_400(member: Actor, grace: Any) -> None:
    response = member.client().post(f"{ORG}/keys/{member.api_key.pk}/rotate/", {"grace_seconds": grace}, format="json")
    assert response.status_code == 400
    assert "grace_seconds" in response.json()["detail"]
    assert not ApiKey.objects.filter(rotated_from=member.api_key).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_rotations_make_exactly_one_successor(member: Actor) -> None:
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def rotate() -> None:
        from django.db import connection

        barrier.wait()
        try:
            api_key_rotate(key=member.api_key, actor=member.user, grace=timedelta(seconds=60))
            outcomes.append("rotated")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["conflict", "rotated"]
    assert ApiKey.objects.filter(rotated_from=member.api_key).count() == 1


def test_a_scheduled_successor_is_revealed_once(member: Actor) -> None:
    successor, plaintext = api_key_rotate(key=member.api_key, actor=None, grace=timedelta(hours=1), reveal_later=True)
    assert plaintext is None
    assert successor.secret_hash == ""
    url = f"{ORG}/keys/{successor.pk}/reveal/"
    first = member.client().post(url)
    second = member.client().post(url)
    assert first.status_code == 200
    assert APIClient().get(ME, HTTP_X_API_KEY=first.json()["key"]).status_code == 200
    assert second.status_code == 410
    assert second.json()["detail"]


def test_an_ordinary_key_cannot_be_revealed(member: Actor) -> None:
    response = member.client().post(f"{ORG}/keys/{member.api_key.pk}/reveal/")
    assert response.status_code == 410


def test_a_concurrent_second_reveal_is_gone(member: Actor) -> None:
    successor, _ = api_key_rotate(key=member.api_key, actor=None, grace=timedelta(hours=1), reveal_later=True)
    api_key_reveal(key=successor, actor=member.user)
    from pendra_console.api.exceptions import Gone

    with pytest.raises(Gone):
        api_key_reveal(key=successor, actor=member.user)


def test_demoting_a_user_restricts_their_key_on_the_next_request(owner: Actor, admin: Actor) -> None:
    client = admin.client()
    assert client.get(f"{ORG}/audit-events/").status_code == 200
    membership = admin.user.memberships.get().pk
    owner.client().patch(f"{ORG}/members/{membership}/", {"role": "member"}, format="json")
    response = client.get(f"{ORG}/audit-events/")
    assert response.status_code == 403
    assert "owner or admin" in response.json()["detail"]


@pytest.mark.parametrize(
    "field",
    ["role", "org", "user", "user_id", "org_id", "secret_hash", "public_id", "revoked_at", "key"],
)
def test_patch_cannot_change_fixed_fields(member: Actor, owner: Actor, field: str) -> None:
    values = {"role": "owner", "org": "globex", "user": owner.user.pk, "user_id": owner.user.pk}
    fixed = ["org_id", "user_id", "name", "secret_hash", "public_id", "revoked_at", "expires_at"]
    before = ApiKey.objects.filter(pk=member.api_key.pk).values(*fixed).get()
    response = member.client().patch(f"{ORG}/keys/{member.api_key.pk}/", {field: values.get(field, "x")}, format="json")
    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert ApiKey.objects.filter(pk=member.api_key.pk).values(*fixed).get() == before


def test_patch_changes_name_expiry_and_policy(member: Actor) -> None:
    expires = (timezone.now() + timedelta(days=30)).isoformat()
    body = {"name": "renamed", "expires_at": expires, "rotate_every_days": 30, "rotation_grace_seconds": 600}
    response = member.client().patch(f"{ORG}/keys/{member.api_key.pk}/", body, format="json")
    assert response.status_code == 200
    key = ApiKey.objects.get(pk=member.api_key.pk)
    assert (key.name, key.rotate_every_days, key.rotation_grace_seconds) == ("renamed", 30, 600)
    assert AuditEvent.objects.filter(event_type=AuditEvent.Type.KEY_CHANGED, target_id=str(key.pk)).exists()


def test_an_expiry_in_the_past_is_400(member: Actor) -> None:
    past = (timezone.now() - timedelta(days=1)).isoformat()
    response = member.client().post(f"{ORG}/keys/", {"name": "x", "expires_at": past}, format="json")
    assert response.status_code == 400
    assert "expires_at" in response.json()["detail"]


def test_last_used_is_recorded(member: Actor) -> None:
    member.client().get(ME)
    assert ApiKey.objects.get(pk=member.api_key.pk).last_used_at is not None


def test_every_key_change_is_audited(member: Actor) -> None:
    client = member.client()
    created = client.post(f"{ORG}/keys/", {"name": "a"}, format="json").json()
    client.post(f"{ORG}/keys/{created['id']}/rotate/", {"grace_seconds": 0}, format="json")
    client.delete(f"{ORG}/keys/{created['id']}/")
    types = set(AuditEvent.objects.filter(target_id=str(created["id"])).values_list("event_type", flat=True))
    assert types == {"key.created", "key.rotated", "key.revoked"}
