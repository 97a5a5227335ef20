"""``manage.py seed_demo --json``: the promised object, working keys, and idempotence."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.orgs.models import Membership, Organisation

pytestmark = pytest.mark.django_db

ROLES = {"owner", "admin", "member", "support", "operator"}


def _seed() -> dict[str, Any]:
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_prints_the_object_and_its_keys_work() -> None:
    seeded = _seed()
    assert set(seeded) == {"org", "users", "keys"}
    assert seeded["org"] == "demo"
    assert set(seeded["users"]) == set(seeded["keys"]) == ROLES
    for role, key in seeded["keys"].items():
        me = APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}")
        assert me.status_code == 200, role
        assert me.json()["email"] == seeded["users"][role]["email"]
    assert APIClient().get("/api/v1/me", HTTP_X_API_KEY=seeded["keys"]["support"]).json()["platform_roles"] == [
        "support"
    ]


def test_seed_demo_passwords_sign_in() -> None:
    seeded = _seed()
    client = APIClient()
    user = seeded["users"]["owner"]
    assert client.login(username=user["email"], password=user["password"])


def test_seed_demo_is_idempotent_and_mints_fresh_keys() -> None:
    first, second, third = _seed(), _seed(), _seed()
    assert Organisation.objects.filter(slug="demo").count() == 1
    assert Membership.objects.filter(org__slug="demo").count() == 3
    assert first["users"] == second["users"]
    assert set(first["keys"].values()).isdisjoint(second["keys"].values())
    assert APIClient().get("/api/v1/me", HTTP_X_API_KEY=third["keys"]["owner"]).status_code == 200
    assert APIClient().get("/api/v1/me", HTTP_X_API_KEY=first["keys"]["owner"]).status_code == 401
    roles = dict(Membership.objects.filter(org__slug="demo").values_list("user__email", "role"))
    assert sorted(roles.values()) == ["admin", "member", "owner"]
