"""Nobody obtains a secret that acts as someone else; admins manage others' keys but not an owner's.

Issue 9's rule, over the admin API: only a key's own user sees its plaintext (create,
rotate, reveal); owners and admins revoke, rename and rotate others' keys without seeing
the successor's secret (its user reveals it); an admin cannot touch an owner's key.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from apps.keys.models import ApiKey
from apps.keys.services import api_key_rotate
from testing.actors import Actor

pytestmark = pytest.mark.django_db

ORG = "/api/v1/orgs/acme"


def test_an_admin_rotating_a_members_key_never_sees_the_new_secret(admin: Actor, member: Actor) -> None:
    response = admin.client().post(f"{ORG}/keys/{member.api_key.pk}/rotate/", {"grace_seconds": 60}, format="json")

    assert response.status_code == 201
    assert "key" not in response.json()
    assert response.json()["status"] == "awaiting_reveal"


def test_the_member_reveals_the_successor_an_admin_made(admin: Actor, member: Actor) -> None:
    rotated = admin.client().post(f"{ORG}/keys/{member.api_key.pk}/rotate/", {"grace_seconds": 60}, format="json")

    revealed = member.client().post(f"{ORG}/keys/{rotated.json()['id']}/reveal/")

    assert revealed.status_code == 200
    assert APIClient().get("/api/v1/me", HTTP_X_API_KEY=revealed.json()["key"]).status_code == 200


def test_an_owner_rotating_an_admins_key_never_sees_the_new_secret(owner: Actor, admin: Actor) -> None:
    response = owner.client().post(f"{ORG}/keys/{admin.api_key.pk}/rotate/", {"grace_seconds": 60}, format="json")

    assert response.status_code == 201
    assert "key" not in response.json()


@pytest.mark.parametrize("revealer", ["owner", "admin"])
def test_nobody_but_its_user_reveals_a_scheduled_successor(
    request: pytest.FixtureRequest, member: Actor, revealer: str
) -> None:
    successor, _ = api_key_rotate(key=member.api_key, actor=None, grace=timedelta(hours=1), reveal_later=True)

    response = request.getfixturevalue(revealer).client().post(f"{ORG}/keys/{successor.pk}/reveal/")

    assert response.status_code == 403
    assert ApiKey.objects.get(pk=successor.pk).awaiting_reveal


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("delete", "", None),
        ("patch", "", {"name": "mine now"}),
        ("post", "rotate/", {"grace_seconds": 0}),
    ],
)
def test_an_admin_cannot_touch_an_owners_key(
    admin: Actor, owner: Actor, method: str, path: str, body: dict[str, object] | None
) -> None:
    response = getattr(admin.client(), method)(f"{ORG}/keys/{owner.api_key.pk}/{path}", body, format="json")

    assert response.status_code == 403
    key = ApiKey.objects.get(pk=owner.api_key.pk)
    assert (key.revoked_at, key.name, key.grace_until) == (None, owner.api_key.name, None)


def test_an_owner_revokes_an_admins_key(owner: Actor, admin: Actor) -> None:
    response = owner.client().delete(f"{ORG}/keys/{admin.api_key.pk}/")

    assert response.status_code == 200
    assert response.json()["status"] == "revoked"


def test_a_member_cannot_see_another_members_key(member: Actor, admin: Actor) -> None:
    response = member.client().get(f"{ORG}/keys/{admin.api_key.pk}/")

    assert response.status_code == 403
