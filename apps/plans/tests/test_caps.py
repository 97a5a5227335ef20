"""Plans cap the keys and members an organisation holds: one more is a 403 naming the cap and the plan."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.keys.models import ApiKey
from apps.orgs.invitations import invitation_create
from apps.orgs.models import Membership
from apps.plans.models import Plan, Subscription
from apps.plans.tests.factories import plan_factory
from testing.actors import Actor, make_user

pytestmark = pytest.mark.django_db


def _put_on_plan(actor: Actor, **limits: object) -> None:
    Subscription.objects.update_or_create(
        org=actor.org, defaults={"plan": plan_factory(name="Tiny", **limits), "since": timezone.now()}
    )


def test_a_key_over_the_plans_cap_is_refused_naming_cap_and_plan(owner: Actor) -> None:
    _put_on_plan(owner, max_keys=2)
    client = owner.client()
    assert client.post("/api/v1/orgs/acme/keys/", {"name": "second"}, format="json").status_code == 201

    response = client.post("/api/v1/orgs/acme/keys/", {"name": "third"}, format="json")

    assert response.status_code == 403
    assert response.json()["detail"] == "Plan Tiny allows 2 API keys; revoke one or upgrade"
    assert ApiKey.objects.filter(org=owner.org).count() == 2


def test_a_revoked_key_frees_its_place_under_the_cap(owner: Actor) -> None:
    _put_on_plan(owner, max_keys=2)
    client = owner.client()
    second = client.post("/api/v1/orgs/acme/keys/", {"name": "second"}, format="json").json()
    assert client.delete(f"/api/v1/orgs/acme/keys/{second['id']}/").status_code in {200, 204}

    response = client.post("/api/v1/orgs/acme/keys/", {"name": "third"}, format="json")

    assert response.status_code == 201


def test_the_free_plan_caps_keys_at_five(owner: Actor) -> None:
    Subscription.objects.update_or_create(
        org=owner.org, defaults={"plan": Plan.objects.get(slug="free"), "since": timezone.now()}
    )
    client = owner.client()
    statuses = [client.post("/api/v1/orgs/acme/keys/", {"name": f"k{n}"}, format="json").status_code for n in range(5)]

    assert statuses == [201] * 4 + [403]
    assert ApiKey.objects.filter(org=owner.org).count() == 5


def test_a_member_over_the_plans_cap_is_refused_naming_cap_and_plan(owner: Actor) -> None:
    _put_on_plan(owner, max_members=1)
    make_user("newcomer@acme.test")

    response = owner.client().post(
        "/api/v1/orgs/acme/members/", {"email": "newcomer@acme.test", "role": "member"}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["detail"] == "Plan Tiny allows 1 member; remove one or upgrade"
    assert Membership.objects.filter(org=owner.org).count() == 1


def test_accepting_an_invitation_over_the_cap_is_refused_and_leaves_the_invitation_usable(owner: Actor) -> None:
    _put_on_plan(owner, max_members=1)
    invitee = make_user("newcomer@acme.test")
    invitation, token = invitation_create(org=owner.org, email="newcomer@acme.test", role="member", actor=owner.user)
    client = owner.client()
    client.force_authenticate(invitee)

    response = client.post("/api/v1/invitations/accept/", {"token": token}, format="json")

    assert response.status_code == 403
    assert response.json()["detail"] == "Plan Tiny allows 1 member; remove one or upgrade"
    invitation.refresh_from_db()
    assert invitation.accepted_at is None


def test_an_unlimited_plan_has_no_cap(owner: Actor) -> None:
    _put_on_plan(owner, max_keys=None)
    client = owner.client()

    statuses = {client.post("/api/v1/orgs/acme/keys/", {"name": f"k{n}"}, format="json").status_code for n in range(6)}

    assert statuses == {201}
