"""A key carries no more power than its org gives, and rotation cannot multiply or revive keys.

A key of an org acts inside that org only: no platform staff powers, no new orgs, no
invitations accepted (``test_key_access.py`` has who may read or rotate whose key).
Rotation respects the plan's key cap and cannot revive an expired key; an expired key
stays expired.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.keys.models import ApiKey
from apps.orgs.invitations import invitation_create
from apps.orgs.models import Membership, Organisation, Role
from apps.orgs.services import membership_add
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from testing.actors import Actor, make_actor

pytestmark = pytest.mark.django_db

ORG = "/api/v1/orgs/acme"


# --- platform staff's keys inside an org ------------------------------------------


def _staff_member_key(staff: Actor, org: Organisation, owner: Actor) -> str:
    membership_add(org=org, user=staff.user, role=Role.MEMBER, actor=owner.user)
    return make_actor(email=staff.email, org=org, role=Role.MEMBER, user=staff.user).key


def test_a_support_users_org_key_cannot_look_up_requests(support: Actor, org: Organisation, owner: Actor) -> None:
    key = _staff_member_key(support, org, owner)

    response = APIClient().get("/api/v1/requests/req-anything-000000000001/", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == 403
    assert "support or operator role" in response.json()["detail"]


def test_an_operator_users_org_key_cannot_edit_plans_or_register_workers(
    operator: Actor, org: Organisation, owner: Actor
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {_staff_member_key(operator, org, owner)}")

    edit = client.patch("/api/v1/plans/free/", {"chat_rpm": 61}, format="json")
    register = client.post(
        "/api/v1/workers/",
        {"name": "gpu-x", "base_url": "http://127.0.0.1:8199", "models": [{"name": "m", "kind": "chat"}]},
        format="json",
    )

    assert (edit.status_code, register.status_code) == (403, 403)


def test_an_operator_users_org_key_claims_no_platform_role(operator: Actor, org: Organisation, owner: Actor) -> None:
    key = _staff_member_key(operator, org, owner)

    response = APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == 200
    assert response.json()["platform_roles"] == []


def test_the_operators_own_platform_key_keeps_its_powers(operator: Actor) -> None:
    response = operator.client().patch("/api/v1/plans/free/", {"chat_rpm": 61}, format="json")

    assert response.status_code == 200


def test_an_org_key_cannot_create_an_organisation(member: Actor) -> None:
    response = member.client().post("/api/v1/orgs/", {"name": "Side Project"}, format="json")

    assert response.status_code == 403
    assert "organisation's API key" in response.json()["detail"]
    assert not Organisation.objects.filter(name="Side Project").exists()


def test_a_signed_in_user_creates_an_organisation(member: Actor) -> None:
    response = member.session_client().post("/api/v1/orgs/", {"name": "Side Project"}, format="json")

    assert response.status_code == 201


def test_an_org_key_cannot_accept_an_invitation(member: Actor, outsider: Actor, other_org: Organisation) -> None:
    _, token = invitation_create(org=other_org, email=member.email, role=Role.ADMIN, actor=outsider.user)

    response = member.client().post("/api/v1/invitations/accept/", {"token": token}, format="json")

    assert response.status_code == 403
    assert not Membership.objects.filter(org=other_org, user=member.user).exists()
    assert (
        member.session_client().post("/api/v1/invitations/accept/", {"token": token}, format="json").status_code == 201
    )


# --- the plan's key cap and expiry ------------------------------------------------


def _put_on_plan(actor: Actor, **limits: object) -> None:
    Subscription.objects.update_or_create(
        org=actor.org, defaults={"plan": plan_factory(name="Tiny", **limits), "since": timezone.now()}
    )


def test_a_rotation_with_grace_at_the_key_cap_is_refused(owner: Actor) -> None:
    _put_on_plan(owner, max_keys=1)

    response = owner.client().post(f"{ORG}/keys/{owner.api_key.pk}/rotate/", {"grace_seconds": 3600}, format="json")

    assert response.status_code == 403
    assert response.json()["detail"].startswith("Plan Tiny allows 1 API key")
    assert not ApiKey.objects.filter(rotated_from=owner.api_key).exists()


def test_repeated_rotations_cannot_hold_more_working_keys_than_the_cap(owner: Actor) -> None:
    _put_on_plan(owner, max_keys=2)
    client = owner.client()
    first = client.post(f"{ORG}/keys/{owner.api_key.pk}/rotate/", {"grace_seconds": 3600}, format="json")
    assert first.status_code == 201

    second = client.post(f"{ORG}/keys/{first.json()['id']}/rotate/", {"grace_seconds": 3600}, format="json")

    assert second.status_code == 403
    assert ApiKey.objects.filter(org=owner.org).held_at(timezone.now()).count() == 2


def test_a_rotation_without_grace_at_the_key_cap_is_allowed(owner: Actor) -> None:
    _put_on_plan(owner, max_keys=1)

    response = owner.client().post(f"{ORG}/keys/{owner.api_key.pk}/rotate/", {"grace_seconds": 0}, format="json")

    assert response.status_code == 201


def _expire(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_moving_expires_at_forward_does_not_revive_an_expired_key(owner: Actor, member: Actor) -> None:
    _expire(member.api_key)
    later = (timezone.now() + timedelta(days=30)).isoformat()

    response = owner.client().patch(f"{ORG}/keys/{member.api_key.pk}/", {"expires_at": later}, format="json")

    assert response.status_code == 400
    assert "expired" in response.json()["detail"]
    assert member.client().get("/api/v1/me").status_code == 401


def test_an_expired_key_cannot_be_rotated_into_a_working_one(member: Actor) -> None:
    _expire(member.api_key)

    response = member.session_client().post(
        f"{ORG}/keys/{member.api_key.pk}/rotate/", {"grace_seconds": 0}, format="json"
    )

    assert response.status_code == 400
    assert not ApiKey.objects.filter(rotated_from=member.api_key).exists()
