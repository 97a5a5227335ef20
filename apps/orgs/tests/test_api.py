"""The org-scoped admin API: outsiders see nothing, CSRF, members, invitations, audit log."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.keys.models import ApiKey
from apps.orgs.invitations import invitation_create
from apps.orgs.models import Invitation, Membership, Role
from apps.orgs.permissions import OrgScopedAPIView
from testing.actors import Actor, make_user

pytestmark = pytest.mark.django_db

ORG = "/api/v1/orgs/acme"
_INT_PARAM = re.compile(r"<int:(\w+)>")
_OTHER_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def _routes(patterns: list[URLPattern | URLResolver], prefix: str = "/") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, route)
        else:
            found.append((route, pattern.callback))
    return found


def _is_org_scoped(route: str, view: Any) -> bool:
    # Plan catalogue routes also use <slug:slug>, but a plan's slug: only orgs/<slug> and the base class count.
    # The console's pages under /orgs/<slug>/ take sessions, not keys (apps/console/tests walks them).
    view_class = getattr(view, "view_class", None)
    if not route.startswith("/api/"):
        return False
    return "orgs/<slug:slug>" in route or (view_class is not None and issubclass(view_class, OrgScopedAPIView))


def org_scoped_routes() -> list[tuple[str, Any]]:
    return [(route, view) for route, view in _routes(get_resolver().url_patterns) if _is_org_scoped(route, view)]


def _methods(view: Any) -> list[str]:
    view_class = getattr(view, "view_class", None) or getattr(view, "cls", None)
    names = ["get", "post", "put", "patch", "delete"]
    return [name for name in names if view_class is None or hasattr(view_class, name)]


# Every request is recorded by design (support looks requests up by id); that is the log, not a change.
_REQUEST_LOG = {"requestlog.RequestRecord"}


def _snapshot() -> dict[str, Any]:
    counts = {m._meta.label: m.objects.count() for m in apps.get_models() if m._meta.label not in _REQUEST_LOG}
    keys = sorted(ApiKey.objects.values_list("pk", "name", "revoked_at", "grace_until", "expires_at"))
    roles = sorted(Membership.objects.values_list("pk", "role"))
    return {"counts": counts, "keys": keys, "roles": roles}


def test_the_org_scoped_routes_include_every_family() -> None:
    routes = {route for route, _ in org_scoped_routes()}
    for part in ("keys/", "members/", "invitations/", "audit-events/", "transfer-ownership/"):
        assert any(part in route for route in routes), part


def test_an_outsider_gets_404_on_every_org_scoped_route_and_changes_nothing(
    outsider: Actor, owner: Actor, member: Actor
) -> None:
    invitation, _ = invitation_create(org=owner.org, email="x@acme.test", role="member", actor=owner.user)
    ids = {
        "key_id": owner.api_key.pk,
        "member_id": member.user.memberships.get().pk,
        "invitation_id": invitation.pk,
    }
    client = outsider.client()
    before = _snapshot()
    checked = 0
    for route, view in org_scoped_routes():
        url = route.replace("<slug:slug>", "acme")
        url = _INT_PARAM.sub(lambda m: str(ids.get(m[1], owner.api_key.pk)), url)
        url = _OTHER_PARAM.sub("x", url)
        for method in _methods(view):
            response = getattr(client, method)(url, {"name": "pwned", "role": "owner"}, format="json")
            assert response.status_code == 404, (method, url, response.content)
            assert response.json()["detail"]
            checked += 1
    assert checked >= 15
    assert _snapshot() == before


def test_a_key_of_another_org_gets_404_even_for_a_member_of_both(owner: Actor, outsider: Actor) -> None:
    from apps.orgs.services import membership_add

    membership_add(org=outsider.org, user=owner.user, role=Role.MEMBER, actor=outsider.user)
    response = outsider.client().get("/api/v1/orgs/acme/")
    assert response.status_code == 404
    assert owner.client().get("/api/v1/orgs/globex/").status_code == 404
    assert owner.session_client().get("/api/v1/orgs/globex/").status_code == 200


def test_an_unknown_org_and_a_foreign_org_look_the_same(outsider: Actor, owner: Actor) -> None:
    foreign = outsider.client().get(f"{ORG}/keys/")
    unknown = outsider.client().get("/api/v1/orgs/no-such-org/keys/")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["detail"] == unknown.json()["detail"]


def test_a_session_post_without_a_csrf_token_is_refused_as_json(member: Actor) -> None:
    response = member.session_client(csrf=False).post(f"{ORG}/keys/", {"name": "x"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not ApiKey.objects.filter(name="x").exists()


def test_a_session_post_with_a_csrf_token_works(member: Actor) -> None:
    response = member.session_client().post(f"{ORG}/keys/", {"name": "x"}, format="json")
    assert response.status_code == 201


def test_a_key_authenticated_post_needs_no_csrf_token(member: Actor) -> None:
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    response = client.post(f"{ORG}/keys/", {"name": "x"}, format="json", HTTP_X_API_KEY=member.key)
    assert response.status_code == 201


def test_me_describes_the_caller_and_the_key(member: Actor) -> None:
    body = member.client().get("/api/v1/me").json()
    assert body["email"] == member.email
    assert body["memberships"] == [{"org": "acme", "name": "Acme", "role": "member"}]
    assert body["api_key"]["prefix"] == member.api_key.prefix
    assert body["platform_roles"] == []


def test_me_names_platform_roles(support: Actor) -> None:
    body = support.client().get("/api/v1/me").json()
    assert body["platform_roles"] == ["support"]


def test_me_without_credentials_is_401_with_the_bearer_challenge(api: Any) -> None:
    response = api.get("/api/v1/me")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"] == "Invalid or expired token"


def test_creating_an_org_makes_the_caller_its_owner(member: Actor) -> None:
    response = member.session_client().post("/api/v1/orgs/", {"name": "Initech"}, format="json")
    assert response.status_code == 201
    assert response.json()["role"] == "owner"
    assert Membership.objects.get(org__slug=response.json()["slug"], user=member.user).role == Role.OWNER


def test_creating_an_org_with_a_taken_slug_is_400(member: Actor) -> None:
    response = member.session_client().post("/api/v1/orgs/", {"name": "X", "slug": "acme"}, format="json")
    assert response.status_code == 400
    assert "slug" in response.json()["detail"]


def test_the_org_list_shows_only_the_callers_orgs(owner: Actor, outsider: Actor) -> None:
    slugs = [row["slug"] for row in owner.client().get("/api/v1/orgs/").json()["results"]]
    assert slugs == ["acme"]


def test_the_last_owner_cannot_be_demoted(owner: Actor) -> None:
    own = owner.user.memberships.get().pk
    response = owner.client().patch(f"{ORG}/members/{own}/", {"role": "admin"}, format="json")
    assert response.status_code == 400
    assert "at least one owner" in response.json()["detail"]
    assert Membership.objects.get(pk=own).role == Role.OWNER


def test_the_last_owner_cannot_be_removed(owner: Actor) -> None:
    own = owner.user.memberships.get().pk
    response = owner.client().delete(f"{ORG}/members/{own}/")
    assert response.status_code == 400
    assert Membership.objects.filter(pk=own).exists()


def test_transferring_ownership_makes_the_old_owner_an_admin(owner: Actor, member: Actor) -> None:
    target = member.user.memberships.get().pk
    response = owner.client().post(f"{ORG}/transfer-ownership/", {"member_id": target}, format="json")
    assert response.status_code == 200
    assert Membership.objects.get(pk=target).role == Role.OWNER
    assert owner.user.memberships.get().role == Role.ADMIN
    assert owner.client().delete(f"{ORG}/").status_code == 403


def test_removing_a_member_revokes_their_keys_in_the_org(owner: Actor, member: Actor) -> None:
    owner.client().delete(f"{ORG}/members/{member.user.memberships.get().pk}/")
    assert member.client().get("/api/v1/me").status_code == 401
    member.api_key.refresh_from_db()
    assert member.api_key.revoked_at is not None


def test_adding_an_unknown_email_as_member_is_400(owner: Actor) -> None:
    response = owner.client().post(f"{ORG}/members/", {"email": "nobody@x.test", "role": "member"}, format="json")
    assert response.status_code == 400
    assert "invitation" in response.json()["detail"]


def test_an_invitation_is_accepted_by_the_invitee_once(owner: Actor) -> None:
    created = owner.client().post(f"{ORG}/invitations/", {"email": "New@X.test", "role": "admin"}, format="json")
    token = created.json()["token"]
    assert Invitation.objects.get().token_hash != token
    invitee = make_user("new@x.test")
    from testing.actors import make_actor

    client = make_actor(email=invitee.email, org=None, user=invitee).client()
    first = client.post("/api/v1/invitations/accept/", {"token": token}, format="json")
    second = client.post("/api/v1/invitations/accept/", {"token": token}, format="json")
    assert first.status_code == 201
    assert first.json() == {"org": "acme", "role": "admin"}
    assert second.status_code == 410


def test_an_invitation_for_someone_else_is_not_found(owner: Actor, member: Actor) -> None:
    _, token = invitation_create(org=owner.org, email="other@x.test", role="member", actor=owner.user)
    response = member.session_client().post("/api/v1/invitations/accept/", {"token": token}, format="json")
    assert response.status_code == 404


def test_an_expired_invitation_is_gone(owner: Actor) -> None:
    invitation, token = invitation_create(org=owner.org, email="late@x.test", role="member", actor=owner.user)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    from testing.actors import make_actor

    late = make_actor(email="late@x.test", org=None)
    response = late.client().post("/api/v1/invitations/accept/", {"token": token}, format="json")
    assert response.status_code == 410
    assert "expired" in response.json()["detail"]


def test_a_withdrawn_invitation_cannot_be_accepted(owner: Actor) -> None:
    invitation, token = invitation_create(org=owner.org, email="w@x.test", role="member", actor=owner.user)
    assert owner.client().delete(f"{ORG}/invitations/{invitation.pk}/").status_code == 204
    from testing.actors import make_actor

    response = (
        make_actor(email="w@x.test", org=None)
        .client()
        .post("/api/v1/invitations/accept/", {"token": token}, format="json")
    )
    assert response.status_code == 410


def test_audit_events_record_actor_target_and_request_id(owner: Actor) -> None:
    owner.client().patch(f"{ORG}/", {"name": "Acme Corp"}, format="json", HTTP_X_REQUEST_ID="audit-test-0123456789")
    event = AuditEvent.objects.get(event_type=AuditEvent.Type.ORG_CHANGED)
    assert event.actor == owner.user
    assert event.request_id == "audit-test-0123456789"
    assert event.data == {"name": {"from": "Acme", "to": "Acme Corp"}}


def test_audit_events_filter_by_type_actor_and_time(owner: Actor, admin: Actor) -> None:
    admin.client().post(f"{ORG}/keys/", {"name": "later"}, format="json")
    client = owner.client()
    by_type = client.get(f"{ORG}/audit-events/", {"event_type": "key.created", "actor": admin.user.pk}).json()
    assert [e["data"]["name"] for e in by_type["results"]] == ["later", "admin key"]
    future = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert client.get(f"{ORG}/audit-events/", {"since": future}).json()["count"] == 0
    assert (
        client.get(f"{ORG}/audit-events/", {"until": future}).json()["count"]
        == AuditEvent.objects.filter(org__slug="acme").count()
    )


@pytest.mark.parametrize("params", [{"since": "yesterday"}, {"event_type": "nope"}, {"actor": "x"}, {"bogus": "1"}])
def test_bad_audit_filters_are_400(owner: Actor, params: dict[str, str]) -> None:
    response = owner.client().get(f"{ORG}/audit-events/", params)
    assert response.status_code == 400
    assert response.json()["detail"]


@pytest.mark.parametrize("body", [{"role": "owner"}, {"slug": "evil"}, {"name": ""}, {"name": "x" * 101}], ids=str)
def test_org_patch_rejects_what_it_cannot_change(owner: Actor, body: dict[str, str]) -> None:
    response = owner.client().patch(f"{ORG}/", body, format="json")
    assert response.status_code == 400
    assert owner.org.__class__.objects.get(slug="acme").name == "Acme"


def test_malformed_json_is_400(owner: Actor) -> None:
    response = owner.client().post(f"{ORG}/keys/", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_lists_are_paginated(owner: Actor) -> None:
    body = owner.client().get(f"{ORG}/members/", {"page_size": 1}).json()
    assert set(body) == {"count", "next", "previous", "results"}
